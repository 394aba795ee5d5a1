#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

void register_nn_kernels() {}

}  // namespace shardrt::cpu
