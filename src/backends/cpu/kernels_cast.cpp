// CPU kernels of Cast and CastLike between every pair of shardrt's element types.
#include <cmath>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

// double -> float rounded to odd: rounding that result again to fp16/bf16 (fewer than 23
// mantissa bits) then equals rounding the double directly, avoiding double rounding.
inline float to_float_odd(double d) {
  float f = float(d);
  if (double(f) == d || d != d) return f;
  uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::abs(double(f)) > std::abs(d)) u -= 1;  // step toward zero (magnitude - 1 ulp)
  return std::bit_cast<float>(u | 1u);
}

template <class A, class R> inline R convert(A a) {
  if constexpr (std::is_same_v<A, double> && is_half_v<R>) {
    return st<R>(to_float_odd(a));
  } else if constexpr (is_floating_v<A> && is_integer_v<R> && sizeof(R) < 8) {
    // Through int64 so that out-of-range values wrap like numpy instead of being UB.
    return R(int64_t(ld(a)));
  } else {
    return st<R>(ld(a));
  }
}

void cast_kernel(KernelCtx& c) {
  const Tensor& x = *c.in[0];
  Tensor& y = *c.out[0];
  int64_t n = x.numel();
  if (x.dtype() == y.dtype()) {
    if (x.nbytes()) std::memcpy(y.raw(), x.raw(), x.nbytes());
    return;
  }
  dispatch(x.dtype(), [&](auto ta) {
    using A = typename decltype(ta)::type;
    dispatch(y.dtype(), [&](auto tr) {
      using R = typename decltype(tr)::type;
      const A* p = x.data<A>();
      R* o = y.data<R>();
      parallel_for(n, 16384, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] = convert<A, R>(p[i]);
      });
    });
  });
}

}  // namespace

void register_cast_kernels() {
  // The output tensor already has the target type (from `to`, or CastLike's input 1).
  register_kernel("Cast", cast_kernel);
  register_kernel("CastLike", cast_kernel);
}

}  // namespace shardrt::cpu
