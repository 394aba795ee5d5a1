#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_all_kernels() {
  register_elementwise_kernels();
  register_reduce_kernels();
  register_shape_kernels();
  register_nn_kernels();
  register_fused_linear_kernels();
  register_fused_attention_kernels();
  register_collective_kernels();
  register_fused_norm_kernels();
  register_cached_attention_kernels();
}

}  // namespace shardrt::cpu
