#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

void register_fused_attention_schemas() {}

}  // namespace shardrt
