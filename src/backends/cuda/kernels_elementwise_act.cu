// CUDA kernels of the activation functions (Relu family, sigmoid-like, Gelu, Shrink,
// shardrt.Silu). Same formulas as the CPU kernels, computed in fp32 for fp16/bf16.
#include "backends/cuda/elementwise_common.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace shardrt::cuda::ew {

namespace {

// 1/(1+e^-x): e^-x overflows to inf for very negative x, giving exactly 0.
SHARDRT_EW_UNARY(SigmoidF, return V(1) / (V(1) + m_exp(-x)));
// x·sigmoid(x) as x/(1+e^-x) (shardrt.Silu).
SHARDRT_EW_UNARY(SiluF, return x / (V(1) + m_exp(-x)));
// log(1+e^x) without overflow: max(x,0) + log1p(e^-|x|).
SHARDRT_EW_UNARY(SoftplusF, return smax(x, V(0)) + m_log1p(m_exp(-m_fabs(x))));
SHARDRT_EW_UNARY(SoftsignF, return x / (V(1) + m_fabs(x)));
SHARDRT_EW_UNARY(HardSwishF, return x * smax(V(0), smin(V(1), x / V(6) + V(0.5))));
SHARDRT_EW_UNARY(MishF, V sp = smax(x, V(0)) + m_log1p(m_exp(-m_fabs(x))); return x * m_tanh(sp));
SHARDRT_EW_UNARY(ReluF, return x > V(0) ? x : V(0));
// 0.5x(1+tanh(u)) == x·sigmoid(2u): no cancellation for negative x.
SHARDRT_EW_UNARY(GeluTanhF, V u = V(0.7978845608028654) * (x + V(0.044715) * x * x * x);
                 return x / (V(1) + m_exp(V(-2) * u)));
// 0.5x(1+erf(x/√2)) == 0.5x·erfc(-x/√2): accurate in the negative tail.
SHARDRT_EW_UNARY(GeluErfF, return V(0.5) * x * m_erfc(-x * V(0.70710678118654752)));

struct LeakyReluF {
  float a;
  template <class V> __device__ V operator()(V x) const { return x < V(0) ? V(a) * x : x; }
};
struct EluF {
  float a;
  template <class V> __device__ V operator()(V x) const { return x < V(0) ? V(a) * (m_exp(x) - V(1)) : x; }
};
struct SeluF {
  float a, g;
  template <class V> __device__ V operator()(V x) const { return x > V(0) ? V(g) * x : V(g) * (V(a) * m_exp(x) - V(a)); }
};
struct CeluF {
  float a;
  template <class V> __device__ V operator()(V x) const {
    return smax(V(0), x) + smin(V(0), V(a) * (m_exp(x / V(a)) - V(1)));
  }
};
// max(0, min(1, a·x + b)) as the CPU's std::max/std::min give it, NaN included: min(1, NaN)
// is 1, so NaN gives 1. Written out because ptxas folds the fma/min/max clamp to [0, 1] into
// a saturating fma, which flushes NaN to 0 instead (seen on an H100 for fp32, fp16, bf16 and
// fp64); after the explicit test the clamp has no NaN left to disagree on.
struct HardSigmoidF {
  float a, b;
  template <class V> __device__ V operator()(V x) const {
    const V y = V(a) * x + V(b);
    if (y != y) return V(1);
    return smax(V(0), smin(V(1), y));
  }
};
struct ThresholdedReluF {
  float a;
  template <class V> __device__ V operator()(V x) const { return x > V(a) ? x : V(0); }
};
struct ShrinkF {
  float bias, l;
  // Compare and shift in double so that integer inputs follow the float attributes.
  template <class V> __device__ V operator()(V x) const {
    double d = double(x);
    return d < -l ? V(d + bias) : d > l ? V(d - bias) : V(0);
  }
};

template <class F> auto plain() {
  return [](const Node&) { return F{}; };
}

}  // namespace

void register_activation_kernels() {
  constexpr Kind F = Kind::Float;
  reg_unary<F>("Sigmoid", plain<SigmoidF>());
  reg_unary<F>("shardrt.Silu", plain<SiluF>());
  reg_unary<F>("Softplus", plain<SoftplusF>());
  reg_unary<F>("Softsign", plain<SoftsignF>());
  reg_unary<F>("HardSwish", plain<HardSwishF>());
  reg_unary<F>("Mish", plain<MishF>());
  reg_unary<Kind::Numeric>("Relu", plain<ReluF>());
  reg_unary<F>("LeakyRelu", [](const Node& n) { return LeakyReluF{n.attr_f("alpha", 0.01f)}; });
  reg_unary<F>("Elu", [](const Node& n) { return EluF{n.attr_f("alpha", 1.0f)}; });
  reg_unary<F>("Selu", [](const Node& n) {
    return SeluF{n.attr_f("alpha", 1.67326319217681884765625f), n.attr_f("gamma", 1.05070102214813232421875f)};
  });
  reg_unary<F>("Celu", [](const Node& n) { return CeluF{n.attr_f("alpha", 1.0f)}; });
  reg_unary<F>("HardSigmoid", [](const Node& n) { return HardSigmoidF{n.attr_f("alpha", 0.2f), n.attr_f("beta", 0.5f)}; });
  reg_unary<F>("ThresholdedRelu", [](const Node& n) { return ThresholdedReluF{n.attr_f("alpha", 1.0f)}; });
  reg_unary<Kind::Numeric>("Shrink", [](const Node& n) { return ShrinkF{n.attr_f("bias", 0.0f), n.attr_f("lambd", 0.5f)}; });
  // Two functors (not one with a branch inside) so each kernel stays branch-free.
  register_kernel("Gelu", [](KernelCtx& c) {
    const DevTensor& x = *c.in[0];
    DevTensor& y = *c.out[0];
    bool tanh_approx = c.node.attr_s("approximate", "none") == "tanh";
    dispatch(c, x.dtype, [&](auto tg) {
      using S = typename decltype(tg)::type;
      if constexpr (is_float_s<S>) {
        if (tanh_approx) launch_unary<S, S>(c, x, y, GeluTanhF{});
        else launch_unary<S, S>(c, x, y, GeluErfF{});
      } else {
        type_error(c, x.dtype);
      }
    });
  });
}

}  // namespace shardrt::cuda::ew
