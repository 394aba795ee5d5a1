// Resize, N-d and separable: each axis gets a table of (input index, weight) taps per output
// index, built from the coordinate transformation and the mode's filter (nearest, linear,
// cubic, with antialias for the latter two); an output element sums the product of its
// axes' taps. Follows ONNX's reference implementation, including its use of scale * in_size
// as the output length in the coordinate transforms.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/kernels_nn_util.h"
#include "ir/ops/nn_ops_resize.h"

namespace shardrt::cpu::nn {

namespace {

struct Tap {
  int64_t idx;
  double w;
};

struct AxisPlan {
  std::vector<std::vector<Tap>> taps;  // per output index
  std::vector<char> outside;           // tf_crop_and_resize: sample outside the input
};

struct ResizeAttrs {
  std::string mode, ctm, nearest_mode;
  float cubic_a = -0.75f;
  bool exclude_outside = false, antialias = false;
};

double cubic_weight(double x, double A) {
  x = std::fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

AxisPlan plan_axis(const ResizeAttrs& a, int64_t in, int64_t out, double scale, double roi0, double roi1) {
  AxisPlan p;
  p.taps.resize(static_cast<size_t>(out));
  p.outside.assign(static_cast<size_t>(out), 0);
  const double out_w = scale * double(in);
  for (int64_t o = 0; o < out; ++o) {
    const double x = double(o);
    double xo;
    if (a.ctm == "align_corners") {
      xo = out_w == 1 ? 0.0 : x * double(in - 1) / (out_w - 1);
    } else if (a.ctm == "asymmetric") {
      xo = x / scale;
    } else if (a.ctm == "tf_crop_and_resize") {
      xo = out_w == 1 ? (roi1 - roi0) * double(in - 1) / 2 : x * (roi1 - roi0) * double(in - 1) / (out_w - 1);
      xo += roi0 * double(in - 1);
      if (xo < 0 || xo > double(in - 1)) { p.outside[size_t(o)] = 1; continue; }
    } else if (a.ctm == "pytorch_half_pixel") {
      xo = out_w == 1 ? -0.5 : (x + 0.5) / scale - 0.5;
    } else if (a.ctm == "half_pixel_symmetric") {
      const double adjustment = double(out) / out_w;
      const double center = double(in) / 2;
      xo = center * (1 - adjustment) + (x + 0.5) / scale - 0.5;
    } else if (a.ctm == "tf_half_pixel_for_nn") {
      xo = (x + 0.5) / scale;
    } else {  // half_pixel
      xo = (x + 0.5) / scale - 0.5;
    }
    const double base = std::floor(xo);
    const double r = xo - base;
    std::vector<std::pair<int64_t, double>> raw;
    if (a.mode == "nearest") {
      int64_t idx;
      if (r == 0) idx = int64_t(base);
      else if (a.nearest_mode == "round_prefer_ceil") idx = int64_t(base) + (r >= 0.5 ? 1 : 0);
      else if (a.nearest_mode == "floor") idx = int64_t(base);
      else if (a.nearest_mode == "ceil") idx = int64_t(base) + 1;
      else idx = int64_t(base) + (r > 0.5 ? 1 : 0);  // round_prefer_floor
      raw.push_back({idx, 1.0});
    } else if (a.mode == "linear") {
      if (a.antialias) {
        const double s = std::min(scale, 1.0);
        const int64_t start = int64_t(std::floor(-1 / s) + 1), n = 2 - 2 * start;
        for (int64_t i = start; i < start + n; ++i)
          raw.push_back({int64_t(base) + i, std::clamp(1 - std::fabs((double(i) - r) * s), 0.0, 1.0)});
      } else {
        raw.push_back({int64_t(base), 1 - r});
        raw.push_back({int64_t(base) + 1, r});
      }
    } else {  // cubic
      if (a.antialias) {
        const double s = std::min(scale, 1.0);
        const int64_t start = int64_t(std::floor(-2 / s) + 1), end = 2 - start;
        for (int64_t i = start; i < end; ++i) raw.push_back({int64_t(base) + i, cubic_weight(s * (double(i) - r), a.cubic_a)});
      } else {
        for (int64_t i = -1; i <= 2; ++i) raw.push_back({int64_t(base) + i, cubic_weight(double(i) - r, a.cubic_a)});
      }
    }
    if (a.antialias) {
      double s = 0;
      for (auto& t : raw) s += t.second;
      if (s != 0)
        for (auto& t : raw) t.second /= s;
    }
    if (a.exclude_outside) {
      double s = 0;
      for (auto& t : raw) {
        if (t.first < 0 || t.first >= in) t.second = 0;
        s += t.second;
      }
      if (s != 0)
        for (auto& t : raw) t.second /= s;
    }
    for (auto& t : raw) {
      if (t.second == 0 && a.mode != "nearest") continue;
      p.taps[size_t(o)].push_back({std::clamp<int64_t>(t.first, 0, in - 1), t.second});
    }
  }
  return p;
}

void resize_kernel(KernelCtx& c) {
  const Tensor& X = *c.in[0];
  Tensor& Y = *c.out[0];
  const Node& n = c.node;
  auto present = [&](size_t i) { return c.input(i) && c.input(i)->numel() > 0; };
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (present(3)) sizes = c.input(3)->to_i64_vector();
  else if (present(2))
    for (int64_t i = 0; i < c.input(2)->numel(); ++i) scales.push_back(double(float(c.input(2)->get_f(i))));
  std::vector<int64_t> od;
  std::vector<double> sc;
  if (auto e = resize_output(n, X.dims(), scales, sizes, od, sc); !e.empty()) c.fail(e);
  if (od != Y.dims()) c.fail("output dims disagree with the shape rule");
  ResizeAttrs a;
  a.mode = n.attr_s("mode", "nearest");
  a.ctm = n.attr_s("coordinate_transformation_mode", "half_pixel");
  a.nearest_mode = n.attr_s("nearest_mode", "round_prefer_floor");
  a.cubic_a = n.attr_f("cubic_coeff_a", -0.75f);
  a.exclude_outside = n.attr_i("exclude_outside", 0) != 0;
  a.antialias = n.attr_i("antialias", 0) != 0 && a.mode != "nearest";
  const float extrapolation = n.attr_f("extrapolation_value", 0.f);
  const size_t r = size_t(X.rank());
  if (r == 0) c.fail("Resize needs an input of rank >= 1");
  // roi over all axes (start..., end...), expanded from the axes attribute.
  std::vector<double> roi(2 * r);
  for (size_t i = 0; i < r; ++i) { roi[i] = 0; roi[r + i] = 1; }
  if (a.ctm == "tf_crop_and_resize") {
    if (!present(1)) c.fail("tf_crop_and_resize needs roi");
    const Tensor& R = *c.input(1);
    std::vector<int64_t> axes = n.attr_ints("axes");
    if (axes.empty())
      for (size_t i = 0; i < r; ++i) axes.push_back(int64_t(i));
    if (R.numel() != int64_t(2 * axes.size())) c.fail("roi must have 2 values per resized axis");
    for (size_t i = 0; i < axes.size(); ++i) {
      const size_t ax = size_t(axes[i] < 0 ? axes[i] + int64_t(r) : axes[i]);
      roi[ax] = R.get_f(int64_t(i));
      roi[r + ax] = R.get_f(int64_t(i + axes.size()));
    }
  }
  if (Y.numel() == 0) return;
  std::vector<AxisPlan> plans;
  for (size_t d = 0; d < r; ++d) plans.push_back(plan_axis(a, X.dim(int64_t(d)), od[d], sc[d], roi[d], roi[r + d]));
  std::vector<int64_t> xstride(r, 1);
  for (size_t d = r - 1; d-- > 0;) xstride[d] = xstride[d + 1] * X.dim(int64_t(d + 1));
  const int64_t last = r ? od[r - 1] : 1, rows = Y.numel() / last;
  const bool nearest = a.mode == "nearest";
  const DType t = X.dtype();
  const size_t es = dtype_size(t);
  std::vector<float> xs, ys;
  const float* x = nearest ? nullptr : f32_view(&X, xs);
  float* y = nearest ? nullptr : f32_out(&Y, ys);
  // Nearest copies elements exactly (any dtype); the extrapolation value is stored in the
  // output's dtype.
  std::vector<char> extra(es);
  from_f32(t, &extrapolation, extra.data(), 1);
  parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, last)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> o(r);
    for (int64_t row = b; row < e; ++row) {
      int64_t rem = row;
      for (size_t d = r - 1; d-- > 0;) { o[d] = rem % od[d]; rem /= od[d]; }
      bool out_lead = false;
      for (size_t d = 0; d + 1 < r; ++d) out_lead = out_lead || plans[d].outside[size_t(o[d])];
      for (int64_t ol = 0; ol < last; ++ol) {
        o[r - 1] = ol;
        const int64_t yi = row * last + ol;
        if (out_lead || plans[r - 1].outside[size_t(ol)]) {
          if (nearest) std::memcpy(static_cast<char*>(Y.raw()) + size_t(yi) * es, extra.data(), es);
          else y[yi] = extrapolation;
          continue;
        }
        if (nearest) {
          int64_t off = 0;
          for (size_t d = 0; d < r; ++d) off += plans[d].taps[size_t(o[d])][0].idx * xstride[d];
          std::memcpy(static_cast<char*>(Y.raw()) + size_t(yi) * es, static_cast<const char*>(X.raw()) + size_t(off) * es, es);
          continue;
        }
        double acc = 0;
        auto visit = [&](auto&& self, size_t d, int64_t off, double w) -> void {
          if (d == r) { acc += w * double(x[off]); return; }
          for (const Tap& tp : plans[d].taps[size_t(o[d])]) self(self, d + 1, off + tp.idx * xstride[d], w * tp.w);
        };
        visit(visit, 0, 0, 1.0);
        y[yi] = float(acc);
      }
    }
  });
  if (!nearest) finish_f32(&Y, ys);
}

}  // namespace

void register_resize_kernels() { register_kernel("Resize", resize_kernel); }

}  // namespace shardrt::cpu::nn
