// Tiled integer GEMM for int32/int64 MatMul and Gemm (see gemm_int.h). Integer GEMMs in
// models are small (shape arithmetic, index math): correctness over speed.
#include "backends/cuda/gemm_int.h"

#include <algorithm>

namespace shardrt::cuda::gemm {

namespace {

constexpr int kTile = 16;

template <class T>
__global__ void __launch_bounds__(kTile * kTile)
    int_gemm_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* __restrict__ A, int64_t lda,
                    const T* __restrict__ B, int64_t ldb, T* __restrict__ Y, int64_t count, IntBatchMap bm,
                    bool gemm_mode, double alpha, double beta, const T* __restrict__ C, int64_t cm, int64_t cn) {
  __shared__ T As[kTile][kTile + 1];
  __shared__ T Bs[kTile][kTile + 1];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t tiles_m = (M + kTile - 1) / kTile, tiles_n = (N + kTile - 1) / kTile;
  // Loop bounds depend on block indices only, so every thread of a block reaches each
  // __syncthreads the same number of times.
  for (int64_t bz = blockIdx.z; bz < count; bz += gridDim.z) {
    int64_t rem = bz, oa = 0, ob = 0;
    for (int d = bm.rank - 1; d >= 0; --d) {
      const int64_t idx = rem % bm.dims[d];
      rem /= bm.dims[d];
      oa += idx * bm.sa[d];
      ob += idx * bm.sb[d];
    }
    for (int64_t tm = blockIdx.y; tm < tiles_m; tm += gridDim.y) {
      for (int64_t tn = blockIdx.x; tn < tiles_n; tn += gridDim.x) {
        const int64_t i = tm * kTile + ty, j = tn * kTile + tx;
        uint64_t acc = 0;  // unsigned: wraps like the CPU's int64 accumulation, without UB
        for (int64_t k0 = 0; k0 < K; k0 += kTile) {
          const int64_t ka = k0 + tx, kb = k0 + ty;
          As[ty][tx] = (i < M && ka < K) ? A[oa + (ta ? ka * lda + i : i * lda + ka)] : T(0);
          Bs[ty][tx] = (kb < K && j < N) ? B[ob + (tb ? j * ldb + kb : kb * ldb + j)] : T(0);
          __syncthreads();
#pragma unroll
          for (int kk = 0; kk < kTile; ++kk) acc += uint64_t(int64_t(As[ty][kk])) * uint64_t(int64_t(Bs[kk][tx]));
          __syncthreads();
        }
        if (i < M && j < N) {
          T r = T(int64_t(acc));
          if (gemm_mode) {
            const double v = alpha * double(r) + (C ? beta * double(C[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)]) : 0.0);
            r = T(int64_t(v));
          }
          Y[bz * M * N + i * N + j] = r;
        }
      }
    }
  }
}

template <class T>
void launch(KernelCtx& c, bool ta, bool tb, int64_t M, int64_t N, int64_t K, const void* A, int64_t lda,
            const void* B, int64_t ldb, void* Y, int64_t count, const IntBatchMap& bm, bool gemm_mode, double alpha,
            double beta, const void* C, int64_t cm, int64_t cn) {
  const int64_t tiles_m = (M + kTile - 1) / kTile, tiles_n = (N + kTile - 1) / kTile;
  dim3 grid(unsigned(std::min<int64_t>(tiles_n, 65535)), unsigned(std::min<int64_t>(tiles_m, 65535)),
            unsigned(std::min<int64_t>(count, 65535)));
  int_gemm_kernel<T><<<grid, dim3(kTile, kTile), 0, c.stream()>>>(
      ta, tb, M, N, K, static_cast<const T*>(A), lda, static_cast<const T*>(B), ldb, static_cast<T*>(Y), count, bm,
      gemm_mode, alpha, beta, static_cast<const T*>(C), cm, cn);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void int_gemm(KernelCtx& c, DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const void* A,
              int64_t lda, const void* B, int64_t ldb, void* Y, int64_t count, const IntBatchMap& bm, bool gemm_mode,
              double alpha, double beta, const void* C, int64_t cm, int64_t cn) {
  if (M == 0 || N == 0 || count == 0) return;
  if (t == DType::I32)
    launch<int32_t>(c, trans_a, trans_b, M, N, K, A, lda, B, ldb, Y, count, bm, gemm_mode, alpha, beta, C, cm, cn);
  else if (t == DType::I64)
    launch<int64_t>(c, trans_a, trans_b, M, N, K, A, lda, B, ldb, Y, count, bm, gemm_mode, alpha, beta, C, cm, cn);
  else
    c.fail(std::string("integer GEMM does not support dtype ") + dtype_name(t));
}

}  // namespace shardrt::cuda::gemm
