// Schemas of Conv, ConvTranspose and the pools. Window geometry lives in nn_ops_window.cpp so
// the CPU kernels resolve pads exactly as these rules do.
#include "ir/op_schema.h"
#include "ir/ops/nn_ops_window.h"

namespace shardrt {

namespace {

std::vector<int64_t> spatial(const Shape& s) {
  std::vector<int64_t> r;
  for (size_t i = 2; i < s.size(); ++i) r.push_back(s[i].known() ? s[i].value : -1);
  return r;
}

Shape out_shape(const Dim& n, const Dim& c, const WindowGeom& g) {
  Shape o{n, c};
  for (int64_t v : g.out) o.push_back(v >= 0 ? Dim(v) : dim_unknown());
  return o;
}

bool float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

// The kernel window: kernel_shape, else the weight's spatial dims (unknown: empty).
std::vector<int64_t> conv_kernel(const InferCtx& c, size_t ns) {
  if (c.node.has_attr("kernel_shape")) return c.node.attr_ints("kernel_shape");
  std::vector<int64_t> k = spatial(c.in_shapes[1]);
  for (int64_t v : k)
    if (v < 0) return {};
  if (k.size() != ns) c.fail("weight rank " + std::to_string(c.rank(1)) + " does not match input rank " + std::to_string(c.rank(0)));
  return k;
}

void infer_conv(InferCtx& c) {
  const Shape& x = c.in_shapes[0];
  const Shape& w = c.in_shapes[1];
  if (x.size() < 3) c.fail("input must have rank >= 3 (N, C, spatial...), got " + shape_str(x));
  if (w.size() != x.size()) c.fail("weight " + shape_str(w) + " must have the input's rank " + std::to_string(x.size()));
  if (!float_type(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
  if (c.in_types[1] != c.in_types[0] || (c.has(2) && c.in_types[2] != c.in_types[0])) c.fail("inputs differ in dtype");
  const int64_t group = c.node.attr_i("group", 1);
  if (group < 1) c.fail("group must be positive");
  if (x[1].known() && w[1].known() && x[1].value != w[1].value * group)
    c.fail("input has " + x[1].str() + " channels, weight expects " + std::to_string(w[1].value * group));
  if (w[0].known() && w[0].value % group != 0) c.fail("output channels not divisible by group");
  const size_t ns = x.size() - 2;
  std::vector<int64_t> k = conv_kernel(c, ns);
  if (k.empty()) {
    Shape o{x[0], w[0]};
    for (size_t i = 0; i < ns; ++i) o.push_back(dim_unknown());
    c.set(0, c.in_types[0], o);
    return;
  }
  WindowGeom g;
  if (auto e = window_geom(c.node, spatial(x), k, false, g); !e.empty()) c.fail(e);
  c.set(0, c.in_types[0], out_shape(x[0], w[0], g));
}

void infer_conv_transpose(InferCtx& c) {
  const Shape& x = c.in_shapes[0];
  const Shape& w = c.in_shapes[1];
  if (x.size() < 3) c.fail("input must have rank >= 3 (N, C, spatial...), got " + shape_str(x));
  if (w.size() != x.size()) c.fail("weight " + shape_str(w) + " must have the input's rank " + std::to_string(x.size()));
  if (!float_type(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
  if (c.in_types[1] != c.in_types[0] || (c.has(2) && c.in_types[2] != c.in_types[0])) c.fail("inputs differ in dtype");
  const int64_t group = c.node.attr_i("group", 1);
  if (group < 1) c.fail("group must be positive");
  if (x[1].known() && w[0].known() && x[1].value != w[0].value)
    c.fail("input has " + x[1].str() + " channels, weight has " + w[0].str());
  const size_t ns = x.size() - 2;
  const Dim cout = dim_mul(w[1], Dim(group));
  std::vector<int64_t> k = conv_kernel(c, ns);
  if (k.empty()) {
    Shape o{x[0], cout};
    for (size_t i = 0; i < ns; ++i) o.push_back(dim_unknown());
    c.set(0, c.in_types[0], o);
    return;
  }
  WindowGeom g;
  if (auto e = conv_transpose_geom(c.node, spatial(x), k, g); !e.empty()) c.fail(e);
  c.set(0, c.in_types[0], out_shape(x[0], cout, g));
}

void infer_pool(InferCtx& c, bool is_max) {
  const Shape& x = c.in_shapes[0];
  if (x.size() < 3) c.fail("input must have rank >= 3 (N, C, spatial...), got " + shape_str(x));
  const DType t = c.in_types[0];
  const bool int_ok = is_max && (t == DType::I8 || t == DType::U8);
  if (!float_type(t) && !int_ok) c.fail(std::string("unsupported dtype ") + dtype_name(t));
  if (!c.node.has_attr("kernel_shape")) c.fail("kernel_shape is required");
  WindowGeom g;
  if (auto e = window_geom(c.node, spatial(x), c.node.attr_ints("kernel_shape"), c.node.attr_i("ceil_mode", 0) != 0, g);
      !e.empty())
    c.fail(e);
  Shape o = out_shape(x[0], x[1], g);
  c.set(0, t, o);
  if (is_max && c.node.out(1)) c.set(1, DType::I64, o);
}

void infer_global_pool(InferCtx& c) {
  const Shape& x = c.in_shapes[0];
  if (x.size() < 3) c.fail("input must have rank >= 3 (N, C, spatial...), got " + shape_str(x));
  if (!float_type(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
  Shape o{x[0], x[1]};
  for (size_t i = 2; i < x.size(); ++i) o.push_back(Dim(1));
  c.set(0, c.in_types[0], o);
}

std::string validate_auto_pad(const Node& n) {
  const std::string ap = n.attr_s("auto_pad", "NOTSET");
  if (ap != "NOTSET" && ap != "SAME_UPPER" && ap != "SAME_LOWER" && ap != "VALID")
    return "unknown auto_pad '" + ap + "'";
  return "";
}

}  // namespace

void register_nn_conv_schemas() {
  register_schema({"Conv", 2, 3, 1, 1, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"},
                   infer_conv, validate_auto_pad});
  register_schema({"ConvTranspose", 2, 3, 1, 1,
                   {"auto_pad", "dilations", "group", "kernel_shape", "output_padding", "output_shape", "pads", "strides"},
                   infer_conv_transpose, validate_auto_pad});
  register_schema({"MaxPool", 1, 1, 1, 2,
                   {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"},
                   [](InferCtx& c) { infer_pool(c, true); },
                   [](const Node& n) -> std::string {
                     int64_t so = n.attr_i("storage_order", 0);
                     if (so != 0 && so != 1) return "storage_order must be 0 or 1";
                     return validate_auto_pad(n);
                   }});
  register_schema({"AveragePool", 1, 1, 1, 1,
                   {"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"},
                   [](InferCtx& c) { infer_pool(c, false); }, validate_auto_pad});
  register_schema({"GlobalAveragePool", 1, 1, 1, 1, {}, infer_global_pool, nullptr});
  register_schema({"GlobalMaxPool", 1, 1, 1, 1, {}, infer_global_pool, nullptr});
}

}  // namespace shardrt
