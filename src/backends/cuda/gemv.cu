// The decode GEMV: Y[M, N] = act(X[M, K] · W[N, K]^T + bias) for a handful of rows (a
// decode step's tokens), where the weight read is the whole cost and a general GEMM's
// tiling leaves most of the GPU idle (a 768-wide output is a dozen cuBLASLt tiles).
//
// One warp computes R = 2 outputs for all M rows: its lanes stream the two weight rows with
// 16-byte loads, U = 4 vectors per lane in flight per row together with the matching pieces
// of every X row (X is tiny and stays in L1/L2), and reduce across the warp in fp32; 8 warps
// per block. Zero vectors past the row's end contribute nothing. Bias and activation are applied before the single store.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/gemm_act.cuh"
#include "backends/cuda/gemv.h"

namespace shardrt::cuda::gemm {

namespace {

constexpr int kWarps = 8;  // per block
constexpr int kRows = 2;   // outputs per warp
constexpr int kUnroll = 4;  // 16-byte vectors per lane and weight row in flight

// fp32 products of a 16-byte vector of T with another.
__device__ inline float dot16(const uint4& a, const uint4& b, float) {
  const float* x = reinterpret_cast<const float*>(&a);
  const float* y = reinterpret_cast<const float*>(&b);
  return x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[3] * y[3];
}
__device__ inline float dot16(const uint4& a, const uint4& b, __half) {
  const __half2* x = reinterpret_cast<const __half2*>(&a);
  const __half2* y = reinterpret_cast<const __half2*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(x[i]), q = __half22float2(y[i]);
    s = fmaf(p.x, q.x, fmaf(p.y, q.y, s));
  }
  return s;
}
__device__ inline float dot16(const uint4& a, const uint4& b, __nv_bfloat16) {
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(x[i]), q = __bfloat1622float2(y[i]);
    s = fmaf(p.x, q.x, fmaf(p.y, q.y, s));
  }
  return s;
}

// A weight vector read once: bypass L1 so that it does not evict X.
__device__ inline uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

template <class T, int M>
__global__ void __launch_bounds__(kWarps * 32) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                            const T* __restrict__ bias, T* __restrict__ y, int64_t N,
                                                            int64_t K, int act) {
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int64_t n0 = (int64_t(blockIdx.x) * kWarps + warp) * kRows;
  if (n0 >= N) return;
  const int64_t kv = K / (16 / int64_t(sizeof(T)));  // 16-byte vectors per row
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  const uint4* wr[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) wr[r] = reinterpret_cast<const uint4*>(w + (n0 + r < N ? n0 + r : n0) * K);

  float acc[M][kRows];
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[m][r] = 0.f;

  for (int64_t base = lane; base < kv; base += 32 * kUnroll) {
    // Every load of the step is issued before any product: weight and X vectors are in
    // flight together (a step's latency is one round trip, not one per vector).
    uint4 wv[kUnroll][kRows];
    uint4 xm[kUnroll][M];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + int64_t(u) * 32;
      const bool in = i < kv;
#pragma unroll
      for (int r = 0; r < kRows; ++r) wv[u][r] = in ? load_stream(wr[r] + i) : make_uint4(0, 0, 0, 0);
#pragma unroll
      for (int m = 0; m < M; ++m) xm[u][m] = in ? __ldg(xv + int64_t(m) * kv + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int m = 0; m < M; ++m)
#pragma unroll
        for (int r = 0; r < kRows; ++r) acc[m][r] += dot16(xm[u][m], wv[u][r], T());
  }
#pragma unroll
  for (int m = 0; m < M; ++m)
#pragma unroll
    for (int r = 0; r < kRows; ++r)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], off);
  if (lane != 0) return;
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int64_t n = n0 + r;
    if (n >= N) break;
    const float b = bias ? to_f(bias[n]) : 0.f;
#pragma unroll
    for (int m = 0; m < M; ++m) y[int64_t(m) * N + n] = from_f<T>(act_fn<float>(act, acc[m][r] + b));
  }
}

template <class T>
void launch_typed(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act, void* y,
                  cudaStream_t s) {
  const int64_t per_block = int64_t(kWarps) * kRows;
  const unsigned blocks = unsigned((N + per_block - 1) / per_block);
  const T* xp = static_cast<const T*>(x);
  const T* wp = static_cast<const T*>(w);
  const T* bp = static_cast<const T*>(bias);
  T* yp = static_cast<T*>(y);
  switch (M) {
    case 1: gemv_kernel<T, 1><<<blocks, kWarps * 32, 0, s>>>(xp, wp, bp, yp, N, K, int(act)); break;
    case 2: gemv_kernel<T, 2><<<blocks, kWarps * 32, 0, s>>>(xp, wp, bp, yp, N, K, int(act)); break;
    case 3: gemv_kernel<T, 3><<<blocks, kWarps * 32, 0, s>>>(xp, wp, bp, yp, N, K, int(act)); break;
    default: gemv_kernel<T, 4><<<blocks, kWarps * 32, 0, s>>>(xp, wp, bp, yp, N, K, int(act)); break;
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

}  // namespace

bool gemv_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SHARDRT_GEMV");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

bool launch_gemv(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act,
                 void* y, cudaStream_t s) {
  if (M < 1 || M > kGemvMaxRows || N < 1 || K < 1) return false;
  const int64_t es = int64_t(dtype_size(t));
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16) return false;
  // Rows of X and W start on 16-byte boundaries: K·es a multiple of 16, bases aligned.
  if ((K * es) % 16 != 0 || !aligned16(x) || !aligned16(w)) return false;
  if (N > (int64_t(1) << 40) / kRows) return false;  // grid size
  switch (t) {
    case DType::F32: launch_typed<float>(M, N, K, x, w, bias, act, y, s); break;
    case DType::F16: launch_typed<__half>(M, N, K, x, w, bias, act, y, s); break;
    default: launch_typed<__nv_bfloat16>(M, N, K, x, w, bias, act, y, s); break;
  }
  return true;
}

}  // namespace shardrt::cuda::gemm
