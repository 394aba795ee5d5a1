// CUDA kernels of the plain unary maps: exp/log/sqrt, trig and hyperbolic functions,
// rounding, sign-related ops, Not/BitwiseNot, IsNaN/IsInf. Same formulas as the CPU kernels.
#include "backends/cuda/elementwise_common.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace shardrt::cuda::ew {

namespace {

SHARDRT_EW_UNARY(ExpF, return m_exp(x));
SHARDRT_EW_UNARY(LogF, return m_log(x));
SHARDRT_EW_UNARY(SqrtF, return m_sqrt(x));
SHARDRT_EW_UNARY(ReciprocalF, return V(1) / x);
SHARDRT_EW_UNARY(SinF, return m_sin(x));
SHARDRT_EW_UNARY(CosF, return m_cos(x));
SHARDRT_EW_UNARY(TanF, return m_tan(x));
SHARDRT_EW_UNARY(AsinF, return m_asin(x));
SHARDRT_EW_UNARY(AcosF, return m_acos(x));
SHARDRT_EW_UNARY(AtanF, return m_atan(x));
SHARDRT_EW_UNARY(SinhF, return m_sinh(x));
SHARDRT_EW_UNARY(CoshF, return m_cosh(x));
SHARDRT_EW_UNARY(AsinhF, return m_asinh(x));
SHARDRT_EW_UNARY(AcoshF, return m_acosh(x));
SHARDRT_EW_UNARY(AtanhF, return m_atanh(x));
SHARDRT_EW_UNARY(TanhF, return m_tanh(x));
SHARDRT_EW_UNARY(ErfF, return m_erf(x));
SHARDRT_EW_UNARY(FloorF, return m_floor(x));
SHARDRT_EW_UNARY(CeilF, return m_ceil(x));
// Halves round to even, as ONNX specifies (rint in the default rounding mode).
SHARDRT_EW_UNARY(RoundF, return m_rint(x));
SHARDRT_EW_UNARY(AbsF, if constexpr (std::is_unsigned_v<V>) return x; else return x < V(0) ? V(-x) : x);
SHARDRT_EW_UNARY(NegF, return V(-x));
SHARDRT_EW_UNARY(SignF, if constexpr (std::is_unsigned_v<V>) return x > V(0) ? V(1) : x;
                 else return x > V(0) ? V(1) : x < V(0) ? V(-1) : x);
SHARDRT_EW_UNARY(NotF, return !x);
SHARDRT_EW_UNARY(BitwiseNotF, return V(~x));

struct IsNaNF {
  template <class V> __device__ bool operator()(V x) const { return x != x; }
};
struct IsInfF {
  bool neg, pos;
  template <class V> __device__ bool operator()(V x) const { return m_isinf(x) && ((x > V(0) && pos) || (x < V(0) && neg)); }
};

// Float -> bool predicates.
template <class Make> void reg_pred(const char* op, Make make) {
  register_kernel(op, [make](KernelCtx& c) {
    const DevTensor& x = *c.in[0];
    DevTensor& y = *c.out[0];
    if (y.dtype != DType::Bool) c.fail("output must be bool");
    dispatch(c, x.dtype, [&](auto tg) {
      using S = typename decltype(tg)::type;
      if constexpr (is_float_s<S>) launch_unary<S, bool8>(c, x, y, make(c.node));
      else type_error(c, x.dtype);
    });
  });
}

template <class F> auto plain() {
  return [](const Node&) { return F{}; };
}

}  // namespace

void register_unary_math_kernels() {
  constexpr Kind F = Kind::Float, N = Kind::Numeric;
  reg_unary<F>("Exp", plain<ExpF>());
  reg_unary<F>("Log", plain<LogF>());
  reg_unary<F>("Sqrt", plain<SqrtF>());
  reg_unary<F>("Reciprocal", plain<ReciprocalF>());
  reg_unary<F>("Sin", plain<SinF>());
  reg_unary<F>("Cos", plain<CosF>());
  reg_unary<F>("Tan", plain<TanF>());
  reg_unary<F>("Asin", plain<AsinF>());
  reg_unary<F>("Acos", plain<AcosF>());
  reg_unary<F>("Atan", plain<AtanF>());
  reg_unary<F>("Sinh", plain<SinhF>());
  reg_unary<F>("Cosh", plain<CoshF>());
  reg_unary<F>("Asinh", plain<AsinhF>());
  reg_unary<F>("Acosh", plain<AcoshF>());
  reg_unary<F>("Atanh", plain<AtanhF>());
  reg_unary<F>("Tanh", plain<TanhF>());
  reg_unary<F>("Erf", plain<ErfF>());
  reg_unary<F>("Floor", plain<FloorF>());
  reg_unary<F>("Ceil", plain<CeilF>());
  reg_unary<F>("Round", plain<RoundF>());
  reg_unary<N>("Abs", plain<AbsF>());
  reg_unary<N>("Neg", plain<NegF>());
  reg_unary<N>("Sign", plain<SignF>());
  reg_unary<Kind::Bool>("Not", plain<NotF>());
  reg_unary<Kind::Integer>("BitwiseNot", plain<BitwiseNotF>());
  reg_pred("IsNaN", plain<IsNaNF>());
  reg_pred("IsInf", [](const Node& n) {
    return IsInfF{n.attr_i("detect_negative", 1) != 0, n.attr_i("detect_positive", 1) != 0};
  });
}

}  // namespace shardrt::cuda::ew
