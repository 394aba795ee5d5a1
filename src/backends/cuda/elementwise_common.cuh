// Shared machinery of the CUDA elementwise family: element storage types and their
// load/store to the compute type (fp16/bf16 compute in fp32, bool as one byte), 16-byte
// vectors, the broadcast plan (fast per-input index modes or general strided <= 8 dims),
// and the unary / binary kernels with their launchers. Each kernels_elementwise_*.cu file
// instantiates these with its functors.
// Every kernel of the family is launched with programmatic dependent launch (launch_pdl.h):
// it calls pdl_wait() before its first read or write (its inputs come from the previous
// kernel, and its output may still be read by it) and pdl_trigger() right after.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda::ew {

// Bool storage: one byte, read as "non-zero".
struct bool8 {
  uint8_t v;
};

template <class T> struct tag {
  using type = T;
};

template <class S> inline constexpr bool is_half_s = std::is_same_v<S, __half> || std::is_same_v<S, __nv_bfloat16>;
template <class S> inline constexpr bool is_float_s = std::is_same_v<S, float> || std::is_same_v<S, double> || is_half_s<S>;
template <class S> inline constexpr bool is_int_s =
    std::is_same_v<S, int64_t> || std::is_same_v<S, int32_t> || std::is_same_v<S, int8_t> || std::is_same_v<S, uint8_t>;
template <class S> inline constexpr bool is_bool_s = std::is_same_v<S, bool8>;

// The type arithmetic is done in: float for fp16/bf16, bool for bool, S otherwise.
template <class S> struct compute { using type = S; };
template <> struct compute<__half> { using type = float; };
template <> struct compute<__nv_bfloat16> { using type = float; };
template <> struct compute<bool8> { using type = bool; };
template <class S> using compute_t = typename compute<S>::type;

__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ double ld(double x) { return x; }
__device__ __forceinline__ float ld(__half x) { return __half2float(x); }
__device__ __forceinline__ float ld(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ __forceinline__ int64_t ld(int64_t x) { return x; }
__device__ __forceinline__ int32_t ld(int32_t x) { return x; }
__device__ __forceinline__ int8_t ld(int8_t x) { return x; }
__device__ __forceinline__ uint8_t ld(uint8_t x) { return x; }
__device__ __forceinline__ bool ld(bool8 x) { return x.v != 0; }

// Compute value -> storage (round to nearest even for fp16/bf16; C++ conversion otherwise).
template <class S, class V> __device__ __forceinline__ S st(V v) {
  if constexpr (std::is_same_v<S, __half>) return __float2half_rn(float(v));
  else if constexpr (std::is_same_v<S, __nv_bfloat16>) return __float2bfloat16_rn(float(v));
  else if constexpr (std::is_same_v<S, bool8>) return bool8{uint8_t(v ? 1 : 0)};
  else return static_cast<S>(v);
}

// std::max / std::min exactly (NaN handling included): the CPU kernels use them.
template <class V> __device__ __forceinline__ V smax(V a, V b) { return (a < b) ? b : a; }
template <class V> __device__ __forceinline__ V smin(V a, V b) { return (b < a) ? b : a; }

// N elements moved as one aligned access (N * sizeof(T) is a power of two <= 16).
template <class T, int N> struct alignas(sizeof(T) * N) Vec {
  T v[N];
};

template <class... T> constexpr int vec_width() {
  size_t m = 1;
  ((m = sizeof(T) > m ? sizeof(T) : m), ...);
  return int(16 / m);
}

inline bool aligned(const void* p, size_t bytes) { return (reinterpret_cast<uintptr_t>(p) % bytes) == 0; }

constexpr int kThreads = 256;

// Grid for a grid-stride loop over `work` items: at most one resident wave (8 blocks of
// 256 threads per SM), at least one block.
inline unsigned grid_for(const KernelCtx& c, int64_t work) {
  int64_t b = (work + kThreads - 1) / kThreads;
  int64_t cap = int64_t(c.res.props().multiProcessorCount) * 8;
  if (cap < 1) cap = 1;
  if (b > cap) b = cap;
  return unsigned(b < 1 ? 1 : b);
}

// ---- broadcast plan ----

constexpr int kMaxDims = 8;
constexpr int kMaxIn = 3;

// How an input is indexed from the output's flat index t on the fast path:
// kind 0: t (same shape); 1: 0 (one element); 2: (t / div) % mod (the input runs along a
// single merged output dim: a row [N] vs [M,N] has div 1, a channel [C,1,1] vs [B,C,H,W]
// has div H*W).
struct InMode {
  int kind = 0;
  int64_t div = 1, mod = 1;
};

// The general path: output dims merged where every input behaves alike, with each input's
// element strides (0 along dims it broadcasts over).
struct Strided {
  int rank = 0;
  int64_t dims[kMaxDims] = {};
  int64_t st[kMaxIn][kMaxDims] = {};
};

struct Plan {
  int64_t n = 0;      // output elements
  bool fast = false;  // every input has an InMode
  InMode mode[kMaxIn];
  Strided g;
};

// Plans numpy broadcasting of `k` inputs into `out`; fails naming the node when the merged
// rank exceeds kMaxDims or the shapes do not broadcast.
Plan make_plan(const KernelCtx& c, const Dims& out, const Dims* const* ins, int k);

__device__ __forceinline__ int64_t in_index(const InMode& m, int64_t t) {
  return m.kind == 0 ? t : m.kind == 1 ? 0 : (t / m.div) % m.mod;
}

// Loads the VEC elements of an input for output elements [e, e+VEC) (e a multiple of VEC):
// one vector load when they are contiguous, one scalar splat when they are all the same.
template <int VEC, class S> __device__ __forceinline__ void load_vec(const S* p, const InMode& m, int64_t e, S (&v)[VEC]) {
  if (m.kind == 0 || (m.kind == 2 && m.div == 1)) {
    int64_t b = m.kind == 0 ? e : e % m.mod;
    Vec<S, VEC> x = *reinterpret_cast<const Vec<S, VEC>*>(p + b);
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = x.v[k];
  } else {
    S s = p[m.kind == 1 ? 0 : (e / m.div) % m.mod];
#pragma unroll
    for (int k = 0; k < VEC; ++k) v[k] = s;
  }
}

// Whether load_vec is valid for this input at width VEC (contiguous runs of VEC aligned
// elements, or runs of one repeated element).
inline bool vec_ok(const InMode& m, const void* p, int vec, size_t esize) {
  if (m.kind == 1) return true;
  if (m.kind == 2 && m.div % vec == 0) return true;
  if (m.kind == 2 && !(m.div == 1 && m.mod % vec == 0)) return false;
  return aligned(p, size_t(vec) * esize);
}

__device__ __forceinline__ void strided_offsets(const Strided& g, int64_t t, int k, int64_t* off) {
  for (int j = 0; j < k; ++j) off[j] = 0;
  for (int d = g.rank - 1; d >= 0; --d) {
    int64_t sz = g.dims[d];
    int64_t q = t / sz;
    int64_t i = t - q * sz;
    t = q;
    for (int j = 0; j < k; ++j) off[j] += i * g.st[j][d];
  }
}

// ---- unary ----

// y[i] = st<R>(f(ld(x[i]))) over n contiguous elements; the first nvec*VEC as vectors.
template <int VEC, class S, class R, class F>
__global__ void __launch_bounds__(kThreads) unary_kernel(const S* __restrict__ x, R* __restrict__ y, int64_t n,
                                                         int64_t nvec, F f) {
  pdl_wait();
  pdl_trigger();
  int64_t gid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = gid; i < nvec; i += stride) {
    Vec<S, VEC> a = reinterpret_cast<const Vec<S, VEC>*>(x)[i];
    Vec<R, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) o.v[k] = st<R>(f(ld(a.v[k])));
    reinterpret_cast<Vec<R, VEC>*>(y)[i] = o;
  }
  for (int64_t t = nvec * VEC + gid; t < n; t += stride) y[t] = st<R>(f(ld(x[t])));
}

template <class S, class R, class F> void launch_unary(const KernelCtx& c, const DevTensor& x, DevTensor& y, const F& f) {
  int64_t n = y.numel();
  if (x.numel() != n) c.fail("input and output differ in size");
  if (n == 0) return;
  constexpr int VEC = vec_width<S, R>();
  bool v = aligned(x.data, VEC * sizeof(S)) && aligned(y.data, VEC * sizeof(R));
  int64_t nvec = v ? n / VEC : 0;
  launch_pdl(unary_kernel<VEC, S, R, F>, grid_for(c, v ? nvec : n), kThreads, 0, c.stream(),
             static_cast<const S*>(x.data), static_cast<R*>(y.data), n, nvec, f);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- binary ----

// No __restrict__: the variadic ops fold into the output in place (a == y).
template <int VEC, class A, class B, class R, class F>
__global__ void __launch_bounds__(kThreads) binary_fast_kernel(const A* a, const B* b, R* y, int64_t n, int64_t nvec,
                                                               InMode ma, InMode mb, F f) {
  pdl_wait();
  pdl_trigger();
  int64_t gid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = gid; i < nvec; i += stride) {
    int64_t e = i * VEC;
    A av[VEC];
    B bv[VEC];
    load_vec<VEC>(a, ma, e, av);
    load_vec<VEC>(b, mb, e, bv);
    Vec<R, VEC> o;
#pragma unroll
    for (int k = 0; k < VEC; ++k) o.v[k] = st<R>(f(ld(av[k]), ld(bv[k])));
    reinterpret_cast<Vec<R, VEC>*>(y)[i] = o;
  }
  for (int64_t t = nvec * VEC + gid; t < n; t += stride)
    y[t] = st<R>(f(ld(a[in_index(ma, t)]), ld(b[in_index(mb, t)])));
}

template <class A, class B, class R, class F>
__global__ void __launch_bounds__(kThreads) binary_strided_kernel(const A* a, const B* b, R* y, int64_t n, Strided g,
                                                                  F f) {
  pdl_wait();
  pdl_trigger();
  int64_t gid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t t = gid; t < n; t += stride) {
    int64_t off[2];
    strided_offsets(g, t, 2, off);
    y[t] = st<R>(f(ld(a[off[0]]), ld(b[off[1]])));
  }
}

// y = f(a, b) with numpy broadcasting of a and b into y's dims.
template <class A, class B, class R, class F>
void launch_binary(const KernelCtx& c, const DevTensor& a, const DevTensor& b, DevTensor& y, const F& f) {
  const Dims* ins[2] = {&a.dims, &b.dims};
  Plan p = make_plan(c, y.dims, ins, 2);
  if (p.n == 0) return;
  const A* pa = static_cast<const A*>(a.data);
  const B* pb = static_cast<const B*>(b.data);
  R* py = static_cast<R*>(y.data);
  if (p.fast) {
    constexpr int VEC = vec_width<A, B, R>();
    bool v = vec_ok(p.mode[0], pa, VEC, sizeof(A)) && vec_ok(p.mode[1], pb, VEC, sizeof(B)) &&
             aligned(py, VEC * sizeof(R));
    int64_t nvec = v ? p.n / VEC : 0;
    launch_pdl(binary_fast_kernel<VEC, A, B, R, F>, grid_for(c, v ? nvec : p.n), kThreads, 0, c.stream(), pa, pb, py,
               p.n, nvec, p.mode[0], p.mode[1], f);
  } else {
    launch_pdl(binary_strided_kernel<A, B, R, F>, grid_for(c, p.n), kThreads, 0, c.stream(), pa, pb, py, p.n, p.g, f);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// ---- dtype dispatch ----

// Calls f(tag<S>{}) with S the device storage type of `t`; fails naming the node otherwise.
template <class F> void dispatch(const KernelCtx& c, DType t, F&& f) {
  switch (t) {
    case DType::F32: f(tag<float>{}); return;
    case DType::F16: f(tag<__half>{}); return;
    case DType::BF16: f(tag<__nv_bfloat16>{}); return;
    case DType::F64: f(tag<double>{}); return;
    case DType::I64: f(tag<int64_t>{}); return;
    case DType::I32: f(tag<int32_t>{}); return;
    case DType::I8: f(tag<int8_t>{}); return;
    case DType::U8: f(tag<uint8_t>{}); return;
    case DType::Bool: f(tag<bool8>{}); return;
    default: break;
  }
  c.unsupported(std::string("element type ") + dtype_name(t) + " is not supported by the CUDA kernel of " + c.node.op);
}

// Which element types an op takes (as the CPU kernels and the schemas say).
enum class Kind { Float, Numeric, Integer, Bool, Any };

template <class S> constexpr bool accepts(Kind k) {
  switch (k) {
    case Kind::Float: return is_float_s<S>;
    case Kind::Numeric: return is_float_s<S> || is_int_s<S>;
    case Kind::Integer: return is_int_s<S>;
    case Kind::Bool: return is_bool_s<S>;
    case Kind::Any: return true;
  }
  return false;
}

[[noreturn]] void type_error(const KernelCtx& c, DType t);

// Registers a same-type unary op of kind K; make(node) gives its functor, whose templated
// __device__ operator()(V) maps one compute value.
template <Kind K, class Make> void reg_unary(const char* op, Make make) {
  register_kernel(op, [make](KernelCtx& c) {
    const DevTensor& x = *c.in[0];
    DevTensor& y = *c.out[0];
    if (y.dtype != x.dtype) c.fail("output type differs from the input's");
    dispatch(c, x.dtype, [&](auto tg) {
      using S = typename decltype(tg)::type;
      if constexpr (accepts<S>(K)) launch_unary<S, S>(c, x, y, make(c.node));
      else type_error(c, x.dtype);
    });
  });
}

// Registers a same-type broadcasting binary op of kind K with output of the input type
// (Cmp false) or bool (Cmp true); make(node) gives the functor, whose templated
// __device__ operator()(V, V) combines two compute values.
template <Kind K, bool Cmp, class Make> void reg_binary(const char* op, Make make) {
  register_kernel(op, [make](KernelCtx& c) {
    const DevTensor& a = *c.in[0];
    const DevTensor& b = *c.in[1];
    DevTensor& y = *c.out[0];
    if (a.dtype != b.dtype) c.fail("inputs have different types");
    if (y.dtype != (Cmp ? DType::Bool : a.dtype)) c.fail("unexpected output type");
    dispatch(c, a.dtype, [&](auto tg) {
      using S = typename decltype(tg)::type;
      if constexpr (accepts<S>(K)) {
        if constexpr (Cmp) launch_binary<S, S, bool8>(c, a, b, y, make(c.node));
        else launch_binary<S, S, S>(c, a, b, y, make(c.node));
      } else {
        type_error(c, a.dtype);
      }
    });
  });
}

// A functor without attributes: struct Name { V operator()(V x) }.
#define SHARDRT_EW_UNARY(Name, ...)                                                         \
  struct Name {                                                                             \
    template <class V> __device__ __forceinline__ V operator()(V x) const { __VA_ARGS__; } \
  }
// A binary functor without attributes returning R (V: the compute type, or bool).
#define SHARDRT_EW_BINARY(Name, R, ...)                                                            \
  struct Name {                                                                                    \
    template <class V> __device__ __forceinline__ R operator()(V x, V y) const { __VA_ARGS__; }   \
  }

// Family parts (one file each), called by register_elementwise_kernels().
void register_unary_math_kernels();  // kernels_elementwise_unary.cu
void register_activation_kernels();  // kernels_elementwise_act.cu
void register_binary_kernels();      // kernels_elementwise_binary.cu
void register_compare_kernels();     // kernels_elementwise_compare.cu
void register_pow_variadic_kernels();  // kernels_elementwise_pow.cu
void register_cast_kernels();        // kernels_elementwise_cast.cu

// Converts n elements from one dtype to another on the stream with Cast's semantics
// (kernels_elementwise_cast.cu); used by Pow for its exponent.
void launch_cast(const KernelCtx& c, DType from, const void* x, DType to, void* y, int64_t n);

}  // namespace shardrt::cuda::ew
