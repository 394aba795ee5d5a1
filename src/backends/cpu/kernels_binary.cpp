// CPU kernels of the broadcasting binary ops and the variadic Max/Min/Sum/Mean.
// Every shape goes through Broadcast; its inner loop has four variants (each input
// contiguous or a repeated scalar), so same-shape, scalar and row-broadcast fp32 cases
// are plain loops the compiler vectorises, spread across the cores by row or block.
#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

template <class A, class B, class R, class F>
void binary_run(const Tensor& a, const Tensor& b, Tensor& out, const F& f) {
  Broadcast bc(out.dims(), {&a.dims(), &b.dims()});
  const A* pa = a.data<A>();
  const B* pb = b.data<B>();
  R* po = out.data<R>();
  int64_t sa = bc.inner_stride[0], sb = bc.inner_stride[1];
  for_each_piece(bc, [&](const int64_t* off, int64_t oo, int64_t n) {
    const A* x = pa + off[0];
    const B* y = pb + off[1];
    R* o = po + oo;
    if (sa && sb) {
      for (int64_t i = 0; i < n; ++i) o[i] = st<R>(f(ld(x[i]), ld(y[i])));
    } else if (sa) {
      auto yv = ld(y[0]);
      for (int64_t i = 0; i < n; ++i) o[i] = st<R>(f(ld(x[i]), yv));
    } else if (sb) {
      auto xv = ld(x[0]);
      for (int64_t i = 0; i < n; ++i) o[i] = st<R>(f(xv, ld(y[i])));
    } else {
      R v = st<R>(f(ld(x[0]), ld(y[0])));
      std::fill(o, o + n, v);
    }
  });
}

enum class Kind { Numeric, Float, Integer, Bool, Any };

template <class T> constexpr bool accepts(Kind k) {
  switch (k) {
    case Kind::Numeric: return is_floating_v<T> || is_integer_v<T>;
    case Kind::Float: return is_floating_v<T>;
    case Kind::Integer: return is_integer_v<T>;
    case Kind::Bool: return std::is_same_v<T, bool_t>;
    case Kind::Any: return true;
  }
  return false;
}

void type_error(KernelCtx& c, DType t) {
  c.fail(std::string("unsupported element type ") + dtype_name(t) + " for " + c.node.op);
}

// Same-type binary op; the output has the input type (Cmp=false) or bool (Cmp=true).
// make(node) gives a generic lambda over the compute type.
template <Kind K, bool Cmp, class Make> void reg(const char* op, Make make) {
  register_kernel(op, [make](KernelCtx& c) {
    const Tensor& a = *c.in[0];
    const Tensor& b = *c.in[1];
    if (a.dtype() != b.dtype()) c.fail("inputs have different types");
    auto f = make(c.node);
    dispatch(a.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (accepts<T>(K)) {
        if constexpr (Cmp) binary_run<T, T, bool_t>(a, b, *c.out[0], f);
        else binary_run<T, T, T>(a, b, *c.out[0], f);
      } else {
        type_error(c, a.dtype());
      }
    });
  });
}
template <Kind K, bool Cmp, class F> void reg0(const char* op, F f) {
  reg<K, Cmp>(op, [f](const Node&) { return f; });
}

#define V_ using V = decltype(x)

// Integer division truncating toward zero (C and ONNX); x/0 gives 0 rather than a trap,
// as does the one overflowing case (min / -1 wraps).
template <class V> inline V int_div(V x, V y) {
  if (y == V(0)) return V(0);
  if constexpr (std::is_signed_v<V>)
    if (y == V(-1)) return V(0) - x;
  return V(x / y);
}

template <class V> inline V mod_of(V x, V y, bool fmod) {
  if constexpr (std::is_floating_point_v<V>) {
    V r = std::fmod(x, y);
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

// Pow: base type A (also the output's), exponent type B. Float bases compute in their
// own precision; integer bases in double, converted back (exact for in-range results).
template <class A, class B> void pow_run(const Tensor& a, const Tensor& b, Tensor& out) {
  using CA = compute_t<A>;
  if constexpr (std::is_same_v<A, float>) {
    // Common constant exponents from decomposed norms and GELU: no pow call at all.
    if (b.numel() == 1 && out.dims() == a.dims()) {
      double e = double(ld(b.data<B>()[0]));
      const float* x = a.data<float>();
      float* o = out.data<float>();
      int64_t n = a.numel();
      auto run = [&](auto g) {
        parallel_for(n, 16384, [&](int64_t s, int64_t t) {
          for (int64_t i = s; i < t; ++i) o[i] = g(x[i]);
        });
      };
      if (e == 2.0) return run([](float v) { return v * v; });
      if (e == 3.0) return run([](float v) { return v * v * v; });
      if (e == 1.0) return run([](float v) { return v; });
      if (e == 0.5) return run([](float v) { return std::sqrt(v); });
    }
  }
  binary_run<A, B, A>(a, b, out, [](auto x, auto y) {
    if constexpr (std::is_floating_point_v<CA>) return CA(std::pow(x, CA(y)));
    else return double(std::pow(double(x), double(y)));
  });
}

template <class T> void copy_broadcast(const Tensor& in, Tensor& out) {
  Broadcast bc(out.dims(), {&in.dims()});
  const T* p = in.data<T>();
  T* o = out.data<T>();
  int64_t s = bc.inner_stride[0];
  for_each_piece(bc, [&](const int64_t* off, int64_t oo, int64_t n) {
    if (s) std::copy(p + off[0], p + off[0] + n, o + oo);
    else std::fill(o + oo, o + oo + n, p[off[0]]);
  });
}

// Max/Min/Sum/Mean: the first input broadcast into the output, then each further input
// folded into it in place.
template <class Make> void reg_variadic(const char* op, bool mean, Make make) {
  register_kernel(op, [make, mean](KernelCtx& c) {
    Tensor& out = *c.out[0];
    for (size_t i = 0; i < c.in.size(); ++i)
      if (!c.in[i] || c.in[i]->dtype() != out.dtype()) c.fail("inputs must all be present with one type");
    auto f = make();
    dispatch(out.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (accepts<T>(Kind::Numeric)) {
        if (mean && !is_floating_v<T>) type_error(c, out.dtype());
        copy_broadcast<T>(*c.in[0], out);
        for (size_t i = 1; i < c.in.size(); ++i) binary_run<T, T, T>(out, *c.in[i], out, f);
        if (mean) {
          T* o = out.data<T>();
          auto inv = compute_t<T>(1) / compute_t<T>(c.in.size());
          parallel_for(out.numel(), 16384, [&](int64_t s, int64_t e) {
            for (int64_t i = s; i < e; ++i) o[i] = st<T>(ld(o[i]) * inv);
          });
        }
      } else {
        type_error(c, out.dtype());
      }
    });
  });
}

}  // namespace

void register_binary_kernels() {
  constexpr Kind N = Kind::Numeric;
  reg0<N, false>("Add", [](auto x, auto y) { V_; return V(x + y); });
  reg0<N, false>("Sub", [](auto x, auto y) { V_; return V(x - y); });
  reg0<N, false>("Mul", [](auto x, auto y) { V_; return V(x * y); });
  reg0<N, false>("Div", [](auto x, auto y) {
    V_;
    if constexpr (std::is_floating_point_v<V>) return x / y;
    else return int_div(x, y);
  });
  reg<N, false>("Mod", [](const Node& n) {
    bool fm = n.attr_i("fmod", 0) != 0;
    return [fm](auto x, auto y) { return mod_of(x, y, fm); };
  });
  reg0<N, false>("PRelu", [](auto x, auto y) { V_; return x < V(0) ? V(y * x) : x; });
  reg0<Kind::Any, true>("Equal", [](auto x, auto y) { return x == y; });
  reg0<N, true>("Less", [](auto x, auto y) { return x < y; });
  reg0<N, true>("Greater", [](auto x, auto y) { return x > y; });
  reg0<N, true>("LessOrEqual", [](auto x, auto y) { return x <= y; });
  reg0<N, true>("GreaterOrEqual", [](auto x, auto y) { return x >= y; });
  reg0<Kind::Bool, true>("And", [](bool x, bool y) { return x && y; });
  reg0<Kind::Bool, true>("Or", [](bool x, bool y) { return x || y; });
  reg0<Kind::Bool, true>("Xor", [](bool x, bool y) { return x != y; });
  reg0<Kind::Integer, false>("BitwiseAnd", [](auto x, auto y) { V_; return V(x & y); });
  reg0<Kind::Integer, false>("BitwiseOr", [](auto x, auto y) { V_; return V(x | y); });
  reg0<Kind::Integer, false>("BitwiseXor", [](auto x, auto y) { V_; return V(x ^ y); });
  // Shifts act on the bit pattern (logical right shift); shifting by the width or more
  // gives 0 instead of undefined behaviour.
  reg<Kind::Integer, false>("BitShift", [](const Node& n) {
    bool left = n.attr_s("direction", "") == "LEFT";
    return [left](auto x, auto y) {
      V_;
      using U = std::make_unsigned_t<V>;
      uint64_t s = uint64_t(y);
      if (s >= sizeof(V) * 8) return V(0);
      return left ? V(U(U(x) << s)) : V(U(U(x) >> s));
    };
  });

  register_kernel("Pow", [](KernelCtx& c) {
    const Tensor& a = *c.in[0];
    const Tensor& b = *c.in[1];
    dispatch(a.dtype(), [&](auto ta) {
      using A = typename decltype(ta)::type;
      if constexpr (accepts<A>(N)) {
        dispatch(b.dtype(), [&](auto tb) {
          using B = typename decltype(tb)::type;
          if constexpr (accepts<B>(N)) pow_run<A, B>(a, b, *c.out[0]);
          else type_error(c, b.dtype());
        });
      } else {
        type_error(c, a.dtype());
      }
    });
  });

  // NaN propagates through Max/Min as in numpy.
  reg_variadic("Max", false, [] { return [](auto x, auto y) { return (x > y || x != x) ? x : y; }; });
  reg_variadic("Min", false, [] { return [](auto x, auto y) { return (x < y || x != x) ? x : y; }; });
  reg_variadic("Sum", false, [] { return [](auto x, auto y) { V_; return V(x + y); }; });
  reg_variadic("Mean", true, [] { return [](auto x, auto y) { V_; return V(x + y); }; });
}

}  // namespace shardrt::cpu
