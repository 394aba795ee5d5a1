#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_elementwise_kernels() {}

}  // namespace shardrt::cpu
