// MaxPool (with the optional Indices output, storage_order 0/1), AveragePool
// (count_include_pad), GlobalAveragePool, GlobalMaxPool; N-d, computed in fp32.
#include <algorithm>
#include <cmath>
#include <limits>

#include "backends/cpu/kernels_nn_util.h"
#include "ir/ops/nn_ops_window.h"

namespace shardrt::cpu::nn {

namespace {

// Per axis and output index: the input coordinates the window covers inside the input, and
// the number of window positions inside the padded extent (for count_include_pad).
struct AxisTaps {
  std::vector<std::vector<int64_t>> coords;
  std::vector<int64_t> padded_count;
};

std::vector<AxisTaps> make_taps(const WindowGeom& g) {
  std::vector<AxisTaps> t(g.kernel.size());
  for (size_t d = 0; d < g.kernel.size(); ++d) {
    t[d].coords.resize(static_cast<size_t>(g.out[d]));
    t[d].padded_count.resize(static_cast<size_t>(g.out[d]));
    for (int64_t o = 0; o < g.out[d]; ++o) {
      int64_t pc = 0;
      for (int64_t k = 0; k < g.kernel[d]; ++k) {
        const int64_t ic = o * g.strides[d] - g.pad_begin[d] + k * g.dilations[d];
        if (ic >= 0 && ic < g.in[d]) t[d].coords[size_t(o)].push_back(ic);
        if (ic >= -g.pad_begin[d] && ic < g.in[d] + g.pad_end[d]) ++pc;
      }
      t[d].padded_count[size_t(o)] = pc;
    }
  }
  return t;
}

void pool_kernel(KernelCtx& c, bool is_max) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  Tensor* Ind = c.out.size() > 1 ? c.out[1] : nullptr;
  WindowGeom g;
  const std::vector<int64_t> in(X.dims().begin() + 2, X.dims().end());
  if (auto e = window_geom(c.node, in, c.node.attr_ints("kernel_shape"), c.node.attr_i("ceil_mode", 0) != 0, g);
      !e.empty())
    c.fail(e);
  const size_t ns = in.size();
  const int64_t planes = X.dim(0) * X.dim(1);
  int64_t I = 1, P = 1;
  for (size_t d = 0; d < ns; ++d) { I *= g.in[d]; P *= g.out[d]; }
  if (Y.numel() == 0) return;
  const auto taps = make_taps(g);
  const bool include_pad = c.node.attr_i("count_include_pad", 0) != 0;
  const bool col_major = c.node.attr_i("storage_order", 0) != 0;
  std::vector<int64_t> cm_stride(ns, 1);  // column-major strides for storage_order 1
  for (size_t d = 1; d < ns; ++d) cm_stride[d] = cm_stride[d - 1] * g.in[d - 1];
  std::vector<float> xs, ys;
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  int64_t* ind = Ind ? Ind->data<int64_t>() : nullptr;
  parallel_for(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, P)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> o(ns);
    for (int64_t pl = b; pl < e; ++pl) {
      const float* xp = x + pl * I;
      std::fill(o.begin(), o.end(), 0);
      for (int64_t p = 0; p < P; ++p) {
        float best = -std::numeric_limits<float>::infinity(), sum = 0;
        int64_t best_off = -1, best_cm = 0, count = 1, padded = 1;
        // Walks the window's product of per-axis coordinates (row-major offset `off`,
        // column-major offset `cm`).
        auto visit = [&](auto&& self, size_t d, int64_t off, int64_t cm) -> void {
          if (d == ns) {
            const float v = xp[off];
            if (is_max) {
              if (v > best || best_off < 0) { best = v; best_off = off; best_cm = cm; }
            } else {
              sum += v;
            }
            return;
          }
          for (int64_t ic : taps[d].coords[size_t(o[d])]) self(self, d + 1, off * g.in[d] + ic, cm + ic * cm_stride[d]);
        };
        visit(visit, 0, 0, 0);
        for (size_t d = 0; d < ns; ++d) {
          count *= int64_t(taps[d].coords[size_t(o[d])].size());
          padded *= taps[d].padded_count[size_t(o[d])];
        }
        if (is_max) {
          y[pl * P + p] = best_off < 0 ? -std::numeric_limits<float>::infinity() : best;
          if (ind) ind[pl * P + p] = pl * I + (col_major ? best_cm : best_off);
        } else {
          const int64_t div = include_pad ? padded : count;
          y[pl * P + p] = div > 0 ? sum / float(div) : 0.f;
        }
        for (size_t d = ns; d-- > 0;) {
          if (++o[d] < g.out[d]) break;
          o[d] = 0;
        }
      }
    }
  });
  finish_f32(&Y, ys);
}

void global_pool_kernel(KernelCtx& c, bool is_max) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const int64_t planes = X.dim(0) * X.dim(1);
  const int64_t I = planes ? X.numel() / planes : 0;
  std::vector<float> xs, ys;
  const float* x = f32_view(&X, xs);
  float* y = f32_out(&Y, ys);
  parallel_for(planes, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, I)), [&](int64_t b, int64_t e) {
    for (int64_t pl = b; pl < e; ++pl) {
      const float* xp = x + pl * I;
      if (is_max) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t i = 0; i < I; ++i) m = std::max(m, xp[i]);
        y[pl] = m;
      } else {
        double s = 0;  // double: planes can be large
        for (int64_t i = 0; i < I; ++i) s += xp[i];
        y[pl] = I ? float(s / double(I)) : 0.f;
      }
    }
  });
  finish_f32(&Y, ys);
}

}  // namespace

void register_pool_kernels() {
  register_kernel("MaxPool", [](KernelCtx& c) { pool_kernel(c, true); });
  register_kernel("AveragePool", [](KernelCtx& c) { pool_kernel(c, false); });
  register_kernel("GlobalMaxPool", [](KernelCtx& c) { global_pool_kernel(c, true); });
  register_kernel("GlobalAveragePool", [](KernelCtx& c) { global_pool_kernel(c, false); });
}

}  // namespace shardrt::cpu::nn
