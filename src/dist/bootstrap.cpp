// The world communicator from the launcher's environment.
#include "dist/bootstrap.h"

#include <cstdlib>

namespace shardrt::dist {

namespace {

const char* env(const char* k) {
  const char* v = std::getenv(k);
  return v && *v ? v : nullptr;
}

int env_int(const char* k, int dflt) {
  const char* v = env(k);
  if (!v) return dflt;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v || *end) throw Error(std::string("environment variable ") + k + "='" + v + "' is not an integer");
  return int(x);
}

}  // namespace

LaunchInfo detect_launch() {
  LaunchInfo li;
  if (env("OMPI_COMM_WORLD_SIZE")) {
    li.launcher = "mpirun";
    li.world_size = env_int("OMPI_COMM_WORLD_SIZE", 1);
    li.rank = env_int("OMPI_COMM_WORLD_RANK", 0);
    li.local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
  } else if (env("SLURM_PROCID") && env("SLURM_NTASKS")) {
    li.launcher = "srun";
    li.world_size = env_int("SLURM_NTASKS", 1);
    li.rank = env_int("SLURM_PROCID", 0);
    li.local_rank = env_int("SLURM_LOCALID", 0);
  } else if (env("PMI_SIZE") || env("PMIX_RANK")) {
    li.launcher = "pmi";
    li.world_size = env_int("PMI_SIZE", 1);
    li.rank = env_int("PMI_RANK", env_int("PMIX_RANK", 0));
    li.local_rank = env_int("MPI_LOCALRANKID", 0);
  } else if (env("WORLD_SIZE") && env("RANK")) {
    li.launcher = "torchrun";
    li.world_size = env_int("WORLD_SIZE", 1);
    li.rank = env_int("RANK", 0);
    li.local_rank = env_int("LOCAL_RANK", 0);
  } else {
    li.launcher = "none";
  }
  return li;
}

std::unique_ptr<Communicator> communicator_from_env() {
  if (const char* c = env("SHARDRT_COMM")) {
    std::string v = c;
    if (v == "single") return make_single_communicator();
    if (v == "mpi") return make_mpi_communicator();
    throw Error("SHARDRT_COMM='" + v + "' is not a communicator (single|mpi)");
  }
  LaunchInfo li = detect_launch();
  if (li.launcher == "torchrun") {
    if (li.world_size <= 1) return make_single_communicator();
    throw Error("this process was started by torchrun (RANK=" + std::to_string(li.rank) +
                ", WORLD_SIZE=" + std::to_string(li.world_size) +
                (env("MASTER_ADDR") ? std::string(", MASTER_ADDR=") + env("MASTER_ADDR") : std::string()) +
                "), whose rendezvous shardrt's C++ runtime does not join: launch it with `mpirun -n " +
                std::to_string(li.world_size) + " ...` (or srun), or run it through the shardrt Python package");
  }
  if (li.launcher == "none" || li.world_size <= 1) return make_single_communicator();
  if (!mpi_available())
    throw Error("launched by " + li.launcher + " as rank " + std::to_string(li.rank) + " of " +
                std::to_string(li.world_size) + ", but this shardrt was built without MPI (SHARDRT_WITH_MPI=OFF)");
  return make_mpi_communicator();
}

}  // namespace shardrt::dist
