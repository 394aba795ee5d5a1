#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_reduce_kernels() {}

}  // namespace shardrt::cpu
