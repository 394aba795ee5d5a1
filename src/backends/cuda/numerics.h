// --check-numerics on the GPU: NaN and Inf counted by a reduction kernel into a small
// device record that the executor reads back after each node (kernels_numerics.cu).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "shardrt/dtype.h"

namespace shardrt::cuda {

struct DeviceNumerics {
  unsigned long long nan, inf;
  unsigned long long first;  // flat index of the first NaN/Inf; ~0ull when none
};

// Enqueues on `s`: resets `*out` (device memory) and counts the NaN and Inf among `n`
// elements of dtype `t` at `data` into it. fp32/fp16/bf16/fp64; other dtypes count nothing.
void enqueue_numerics_scan(DType t, const void* data, int64_t n, DeviceNumerics* out, cudaStream_t s);

}  // namespace shardrt::cuda
