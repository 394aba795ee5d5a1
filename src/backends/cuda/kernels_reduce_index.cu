// ArgMax / ArgMin (keepdims through the shape rule, select_last_index) and CumSum
// (exclusive, reverse; axis from the host copy of input 1), over lines of the
// [outer, n, inner] view.
//  - ArgMax/ArgMin: for a few very long last-axis lines (a vocabulary), parts of each line
//    in their own blocks and a merge; one block per line for other long last-axis lines
//    ((value, index) pairs combined with shuffles), else one thread per line (neighbouring threads read
//    neighbouring columns when inner > 1).
//  - CumSum: a block-wide tiled scan per line for long last-axis lines (a carry between
//    tiles), else one thread per line running the sum sequentially.
// Values compare/accumulate in fp32 for fp16/bf16, fp64 for fp64, the integer type itself
// for integers (CumSum wraps as the CPU kernel does).
// Every kernel here is launched with programmatic dependent launch (launch_pdl.h): it calls
// pdl_wait() before its first read or write and pdl_trigger() right after.
#include <algorithm>

#include "backends/cuda/kernels_norm_util.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda {

namespace {

using namespace normk;

template <class T> struct vacc { using type = T; };
template <> struct vacc<__half> { using type = float; };
template <> struct vacc<__nv_bfloat16> { using type = float; };
template <> struct vacc<int8_t> { using type = int32_t; };
template <> struct vacc<uint8_t> { using type = int32_t; };

template <class T> __device__ __forceinline__ typename vacc<T>::type vld(T v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) return to_f(v);
  else return typename vacc<T>::type(v);
}
template <class T, class A> __device__ __forceinline__ T vst(A v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) return from_f<T>(v);
  else return T(v);
}

// ---- ArgMax / ArgMin ----

// Whether (v2, i2) beats (v, i); index -1 marks "nothing yet".
template <bool MAX, class A> __device__ __forceinline__ bool beats(A v2, int64_t i2, A v, int64_t i, bool last) {
  if (i2 < 0) return false;
  if (i < 0) return true;
  if (MAX ? v2 > v : v2 < v) return true;
  return v2 == v && (last ? i2 > i : i2 < i);
}

// The block's best (value, index) of every thread's (bv, bi), in thread 0 (warp shuffles,
// then the warps' winners through shared memory). Every thread of the block must call it.
template <bool MAX, class A>
__device__ void block_arg_reduce(A& bv, int64_t& bi, bool last) {
  __shared__ A shv[32];
  __shared__ int64_t shi[32];
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A v2 = __shfl_xor_sync(0xffffffffu, bv, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, bi, o);
    if (beats<MAX>(v2, i2, bv, bi, last)) { bv = v2; bi = i2; }
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) { shv[warp] = bv; shi[warp] = bi; }
  __syncthreads();
  bv = lane < nw ? shv[lane] : A(0);
  bi = lane < nw ? shi[lane] : -1;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A v2 = __shfl_xor_sync(0xffffffffu, bv, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, bi, o);
    if (beats<MAX>(v2, i2, bv, bi, last)) { bv = v2; bi = i2; }
  }
}

template <class T, bool MAX>
__global__ void __launch_bounds__(512) arg_block(const T* __restrict__ x, int64_t* __restrict__ y, int64_t lines, int64_t n, bool last) {
  pdl_wait();
  pdl_trigger();
  using A = typename vacc<T>::type;
  for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
    const T* xl = x + l * n;
    A bv = A(0);
    int64_t bi = -1;
    for (int64_t k = threadIdx.x; k < n; k += blockDim.x) {
      const A v = vld(xl[k]);
      if (beats<MAX>(v, k, bv, bi, last)) { bv = v; bi = k; }
    }
    block_arg_reduce<MAX>(bv, bi, last);
    if (threadIdx.x == 0) y[l] = bi < 0 ? 0 : bi;  // all NaN: the sequential scan keeps 0
  }
}

// Few long lines (a decode step's argmax over the vocabulary): block (p, l) finds the best
// of part p of line l and stores it; the last block of line l to finish (a counter per line,
// reset by that block) merges the parts in one warp (the indices are global, so ties
// resolve as in one pass). `counters` null: arg_merge, a second launch, merges instead.
template <class T, bool MAX>
__global__ void __launch_bounds__(512) arg_part(const T* __restrict__ x, typename vacc<T>::type* __restrict__ pv,
                                                int64_t* __restrict__ pi, int64_t n, int64_t chunk, bool last,
                                                int* __restrict__ counters, int64_t* __restrict__ y) {
  pdl_wait();
  pdl_trigger();
  using A = typename vacc<T>::type;
  const int64_t l = blockIdx.y, p = blockIdx.x;
  const int parts = int(gridDim.x);
  const T* xl = x + l * n;
  const int64_t k1 = min(n, (p + 1) * chunk);
  A bv = A(0);
  int64_t bi = -1;
  for (int64_t k = p * chunk + threadIdx.x; k < k1; k += blockDim.x) {
    const A v = vld(xl[k]);
    if (beats<MAX>(v, k, bv, bi, last)) { bv = v; bi = k; }
  }
  block_arg_reduce<MAX>(bv, bi, last);
  __shared__ int merges;
  if (threadIdx.x == 0) {
    pv[l * parts + p] = bv;
    pi[l * parts + p] = bi;
    merges = 0;
    if (counters) {
      __threadfence();  // the partial is visible before the count says so
      merges = atomicAdd(counters + l, 1) == parts - 1;
    }
  }
  __syncthreads();
  if (!merges || threadIdx.x >= 32) return;
  __threadfence();
  bv = A(0);
  bi = -1;
  for (int q = int(threadIdx.x); q < parts; q += 32) {
    const A v2 = __ldcg(pv + l * parts + q);
    const int64_t i2 = __ldcg(pi + l * parts + q);
    if (beats<MAX>(v2, i2, bv, bi, last)) { bv = v2; bi = i2; }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A v2 = __shfl_xor_sync(0xffffffffu, bv, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, bi, o);
    if (beats<MAX>(v2, i2, bv, bi, last)) { bv = v2; bi = i2; }
  }
  if (threadIdx.x == 0) {
    y[l] = bi < 0 ? 0 : bi;
    counters[l] = 0;  // ready for the next launch (a replayed graph too)
  }
}

template <class A, bool MAX>
__global__ void arg_merge(const A* __restrict__ pv, const int64_t* __restrict__ pi, int64_t* __restrict__ y, int parts,
                          bool last) {
  pdl_wait();
  pdl_trigger();
  const int64_t l = blockIdx.x;
  A bv = A(0);
  int64_t bi = -1;
  for (int q = int(threadIdx.x); q < parts; q += 32)
    if (beats<MAX>(pv[l * parts + q], pi[l * parts + q], bv, bi, last)) { bv = pv[l * parts + q]; bi = pi[l * parts + q]; }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const A v2 = __shfl_xor_sync(0xffffffffu, bv, o);
    const int64_t i2 = __shfl_xor_sync(0xffffffffu, bi, o);
    if (beats<MAX>(v2, i2, bv, bi, last)) { bv = v2; bi = i2; }
  }
  if (threadIdx.x == 0) y[l] = bi < 0 ? 0 : bi;
}

template <class T, bool MAX>
__global__ void arg_thread(const T* __restrict__ x, int64_t* __restrict__ y, int64_t lines, int64_t n, int64_t inner, bool last) {
  pdl_wait();
  pdl_trigger();
  using A = typename vacc<T>::type;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const T* xl = x + (l / inner) * n * inner + l % inner;
    // The CPU kernel's scan: first element, then strict (or, with last, non-strict) wins.
    A best = vld(xl[0]);
    int64_t bi = 0;
    for (int64_t k = 1; k < n; ++k) {
      const A v = vld(xl[k * inner]);
      const bool better = MAX ? (last ? v >= best : v > best) : (last ? v <= best : v < best);
      if (better) { best = v; bi = k; }
    }
    y[l] = bi;
  }
}

// A node's per-line merge counters for arg_part (at most 64 lines), zeroed once; null while
// a graph is being captured before the node ever ran (no allocation then).
struct ArgCounters {
  int* p = nullptr;
};
int* arg_counters(KernelCtx& c, int64_t lines) {
  if (lines > 64) return nullptr;
  ArgCounters& st = c.res.node_state<ArgCounters>(c.node, [] { return std::make_shared<ArgCounters>(); });
  if (!st.p) {
    if (c.res.capturing()) return nullptr;
    st.p = static_cast<int*>(c.res.alloc_persistent(64 * sizeof(int)));
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(st.p, 0, 64 * sizeof(int), c.stream()));
  }
  return st.p;
}

template <class T, bool MAX> void run_arg(KernelCtx& c, const T* x, int64_t* y, int64_t outer, int64_t n, int64_t inner, bool last) {
  const int64_t lines = outer * inner;
  if (lines == 0) return;
  if (inner == 1 && n >= 16384 && lines <= 64) {
    // One block per line would stream a long line through one SM (~25 µs for 50,257
    // floats): split it into parts of >= 2,048 elements, at most 64.
    using A = typename vacc<T>::type;
    const int64_t parts = std::min<int64_t>((n + 2047) / 2048, 64);
    const int64_t chunk = (n + parts - 1) / parts;
    const size_t vbytes = (size_t(lines * parts) * sizeof(A) + 15) / 16 * 16;
    char* ws = static_cast<char*>(c.res.workspace(vbytes + size_t(lines * parts) * sizeof(int64_t)));
    A* pv = reinterpret_cast<A*>(ws);
    int64_t* pi = reinterpret_cast<int64_t*>(ws + vbytes);
    // The merge happens in the last part's block (one launch) once the node has its counters:
    // zeroed device memory made outside graph capture, which the eager runs before a
    // capture always provide.
    int* counters = arg_counters(c, lines);
    launch_pdl(arg_part<T, MAX>, dim3(unsigned(parts), unsigned(lines)), 512, 0, c.stream(), x, pv, pi, n, chunk, last,
               counters, y);
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    if (!counters) launch_pdl(arg_merge<A, MAX>, unsigned(lines), 32, 0, c.stream(), pv, pi, y, int(parts), last);
  } else if (inner == 1 && n > 64) {
    int64_t threads = ((n + 7) / 8 + 31) / 32 * 32;
    if (threads > 512) threads = 512;
    launch_pdl(arg_block<T, MAX>, grid_for(lines, 1), unsigned(threads), 0, c.stream(), x, y, lines, n, last);
  } else {
    launch_pdl(arg_thread<T, MAX>, grid_for(lines, 256), 256, 0, c.stream(), x, y, lines, n, inner, last);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void axis_view(const DevTensor& x, int64_t axis, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = n = inner = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis) outer *= x.dims[size_t(i)];
    else if (i == axis) n = x.dims[size_t(i)];
    else inner *= x.dims[size_t(i)];
  }
}

int64_t norm_axis(KernelCtx& c, int64_t a, int64_t r) {
  if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
  return a < 0 ? a + r : a;
}

template <bool MAX> void arg_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  const int64_t axis = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  const bool last = c.node.attr_i("select_last_index", 0) != 0;
  int64_t outer, n, inner;
  axis_view(x, axis, outer, n, inner);
  if (n == 0) c.fail("cannot take ArgMax/ArgMin over an empty axis");
  int64_t* y = c.out[0]->as<int64_t>();
  switch (x.dtype) {
    case DType::F32: return run_arg<float, MAX>(c, x.as<float>(), y, outer, n, inner, last);
    case DType::F16: return run_arg<__half, MAX>(c, x.as<__half>(), y, outer, n, inner, last);
    case DType::BF16: return run_arg<__nv_bfloat16, MAX>(c, x.as<__nv_bfloat16>(), y, outer, n, inner, last);
    case DType::F64: return run_arg<double, MAX>(c, x.as<double>(), y, outer, n, inner, last);
    case DType::I64: return run_arg<int64_t, MAX>(c, x.as<int64_t>(), y, outer, n, inner, last);
    case DType::I32: return run_arg<int32_t, MAX>(c, x.as<int32_t>(), y, outer, n, inner, last);
    case DType::I8: return run_arg<int8_t, MAX>(c, x.as<int8_t>(), y, outer, n, inner, last);
    case DType::U8: return run_arg<uint8_t, MAX>(c, x.as<uint8_t>(), y, outer, n, inner, last);
    default: c.unsupported(std::string("dtype ") + dtype_name(x.dtype) + " is not supported on CUDA");
  }
}

// ---- CumSum ----

template <class T>
__global__ void cumsum_thread(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n, int64_t inner,
                              bool excl, bool rev) {
  pdl_wait();
  pdl_trigger();
  using A = typename vacc<T>::type;
  for (int64_t l = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; l < lines; l += int64_t(gridDim.x) * blockDim.x) {
    const int64_t base = (l / inner) * n * inner + l % inner;
    A acc = A(0);
    for (int64_t s = 0; s < n; ++s) {
      const int64_t k = base + (rev ? n - 1 - s : s) * inner;
      const A cur = acc;
      acc = A(cur + vld(x[k]));
      y[k] = vst<T>(excl ? cur : acc);
    }
  }
}

// One block per contiguous line; tiles of blockDim elements scanned with shuffles, the
// running total carried between tiles.
template <class T>
__global__ void __launch_bounds__(256) cumsum_block(const T* __restrict__ x, T* __restrict__ y, int64_t lines, int64_t n,
                                                    bool excl, bool rev) {
  pdl_wait();
  pdl_trigger();
  using A = typename vacc<T>::type;
  __shared__ A wsum[32];
  __shared__ A tile[256];
  const int t = threadIdx.x, lane = t & 31, warp = t >> 5, nw = blockDim.x >> 5;
  for (int64_t l = blockIdx.x; l < lines; l += gridDim.x) {
    const T* xl = x + l * n;
    T* yl = y + l * n;
    A carry = A(0);
    for (int64_t t0 = 0; t0 < n; t0 += blockDim.x) {
      const int64_t s = t0 + t;  // position in scan order
      const int64_t k = rev ? n - 1 - s : s;
      A v = s < n ? vld(xl[k]) : A(0);
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const A u = __shfl_up_sync(0xffffffffu, v, o);
        if (lane >= o) v = A(v + u);
      }
      if (lane == 31) wsum[warp] = v;
      __syncthreads();
      if (warp == 0) {
        A w = lane < nw ? wsum[lane] : A(0);
#pragma unroll
        for (int o = 1; o < 32; o <<= 1) {
          const A u = __shfl_up_sync(0xffffffffu, w, o);
          if (lane >= o) w = A(w + u);
        }
        if (lane < nw) wsum[lane] = w;
      }
      __syncthreads();
      const A incl = A(carry + A(v + (warp > 0 ? wsum[warp - 1] : A(0))));
      tile[t] = incl;
      __syncthreads();
      if (s < n) yl[k] = vst<T>(excl ? (t == 0 ? carry : tile[t - 1]) : incl);
      carry = tile[blockDim.x - 1];
      __syncthreads();  // tile and wsum are rewritten by the next tile
    }
  }
}

template <class T> void run_cumsum(KernelCtx& c, const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool excl, bool rev) {
  const int64_t lines = outer * inner;
  if (lines == 0 || n == 0) return;
  if (inner == 1 && n > 64) {
    launch_pdl(cumsum_block<T>, grid_for(lines, 1), 256, 0, c.stream(), x, y, lines, n, excl, rev);
  } else {
    launch_pdl(cumsum_thread<T>, grid_for(lines, 256), 256, 0, c.stream(), x, y, lines, n, inner, excl, rev);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void cumsum_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  if (!c.input(1)) c.fail("axis (input 1) is required");
  const Tensor* at = &c.host_value(1, "axis");
  if (at->numel() != 1) c.fail("axis must hold one value");
  const int64_t axis = norm_axis(c, at->get_i(0), x.rank());
  const bool excl = c.node.attr_i("exclusive", 0) != 0, rev = c.node.attr_i("reverse", 0) != 0;
  int64_t outer, n, inner;
  axis_view(x, axis, outer, n, inner);
  void* y = c.out[0]->data;
  switch (x.dtype) {
    case DType::F32: return run_cumsum<float>(c, x.as<float>(), static_cast<float*>(y), outer, n, inner, excl, rev);
    case DType::F16: return run_cumsum<__half>(c, x.as<__half>(), static_cast<__half*>(y), outer, n, inner, excl, rev);
    case DType::BF16:
      return run_cumsum<__nv_bfloat16>(c, x.as<__nv_bfloat16>(), static_cast<__nv_bfloat16*>(y), outer, n, inner, excl, rev);
    case DType::F64: return run_cumsum<double>(c, x.as<double>(), static_cast<double*>(y), outer, n, inner, excl, rev);
    case DType::I64: return run_cumsum<int64_t>(c, x.as<int64_t>(), static_cast<int64_t*>(y), outer, n, inner, excl, rev);
    case DType::I32: return run_cumsum<int32_t>(c, x.as<int32_t>(), static_cast<int32_t*>(y), outer, n, inner, excl, rev);
    default: c.unsupported(std::string("dtype ") + dtype_name(x.dtype) + " is not supported on CUDA");
  }
}

}  // namespace

void register_reduce_index_kernels() {
  register_kernel("ArgMax", arg_kernel<true>);
  register_kernel("ArgMin", arg_kernel<false>);
  register_kernel("CumSum", cumsum_kernel);
}

}  // namespace shardrt::cuda
