// BatchNormalization (inference), InstanceNormalization, GroupNormalization,
// LayerNormalization (optional Mean / InvStdDev outputs) and LRN. Statistics accumulate in
// fp32 (LayerNormalization's rows) or fp64 (whole planes), whatever the input dtype.
#include <algorithm>
#include <cmath>

#include "backends/cpu/kernels_nn_util.h"

namespace shardrt::cpu::nn {

namespace {

// Sum of n floats with 8 independent accumulators, so the compiler can vectorize it without
// reassociation flags.
inline float sum8(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += x[i + j];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += x[i];
  return s;
}

inline float sqdev8(const float* x, int64_t n, float mean) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const float d = x[i + j] - mean;
      acc[j] += d * d;
    }
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += (x[i] - mean) * (x[i] - mean);
  return s;
}

// Mean and population variance of a plane, in double (planes can be large).
void plane_stats(const float* x, int64_t n, double& mean, double& var) {
  double s = 0, ss = 0;
  for (int64_t i = 0; i < n; ++i) s += x[i];
  mean = n ? s / double(n) : 0.0;
  for (int64_t i = 0; i < n; ++i) ss += (double(x[i]) - mean) * (double(x[i]) - mean);
  var = n ? ss / double(n) : 0.0;
}

void batchnorm_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const float eps = c.node.attr_f("epsilon", 1e-5f);
  if (c.node.attr_i("training_mode", 0) != 0) c.fail("training_mode=1 is not supported (inference only)");
  const int64_t N = X.dim(0), C = X.dim(1), S = (N * C) != 0 ? X.numel() / (N * C) : 0;
  std::vector<float> st[4];
  const float* p[4];
  for (int i = 0; i < 4; ++i) p[i] = f32_view(c.in[size_t(i + 1)], st[i]);
  std::vector<float> a(static_cast<size_t>(C)), b(static_cast<size_t>(C));
  for (int64_t ch = 0; ch < C; ++ch) {
    a[size_t(ch)] = float(double(p[0][ch]) / std::sqrt(double(p[3][ch]) + double(eps)));
    b[size_t(ch)] = float(double(p[1][ch]) - double(p[2][ch]) * double(a[size_t(ch)]));
  }
  std::vector<float> xs, ys;
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  parallel_for(N * C, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, S)), [&](int64_t bb, int64_t e) {
    for (int64_t r = bb; r < e; ++r) {
      const float av = a[size_t(r % C)], bv = b[size_t(r % C)];
      for (int64_t i = 0; i < S; ++i) y[r * S + i] = x[r * S + i] * av + bv;
    }
  });
  finish_f32(&Y, ys);
}

void instancenorm_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const double eps = c.node.attr_f("epsilon", 1e-5f);
  const int64_t N = X.dim(0), C = X.dim(1), S = (N * C) != 0 ? X.numel() / (N * C) : 0;
  std::vector<float> ss, bs, xs, ys;
  const float* scale = f32_view(c.in[1], ss);
  const float* bias = f32_view(c.in[2], bs);
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  parallel_for(N * C, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      double mean, var;
      plane_stats(x + r * S, S, mean, var);
      const float inv = float(1.0 / std::sqrt(var + eps));
      const float a = inv * scale[r % C], bb = bias[r % C] - float(mean) * a;
      for (int64_t i = 0; i < S; ++i) y[r * S + i] = x[r * S + i] * a + bb;
    }
  });
  finish_f32(&Y, ys);
}

// scale/bias per group (opset 18: num_groups elements) or per channel (opset 21: C elements).
void groupnorm_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const double eps = c.node.attr_f("epsilon", 1e-5f);
  const int64_t G = c.node.attr_i("num_groups");
  const int64_t N = X.dim(0), C = X.dim(1), S = (N * C) != 0 ? X.numel() / (N * C) : 0;
  if (G < 1 || C % G != 0) c.fail("channels not divisible by num_groups");
  const int64_t Cg = C / G;
  const int64_t ns = c.in[1]->numel();
  if (ns != C && ns != G) c.fail("scale has " + std::to_string(ns) + " elements: need num_groups or channels");
  const bool per_channel = ns == C;
  std::vector<float> ss, bs, xs, ys;
  const float* scale = f32_view(c.in[1], ss);
  const float* bias = f32_view(c.in[2], bs);
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  parallel_for(N * G, 1, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const int64_t g = r % G;
      const float* xg = x + r * Cg * S;
      float* yg = y + r * Cg * S;
      double mean, var;
      plane_stats(xg, Cg * S, mean, var);
      const float inv = float(1.0 / std::sqrt(var + eps));
      for (int64_t ch = 0; ch < Cg; ++ch) {
        const int64_t pi = per_channel ? g * Cg + ch : g;
        const float a = inv * scale[pi], bb = bias[pi] - float(mean) * a;
        for (int64_t i = 0; i < S; ++i) yg[ch * S + i] = xg[ch * S + i] * a + bb;
      }
    }
  });
  finish_f32(&Y, ys);
}

// Expands a scale/bias tensor that broadcasts to the normalized dims into `inner` floats
// (returns the tensor's own data when it already has that many fp32 values).
const float* expand_param(const Tensor* t, const Dims& norm_dims, int64_t inner, std::vector<float>& store) {
  if (!t) return nullptr;
  if (t->numel() == inner && t->dtype() == DType::F32) return t->data<float>();
  std::vector<float> conv;
  const float* src = f32_view(t, conv);
  if (t->numel() == inner) {
    store.assign(src, src + inner);
    return store.data();
  }
  store.resize(static_cast<size_t>(inner));
  const Dims& td = t->dims();
  const size_t r = norm_dims.size();
  for (int64_t i = 0; i < inner; ++i) {
    int64_t rem = i, off = 0, stride = 1;
    for (size_t d = r; d-- > 0;) {
      const int64_t idx = rem % norm_dims[d];
      rem /= norm_dims[d];
      const size_t k = td.size() + d;  // t's dim aligned with norm dim d
      if (k >= r) {
        const int64_t tdim = td[k - r];
        off += (tdim == 1 ? 0 : idx) * stride;
        stride *= tdim;
      }
    }
    store[size_t(i)] = src[off];
  }
  return store.data();
}

void layernorm_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const int64_t r = X.rank();
  int64_t axis = c.node.attr_i("axis", -1);
  if (axis < 0) axis += r;
  const float eps = c.node.attr_f("epsilon", 1e-5f);
  const Dims norm_dims(X.dims().begin() + axis, X.dims().end());
  const int64_t inner = numel(norm_dims), rows = inner ? X.numel() / inner : 0;
  std::vector<float> ss, bs;
  const float* scale = expand_param(c.input(1), norm_dims, inner, ss);
  const float* bias = expand_param(c.input(2), norm_dims, inner, bs);
  float* mean_out = c.out.size() > 1 && c.out[1] ? c.out[1]->data<float>() : nullptr;
  float* inv_out = c.out.size() > 2 && c.out[2] ? c.out[2]->data<float>() : nullptr;
  const DType t = X.dtype();
  const bool f32 = t == DType::F32;
  const size_t es = dtype_size(t);
  parallel_for(rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, inner)), [&](int64_t b, int64_t e) {
    std::vector<float> xin, yout;  // fp32 staging of a row for half types
    if (!f32) { xin.resize(static_cast<size_t>(inner)); yout.resize(static_cast<size_t>(inner)); }
    for (int64_t row = b; row < e; ++row) {
      const float* x;
      float* y;
      if (f32) {
        x = X.data<float>() + row * inner;
        y = Y.data<float>() + row * inner;
      } else {
        to_f32(t, static_cast<const char*>(X.raw()) + size_t(row * inner) * es, xin.data(), inner);
        x = xin.data();
        y = yout.data();
      }
      const float mean = inner ? sum8(x, inner) / float(inner) : 0.f;
      const float var = inner ? sqdev8(x, inner, mean) / float(inner) : 0.f;
      const float inv = 1.f / std::sqrt(var + eps);
      if (scale && bias)
        for (int64_t i = 0; i < inner; ++i) y[i] = (x[i] - mean) * inv * scale[i] + bias[i];
      else if (scale)
        for (int64_t i = 0; i < inner; ++i) y[i] = (x[i] - mean) * inv * scale[i];
      else
        for (int64_t i = 0; i < inner; ++i) y[i] = (x[i] - mean) * inv;
      if (!f32) from_f32(t, y, static_cast<char*>(Y.raw()) + size_t(row * inner) * es, inner);
      if (mean_out) mean_out[row] = mean;
      if (inv_out) inv_out[row] = inv;
    }
  });
}

// y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta.
void lrn_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const float alpha = c.node.attr_f("alpha", 1e-4f), beta = c.node.attr_f("beta", 0.75f);
  const float bias = c.node.attr_f("bias", 1.f);
  const int64_t size = c.node.attr_i("size");
  const int64_t N = X.dim(0), C = X.dim(1), S = (N * C) != 0 ? X.numel() / (N * C) : 0;
  const int64_t lo = (size - 1) / 2, hi = size - 1 - lo;  // channels below / above c
  std::vector<float> xs, ys;
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  parallel_for(N * C, 1, [&](int64_t b, int64_t e) {
    std::vector<float> sq(static_cast<size_t>(S));
    for (int64_t r = b; r < e; ++r) {
      const int64_t n = r / C, ch = r % C;
      std::fill(sq.begin(), sq.end(), 0.f);
      for (int64_t k = std::max<int64_t>(0, ch - lo); k <= std::min(C - 1, ch + hi); ++k) {
        const float* xk = x + (n * C + k) * S;
        for (int64_t i = 0; i < S; ++i) sq[size_t(i)] += xk[i] * xk[i];
      }
      for (int64_t i = 0; i < S; ++i)
        y[r * S + i] = x[r * S + i] / std::pow(bias + alpha / float(size) * sq[size_t(i)], beta);
    }
  });
  finish_f32(&Y, ys);
}

}  // namespace

void register_norm_kernels() {
  register_kernel("BatchNormalization", batchnorm_kernel);
  register_kernel("InstanceNormalization", instancenorm_kernel);
  register_kernel("GroupNormalization", groupnorm_kernel);
  register_kernel("LayerNormalization", layernorm_kernel);
  register_kernel("LRN", lrn_kernel);
}

}  // namespace shardrt::cpu::nn
