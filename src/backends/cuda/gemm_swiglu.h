// The combine step of shardrt.Linear's activation "swiglu" when the GEMM runs through
// cuBLASLt (more rows than the decode GEMV takes, or trans_b 0): the GEMM writes the
// [rows, 2N] pre-activations (bias included), this kernel the [rows, N] products.
#pragma once
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::gemm {

// dst[i, j] = silu(src[i·lds + j]) · src[i·lds + n + j] for i < rows, j < n; dst contiguous
// [rows, n], lds >= 2n. fp32/fp16/bf16 compute in fp32, fp64 in fp64.
void swiglu_combine(KernelCtx& c, DType t, const void* src, int64_t lds, void* dst, int64_t rows, int64_t n);

}  // namespace shardrt::cuda::gemm
