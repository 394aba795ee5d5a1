// The swiglu combine of shardrt.Linear (see gemm_swiglu.h): one pass over the GEMM's
// [rows, 2N] result, each thread reading V gate and V up elements and writing V products as
// one 16-byte vector where rows, halves and pointers are 16-byte aligned; a grid-stride loop
// sized to the SMs.
#include <algorithm>
#include <cstdint>

#include "backends/cuda/gemm_act.cuh"
#include "backends/cuda/gemm_swiglu.h"

namespace shardrt::cuda::gemm {

namespace {

template <class T> struct AccT { using type = float; };
template <> struct AccT<double> { using type = double; };

template <class T> __device__ inline typename AccT<T>::type ld_acc(T v) { return to_f(v); }
template <> __device__ inline double ld_acc<double>(double v) { return v; }
template <class T> __device__ inline T st_acc(typename AccT<T>::type v) { return from_f<T>(v); }
template <> __device__ inline double st_acc<double>(double v) { return v; }

template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// V outputs per step, all in one row (n % V == 0 when V > 1); VEC: 16-byte loads and stores
// (lds % V == 0 and both pointers 16-byte aligned).
template <class T, int V, bool VEC>
__global__ void __launch_bounds__(256) swiglu_combine_kernel(const T* __restrict__ src, int64_t lds,
                                                             T* __restrict__ dst, int64_t rows, int64_t n) {
  using A = typename AccT<T>::type;
  const int64_t nvec = rows * n / V;
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t v = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; v < nvec; v += step) {
    const int64_t e0 = v * V;
    const int64_t i = e0 / n, j = e0 - i * n;
    const T* g = src + i * lds + j;
    const T* u = g + n;
    Vec<T, V> gv, uv, out;
    if constexpr (VEC) {
      gv = *reinterpret_cast<const Vec<T, V>*>(g);
      uv = *reinterpret_cast<const Vec<T, V>*>(u);
    } else {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        gv.v[k] = g[k];
        uv.v[k] = u[k];
      }
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
      const A a = ld_acc(gv.v[k]);
      out.v[k] = st_acc<T>(act_fn<A>(int(Act::Silu), a) * ld_acc(uv.v[k]));
    }
    *reinterpret_cast<Vec<T, V>*>(dst + e0) = out;  // e0 % V == 0 and dst aligned, or V == 1
  }
}

template <class T>
void launch_combine(KernelCtx& c, const T* src, int64_t lds, T* dst, int64_t rows, int64_t n) {
  constexpr int V = 16 / int(sizeof(T));
  const bool vec = n % V == 0 && lds % V == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(dst) % 16 == 0;
  const int64_t work = vec ? rows * n / V : rows * n;
  const unsigned cap = unsigned(c.res.props().multiProcessorCount) * 8;
  const unsigned blocks = std::max(1u, std::min(blocks_for(work, 256), cap));
  if (vec)
    swiglu_combine_kernel<T, V, true><<<blocks, 256, 0, c.stream()>>>(src, lds, dst, rows, n);
  else
    swiglu_combine_kernel<T, 1, false><<<blocks, 256, 0, c.stream()>>>(src, lds, dst, rows, n);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void swiglu_combine(KernelCtx& c, DType t, const void* src, int64_t lds, void* dst, int64_t rows, int64_t n) {
  if (rows == 0 || n == 0) return;
  if (lds < 2 * n) c.fail("internal: swiglu combine needs lds >= 2N");
  SHARDRT_CUDA_FLOAT_DISPATCH(c, t,
                              launch_combine<T>(c, static_cast<const T*>(src), lds, static_cast<T*>(dst), rows, n));
}

}  // namespace shardrt::cuda::gemm
