// (being written) CUDA kernels of the data family.
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

void register_data_kernels() {}

}  // namespace shardrt::cuda
