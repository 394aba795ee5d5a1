// Making the world communicator from the environment the launcher left: mpirun (OpenMPI's
// OMPI_COMM_WORLD_*), srun (SLURM_*, PMI_*) → MPI; torchrun (RANK/WORLD_SIZE/MASTER_ADDR)
// → an error saying how to launch instead; nothing → a world of one. SHARDRT_COMM=single|mpi
// overrides the detection.
#pragma once
#include <memory>
#include <string>

#include "dist/communicator.h"

namespace shardrt::dist {

struct LaunchInfo {
  std::string launcher;  // "mpirun", "srun", "pmi", "torchrun", "none", or "SHARDRT_COMM"
  int world_size = 1;
  int rank = 0;
  int local_rank = 0;  // rank among the processes of this host (picks the GPU later)
};

// What the environment says (no communication, no MPI initialisation).
LaunchInfo detect_launch();

// The world communicator for this process. Throws Error naming the problem (a torchrun
// launch, SHARDRT_COMM=mpi without MPI support, an unknown SHARDRT_COMM value).
std::unique_ptr<Communicator> communicator_from_env();

}  // namespace shardrt::dist
