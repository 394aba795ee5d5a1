#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_fused_linear_kernels() {}

}  // namespace shardrt::cpu
