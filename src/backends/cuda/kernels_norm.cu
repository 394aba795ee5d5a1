// The CUDA norm family's registration: normalisation, reduction, softmax and rotary kernels
// (one file per group, see kernels_norm_util.cuh).
#include "backends/cuda/kernels_norm_util.cuh"

namespace shardrt::cuda {

void register_norm_kernels() {
  register_norm_row_kernels();
  register_norm_channel_kernels();
  register_softmax_kernels();
  register_reduce_kernels();
  register_reduce_index_kernels();
  register_rotary_kernels();
}

}  // namespace shardrt::cuda
