// CPU kernels of the unary elementwise ops. fp16/bf16 compute in float; fp32 loops are
// plain enough for the compiler to vectorise where the math allows (exp-based ops use
// fast_expf for that reason).
#include <algorithm>
#include <cmath>

#include "backends/cpu/elementwise_impl.h"

namespace shardrt::cpu {

namespace {

constexpr int64_t kGrain = 16384;

template <class T, class R, class F> void map(const T* in, R* out, int64_t n, const F& f) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = st<R>(f(ld(in[i])));
  });
}

template <class V> inline V exp_of(V x) {
  if constexpr (std::is_same_v<V, float>) return fast_expf(x);
  else return std::exp(x);
}

enum class Kind { Float, Numeric, Bool, Integer };

const char* kind_str(Kind k) {
  switch (k) {
    case Kind::Float: return "a floating-point type";
    case Kind::Numeric: return "a numeric type";
    case Kind::Bool: return "bool";
    case Kind::Integer: return "an integer type";
  }
  return "?";
}

template <class T> constexpr bool accepts(Kind k) {
  switch (k) {
    case Kind::Float: return is_floating_v<T>;
    case Kind::Numeric: return is_floating_v<T> || is_integer_v<T>;
    case Kind::Bool: return std::is_same_v<T, bool_t>;
    case Kind::Integer: return is_integer_v<T>;
  }
  return false;
}

// Registers a same-type unary op. make(node) returns the element function, a generic
// lambda over the compute type (float, double or an integer type).
template <Kind K, class Make> void reg(const char* op, Make make) {
  register_kernel(op, [make, op](KernelCtx& c) {
    const Tensor& x = *c.in[0];
    Tensor& y = *c.out[0];
    auto f = make(c.node);
    dispatch(x.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (accepts<T>(K)) map<T, T>(x.data<T>(), y.data<T>(), x.numel(), f);
      else c.fail(std::string(op) + " needs " + kind_str(K) + ", got " + dtype_name(x.dtype()));
    });
  });
}

// A unary op without attributes.
template <Kind K, class F> void reg0(const char* op, F f) {
  reg<K>(op, [f](const Node&) { return f; });
}

// Float -> bool predicates (IsNaN, IsInf).
template <class Make> void reg_pred(const char* op, Make make) {
  register_kernel(op, [make, op](KernelCtx& c) {
    const Tensor& x = *c.in[0];
    auto f = make(c.node);
    dispatch(x.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (is_floating_v<T>) map<T, bool_t>(x.data<T>(), c.out[0]->data<bool_t>(), x.numel(), f);
      else c.fail(std::string(op) + " needs a floating-point type, got " + dtype_name(x.dtype()));
    });
  });
}

#define V_ using V = decltype(x)

}  // namespace

void register_unary_kernels() {
  constexpr Kind F = Kind::Float, N = Kind::Numeric;
  reg0<F>("Exp", [](auto x) { return exp_of(x); });
  reg0<F>("Log", [](auto x) { return std::log(x); });
  reg0<F>("Sqrt", [](auto x) { return std::sqrt(x); });
  reg0<F>("Reciprocal", [](auto x) { V_; return V(1) / x; });
  reg0<F>("Sin", [](auto x) { return std::sin(x); });
  reg0<F>("Cos", [](auto x) { return std::cos(x); });
  reg0<F>("Tan", [](auto x) { return std::tan(x); });
  reg0<F>("Asin", [](auto x) { return std::asin(x); });
  reg0<F>("Acos", [](auto x) { return std::acos(x); });
  reg0<F>("Atan", [](auto x) { return std::atan(x); });
  reg0<F>("Sinh", [](auto x) { return std::sinh(x); });
  reg0<F>("Cosh", [](auto x) { return std::cosh(x); });
  reg0<F>("Asinh", [](auto x) { return std::asinh(x); });
  reg0<F>("Acosh", [](auto x) { return std::acosh(x); });
  reg0<F>("Atanh", [](auto x) { return std::atanh(x); });
  reg0<F>("Tanh", [](auto x) { return std::tanh(x); });
  // 1/(1+e^-x): e^-x overflows to inf for very negative x, giving exactly 0.
  reg0<F>("Sigmoid", [](auto x) { V_; return V(1) / (V(1) + exp_of(-x)); });
  reg0<F>("Erf", [](auto x) { return std::erf(x); });
  reg0<F>("Floor", [](auto x) { return std::floor(x); });
  reg0<F>("Ceil", [](auto x) { return std::ceil(x); });
  // Halves round to even, as ONNX specifies (nearbyint in the default rounding mode).
  reg0<F>("Round", [](auto x) { return std::nearbyint(x); });
  // log(1+e^x) without overflow: max(x,0) + log1p(e^-|x|).
  reg0<F>("Softplus", [](auto x) { V_; return std::max(x, V(0)) + std::log1p(std::exp(-std::abs(x))); });
  reg0<F>("Softsign", [](auto x) { V_; return x / (V(1) + std::abs(x)); });
  reg0<F>("HardSwish", [](auto x) { V_; return x * std::max(V(0), std::min(V(1), x / V(6) + V(0.5))); });
  reg0<F>("Mish", [](auto x) {
    V_;
    V sp = std::max(x, V(0)) + std::log1p(std::exp(-std::abs(x)));
    return x * std::tanh(sp);
  });
  reg0<N>("Abs", [](auto x) { V_; if constexpr (std::is_unsigned_v<V>) return x; else return x < V(0) ? V(-x) : x; });
  reg0<N>("Neg", [](auto x) { V_; return V(-x); });
  reg0<N>("Sign", [](auto x) { V_; return x > V(0) ? V(1) : x < V(0) ? V(-1) : x; });
  reg0<N>("Relu", [](auto x) { V_; return x > V(0) ? x : V(0); });
  reg0<Kind::Bool>("Not", [](bool x) { return !x; });
  reg0<Kind::Integer>("BitwiseNot", [](auto x) { V_; return V(~x); });

  reg<F>("LeakyRelu", [](const Node& n) {
    float a = n.attr_f("alpha", 0.01f);
    return [a](auto x) { V_; return x < V(0) ? V(a) * x : x; };
  });
  reg<F>("Elu", [](const Node& n) {
    float a = n.attr_f("alpha", 1.0f);
    return [a](auto x) { V_; return x < V(0) ? V(a) * (std::exp(x) - V(1)) : x; };
  });
  reg<F>("Selu", [](const Node& n) {
    float a = n.attr_f("alpha", 1.67326319217681884765625f), g = n.attr_f("gamma", 1.05070102214813232421875f);
    return [a, g](auto x) { V_; return x > V(0) ? V(g) * x : V(g) * (V(a) * std::exp(x) - V(a)); };
  });
  reg<F>("Celu", [](const Node& n) {
    float a = n.attr_f("alpha", 1.0f);
    return [a](auto x) {
      V_;
      return std::max(V(0), x) + std::min(V(0), V(a) * (std::exp(x / V(a)) - V(1)));
    };
  });
  reg<F>("HardSigmoid", [](const Node& n) {
    float a = n.attr_f("alpha", 0.2f), b = n.attr_f("beta", 0.5f);
    return [a, b](auto x) { V_; return std::max(V(0), std::min(V(1), V(a) * x + V(b))); };
  });
  reg<F>("ThresholdedRelu", [](const Node& n) {
    float a = n.attr_f("alpha", 1.0f);
    return [a](auto x) { V_; return x > V(a) ? x : V(0); };
  });
  reg<N>("Shrink", [](const Node& n) {
    float bias = n.attr_f("bias", 0.0f), l = n.attr_f("lambd", 0.5f);
    return [bias, l](auto x) {
      V_;
      // Compare and shift in double so that integer inputs follow the float attributes.
      double d = double(x);
      return d < -l ? V(d + bias) : d > l ? V(d - bias) : V(0);
    };
  });
  // Gelu: two element functions (not one with a branch inside) so each loop vectorises.
  register_kernel("Gelu", [](KernelCtx& c) {
    const Tensor& x = *c.in[0];
    Tensor& y = *c.out[0];
    bool tanh_approx = c.node.attr_s("approximate", "none") == "tanh";
    dispatch(x.dtype(), [&](auto tg) {
      using T = typename decltype(tg)::type;
      if constexpr (is_floating_v<T>) {
        if (tanh_approx) {
          // 0.5x(1+tanh(u)) == x·sigmoid(2u): no cancellation for negative x.
          map<T, T>(x.data<T>(), y.data<T>(), x.numel(), [](auto v) {
            using V = decltype(v);
            V u = V(0.7978845608028654) * (v + V(0.044715) * v * v * v);
            return v / (V(1) + exp_of(V(-2) * u));
          });
        } else {
          // 0.5x(1+erf(x/√2)) == 0.5x·erfc(-x/√2): accurate in the negative tail.
          map<T, T>(x.data<T>(), y.data<T>(), x.numel(), [](auto v) {
            using V = decltype(v);
            return V(0.5) * v * std::erfc(-v * V(0.70710678118654752));
          });
        }
      } else {
        c.fail(std::string("Gelu needs a floating-point type, got ") + dtype_name(x.dtype()));
      }
    });
  });

  reg_pred("IsNaN", [](const Node&) { return [](auto x) { return x != x; }; });
  reg_pred("IsInf", [](const Node& n) {
    bool neg = n.attr_i("detect_negative", 1) != 0, pos = n.attr_i("detect_positive", 1) != 0;
    return [neg, pos](auto x) { return std::isinf(x) && ((x > 0 && pos) || (x < 0 && neg)); };
  });
}

}  // namespace shardrt::cpu
