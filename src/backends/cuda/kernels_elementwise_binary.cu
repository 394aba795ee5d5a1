// CUDA kernels of the broadcasting arithmetic ops: Add, Sub, Mul, Div (integer division
// truncating, x/0 = 0), Mod (fmod attribute), PRelu, and shardrt.SwiGLU. Same formulas as
// the CPU kernels; fp16/bf16 compute in fp32.
#include "backends/cuda/elementwise_common.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace shardrt::cuda::ew {

namespace {

// Integer division truncating toward zero (C and ONNX); x/0 gives 0 rather than a trap,
// as does the one overflowing case (min / -1 wraps).
template <class V> __device__ __forceinline__ V int_div(V x, V y) {
  if (y == V(0)) return V(0);
  if constexpr (std::is_signed_v<V>)
    if (y == V(-1)) return V(V(0) - x);
  return V(x / y);
}

template <class V> __device__ __forceinline__ V mod_of(V x, V y, bool fmod) {
  if constexpr (std::is_floating_point_v<V>) {
    V r = m_fmod(x, y);
    // Python/numpy semantics: the remainder takes the divisor's sign.
    if (!fmod && r != V(0) && ((r < V(0)) != (y < V(0)))) r += y;
    return r;
  } else {
    if (y == V(0)) return V(0);
    if constexpr (std::is_signed_v<V>)
      if (y == V(-1)) return V(0);
    V r = V(x % y);
    if constexpr (std::is_signed_v<V>)
      if (!fmod && r != 0 && ((r < 0) != (y < 0))) r = V(r + y);
    return r;
  }
}

SHARDRT_EW_BINARY(AddF, V, return V(x + y));
SHARDRT_EW_BINARY(SubF, V, return V(x - y));
SHARDRT_EW_BINARY(MulF, V, return V(x * y));
SHARDRT_EW_BINARY(DivF, V, if constexpr (std::is_floating_point_v<V>) return x / y; else return int_div(x, y));
SHARDRT_EW_BINARY(PReluF, V, if constexpr (std::is_unsigned_v<V>) return x; else return x < V(0) ? V(y * x) : x);
// silu(g)·u with silu(g) = g/(1+e^-g).
SHARDRT_EW_BINARY(SwiGLUF, V, return x / (V(1) + m_exp(-x)) * y);

struct ModF {
  bool fmod;
  template <class V> __device__ V operator()(V x, V y) const { return mod_of(x, y, fmod); }
};

template <class F> auto plain() {
  return [](const Node&) { return F{}; };
}

}  // namespace

void register_binary_kernels() {
  constexpr Kind N = Kind::Numeric;
  reg_binary<N, false>("Add", plain<AddF>());
  reg_binary<N, false>("Sub", plain<SubF>());
  reg_binary<N, false>("Mul", plain<MulF>());
  reg_binary<N, false>("Div", plain<DivF>());
  reg_binary<N, false>("PRelu", plain<PReluF>());
  reg_binary<N, false>("Mod", [](const Node& n) { return ModF{n.attr_i("fmod", 0) != 0}; });
  // G and U have one shape (the schema's rule); the kernel still broadcasts if asked.
  reg_binary<Kind::Float, false>("shardrt.SwiGLU", plain<SwiGLUF>());
}

}  // namespace shardrt::cuda::ew
