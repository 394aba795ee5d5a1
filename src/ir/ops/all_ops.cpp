#include "ir/ops/ops.h"

namespace shardrt {

void register_all_op_schemas() {
  register_elementwise_schemas();
  register_reduce_schemas();
  register_shape_schemas();
  register_nn_schemas();
  register_fused_linear_schemas();
  register_fused_attention_schemas();
  register_collective_schemas();
  register_fused_norm_schemas();
  register_cached_attention_schemas();
}

}  // namespace shardrt
