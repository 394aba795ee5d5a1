// (being written) CUDA kernels of the norm family.
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

void register_norm_kernels() {}

}  // namespace shardrt::cuda
