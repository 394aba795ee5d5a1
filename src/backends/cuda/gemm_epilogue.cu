// Bias/activation/copy-out and C-broadcast kernels of the GEMM ops (see gemm_epilogue.h).
// Memory-bound: each thread writes 16 bytes per step where the output is 16-byte aligned,
// in a grid-stride loop sized to the SMs.
#include "backends/cuda/gemm_epilogue.h"
#include "backends/cuda/gemm_act.cuh"

#include <algorithm>

namespace shardrt::cuda::gemm {

namespace {

// Compute type: fp32 for fp32/fp16/bf16, fp64 for fp64.
template <class T> struct AccT { using type = float; };
template <> struct AccT<double> { using type = double; };

__device__ inline float cvt_in(float v) { return v; }
__device__ inline float cvt_in(__half v) { return __half2float(v); }
__device__ inline float cvt_in(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline double cvt_in(double v) { return v; }
template <class T> __device__ inline T cvt_out(typename AccT<T>::type v) { return from_f<T>(v); }
template <> __device__ inline double cvt_out<double>(double v) { return v; }

template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// V elements per step, stored as one aligned vector; VLOAD: the V source elements of a step
// lie in one row and are aligned too (cols % V == 0, lds % V == 0, src aligned).
template <class T, int V, bool VLOAD>
__global__ void __launch_bounds__(256) bias_act_kernel(const T* src, int64_t lds, T* dst, int64_t rows, int64_t cols,
                                                       const T* __restrict__ bias, int act, float scale) {
  using A = typename AccT<T>::type;
  const int64_t total = rows * cols;
  const int64_t nvec = total / V;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  const int64_t tid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  for (int64_t v = tid; v < nvec; v += step) {
    const int64_t e0 = v * V;
    int64_t i = e0 / cols, j = e0 - i * cols;
    Vec<T, V> in, out;
    if (VLOAD) {
      in = *reinterpret_cast<const Vec<T, V>*>(src + i * lds + j);
    } else {
      int64_t ii = i, jj = j;
#pragma unroll
      for (int u = 0; u < V; ++u) {
        in.v[u] = src[ii * lds + jj];
        if (++jj == cols) { jj = 0; ++ii; }
      }
    }
#pragma unroll
    for (int u = 0; u < V; ++u) {
      A y = cvt_in(in.v[u]) * A(scale);
      if (bias) y += cvt_in(bias[j]);
      out.v[u] = cvt_out<T>(act_fn<A>(act, y));
      if (++j == cols) j = 0;
    }
    *reinterpret_cast<Vec<T, V>*>(dst + e0) = out;
  }
  // The last total % V elements.
  for (int64_t e = nvec * V + tid; e < total; e += step) {
    const int64_t i = e / cols, j = e - i * cols;
    A y = cvt_in(src[i * lds + j]) * A(scale);
    if (bias) y += cvt_in(bias[j]);
    dst[e] = cvt_out<T>(act_fn<A>(act, y));
  }
}

template <class T>
void launch_bias_act(KernelCtx& c, const T* src, int64_t lds, T* dst, int64_t rows, int64_t cols, const T* bias,
                     Act act, float scale) {
  const int64_t total = rows * cols;
  if (total == 0) return;
  constexpr int V = 16 / int(sizeof(T));
  const bool vst = reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  const bool vld = vst && reinterpret_cast<uintptr_t>(src) % 16 == 0 && cols % V == 0 && lds % V == 0;
  const int threads = 256;
  const int64_t work = vst ? std::max<int64_t>(total / V, 1) : total;
  const unsigned cap = unsigned(c.res.props().multiProcessorCount) * 8;
  const unsigned blocks = std::min(blocks_for(work, threads), cap);
  if (vld)
    bias_act_kernel<T, V, true><<<blocks, threads, 0, c.stream()>>>(src, lds, dst, rows, cols, bias, int(act), scale);
  else if (vst)
    bias_act_kernel<T, V, false><<<blocks, threads, 0, c.stream()>>>(src, lds, dst, rows, cols, bias, int(act), scale);
  else
    bias_act_kernel<T, 1, false><<<blocks, threads, 0, c.stream()>>>(src, lds, dst, rows, cols, bias, int(act), scale);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class E>
__global__ void __launch_bounds__(256) broadcast_kernel(const E* __restrict__ C, int64_t cm, int64_t cn,
                                                        E* __restrict__ Y, int64_t M, int64_t N) {
  const int64_t total = M * N;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += step) {
    const int64_t i = e / N, j = e - i * N;
    Y[e] = C[(cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)];
  }
}

template <class E>
void launch_broadcast(KernelCtx& c, const void* C, int64_t cm, int64_t cn, void* Y, int64_t M, int64_t N) {
  const unsigned cap = unsigned(c.res.props().multiProcessorCount) * 8;
  const unsigned blocks = std::min(blocks_for(M * N, 256), cap);
  broadcast_kernel<E><<<blocks, 256, 0, c.stream()>>>(static_cast<const E*>(C), cm, cn, static_cast<E*>(Y), M, N);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void bias_act(KernelCtx& c, DType t, const void* src, int64_t lds, void* dst, int64_t rows, int64_t cols,
              const void* bias, Act act, float scale) {
  if (rows == 0 || cols == 0) return;
  if (src == dst && lds != cols) c.fail("internal: in-place bias/activation needs lds == cols");
  SHARDRT_CUDA_FLOAT_DISPATCH(c, t,
                              launch_bias_act<T>(c, static_cast<const T*>(src), lds, static_cast<T*>(dst), rows, cols,
                                                 static_cast<const T*>(bias), act, scale));
}

void broadcast_c(KernelCtx& c, DType t, const void* C, int64_t cm, int64_t cn, void* Y, int64_t M, int64_t N) {
  if (M == 0 || N == 0) return;
  if (cm == M && cn == N) {
    SHARDRT_CUDA_CHECK(cudaMemcpyAsync(Y, C, size_t(M * N) * dtype_size(t), cudaMemcpyDeviceToDevice, c.stream()));
    return;
  }
  switch (dtype_size(t)) {
    case 1: launch_broadcast<uint8_t>(c, C, cm, cn, Y, M, N); return;
    case 2: launch_broadcast<uint16_t>(c, C, cm, cn, Y, M, N); return;
    case 4: launch_broadcast<uint32_t>(c, C, cm, cn, Y, M, N); return;
    case 8: launch_broadcast<uint64_t>(c, C, cm, cn, Y, M, N); return;
    default: c.fail(std::string("dtype ") + dtype_name(t) + " cannot be broadcast here");
  }
}

}  // namespace shardrt::cuda::gemm
