// (being written) CUDA kernels of the collective family.
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

void register_collective_kernels() {}

}  // namespace shardrt::cuda
