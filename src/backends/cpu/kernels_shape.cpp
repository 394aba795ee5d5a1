#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_shape_kernels() {}

}  // namespace shardrt::cpu
