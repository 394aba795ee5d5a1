// CUDA kernels of the broadcasting comparisons (bool output), logical And/Or/Xor and the
// bitwise ops with BitShift. Same semantics as the CPU kernels.
#include "backends/cuda/elementwise_common.cuh"

namespace shardrt::cuda::ew {

namespace {

SHARDRT_EW_BINARY(EqualF, bool, return x == y);
SHARDRT_EW_BINARY(LessF, bool, return x < y);
SHARDRT_EW_BINARY(GreaterF, bool, return x > y);
SHARDRT_EW_BINARY(LessOrEqualF, bool, return x <= y);
SHARDRT_EW_BINARY(GreaterOrEqualF, bool, return x >= y);
SHARDRT_EW_BINARY(AndF, bool, return x && y);
SHARDRT_EW_BINARY(OrF, bool, return x || y);
SHARDRT_EW_BINARY(XorF, bool, return x != y);
SHARDRT_EW_BINARY(BitwiseAndF, V, return V(x & y));
SHARDRT_EW_BINARY(BitwiseOrF, V, return V(x | y));
SHARDRT_EW_BINARY(BitwiseXorF, V, return V(x ^ y));

// Shifts act on the bit pattern (logical right shift); shifting by the width or more
// (negative amounts included, as huge unsigned ones) gives 0.
struct BitShiftF {
  bool left;
  template <class V> __device__ V operator()(V x, V y) const {
    using U = std::make_unsigned_t<V>;
    uint64_t s = uint64_t(y);
    if (s >= sizeof(V) * 8) return V(0);
    return left ? V(U(U(x) << s)) : V(U(U(x) >> s));
  }
};

template <class F> auto plain() {
  return [](const Node&) { return F{}; };
}

}  // namespace

void register_compare_kernels() {
  constexpr Kind N = Kind::Numeric, B = Kind::Bool, I = Kind::Integer;
  reg_binary<Kind::Any, true>("Equal", plain<EqualF>());
  reg_binary<N, true>("Less", plain<LessF>());
  reg_binary<N, true>("Greater", plain<GreaterF>());
  reg_binary<N, true>("LessOrEqual", plain<LessOrEqualF>());
  reg_binary<N, true>("GreaterOrEqual", plain<GreaterOrEqualF>());
  reg_binary<B, true>("And", plain<AndF>());
  reg_binary<B, true>("Or", plain<OrF>());
  reg_binary<B, true>("Xor", plain<XorF>());
  reg_binary<I, false>("BitwiseAnd", plain<BitwiseAndF>());
  reg_binary<I, false>("BitwiseOr", plain<BitwiseOrF>());
  reg_binary<I, false>("BitwiseXor", plain<BitwiseXorF>());
  reg_binary<I, false>("BitShift", [](const Node& n) { return BitShiftF{n.attr_s("direction", "") == "LEFT"}; });
}

}  // namespace shardrt::cuda::ew
