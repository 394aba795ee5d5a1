// Softmax, LogSoftmax and Hardmax over one axis (opset-13 semantics), viewed as
// [outer, n, inner].
//  - last axis (inner == 1), fp32/fp16/bf16, row fits: the row lives in registers (16-byte
//    vector loads when aligned), one warp per row up to 128 vectors, else one block per row;
//    max, then sum of exp, in fp32: one read and one write of the data.
//  - other axes with many lines: one thread per (outer, inner) line, so a warp reads 32
//    neighbouring columns (coalesced) in each of its three passes.
//  - everything else (fp64, very long rows, few lines, Hardmax): one block per line.
// Every kernel here is launched with programmatic dependent launch (launch_pdl.h): it calls
// pdl_wait() before its first read or write and pdl_trigger() right after.
#include "backends/cuda/kernels_norm_util.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda {

namespace {

using namespace normk;

enum Mode { kSoft = 0, kLog = 1, kHard = 2 };

constexpr int kWarpItems = 4, kWarpRows = 4, kBlockItems = 8, kBlockMax = 512;

template <bool WARP> __device__ __forceinline__ float row_max(float v, float* sh) {
  if constexpr (WARP) return warp_max(v);
  else return block_max(v, sh, -INFINITY);
}
template <bool WARP> __device__ __forceinline__ float row_sum(float v, float* sh) {
  if constexpr (WARP) return warp_sum(v);
  else return block_sum(v, sh);
}

template <class T, int VEC, int ITEMS, bool WARP, bool LOG>
__global__ void __launch_bounds__(WARP ? 32 * kWarpRows : kBlockMax)
    softmax_row_fast(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t D) {
  pdl_wait();
  pdl_trigger();
  __shared__ float sh[32];
  using V = Vec<T, VEC>;
  const int tid = threadIdx.x, tpr = blockDim.x;
  const int rpb = WARP ? blockDim.y : 1;
  const int64_t nch = D / VEC;
  for (int64_t row = int64_t(blockIdx.x) * rpb + (WARP ? threadIdx.y : 0); row < rows;
       row += int64_t(gridDim.x) * rpb) {
    const V* xr = reinterpret_cast<const V*>(x + row * D);
    float v[ITEMS][VEC];
    float m = -INFINITY;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      const int64_t c = int64_t(k) * tpr + tid;
      if (c < nch) {
        const V a = xr[c];
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          v[k][j] = to_f(a.v[j]);
          m = fmaxf(m, v[k][j]);
        }
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[k][j] = -INFINITY;
      }
    }
    m = row_max<WARP>(m, sh);
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      if (int64_t(k) * tpr + tid < nch) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          const float e = expf(v[k][j] - m);
          s += e;
          if (!LOG) v[k][j] = e;
        }
      }
    }
    s = row_sum<WARP>(s, sh);
    const float inv = 1.f / s, sub = m + logf(s);
    V* yr = reinterpret_cast<V*>(y + row * D);
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      const int64_t c = int64_t(k) * tpr + tid;
      if (c < nch) {
        V o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) o.v[j] = from_f<T>(LOG ? v[k][j] - sub : v[k][j] * inv);
        yr[c] = o;
      }
    }
  }
}

// (value, index) of the first maximum; `b` wins over `a` when larger, or equal and earlier.
template <class A> __device__ __forceinline__ void best_of(A& v, int64_t& i, A v2, int64_t i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

// One block per line of n elements at stride `inner`.
template <class T, int MODE>
__global__ void __launch_bounds__(512)
    softmax_line_generic(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n, int64_t inner) {
  pdl_wait();
  pdl_trigger();
  using A = typename acc_of<T>::type;
  __shared__ A sh[32];
  __shared__ int64_t shi[32];
  const A neg_inf = -A(INFINITY);
  for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
    const int64_t base = (l / inner) * n * inner + l % inner;
    const T* xl = x + base;
    T* yl = y + base;
    if constexpr (MODE == kHard) {
      A bv = neg_inf;
      int64_t bi = n;  // sentinel: loses to any real element
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) best_of(bv, bi, ld_acc(xl[k * inner]), k);
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) best_of(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
      const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
      __syncthreads();
      if (lane == 0) {
        sh[warp] = bv;
        shi[warp] = bi;
      }
      __syncthreads();
      bv = lane < nw ? sh[lane] : neg_inf;
      bi = lane < nw ? shi[lane] : n;
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) best_of(bv, bi, __shfl_xor_sync(0xffffffffu, bv, o), __shfl_xor_sync(0xffffffffu, bi, o));
      if (bi >= n) bi = 0;  // all NaN: the sequential scan keeps index 0
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) yl[k * inner] = st_acc<T>(A(k == bi ? 1 : 0));
    } else {
      A m = neg_inf;
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        const A v = ld_acc(xl[k * inner]);
        m = v > m ? v : m;
      }
      m = block_max(m, sh, neg_inf);
      A s = 0;
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) s += exp(ld_acc(xl[k * inner]) - m);
      s = block_sum(s, sh);
      const A inv = A(1) / s, sub = m + log(s);
      for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
        const A v = ld_acc(xl[k * inner]);
        yl[k * inner] = st_acc<T>(MODE == kLog ? v - sub : exp(v - m) * inv);
      }
    }
  }
}

// One thread per (outer, inner) line: neighbouring threads read neighbouring columns.
template <class T, bool LOG>
__global__ void softmax_columns(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n, int64_t inner) {
  pdl_wait();
  pdl_trigger();
  using A = typename acc_of<T>::type;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (l / inner) * n * inner + l % inner;
    const T* xl = x + base;
    T* yl = y + base;
    A m = -A(INFINITY);
    for (int64_t k = 0; k < n; ++k) {
      const A v = ld_acc(xl[k * inner]);
      m = v > m ? v : m;
    }
    A s = 0;
    for (int64_t k = 0; k < n; ++k) s += exp(ld_acc(xl[k * inner]) - m);
    const A inv = A(1) / s, sub = m + log(s);
    for (int64_t k = 0; k < n; ++k) {
      const A v = ld_acc(xl[k * inner]);
      yl[k * inner] = st_acc<T>(LOG ? v - sub : exp(v - m) * inv);
    }
  }
}

template <class T, int VEC, bool LOG> void launch_fast(const T* x, T* y, int64_t rows, int64_t D, cudaStream_t st) {
  const int64_t nch = D / VEC;
  if (nch <= int64_t(32) * kWarpItems) {
    launch_pdl(softmax_row_fast<T, VEC, kWarpItems, true, LOG>, grid_for(rows, kWarpRows), dim3(32, kWarpRows), 0, st,
               x, y, rows, D);
  } else {
    int64_t tpr = ((nch + 3) / 4 + 31) / 32 * 32;
    if (tpr > kBlockMax) tpr = kBlockMax;
    launch_pdl(softmax_row_fast<T, VEC, kBlockItems, false, LOG>, grid_for(rows, 1), unsigned(tpr), 0, st, x, y, rows,
               D);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T, int MODE> void run(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, cudaStream_t st) {
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  if constexpr (MODE != kHard && !std::is_same_v<T, double>) {
    if (inner == 1) {
      constexpr int V = 16 / sizeof(T);
      const bool vec_ok = n % V == 0 && aligned16(x) && aligned16(y);
      if (vec_ok && n / V <= int64_t(kBlockMax) * kBlockItems) return launch_fast<T, V, MODE == kLog>(x, y, lines, n, st);
      if (!vec_ok && n <= int64_t(kBlockMax) * kBlockItems) return launch_fast<T, 1, MODE == kLog>(x, y, lines, n, st);
    }
  }
  if constexpr (MODE != kHard) {
    if (inner > 1 && lines >= 4096) {
      launch_pdl(softmax_columns<T, MODE == kLog>, grid_for(lines, 256), 256, 0, st, x, y, lines, n, inner);
      SHARDRT_CUDA_CHECK(cudaGetLastError());
      return;
    }
  }
  int64_t threads = (n + 31) / 32 * 32;
  if (threads > 512) threads = 512;
  launch_pdl(softmax_line_generic<T, MODE>, grid_for(lines, 1), unsigned(threads), 0, st, x, y, lines, n, inner);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <int MODE> void softmax_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  const int64_t r = x.rank();
  int64_t a = c.node.attr_i("axis", -1);
  if (r == 0) {
    // A scalar is one line of one element.
    if (a != -1 && a != 0) c.fail("axis " + std::to_string(a) + " is out of range for rank 0");
  } else {
    if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
    if (a < 0) a += r;
  }
  int64_t outer = 1, n = 1, inner = 1;
  for (int64_t i = 0; i < r; ++i) {
    if (i < a) outer *= x.dims[size_t(i)];
    else if (i == a) n = x.dims[size_t(i)];
    else inner *= x.dims[size_t(i)];
  }
  SHARDRT_CUDA_FLOAT_DISPATCH(c, x.dtype, { run<T, MODE>(x.as<T>(), c.out[0]->as<T>(), outer, n, inner, c.stream()); });
}

}  // namespace

void register_softmax_kernels() {
  register_kernel("Softmax", softmax_kernel<kSoft>);
  register_kernel("LogSoftmax", softmax_kernel<kLog>);
  register_kernel("Hardmax", softmax_kernel<kHard>);
}

}  // namespace shardrt::cuda
