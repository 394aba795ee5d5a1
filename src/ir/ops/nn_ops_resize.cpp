// Resize's schema: modes nearest/linear/cubic (N-d, separable), the ONNX coordinate
// transformation modes, scales or sizes (with axes and keep_aspect_ratio_policy), antialias.
#include "ir/ops/nn_ops_resize.h"

#include <algorithm>
#include <cmath>

#include "ir/op_schema.h"

namespace shardrt {

std::string resize_output(const Node& n, const std::vector<int64_t>& in, const std::vector<double>& scales,
                          const std::vector<int64_t>& sizes, std::vector<int64_t>& out,
                          std::vector<double>& scale) {
  const int64_t r = int64_t(in.size());
  std::vector<int64_t> axes = n.attr_ints("axes");
  if (axes.empty())
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  for (auto& a : axes) {
    if (a < -r || a >= r) return "axis " + std::to_string(a) + " is out of range";
    if (a < 0) a += r;
  }
  out = in;
  scale.assign(size_t(r), 1.0);
  if (!sizes.empty()) {
    if (sizes.size() != axes.size())
      return "sizes has " + std::to_string(sizes.size()) + " values for " + std::to_string(axes.size()) + " axes";
    const std::string policy = n.attr_s("keep_aspect_ratio_policy", "stretch");
    for (size_t i = 0; i < axes.size(); ++i) {
      if (in[size_t(axes[i])] <= 0) return "cannot resize an empty axis by size";
      scale[size_t(axes[i])] = double(sizes[i]) / double(in[size_t(axes[i])]);
      out[size_t(axes[i])] = sizes[i];
    }
    if (policy != "stretch") {
      double s = scale[size_t(axes[0])];
      for (int64_t a : axes)
        s = policy == "not_larger" ? std::min(s, scale[size_t(a)]) : std::max(s, scale[size_t(a)]);
      for (int64_t a : axes) {
        scale[size_t(a)] = s;
        out[size_t(a)] = int64_t(s * double(in[size_t(a)]) + 0.5);  // round half up, as ONNX says
      }
    }
  } else if (!scales.empty()) {
    if (scales.size() != axes.size())
      return "scales has " + std::to_string(scales.size()) + " values for " + std::to_string(axes.size()) + " axes";
    for (size_t i = 0; i < axes.size(); ++i) {
      if (!(scales[i] > 0)) return "scales must be positive";
      scale[size_t(axes[i])] = scales[i];
      out[size_t(axes[i])] = int64_t(std::floor(scales[i] * double(in[size_t(axes[i])])));
    }
  } else {
    return "Resize needs scales or sizes";
  }
  return "";
}

namespace {

// An input that is absent or an empty tensor (older opsets pass "" or an empty initializer).
bool present(const InferCtx& c, size_t i) {
  if (!c.has(i)) return false;
  const Shape& s = c.in_shapes[i];
  return !(s.size() == 1 && s[0].known() && s[0].value == 0);
}

void infer_resize(InferCtx& c) {
  const Shape& x = c.in_shapes[0];
  const DType t = c.in_types[0];
  if (t == DType::Bool || t == DType::Undefined) c.fail(std::string("unsupported dtype ") + dtype_name(t));
  const bool has_scales = present(c, 2), has_sizes = present(c, 3);
  if (has_scales == has_sizes) c.fail("exactly one of scales and sizes must be given");
  const Tensor* v = c.value(has_sizes ? 3 : 2);
  Shape out;
  if (!v) {  // values unknown at build time: rank known, dims not
    for (size_t i = 0; i < x.size(); ++i) out.push_back(dim_unknown());
    if (c.node.has_attr("axes")) {  // axes not resized keep their dims
      std::vector<int64_t> axes = c.node.attr_ints("axes");
      for (auto& a : axes) a = c.axis(a, int64_t(x.size()));
      for (size_t i = 0; i < x.size(); ++i)
        if (std::find(axes.begin(), axes.end(), int64_t(i)) == axes.end()) out[i] = x[i];
    }
    c.set(0, t, out);
    return;
  }
  std::vector<int64_t> in;
  bool known = true;
  for (const Dim& d : x) {
    in.push_back(d.known() ? d.value : 1);
    known = known && d.known();
  }
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (has_sizes) sizes = v->to_i64_vector();
  else for (int64_t i = 0; i < v->numel(); ++i) scales.push_back(double(float(v->get_f(i))));
  std::vector<int64_t> od;
  std::vector<double> sc;
  if (auto e = resize_output(c.node, in, scales, sizes, od, sc); !e.empty()) c.fail(e);
  for (size_t i = 0; i < x.size(); ++i) {
    // An unknown input dim stays unknown unless it is not resized (or sized without a policy).
    const bool resized = sc[i] != 1.0 || od[i] != in[i];
    if (x[i].known()) out.push_back(Dim(od[i]));
    else if (!resized) out.push_back(x[i]);
    else if (has_sizes && c.node.attr_s("keep_aspect_ratio_policy", "stretch") == "stretch") out.push_back(Dim(od[i]));
    else out.push_back(dim_unknown());
  }
  (void)known;
  c.set(0, t, out);
}

std::string validate_resize(const Node& n) {
  const std::string mode = n.attr_s("mode", "nearest");
  if (mode != "nearest" && mode != "linear" && mode != "cubic") return "unknown Resize mode '" + mode + "'";
  const std::string ct = n.attr_s("coordinate_transformation_mode", "half_pixel");
  if (ct != "half_pixel" && ct != "asymmetric" && ct != "align_corners" && ct != "pytorch_half_pixel" &&
      ct != "tf_crop_and_resize" && ct != "half_pixel_symmetric" && ct != "tf_half_pixel_for_nn")
    return "unknown coordinate_transformation_mode '" + ct + "'";
  const std::string nm = n.attr_s("nearest_mode", "round_prefer_floor");
  if (nm != "round_prefer_floor" && nm != "round_prefer_ceil" && nm != "floor" && nm != "ceil")
    return "unknown nearest_mode '" + nm + "'";
  const std::string kp = n.attr_s("keep_aspect_ratio_policy", "stretch");
  if (kp != "stretch" && kp != "not_larger" && kp != "not_smaller")
    return "unknown keep_aspect_ratio_policy '" + kp + "'";
  if (n.attr_i("antialias", 0) != 0 && mode == "nearest") return "antialias is not defined for mode nearest";
  return "";
}

}  // namespace

void register_nn_resize_schemas() {
  register_schema({"Resize", 1, 4, 1, 1,
                   {"antialias", "axes", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside",
                    "extrapolation_value", "keep_aspect_ratio_policy", "mode", "nearest_mode"},
                   infer_resize, validate_resize});
}

}  // namespace shardrt
