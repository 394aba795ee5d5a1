// CUDA kernels of Pow (base and exponent types may differ) and the variadic Sum, Mean,
// Max, Min (numpy broadcasting of any number of inputs).
#include "backends/cuda/elementwise_common.cuh"
#include "backends/cuda/elementwise_math.cuh"

namespace shardrt::cuda::ew {

namespace {

// Float bases compute in their own precision (the exponent arrives as float, or double for
// fp64); integer bases in double, truncated back to the base type, as the CPU kernel does.
// An integer base with a whole exponent has a whole result, which glibc's pow gives exactly
// but CUDA's (2 ulp) may miss by an ulp below: rint restores it before the truncation.
struct PowF {
  template <class V, class W> __device__ auto operator()(V x, W y) const {
    if constexpr (std::is_floating_point_v<V>) {
      return m_pow(x, V(y));
    } else {
      double e = double(y), r = m_pow(double(x), e);
      return e == m_rint(e) ? m_rint(r) : r;
    }
  }
};
SHARDRT_EW_UNARY(SquareF, return x * x);
SHARDRT_EW_UNARY(CubeF, return x * x * x);
SHARDRT_EW_UNARY(IdentityF, return x);
SHARDRT_EW_UNARY(RootF, return m_sqrt(x));

void pow_kernel(KernelCtx& c) {
  const DevTensor& a = *c.in[0];
  const DevTensor& b = *c.in[1];
  DevTensor& y = *c.out[0];
  if (y.dtype != a.dtype) c.fail("output type differs from the base's");
  if (!(is_float(b.dtype) || b.dtype == DType::I64 || b.dtype == DType::I32 || b.dtype == DType::I8 ||
        b.dtype == DType::U8))
    type_error(c, b.dtype);
  dispatch(c, a.dtype, [&](auto ta) {
    using A = typename decltype(ta)::type;
    if constexpr (accepts<A>(Kind::Numeric)) {
      if (y.numel() == 0) return;
      if constexpr (std::is_same_v<compute_t<A>, float>) {
        // Common constant exponents from decomposed norms and GELU: no pow call at all.
        const Tensor* e = c.host_input(1);
        if (e && b.numel() == 1 && y.dims == a.dims) {
          double v = e->get_f(0);
          if (v == 2.0) return launch_unary<A, A>(c, a, y, SquareF{});
          if (v == 3.0) return launch_unary<A, A>(c, a, y, CubeF{});
          if (v == 1.0) return launch_unary<A, A>(c, a, y, IdentityF{});
          if (v == 0.5) return launch_unary<A, A>(c, a, y, RootF{});
        }
      }
      // The exponent in the type the base computes with (float, or double for fp64 and
      // integer bases), converted into the workspace when it has another type.
      using E = std::conditional_t<std::is_same_v<compute_t<A>, float>, float, double>;
      constexpr DType edt = std::is_same_v<E, float> ? DType::F32 : DType::F64;
      DevTensor eb{edt, b.dims, b.data};
      if (b.dtype != edt && b.numel() > 0) {
        eb.data = c.res.workspace(size_t(b.numel()) * sizeof(E));
        launch_cast(c, b.dtype, b.data, edt, eb.data, b.numel());
      }
      launch_binary<A, E, A>(c, a, eb, y, PowF{});
    } else {
      type_error(c, a.dtype);
    }
  });
}

// ---- variadic ----

SHARDRT_EW_BINARY(SumF, V, return V(x + y));
// NaN propagates through Max/Min as in numpy.
SHARDRT_EW_BINARY(MaxF, V, return (x > y || x != x) ? x : y);
SHARDRT_EW_BINARY(MinF, V, return (x < y || x != x) ? x : y);
SHARDRT_EW_BINARY(FirstF, V, return x);
// Mean's last fold: the sum of everything, times 1/count.
struct MeanLastF {
  double inv;
  template <class V> __device__ V operator()(V x, V y) const { return V(x + y) * V(inv); }
};

// The first two inputs combine into the output, each further one folds into it in place;
// Mean scales in its last fold.
template <class F> void variadic_kernel(KernelCtx& c, bool mean) {
  DevTensor& out = *c.out[0];
  size_t k = c.in.size();
  for (size_t i = 0; i < k; ++i)
    if (!c.in[i] || c.in[i]->dtype != out.dtype) c.fail("inputs must all be present with one type");
  dispatch(c, out.dtype, [&](auto tg) {
    using S = typename decltype(tg)::type;
    if constexpr (accepts<S>(Kind::Numeric)) {
      if (mean && !is_float_s<S>) type_error(c, out.dtype);
      if (out.numel() == 0) return;
      const DevTensor& x0 = *c.in[0];
      if (k == 1) {
        if (x0.dims == out.dims) {
          if (x0.data != out.data)
            SHARDRT_CUDA_CHECK(cudaMemcpyAsync(out.data, x0.data, out.nbytes(), cudaMemcpyDeviceToDevice, c.stream()));
        } else {
          launch_binary<S, S, S>(c, x0, x0, out, FirstF{});
        }
        return;
      }
      MeanLastF last{1.0 / double(k)};
      if (mean && k == 2) launch_binary<S, S, S>(c, x0, *c.in[1], out, last);
      else launch_binary<S, S, S>(c, x0, *c.in[1], out, F{});
      for (size_t i = 2; i < k; ++i) {
        if (mean && i + 1 == k) launch_binary<S, S, S>(c, out, *c.in[i], out, last);
        else launch_binary<S, S, S>(c, out, *c.in[i], out, F{});
      }
    } else {
      type_error(c, out.dtype);
    }
  });
}

}  // namespace

void register_pow_variadic_kernels() {
  register_kernel("Pow", pow_kernel);
  register_kernel("Sum", [](KernelCtx& c) { variadic_kernel<SumF>(c, false); });
  register_kernel("Mean", [](KernelCtx& c) { variadic_kernel<SumF>(c, true); });
  register_kernel("Max", [](KernelCtx& c) { variadic_kernel<MaxF>(c, false); });
  register_kernel("Min", [](KernelCtx& c) { variadic_kernel<MinF>(c, false); });
}

}  // namespace shardrt::cuda::ew
