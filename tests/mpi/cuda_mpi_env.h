// What main() of shardrt_mpi_cuda_tests sets up once for every test file of the binary:
// the MPI world, this rank's Resources (its stream) and the DeviceComm over the world.
#pragma once
#include <memory>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/device_comm.h"
#include "dist/communicator.h"

namespace shardrt::cudatest {

struct MpiCudaEnv {
  std::unique_ptr<dist::Communicator> world;
  std::unique_ptr<cuda::Resources> res;
  std::unique_ptr<cuda::DeviceComm> dc;
};

MpiCudaEnv& mpi_cuda_env();

}  // namespace shardrt::cudatest
