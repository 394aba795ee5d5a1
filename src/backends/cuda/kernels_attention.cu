// (being written) CUDA kernels of the attention family.
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

void register_attention_kernels() {}

}  // namespace shardrt::cuda
