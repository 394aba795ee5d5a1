// CPU kernels of shardrt.Linear (activation swiglu included), shardrt.Silu and
// shardrt.SwiGLU. Half types compute in fp32
// (one conversion in, one out); fp64 computes in fp64. The GEMM goes through gemm.h.
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/elementwise_impl.h"
#include "backends/cpu/gemm.h"

namespace shardrt::cpu {

namespace {

enum class Act { None, Relu, Gelu, GeluTanh, Silu };

Act parse_act(const KernelCtx& c) {
  std::string a = c.node.attr_s("activation", "none");
  if (a == "none") return Act::None;
  if (a == "relu") return Act::Relu;
  if (a == "gelu") return Act::Gelu;
  if (a == "gelu_tanh") return Act::GeluTanh;
  if (a == "silu") return Act::Silu;
  c.fail("activation '" + a + "' is not supported (none|relu|gelu|gelu_tanh|silu)");
}

template <class T>
inline T apply_act(Act a, T x) {
  switch (a) {
    case Act::None: return x;
    case Act::Relu: return x > T(0) ? x : T(0);
    case Act::Gelu: return T(0.5) * x * (T(1) + std::erf(x * T(0.70710678118654752440)));
    case Act::GeluTanh: {
      const T k = T(0.79788456080286535588);  // sqrt(2/pi)
      return T(0.5) * x * (T(1) + std::tanh(k * (x + T(0.044715) * x * x * x)));
    }
    case Act::Silu: return x / (T(1) + std::exp(-x));
  }
  return x;
}

// y[M,N] += bias (per column), then the activation; rows spread over the cores.
template <class T>
void epilogue(T* y, int64_t M, int64_t N, const T* bias, Act act) {
  if (!bias && act == Act::None) return;
  parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, N)), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      T* r = y + i * N;
      if (bias)
        for (int64_t j = 0; j < N; ++j) r[j] += bias[j];
      if (act != Act::None)
        for (int64_t j = 0; j < N; ++j) r[j] = apply_act(act, r[j]);
    }
  });
}

// fp32 activations written without calls or branches, so the epilogue loops vectorise
// (std::erf / std::exp per element cost as much as a third of a GELU layer's GEMM).
// erfc by the Chebyshev fit of Numerical Recipes (fractional error < 1.2e-7 everywhere),
// evaluated on |z| and reflected, so GELU keeps its relative accuracy in the negative tail.
inline float erfc_f(float z) {
  const float a = std::fabs(z);
  const float t = 1.0f / (1.0f + 0.5f * a);
  const float p =
      -a * a - 1.26551223f +
      t * (1.00002368f + t * (0.37409196f + t * (0.09678418f + t * (-0.18628806f + t * (0.27886807f +
      t * (-1.13520398f + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
  const float r = t * fast_expf(p);
  return z >= 0.f ? r : 2.0f - r;
}

inline float act_f32(Act a, float x) {
  switch (a) {
    case Act::None: return x;
    case Act::Relu: return x > 0.f ? x : 0.f;
    case Act::Gelu: return 0.5f * x * erfc_f(-x * 0.70710678118654752f);
    case Act::GeluTanh: {
      // 0.5x(1+tanh(u)) == x·sigmoid(2u): no cancellation for negative x.
      const float u = 0.79788456080286535588f * (x + 0.044715f * x * x * x);
      return x / (1.0f + fast_expf(-2.0f * u));
    }
    case Act::Silu: return x / (1.0f + fast_expf(-x));
  }
  return x;
}

// Bias and activation on the block C[i0:i1, j0:j1] (row stride N); one loop per
// activation so that each vectorises.
template <Act A>
void epilogue_block_act(float* y, int64_t N, int64_t i0, int64_t i1, int64_t j0, int64_t j1, const float* bias) {
  for (int64_t i = i0; i < i1; ++i) {
    float* r = y + i * N;
    if (bias)
      for (int64_t j = j0; j < j1; ++j) r[j] = act_f32(A, r[j] + bias[j]);
    else
      for (int64_t j = j0; j < j1; ++j) r[j] = act_f32(A, r[j]);
  }
}

void epilogue_block(float* y, int64_t N, int64_t i0, int64_t i1, int64_t j0, int64_t j1, const float* bias, Act act) {
  switch (act) {
    case Act::None: epilogue_block_act<Act::None>(y, N, i0, i1, j0, j1, bias); return;
    case Act::Relu: epilogue_block_act<Act::Relu>(y, N, i0, i1, j0, j1, bias); return;
    case Act::Gelu: epilogue_block_act<Act::Gelu>(y, N, i0, i1, j0, j1, bias); return;
    case Act::GeluTanh: epilogue_block_act<Act::GeluTanh>(y, N, i0, i1, j0, j1, bias); return;
    case Act::Silu: epilogue_block_act<Act::Silu>(y, N, i0, i1, j0, j1, bias); return;
  }
}

std::vector<float> as_f32(const Tensor& t) {
  std::vector<float> v(static_cast<size_t>(t.numel()));
  to_f32(t.dtype(), t.raw(), v.data(), t.numel());
  return v;
}

// Rows [i0, i1) of Y[M, N] = silu(S[:, :N]) · S[:, N:2N] from the [M, 2N] pre-activations S
// (bias already added).
template <class T>
void swiglu_rows(const T* s, T* y, int64_t N, int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) {
    const T* g = s + i * 2 * N;
    const T* u = g + N;
    T* r = y + i * N;
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t j = 0; j < N; ++j) r[j] = act_f32(Act::Silu, g[j]) * u[j];
    } else {
      for (int64_t j = 0; j < N; ++j) r[j] = g[j] / (T(1) + std::exp(-g[j])) * u[j];
    }
  }
}

// activation "swiglu": W packs the gate projection's N outputs then the up projection's N
// (rows of [2N, K] with trans_b, columns of [K, 2N] without), B likewise [2N]; Y [..., N] =
// silu(X·Wg + Bg) · (X·Wu + Bu). One GEMM into a [M, 2N] scratch, then the combine.
void linear_swiglu(KernelCtx& c, const Tensor& X, const Tensor& W, const Tensor* B, Tensor& Y, bool tb) {
  const DType t = X.dtype();
  const int64_t K = X.dim(-1);
  const int64_t N = Y.dim(-1), N2 = 2 * N;
  if (W.rank() != 2 || (tb ? W.dim(0) : W.dim(1)) != N2 || (tb ? W.dim(1) : W.dim(0)) != K)
    c.fail("activation swiglu: W must be " + std::string(tb ? "[2N, K]" : "[K, 2N]") + " with N = " +
           std::to_string(N) + ", K = " + std::to_string(K));
  if (B && B->numel() != N2) c.fail("activation swiglu: B must have 2N = " + std::to_string(N2) + " elements");
  const int64_t M = K > 0 ? X.numel() / K : Y.numel() / std::max<int64_t>(1, N);
  if (M == 0 || N == 0) return;
  const int64_t ldb = tb ? K : N2;
  const int64_t grain = std::max<int64_t>(1, 16384 / N2);
  auto add_bias = [&](auto* s, const auto* b) {
    if (!b) return;
    parallel_for(M, grain, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = 0; j < N2; ++j) s[i * N2 + j] += b[j];
    });
  };
  switch (t) {
    case DType::F64: {
      std::vector<double> s(static_cast<size_t>(M * N2), 0.0);
      if (K > 0) gemm_typed(DType::F64, false, tb, M, N2, K, 1.f, X.raw(), K, W.raw(), ldb, 0.f, s.data(), N2);
      add_bias(s.data(), B ? B->data<double>() : nullptr);
      double* y = Y.data<double>();
      parallel_for(M, grain, [&](int64_t i0, int64_t i1) { swiglu_rows(s.data(), y, N, i0, i1); });
      return;
    }
    case DType::F32:
    case DType::F16:
    case DType::BF16: {
      std::vector<float> xf, wf, bf;
      const float* x = nullptr;
      const float* w = nullptr;
      const float* b = nullptr;
      if (t == DType::F32) {
        x = X.data<float>();
        w = W.data<float>();
        b = B ? B->data<float>() : nullptr;
      } else {
        xf = as_f32(X);
        wf = as_f32(W);
        if (B) bf = as_f32(*B);
        x = xf.data();
        w = wf.data();
        b = B ? bf.data() : nullptr;
      }
      std::vector<float> s(static_cast<size_t>(M * N2), 0.f);
      if (K > 0) gemm_f32(false, tb, M, N2, K, 1.f, x, K, w, ldb, 0.f, s.data(), N2);
      add_bias(s.data(), b);
      if (t == DType::F32) {
        float* y = Y.data<float>();
        parallel_for(M, grain, [&](int64_t i0, int64_t i1) { swiglu_rows(s.data(), y, N, i0, i1); });
      } else {
        char* y = static_cast<char*>(Y.raw());
        parallel_for(M, grain, [&](int64_t i0, int64_t i1) {
          std::vector<float> r(static_cast<size_t>(N));
          for (int64_t i = i0; i < i1; ++i) {
            swiglu_rows(s.data() + i * N2, r.data(), N, 0, 1);
            from_f32(t, r.data(), y + size_t(i * N) * 2, N);  // both half types are 2 bytes
          }
        });
      }
      return;
    }
    default: c.fail(std::string("unsupported dtype ") + dtype_name(t));
  }
}

void linear_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  const Tensor& W = *c.in[1];
  const Tensor* B = c.input(2);
  Tensor& Y = *c.out[0];
  const bool tb = c.node.attr_i("trans_b", 0) != 0;
  if (c.node.attr_s("activation", "none") == "swiglu") {
    if (W.dtype() != X.dtype() || (B && B->dtype() != X.dtype())) c.fail("X, W and B must have one dtype");
    linear_swiglu(c, X, W, B, Y, tb);
    return;
  }
  const Act act = parse_act(c);
  const DType t = X.dtype();
  if (W.dtype() != t || (B && B->dtype() != t)) c.fail("X, W and B must have one dtype");
  const int64_t K = X.dim(-1);
  const int64_t N = Y.dim(-1);
  const int64_t M = K > 0 ? X.numel() / K : (N > 0 ? Y.numel() / N : 0);
  const int64_t ldb = tb ? K : N;
  if (M == 0 || N == 0) return;

  switch (t) {
    case DType::F32: {
      // Bias and activation run on each finished block of Y inside the GEMM (still in cache).
      float* y = Y.data<float>();
      const float* bias = B ? B->data<float>() : nullptr;
      GemmEpilogue epi;
      if (bias || act != Act::None)
        epi = [=](int64_t i0, int64_t i1, int64_t j0, int64_t j1) { epilogue_block(y, N, i0, i1, j0, j1, bias, act); };
      gemm_f32_epilogue(false, tb, M, N, K, 1.f, X.data<float>(), K, W.data<float>(), ldb, 0.f, y, N, epi);
      return;
    }
    case DType::F64:
      gemm_typed(DType::F64, false, tb, M, N, K, 1.f, X.raw(), K, W.raw(), ldb, 0.f, Y.raw(), N);
      epilogue(Y.data<double>(), M, N, B ? B->data<double>() : nullptr, act);
      return;
    case DType::F16:
    case DType::BF16: {
      std::vector<float> x = as_f32(X), w = as_f32(W), y(static_cast<size_t>(M * N));
      std::vector<float> b = B ? as_f32(*B) : std::vector<float>{};
      gemm_f32(false, tb, M, N, K, 1.f, x.data(), K, w.data(), ldb, 0.f, y.data(), N);
      epilogue(y.data(), M, N, B ? b.data() : nullptr, act);
      from_f32(t, y.data(), Y.raw(), M * N);
      return;
    }
    default: c.fail(std::string("unsupported dtype ") + dtype_name(t));
  }
}

// Elementwise over float types: f(x) for one input, f(x, y) for two equal-shaped inputs.
template <class F1, class F2>
void map_float(KernelCtx& c, F1 f32, F2 f64) {
  const Tensor& A = *c.in[0];
  const Tensor* Bt = c.input(1);
  Tensor& Y = *c.out[0];
  const int64_t n = Y.numel();
  if (A.numel() != n || (Bt && Bt->numel() != n)) c.fail("inputs and output differ in size");
  const DType t = A.dtype();
  if (Bt && Bt->dtype() != t) c.fail("inputs have different dtypes");
  const int64_t grain = 16384;
  switch (t) {
    case DType::F32: {
      const float* a = A.data<float>();
      const float* b = Bt ? Bt->data<float>() : nullptr;
      float* y = Y.data<float>();
      parallel_for(n, grain, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) y[i] = f32(a[i], b ? b[i] : 0.f);
      });
      return;
    }
    case DType::F64: {
      const double* a = A.data<double>();
      const double* b = Bt ? Bt->data<double>() : nullptr;
      double* y = Y.data<double>();
      parallel_for(n, grain, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) y[i] = f64(a[i], b ? b[i] : 0.0);
      });
      return;
    }
    case DType::F16:
    case DType::BF16: {
      parallel_for(n, grain, [&](int64_t s, int64_t e) {
        const int64_t m = e - s;
        std::vector<float> a(static_cast<size_t>(m)), b(Bt ? size_t(m) : 0), y(static_cast<size_t>(m));
        const size_t off = size_t(s) * 2;  // both half types are 2 bytes
        to_f32(t, static_cast<const char*>(A.raw()) + off, a.data(), m);
        if (Bt) to_f32(t, static_cast<const char*>(Bt->raw()) + off, b.data(), m);
        for (int64_t i = 0; i < m; ++i) y[size_t(i)] = f32(a[size_t(i)], Bt ? b[size_t(i)] : 0.f);
        from_f32(t, y.data(), static_cast<char*>(Y.raw()) + off, m);
      });
      return;
    }
    default: c.fail(std::string("unsupported dtype ") + dtype_name(t));
  }
}

template <class T>
inline T silu(T x) { return x / (T(1) + std::exp(-x)); }

}  // namespace

void register_fused_linear_kernels() {
  register_kernel("shardrt.Linear", linear_kernel);
  register_kernel("shardrt.Silu", [](KernelCtx& c) {
    map_float(c, [](float x, float) { return silu(x); }, [](double x, double) { return silu(x); });
  });
  register_kernel("shardrt.SwiGLU", [](KernelCtx& c) {
    map_float(c, [](float g, float u) { return silu(g) * u; }, [](double g, double u) { return silu(g) * u; });
  });
}

}  // namespace shardrt::cpu
