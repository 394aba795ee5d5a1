// Helpers shared by CPU kernel files: element-type dispatch, fp16/bf16 load/store,
// numpy-broadcast iteration, a vectorisable exp, and the [outer, axis, inner] view used by
// single-axis ops.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu {

// Storage types of fp16/bf16 elements, distinct so that dispatch can tell them apart.
struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
// Bool is stored as one byte (0 or 1).
struct bool_t { uint8_t v; };

template <class T> inline constexpr bool is_half_v = std::is_same_v<T, f16_t> || std::is_same_v<T, bf16_t>;

// The type arithmetic is done in: float for fp16/bf16, bool for bool, T otherwise.
template <class T> struct compute { using type = T; };
template <> struct compute<f16_t> { using type = float; };
template <> struct compute<bf16_t> { using type = float; };
template <> struct compute<bool_t> { using type = bool; };
template <class T> using compute_t = typename compute<T>::type;

template <class T> inline compute_t<T> ld(const T& x) {
  if constexpr (std::is_same_v<T, f16_t>) return half_to_float(x.bits);
  else if constexpr (std::is_same_v<T, bf16_t>) return bf16_to_float(x.bits);
  else if constexpr (std::is_same_v<T, bool_t>) return x.v != 0;
  else return x;
}
template <class T, class V> inline T st(V v) {
  if constexpr (std::is_same_v<T, f16_t>) return f16_t{float_to_half(float(v))};
  else if constexpr (std::is_same_v<T, bf16_t>) return bf16_t{float_to_bf16(float(v))};
  else if constexpr (std::is_same_v<T, bool_t>) return bool_t{uint8_t(v ? 1 : 0)};
  else return static_cast<T>(v);
}

template <class T> struct tag { using type = T; };

// Calls f(tag<T>{}) with T the storage type of `t`.
template <class F> decltype(auto) dispatch(DType t, F&& f) {
  switch (t) {
    case DType::F32: return f(tag<float>{});
    case DType::F16: return f(tag<f16_t>{});
    case DType::BF16: return f(tag<bf16_t>{});
    case DType::F64: return f(tag<double>{});
    case DType::I64: return f(tag<int64_t>{});
    case DType::I32: return f(tag<int32_t>{});
    case DType::I8: return f(tag<int8_t>{});
    case DType::U8: return f(tag<uint8_t>{});
    case DType::Bool: return f(tag<bool_t>{});
    default: break;
  }
  throw GraphError(std::string("unsupported element type ") + dtype_name(t));
}

template <class T> inline constexpr bool is_floating_v = std::is_floating_point_v<T> || is_half_v<T>;
template <class T> inline constexpr bool is_integer_v = std::is_integral_v<T>;  // bool_t excluded

// exp(x) for fp32, written without branches or calls so loops over it vectorise.
// Cephes-style: 2^n · p(r) with r = x - n·ln2, |r| <= ln2/2; about 1 ulp. Overflows to inf
// and underflows to 0 (through subnormals) as expf does; NaN stays NaN.
inline float fast_expf(float x) {
  float xc = std::min(std::max(x, -104.0f), 89.0f);
  float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  // round to nearest
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  // 2^n as two factors so that n in [-150, 128] stays within the exponent range.
  int32_t ni = int32_t(n);
  int32_t n1 = ni >> 1, n2 = ni - n1;
  float s1 = std::bit_cast<float>(uint32_t(n1 + 127) << 23);
  float s2 = std::bit_cast<float>(uint32_t(n2 + 127) << 23);
  float y = p * s1 * s2;
  return x != x ? x : y;
}

// Numpy broadcasting of several inputs to one output, collapsed to rows: the last
// collapsed dimension (`inner` elements) has per-input stride 0 or 1; the rows before it
// are enumerated by `row_offsets`.
struct Broadcast {
  int64_t inner = 1, rows = 1;
  std::vector<int64_t> outer_dims;               // collapsed dims before the inner one
  std::vector<std::vector<int64_t>> outer_strides;  // per input, per outer dim
  std::vector<int64_t> inner_stride;             // per input: 0 or 1

  Broadcast(const Dims& out, const std::vector<const Dims*>& ins);
  // Element offsets of each input at the start of row `r`.
  void row_offsets(int64_t r, int64_t* offs) const;
};

// Runs f(offsets, out_offset, n) over the output in pieces (a row or a block of one),
// spread across the cores. offsets[k] is input k's element offset at the piece's start;
// within the piece input k advances by inner_stride[k].
template <class F> void for_each_piece(const Broadcast& b, F&& f) {
  constexpr int64_t kBlock = 16384;
  int64_t blocks = (b.inner + kBlock - 1) / kBlock;
  if (b.inner == 0 || b.rows == 0) return;
  int64_t tasks = b.rows * blocks;
  int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, std::min(b.inner, kBlock)));
  size_t k = b.inner_stride.size();
  parallel_for(tasks, grain, [&](int64_t t0, int64_t t1) {
    std::vector<int64_t> offs(k), o(k);
    for (int64_t t = t0; t < t1; ++t) {
      int64_t r = t / blocks, blk = t % blocks;
      b.row_offsets(r, offs.data());
      int64_t s = blk * kBlock, n = std::min(kBlock, b.inner - s);
      for (size_t i = 0; i < k; ++i) o[i] = offs[i] + s * b.inner_stride[i];
      f(o.data(), r * b.inner + s, n);
    }
  });
}

// A tensor viewed as [outer, n, inner] around one axis.
struct AxisView {
  int64_t outer = 1, n = 1, inner = 1;
  AxisView(const Dims& d, int64_t axis) {
    for (int64_t i = 0; i < int64_t(d.size()); ++i) {
      if (i < axis) outer *= d[size_t(i)];
      else if (i == axis) n = d[size_t(i)];
      else inner *= d[size_t(i)];
    }
  }
};

// Entry points of the other kernel files of the elementwise and reduction families.
void register_unary_kernels();
void register_binary_kernels();
void register_cast_kernels();
void register_softmax_kernels();
void register_index_kernels();  // ArgMax/ArgMin, CumSum, TopK

}  // namespace shardrt::cpu
