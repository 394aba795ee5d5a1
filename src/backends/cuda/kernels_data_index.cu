// CUDA kernels that select or scatter by index: Gather, GatherElements, GatherND,
// ScatterND, ScatterElements (and old Scatter), OneHot, ReverseSequence,
// shardrt.PositionalEmbedding.
// Indices live on the device, so a kernel cannot fail on a bad one without synchronising:
// out-of-range indices read zeros (gathers) or are skipped (scatters). When the executor
// also holds the indices on the host they are checked there first and fail naming the node,
// as the CPU kernels do.
#include <type_traits>

#include "backends/cuda/kernels_data_common.h"
#include "ir/ops/ops.h"

namespace shardrt::cuda::data {

namespace {

// ---- index helpers ----

template <class F>
void with_index(const KernelCtx& c, const DevTensor& idx, F&& f) {
  switch (idx.dtype) {
    case DType::I64: f(int64_t{}); break;
    case DType::I32: f(int32_t{}); break;
    default: c.fail(std::string("indices must be int32 or int64, not ") + dtype_name(idx.dtype));
  }
}

// Host check of indices into an axis of n when the host holds them (as the CPU fails).
void check_host_indices(const KernelCtx& c, size_t input, int64_t n) {
  const Tensor* t = c.host_input(input);
  if (!t) return;
  for (int64_t i = 0; i < t->numel(); ++i) {
    const int64_t k = t->get_i(i);
    if (k < -n || k >= n) c.fail("index " + std::to_string(k) + " is out of range for an axis of " + std::to_string(n));
  }
}

__device__ __forceinline__ int64_t wrap_index(int64_t k, int64_t n) {
  if (k < 0) k += n;
  return (k < 0 || k >= n) ? -1 : k;
}

// ---- Gather ----

// Output [outer, ni, inner] (inner in vector units) from input [outer, n, inner].
template <class T, class Ix, class I>
__global__ void __launch_bounds__(kThreads) gather_kernel(T* __restrict__ dst, const T* __restrict__ src,
                                                          const Ix* __restrict__ idx, I n, I ni, I inner, I total) {
  pdl_wait();
  pdl_trigger();
  const I stride = I(gridDim.x) * I(blockDim.x);
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += stride) {
    const I col = i % inner, t = i / inner, j = t % ni, o = t / ni;
    const int64_t k = wrap_index(int64_t(idx[j]), int64_t(n));
    T v{};
    if (k >= 0) v = src[(o * n + I(k)) * inner + col];
    dst[i] = v;
  }
}

void k_gather(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& idx = *c.in[1];
  DevTensor& y = *c.out[0];
  const int64_t r = x.rank();
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), r);
  int64_t n = x.dim(ax), outer = 1, inner = 1;
  for (int64_t i = 0; i < ax; ++i) outer *= x.dim(i);
  for (int64_t i = ax + 1; i < r; ++i) inner *= x.dim(i);
  check_host_indices(c, 1, n);
  const int64_t ni = idx.numel();
  if (y.numel() != outer * ni * inner) c.fail("output size disagrees with the gather");
  if (y.numel() == 0) return;
  const size_t es = dtype_size(x.dtype);
  const size_t v = vec_width(es, {inner * int64_t(es)}, {x.data, y.data});
  const int64_t units = inner * int64_t(es) / int64_t(v);  // inner in v-byte units
  const int64_t total = outer * ni * units;
  const bool small = total < (int64_t(1) << 30) && x.numel() < (int64_t(1) << 30);
  with_elem(c, v, [&](auto z) {
    using T = decltype(z);
    with_index(c, idx, [&](auto iz) {
      using Ix = decltype(iz);
      if (small)
        launch_pdl(gather_kernel<T, Ix, int32_t>, grid_for(c, total), kThreads, 0, c.stream(), static_cast<T*>(y.data),
                   static_cast<const T*>(x.data), idx.as<Ix>(), int32_t(n), int32_t(ni), int32_t(units),
                   int32_t(total));
      else
        launch_pdl(gather_kernel<T, Ix, int64_t>, grid_for(c, total), kThreads, 0, c.stream(), static_cast<T*>(y.data),
                   static_cast<const T*>(x.data), idx.as<Ix>(), n, ni, units, total);
    });
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- reductions for scatters ----

enum Red : int { kNone, kAdd, kMul, kMax, kMin };

Red reduction(const KernelCtx& c) {
  const std::string r = c.node.attr_s("reduction", "none");
  if (r == "none") return kNone;
  if (r == "add") return kAdd;
  if (r == "mul") return kMul;
  if (r == "max") return kMax;
  if (r == "min") return kMin;
  c.fail("reduction '" + r + "' is not supported");
}

// Element arithmetic: storage type S, computed as C (fp16/bf16 in float, as the CPU does).
struct AF32 { using S = float; using C = float; __device__ static C ld(S v) { return v; } __device__ static S st(C v) { return v; } };
struct AF64 { using S = double; using C = double; __device__ static C ld(S v) { return v; } __device__ static S st(C v) { return v; } };
struct AF16 {
  using S = uint16_t;
  using C = float;
  __device__ static C ld(S v) { return __half2float(__ushort_as_half(v)); }
  __device__ static S st(C v) { return __half_as_ushort(__float2half_rn(v)); }
};
struct ABF16 {
  using S = uint16_t;
  using C = float;
  __device__ static C ld(S v) { return __bfloat162float(__ushort_as_bfloat16(v)); }
  __device__ static S st(C v) { return __bfloat16_as_ushort(__float2bfloat16_rn(v)); }
};
template <class T> struct AInt { using S = T; using C = int64_t; __device__ static C ld(S v) { return v; } __device__ static S st(C v) { return S(v); } };
// bool: add is "or", mul is "and", as numpy computes them.
struct ABool { using S = uint8_t; using C = int64_t; __device__ static C ld(S v) { return v != 0; } __device__ static S st(C v) { return v != 0; } };

template <class F>
void with_arith(const KernelCtx& c, DType t, F&& f) {
  switch (t) {
    case DType::F32: f(AF32{}); break;
    case DType::F64: f(AF64{}); break;
    case DType::F16: f(AF16{}); break;
    case DType::BF16: f(ABF16{}); break;
    case DType::I64: f(AInt<int64_t>{}); break;
    case DType::I32: f(AInt<int32_t>{}); break;
    case DType::I8: f(AInt<int8_t>{}); break;
    case DType::U8: f(AInt<uint8_t>{}); break;
    case DType::Bool: f(ABool{}); break;
    default: c.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported for scatter reductions on CUDA");
  }
}

template <class A>
__device__ __forceinline__ typename A::S combine(typename A::S cur, typename A::S upd, int red) {
  using C = typename A::C;
  const C x = A::ld(cur), y = A::ld(upd);
  C r;
  switch (red) {
    case kAdd: r = C(x + y); break;
    case kMul: r = C(x * y); break;
    case kMax: r = x < y ? y : x; break;
    case kMin: r = y < x ? y : x; break;
    default: r = y; break;
  }
  return A::st(r);
}

// *p = combine(*p, v) atomically: a compare-and-swap loop on the element (4/8 bytes) or on
// the aligned 32-bit word holding it (1/2 bytes; elements never straddle words).
template <class A>
__device__ void atomic_combine(typename A::S* p, typename A::S v, int red) {
  using S = typename A::S;
  if constexpr (sizeof(S) == 4 || sizeof(S) == 8) {
    using U = std::conditional_t<sizeof(S) == 4, unsigned int, unsigned long long>;
    U* up = reinterpret_cast<U*>(p);
    U old = *up, assumed;
    do {
      assumed = old;
      S cur;
      memcpy(&cur, &assumed, sizeof(S));
      const S nv = combine<A>(cur, v, red);
      U nu;
      memcpy(&nu, &nv, sizeof(S));
      old = atomicCAS(up, assumed, nu);
    } while (old != assumed);
  } else {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p);
    unsigned int* wp = reinterpret_cast<unsigned int*>(a & ~uintptr_t(3));
    const unsigned shift = unsigned(a & 3) * 8;
    const unsigned mask = ((1u << (8 * sizeof(S))) - 1u) << shift;
    unsigned old = *wp, assumed;
    do {
      assumed = old;
      const S cur = S((assumed & mask) >> shift);
      const S nv = combine<A>(cur, v, red);
      const unsigned nw = (assumed & ~mask) | ((unsigned(nv) << shift) & mask);
      old = atomicCAS(wp, assumed, nw);
    } while (old != assumed);
  }
}

// ---- GatherElements / ScatterElements ----

// Index-tensor dims and data strides, innermost first.
struct ElemArgs {
  int r = 0, ax = 0;  // ax counted innermost first
  int64_t idims[kMaxDims], xs[kMaxDims];
  int64_t n = 0, total = 0;
};

ElemArgs elem_args(const KernelCtx& c, const DevTensor& x, const DevTensor& idx, int64_t ax) {
  ElemArgs a;
  a.r = int(x.rank());
  if (a.r > kMaxDims) c.unsupported("rank above " + std::to_string(kMaxDims) + " is not supported on CUDA");
  if (idx.rank() != x.rank()) c.fail("indices and data differ in rank");
  auto xs = strides_of(x.dims);
  for (int d = 0; d < a.r; ++d) {
    const size_t s = size_t(a.r - 1 - d);
    if (int64_t(s) != ax && idx.dims[s] > x.dims[s]) c.fail("indices dim " + std::to_string(s) + " exceeds data's");
    a.idims[d] = idx.dims[s];
    a.xs[d] = xs[s];
  }
  a.ax = a.r - 1 - int(ax);
  a.n = x.dim(ax);
  a.total = idx.numel();
  return a;
}

// Offset into data of index element i (the axis coordinate replaced by its index), or -1.
template <class Ix>
__device__ __forceinline__ int64_t elem_offset(const ElemArgs& a, const Ix* idx, int64_t i) {
  int64_t rem = i, off = 0;
#pragma unroll
  for (int d = 0; d < kMaxDims; ++d) {
    if (d >= a.r) break;
    const int64_t x = rem % a.idims[d];
    rem /= a.idims[d];
    if (d != a.ax) off += x * a.xs[d];
  }
  const int64_t k = wrap_index(int64_t(idx[i]), a.n);
  return k < 0 ? -1 : off + k * a.xs[a.ax];
}

template <class T, class Ix>
__global__ void __launch_bounds__(kThreads)
    gather_elements_kernel(T* __restrict__ dst, const T* __restrict__ src, const Ix* __restrict__ idx, ElemArgs a) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t off = elem_offset(a, idx, i);
    dst[i] = off < 0 ? T{} : src[off];
  }
}

template <class T, class Ix>
__global__ void __launch_bounds__(kThreads)
    scatter_elements_kernel(T* __restrict__ dst, const T* __restrict__ upd, const Ix* __restrict__ idx, ElemArgs a) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t off = elem_offset(a, idx, i);
    if (off >= 0) dst[off] = upd[i];
  }
}

template <class A, class Ix>
__global__ void __launch_bounds__(kThreads) scatter_elements_reduce_kernel(typename A::S* dst, const typename A::S* __restrict__ upd,
                                                                           const Ix* __restrict__ idx, ElemArgs a, int red) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t off = elem_offset(a, idx, i);
    if (off >= 0) atomic_combine<A>(dst + off, upd[i], red);
  }
}

void k_gather_elements(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& idx = *c.in[1];
  DevTensor& y = *c.out[0];
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  ElemArgs a = elem_args(c, x, idx, ax);
  check_host_indices(c, 1, a.n);
  if (a.total == 0) return;
  with_elem(c, dtype_size(x.dtype), [&](auto z) {
    using T = decltype(z);
    with_index(c, idx, [&](auto iz) {
      using Ix = decltype(iz);
      launch_pdl(gather_elements_kernel<T, Ix>, grid_for(c, a.total), kThreads, 0, c.stream(), static_cast<T*>(y.data),
                 static_cast<const T*>(x.data), idx.as<Ix>(), a);
    });
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// With duplicate indices and reduction "none" the GPU keeps one of the updates (which one
// is unspecified, as ONNX leaves it); reductions apply every update atomically.
void k_scatter_elements(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& idx = *c.in[1];
  const DevTensor& upd = *c.in[2];
  DevTensor& y = *c.out[0];
  const Red red = reduction(c);
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", 0), x.rank());
  if (idx.dims != upd.dims) c.fail("indices and updates differ in shape");
  ElemArgs a = elem_args(c, x, idx, ax);
  check_host_indices(c, 1, a.n);
  copy_bytes(c, y.data, x.data, x.nbytes());
  if (a.total == 0) return;
  with_index(c, idx, [&](auto iz) {
    using Ix = decltype(iz);
    if (red == kNone) {
      with_elem(c, dtype_size(x.dtype), [&](auto z) {
        using T = decltype(z);
        launch_pdl(scatter_elements_kernel<T, Ix>, grid_for(c, a.total), kThreads, 0, c.stream(),
                   static_cast<T*>(y.data), static_cast<const T*>(upd.data), idx.as<Ix>(), a);
      });
    } else {
      with_arith(c, x.dtype, [&](auto ar) {
        using A = decltype(ar);
        using S = typename A::S;
        launch_pdl(scatter_elements_reduce_kernel<A, Ix>, grid_for(c, a.total), kThreads, 0, c.stream(),
                   static_cast<S*>(y.data), static_cast<const S*>(upd.data), idx.as<Ix>(), a, int(red));
      });
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- GatherND / ScatterND ----

// Index tuples of k entries address data axes [b, b+k) (b = batch dims); each selects a
// slice of `slice` elements (in vector units for the copy kernels).
struct NDArgs {
  int k = 0;
  int64_t xdims[kMaxDims], xstr[kMaxDims];  // of the indexed axes, in elements
  int64_t rows = 0, per_batch = 1, batch_stride = 0, slice_units = 0, f = 1;  // f: elements per unit
};

template <class Ix>
__device__ __forceinline__ int64_t nd_offset(const NDArgs& a, const Ix* idx, int64_t row) {
  int64_t off = 0;
  for (int j = 0; j < a.k; ++j) {
    const int64_t w = wrap_index(int64_t(idx[row * a.k + j]), a.xdims[j]);
    if (w < 0) return -1;
    off += w * a.xstr[j];
  }
  return (a.per_batch ? row / a.per_batch : 0) * a.batch_stride + off;  // elements
}

template <class T, class Ix>
__global__ void __launch_bounds__(kThreads)
    gather_nd_kernel(T* __restrict__ dst, const T* __restrict__ src, const Ix* __restrict__ idx, NDArgs a) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = a.rows * a.slice_units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / a.slice_units, col = i % a.slice_units;
    const int64_t off = nd_offset(a, idx, row);
    dst[i] = off < 0 ? T{} : src[off / a.f + col];
  }
}

template <class T, class Ix>
__global__ void __launch_bounds__(kThreads)
    scatter_nd_kernel(T* __restrict__ dst, const T* __restrict__ upd, const Ix* __restrict__ idx, NDArgs a) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = a.rows * a.slice_units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / a.slice_units, col = i % a.slice_units;
    const int64_t off = nd_offset(a, idx, row);
    if (off >= 0) dst[off / a.f + col] = upd[i];
  }
}

template <class A, class Ix>
__global__ void __launch_bounds__(kThreads) scatter_nd_reduce_kernel(typename A::S* dst, const typename A::S* __restrict__ upd,
                                                                     const Ix* __restrict__ idx, NDArgs a, int red) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = a.rows * a.slice_units;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / a.slice_units, col = i % a.slice_units;
    const int64_t off = nd_offset(a, idx, row);
    if (off >= 0) atomic_combine<A>(dst + off + col, upd[i], red);
  }
}

// Geometry of GatherND/ScatterND over data `x` (batch dims b) and indices `idx`.
NDArgs nd_args(const KernelCtx& c, const DevTensor& x, const DevTensor& idx, int64_t b) {
  NDArgs a;
  if (idx.rank() < 1) c.fail("indices must have rank >= 1");
  const int64_t k = idx.dim(-1);
  if (k < 1 || b + k > x.rank() || k > kMaxDims) c.fail("index tuples of " + std::to_string(k) + " entries do not fit the data");
  a.k = int(k);
  auto xs = strides_of(x.dims);
  for (int64_t j = 0; j < k; ++j) {
    a.xdims[j] = x.dim(b + j);
    a.xstr[j] = xs[size_t(b + j)];
  }
  int64_t batch = 1, slice = 1;
  for (int64_t i = 0; i < b; ++i) batch *= x.dim(i);
  for (int64_t i = b + k; i < x.rank(); ++i) slice *= x.dim(i);
  a.batch_stride = b > 0 ? xs[size_t(b - 1)] : 0;
  a.rows = idx.numel() / k;
  a.per_batch = batch > 0 ? a.rows / batch : 0;
  a.slice_units = slice;
  return a;
}

// Host check of index tuples when the host holds them.
void check_host_tuples(const KernelCtx& c, const NDArgs& a) {
  const Tensor* t = c.host_input(1);
  if (!t) return;
  for (int64_t i = 0; i < t->numel(); ++i) {
    const int64_t v = t->get_i(i), n = a.xdims[i % a.k];
    if (v < -n || v >= n) c.fail("index " + std::to_string(v) + " is out of range for an axis of " + std::to_string(n));
  }
}

void k_gather_nd(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& idx = *c.in[1];
  DevTensor& y = *c.out[0];
  const int64_t b = c.node.attr_i("batch_dims", 0);
  if (b < 0 || b >= x.rank() || b >= idx.rank()) c.fail("batch_dims " + std::to_string(b) + " is out of range");
  NDArgs a = nd_args(c, x, idx, b);
  check_host_tuples(c, a);
  if (y.numel() != a.rows * a.slice_units) c.fail("output size disagrees with the gather");
  if (y.numel() == 0) return;
  const size_t es = dtype_size(x.dtype);
  const size_t v = vec_width(es, {a.slice_units * int64_t(es)}, {x.data, y.data});
  a.f = int64_t(v / es);
  a.slice_units /= a.f;
  with_elem(c, v, [&](auto z) {
    using T = decltype(z);
    with_index(c, idx, [&](auto iz) {
      using Ix = decltype(iz);
      launch_pdl(gather_nd_kernel<T, Ix>, grid_for(c, a.rows * a.slice_units), kThreads, 0, c.stream(),
                 static_cast<T*>(y.data), static_cast<const T*>(x.data), idx.as<Ix>(), a);
    });
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void k_scatter_nd(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& idx = *c.in[1];
  const DevTensor& upd = *c.in[2];
  DevTensor& y = *c.out[0];
  const Red red = reduction(c);
  NDArgs a = nd_args(c, x, idx, 0);
  check_host_tuples(c, a);
  if (upd.numel() != a.rows * a.slice_units) c.fail("updates have the wrong number of elements");
  copy_bytes(c, y.data, x.data, x.nbytes());
  if (upd.numel() == 0) return;
  with_index(c, idx, [&](auto iz) {
    using Ix = decltype(iz);
    if (red == kNone) {
      const size_t es = dtype_size(x.dtype);
      const size_t v = vec_width(es, {a.slice_units * int64_t(es)}, {y.data, upd.data});
      a.f = int64_t(v / es);
      a.slice_units /= a.f;
      with_elem(c, v, [&](auto z) {
        using T = decltype(z);
        launch_pdl(scatter_nd_kernel<T, Ix>, grid_for(c, a.rows * a.slice_units), kThreads, 0, c.stream(),
                   static_cast<T*>(y.data), static_cast<const T*>(upd.data), idx.as<Ix>(), a);
      });
    } else {
      with_arith(c, x.dtype, [&](auto ar) {
        using A = decltype(ar);
        using S = typename A::S;
        launch_pdl(scatter_nd_reduce_kernel<A, Ix>, grid_for(c, a.rows * a.slice_units), kThreads, 0, c.stream(),
                   static_cast<S*>(y.data), static_cast<const S*>(upd.data), idx.as<Ix>(), a, int(red));
      });
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- OneHot ----

template <class Ix> __device__ __forceinline__ int64_t onehot_index(Ix v) { return int64_t(v); }
template <> __device__ __forceinline__ int64_t onehot_index<__half>(__half v) { return int64_t(__half2float(v)); }
template <> __device__ __forceinline__ int64_t onehot_index<__nv_bfloat16>(__nv_bfloat16 v) { return int64_t(__bfloat162float(v)); }

template <class T, class Ix>
__global__ void __launch_bounds__(kThreads) onehot_kernel(T* __restrict__ dst, const Ix* __restrict__ idx,
                                                          const T* __restrict__ vals, int64_t depth, int64_t inner, int64_t total) {
  pdl_wait();
  pdl_trigger();
  const T off = vals[0], on = vals[1];
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t in = i % inner, t = i / inner, d = t % depth, o = t / depth;
    int64_t k = onehot_index(idx[o * inner + in]);
    if (k < 0) k += depth;
    dst[i] = k == d ? on : off;  // out of range: never equal, the row stays "off"
  }
}

void k_onehot(KernelCtx& c) {
  const DevTensor& idx = *c.in[0];
  const DevTensor& vals = *c.in[2];
  DevTensor& y = *c.out[0];
  const int64_t r = y.rank();
  const int64_t ax = norm_axis(c, c.node.attr_i("axis", -1), r);
  if (vals.numel() != 2) c.fail("values must hold 2 elements");
  int64_t depth = y.dim(ax), inner = 1;
  for (int64_t i = ax + 1; i < r; ++i) inner *= y.dim(i);
  const int64_t total = y.numel();
  if (total == 0) return;
  with_elem(c, dtype_size(y.dtype), [&](auto z) {
    using T = decltype(z);
    auto go = [&](auto iz) {
      using Ix = decltype(iz);
      launch_pdl(onehot_kernel<T, Ix>, grid_for(c, total), kThreads, 0, c.stream(), static_cast<T*>(y.data),
                 idx.as<Ix>(), static_cast<const T*>(vals.data), depth, inner, total);
    };
    switch (idx.dtype) {
      case DType::I64: go(int64_t{}); break;
      case DType::I32: go(int32_t{}); break;
      case DType::I8: go(int8_t{}); break;
      case DType::U8: go(uint8_t{}); break;
      case DType::F32: go(float{}); break;
      case DType::F64: go(double{}); break;
      case DType::F16: go(__half{}); break;
      case DType::BF16: go(__nv_bfloat16{}); break;
      default: c.unsupported(std::string("indices of dtype ") + dtype_name(idx.dtype) + " are not supported");
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- ReverseSequence ----

// x viewed as [d0, d1, inner] (inner in vector units); the time axis is the one that is
// not the batch axis. Lengths outside [0, T] are clamped (the host check fails them first
// when the host holds the lengths).
template <class T, class L>
__global__ void __launch_bounds__(kThreads) reverse_sequence_kernel(T* __restrict__ dst, const T* __restrict__ src,
                                                                    const L* __restrict__ lens, int64_t d0, int64_t d1,
                                                                    int64_t inner, int batch_axis) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = d0 * d1 * inner, T_len = batch_axis == 0 ? d1 : d0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = i % inner, t01 = i / inner, i1 = t01 % d1, i0 = t01 / d1;
    const int64_t b = batch_axis == 0 ? i0 : i1, t = batch_axis == 0 ? i1 : i0;
    int64_t l = int64_t(lens[b]);
    l = l < 0 ? 0 : (l > T_len ? T_len : l);
    const int64_t ts = t < l ? l - 1 - t : t;
    const int64_t s0 = batch_axis == 0 ? i0 : ts, s1 = batch_axis == 0 ? ts : i1;
    dst[i] = src[(s0 * d1 + s1) * inner + col];
  }
}

void k_reverse_sequence(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  const DevTensor& lens = *c.in[1];
  DevTensor& y = *c.out[0];
  const int64_t bax = c.node.attr_i("batch_axis", 1);
  if (x.rank() < 2 || (bax != 0 && bax != 1)) c.fail("needs rank >= 2 and batch_axis 0 or 1");
  const int64_t d0 = x.dim(0), d1 = x.dim(1), T_len = bax == 0 ? d1 : d0;
  if (const Tensor* h = c.host_input(1))
    for (int64_t i = 0; i < h->numel(); ++i) {
      const int64_t l = h->get_i(i);
      if (l < 0 || l > T_len) c.fail("sequence length " + std::to_string(l) + " is out of range [0, " + std::to_string(T_len) + "]");
    }
  if (x.numel() == 0) return;
  const int64_t inner = x.numel() / (d0 * d1);
  const size_t es = dtype_size(x.dtype);
  const size_t v = vec_width(es, {inner * int64_t(es)}, {x.data, y.data});
  const int64_t units = inner * int64_t(es) / int64_t(v);
  with_elem(c, v, [&](auto z) {
    using T = decltype(z);
    with_index(c, lens, [&](auto lz) {
      using L = decltype(lz);
      launch_pdl(reverse_sequence_kernel<T, L>, grid_for(c, d0 * d1 * units), kThreads, 0, c.stream(),
                 static_cast<T*>(y.data), static_cast<const T*>(x.data), lens.as<L>(), d0, d1, units, int(bax));
    });
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- shardrt.PositionalEmbedding ----

// Y[r, e] = Tokens[Ids[r], e] + Positions[PastLens[r / S] + r % S, e], the sum rounded once;
// a row outside its table reads zeros.
template <class T, class Ix>
__global__ void __launch_bounds__(kThreads)
    positional_embedding_kernel(T* __restrict__ y, const Ix* __restrict__ ids, const int64_t* __restrict__ past,
                                const T* __restrict__ tok, const T* __restrict__ pos, int64_t S, int64_t E, int64_t V,
                                int64_t P, int64_t total) {
  pdl_wait();
  pdl_trigger();
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t r = i / E, e = i - r * E, b = r / S;
    const int64_t id = int64_t(ids[r]), p = past[b] + (r - b * S);
    const float a = (id >= 0 && id < V) ? to_f(tok[id * E + e]) : 0.f;
    const float q = (p >= 0 && p < P) ? to_f(pos[p * E + e]) : 0.f;
    y[i] = from_f<T>(a + q);
  }
}

void k_positional_embedding(KernelCtx& c) {
  const DevTensor& ids = *c.in[0];
  const DevTensor& past = *c.in[1];
  const DevTensor& tok = *c.in[2];
  const DevTensor& pos = *c.in[3];
  DevTensor& y = *c.out[0];
  if (ids.rank() != 2 || past.rank() != 1 || tok.rank() != 2 || pos.rank() != 2)
    c.fail("expected Ids [B, S], PastLens [B], Tokens [V, E] and Positions [P, E]");
  const int64_t B = ids.dim(0), S = ids.dim(1), V = tok.dim(0), E = tok.dim(1), P = pos.dim(0);
  if (past.numel() != B || past.dtype != DType::I64) c.fail("PastLens must be [B] int64");
  if (pos.dim(1) != E || pos.dtype != tok.dtype) c.fail("Tokens and Positions must be [rows, E] of one dtype");
  // With the indices on the host, fail on a bad one as the CPU kernel does.
  const Tensor* hi = c.host_input(0);
  const Tensor* hp = c.host_input(1);
  if (hi && hp)
    for (int64_t r = 0; r < B * S; ++r) {
      const int64_t b = r / S, s = r % S;
      if (std::string e = positional_embedding_row_error(b, s, hi->get_i(r), hp->get_i(b) + s, V, P); !e.empty()) c.fail(e);
    }
  const int64_t total = B * S * E;
  if (total == 0) return;
  auto run = [&](auto z) {
    using T = decltype(z);
    with_index(c, ids, [&](auto iz) {
      using Ix = decltype(iz);
      launch_pdl(positional_embedding_kernel<T, Ix>, grid_for(c, total), kThreads, 0, c.stream(),
                 static_cast<T*>(y.data), ids.as<Ix>(), past.as<int64_t>(), static_cast<const T*>(tok.data),
                 static_cast<const T*>(pos.data), S, E, V, P, total);
    });
  };
  switch (tok.dtype) {
    case DType::F32: run(float{}); break;
    case DType::F16: run(__half{}); break;
    case DType::BF16: run(__nv_bfloat16{}); break;
    default: c.fail(std::string("dtype ") + dtype_name(tok.dtype) + " is not supported (fp32, fp16, bf16)");
  }
}

}  // namespace

void register_data_index_kernels() {
  register_kernel("Gather", k_gather);
  register_kernel("GatherElements", k_gather_elements);
  register_kernel("GatherND", k_gather_nd);
  register_kernel("ScatterND", k_scatter_nd);
  register_kernel("ScatterElements", k_scatter_elements);
  register_kernel("Scatter", k_scatter_elements);
  register_kernel("OneHot", k_onehot);
  register_kernel("ReverseSequence", k_reverse_sequence);
  register_kernel("shardrt.PositionalEmbedding", k_positional_embedding);
}

}  // namespace shardrt::cuda::data
