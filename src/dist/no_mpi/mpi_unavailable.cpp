// Built without MPI (SHARDRT_WITH_MPI=OFF): asking for the MPI communicator says so.
#include "dist/communicator.h"

namespace shardrt::dist {

bool mpi_available() { return false; }

std::unique_ptr<Communicator> make_mpi_communicator() {
  throw Error("this shardrt was built without MPI (SHARDRT_WITH_MPI=OFF): rebuild with MPI to run on several ranks");
}

}  // namespace shardrt::dist
