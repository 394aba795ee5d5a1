// Integer GEMM (int32/int64 MatMul and Gemm) on CUDA: cuBLASLt has no exact integer GEMM
// for these types, so a plain shared-memory tiled kernel; products accumulate in 64 bits and
// wrap to the type, as the CPU backend does.
#pragma once
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::gemm {

// Batch item b of `count`: its row-major digits over dims[0..rank) give the element offsets
// of A and B (strides sa / sb, 0 for a broadcast dim); Y's item b is at b·M·N.
struct IntBatchMap {
  int rank = 0;
  int64_t dims[8] = {};
  int64_t sa[8] = {};
  int64_t sb[8] = {};
};

// Y[b][i, j] = Σ_k op(A)[i, k]·op(B)[k, j] (row-major; op(A) is A [M,K] with lda, or with
// trans_a A [K,M]; likewise B). With gemm_mode: Y = T(int64(alpha·prod + beta·C[i,j])),
// C broadcast as C[(cm == 1 ? 0 : i)·cn + (cn == 1 ? 0 : j)] (C may be null).
void int_gemm(KernelCtx& c, DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A,
              int64_t lda, const void* B, int64_t ldb, void* Y, int64_t count, const IntBatchMap& bm, bool gemm_mode,
              double alpha, double beta, const void* C, int64_t cm, int64_t cn);

}  // namespace shardrt::cuda::gemm
