#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

void register_reduce_schemas() {}

}  // namespace shardrt
