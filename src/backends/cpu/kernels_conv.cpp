// Conv (N-d, groups incl. depthwise, dilations, strides, pads, auto_pad) as im2col + sgemm
// per (batch, group), and ConvTranspose (N-d) as sgemm + col2im. fp16/bf16/fp64 compute in
// fp32.
#include <algorithm>

#include "backends/cpu/kernels_nn_util.h"
#include "ir/ops/nn_ops_window.h"

namespace shardrt::cpu::nn {

namespace {

// Below this much GEMM work per (batch, group) task the tasks run in parallel (OpenBLAS would
// run each on one thread anyway); above it they run in turn with OpenBLAS's threading.
constexpr int64_t kTaskParallelWork = 1 << 20;

int64_t prod(const std::vector<int64_t>& v) {
  int64_t p = 1;
  for (int64_t x : v) p *= x;
  return p;
}

// col[(c*KK + kk) * P + p] = x[c, in(p, kk)] or 0 in the padding. Rows of the last spatial
// axis are done in one inner loop.
void im2col(const float* x, int64_t channels, const WindowGeom& g, float* col) {
  const size_t ns = g.kernel.size();
  const int64_t KK = prod(g.kernel), P = prod(g.out), I = prod(g.in);
  const size_t L = ns - 1;
  const int64_t OL = g.out[L], IL = g.in[L], SL = g.strides[L];
  parallel_for(channels * KK, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, P)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> kidx(ns), oidx(ns);
    for (int64_t r = b; r < e; ++r) {
      const int64_t ch = r / KK;
      int64_t rem = r % KK;
      for (size_t d = ns; d-- > 0;) { kidx[d] = rem % g.kernel[d]; rem /= g.kernel[d]; }
      const float* xc = x + ch * I;
      float* dst = col + r * P;
      std::fill(oidx.begin(), oidx.end(), 0);
      const int64_t base = kidx[L] * g.dilations[L] - g.pad_begin[L];
      for (int64_t q = 0; q < P / OL; ++q) {
        bool valid = true;
        int64_t off = 0;
        for (size_t d = 0; d < L; ++d) {
          const int64_t ic = oidx[d] * g.strides[d] - g.pad_begin[d] + kidx[d] * g.dilations[d];
          if (ic < 0 || ic >= g.in[d]) { valid = false; break; }
          off = off * g.in[d] + ic;
        }
        float* drow = dst + q * OL;
        if (!valid) {
          std::fill(drow, drow + OL, 0.f);
        } else {
          const float* xrow = xc + off * IL;
          for (int64_t o = 0; o < OL; ++o) {
            const int64_t ic = o * SL + base;
            drow[o] = (ic >= 0 && ic < IL) ? xrow[ic] : 0.f;
          }
        }
        for (size_t d = L; d-- > 0;) {
          if (++oidx[d] < g.out[d]) break;
          oidx[d] = 0;
        }
      }
    }
  });
}

// y[m, out(i, kk)] += col[(m*KK + kk) * I + i] over the input positions i; one output channel
// per task so tasks never collide.
void col2im(const float* col, int64_t channels, const WindowGeom& g, float* y) {
  const size_t ns = g.kernel.size();
  const int64_t KK = prod(g.kernel), P = prod(g.out), I = prod(g.in);
  const size_t L = ns - 1;
  const int64_t IL = g.in[L], OLn = g.out[L], SL = g.strides[L];
  parallel_for(channels, 1, [&](int64_t b, int64_t e) {
    std::vector<int64_t> kidx(ns), iidx(ns);
    for (int64_t m = b; m < e; ++m) {
      float* ym = y + m * P;
      for (int64_t kk = 0; kk < KK; ++kk) {
        int64_t rem = kk;
        for (size_t d = ns; d-- > 0;) { kidx[d] = rem % g.kernel[d]; rem /= g.kernel[d]; }
        const float* src = col + (m * KK + kk) * I;
        std::fill(iidx.begin(), iidx.end(), 0);
        const int64_t base = kidx[L] * g.dilations[L] - g.pad_begin[L];
        for (int64_t q = 0; q < I / IL; ++q) {
          bool valid = true;
          int64_t off = 0;
          for (size_t d = 0; d < L; ++d) {
            const int64_t oc = iidx[d] * g.strides[d] - g.pad_begin[d] + kidx[d] * g.dilations[d];
            if (oc < 0 || oc >= g.out[d]) { valid = false; break; }
            off = off * g.out[d] + oc;
          }
          if (valid) {
            float* yrow = ym + off * OLn;
            const float* srow = src + q * IL;
            for (int64_t i = 0; i < IL; ++i) {
              const int64_t oc = i * SL + base;
              if (oc >= 0 && oc < OLn) yrow[oc] += srow[i];
            }
          }
          for (size_t d = L; d-- > 0;) {
            if (++iidx[d] < g.in[d]) break;
            iidx[d] = 0;
          }
        }
      }
    }
  });
}

std::vector<int64_t> spatial_dims(const Tensor& t) {
  return std::vector<int64_t>(t.dims().begin() + 2, t.dims().end());
}

void check_kernel_attr(KernelCtx& c, const std::vector<int64_t>& k) {
  if (c.node.has_attr("kernel_shape") && c.node.attr_ints("kernel_shape") != k)
    c.fail("kernel_shape " + dims_str(c.node.attr_ints("kernel_shape")) + " differs from the weight's " + dims_str(k));
}

void conv_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  const Tensor& W = *c.in[1];
  const Tensor* B = c.input(2);
  Tensor& Y = *c.out[0];
  const std::vector<int64_t> k = spatial_dims(W);
  check_kernel_attr(c, k);
  WindowGeom g;
  if (auto e = window_geom(c.node, spatial_dims(X), k, false, g); !e.empty()) c.fail(e);
  if (g.out != spatial_dims(Y)) c.fail("output dims disagree with the shape rule");
  const int64_t N = X.dim(0), C = X.dim(1), M = W.dim(0), G = c.node.attr_i("group", 1);
  if (C % G != 0 || M % G != 0 || W.dim(1) * G != C) c.fail("channels do not match group " + std::to_string(G));
  const int64_t Cg = C / G, Mg = M / G, KK = prod(k), CK = Cg * KK, P = prod(g.out), I = prod(g.in);
  std::vector<float> xs, ws, bs, ys;
  const float* x = f32_view(&X, xs);
  const float* w = f32_view(&W, ws);
  const float* bias = f32_view(B, bs);
  float* y = f32_out(&Y, ys);
  if (Y.numel() == 0) return;
  bool direct = true;  // a 1x1 window with unit stride and no padding needs no im2col
  for (size_t d = 0; d < k.size(); ++d)
    direct = direct && k[d] == 1 && g.strides[d] == 1 && g.pad_begin[d] == 0 && g.pad_end[d] == 0;
  const int64_t tasks = N * G;
  auto run = [&](int64_t t, std::vector<float>& col) {
    const int64_t n = t / G, gi = t % G;
    const float* xin = x + (n * C + gi * Cg) * I;
    const float* cols = xin;
    if (!direct) {
      col.resize(static_cast<size_t>(CK * P));
      im2col(xin, Cg, g, col.data());
      cols = col.data();
    }
    float* yo = y + (n * M + gi * Mg) * P;
    gemm_f32(false, false, Mg, P, CK, 1.f, w + gi * Mg * CK, CK, cols, P, 0.f, yo, P);
    if (bias)
      for (int64_t m = 0; m < Mg; ++m) {
        const float bv = bias[gi * Mg + m];
        float* row = yo + m * P;
        for (int64_t p = 0; p < P; ++p) row[p] += bv;
      }
  };
  if (tasks > 1 && Mg * P * CK <= kTaskParallelWork) {
    parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
      std::vector<float> col;
      for (int64_t t = b; t < e; ++t) run(t, col);
    });
  } else {
    std::vector<float> col;
    for (int64_t t = 0; t < tasks; ++t) run(t, col);
  }
  finish_f32(&Y, ys);
}

void conv_transpose_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  const Tensor& W = *c.in[1];
  const Tensor* B = c.input(2);
  Tensor& Y = *c.out[0];
  const std::vector<int64_t> k = spatial_dims(W);
  check_kernel_attr(c, k);
  WindowGeom g;
  if (auto e = conv_transpose_geom(c.node, spatial_dims(X), k, g); !e.empty()) c.fail(e);
  if (g.out != spatial_dims(Y)) c.fail("output dims disagree with the shape rule");
  const int64_t N = X.dim(0), C = X.dim(1), G = c.node.attr_i("group", 1), Mg = W.dim(1), M = Mg * G;
  if (C % G != 0 || W.dim(0) != C) c.fail("channels do not match group " + std::to_string(G));
  const int64_t Cg = C / G, KK = prod(k), P = prod(g.out), I = prod(g.in);
  std::vector<float> xs, ws, bs, ys;
  const float* x = f32_view(&X, xs);
  const float* w = f32_view(&W, ws);
  const float* bias = f32_view(B, bs);
  float* y = f32_out(&Y, ys);
  if (Y.numel() == 0) return;
  std::fill(y, y + Y.numel(), 0.f);
  std::vector<float> col(static_cast<size_t>(Mg * KK * I));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t gi = 0; gi < G; ++gi) {
      // col [Mg*KK, I] = W_g^T [Mg*KK, Cg] * X_g [Cg, I]; W_g is stored [Cg, Mg*KK].
      gemm_f32(true, false, Mg * KK, I, Cg, 1.f, w + gi * Cg * Mg * KK, Mg * KK, x + (n * C + gi * Cg) * I, I, 0.f,
               col.data(), I);
      col2im(col.data(), Mg, g, y + (n * M + gi * Mg) * P);
    }
  if (bias)
    parallel_for(N * M, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float bv = bias[r % M];
        for (int64_t p = 0; p < P; ++p) y[r * P + p] += bv;
      }
    });
  finish_f32(&Y, ys);
}

}  // namespace

void register_conv_kernels() {
  register_kernel("Conv", conv_kernel);
  register_kernel("ConvTranspose", conv_transpose_kernel);
}

}  // namespace shardrt::cpu::nn
