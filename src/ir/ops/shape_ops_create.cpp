// Shape rules of the ops that create tensors or reshape them by blocks: Shape, Size,
// Range, ConstantOfShape, Constant, EyeLike, Trilu, Dropout, Pad, DepthToSpace,
// SpaceToDepth.
#include <algorithm>
#include <cmath>

#include "ir/onnx_dtype.h"
#include "ir/ops/shape_ops_common.h"

namespace shardrt::shape_ops {

namespace {

void infer_shape(InferCtx& c) {
  int64_t r = c.rank(0);
  auto norm = [r](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + r : a, 0, r); };
  int64_t s = norm(c.node.attr_i("start", 0)), e = norm(c.node.attr_i("end", r));
  c.set(0, DType::I64, {Dim(std::max<int64_t>(0, e - s))});
}

// Number of elements Range produces, in the input type's arithmetic.
int64_t range_count(const Tensor& start, const Tensor& limit, const Tensor& delta) {
  if (is_float(start.dtype())) {
    double s = start.get_f(0), l = limit.get_f(0), d = delta.get_f(0);
    if (d == 0) return -1;
    return std::max<int64_t>(0, int64_t(std::ceil((l - s) / d)));
  }
  int64_t s = start.get_i(0), l = limit.get_i(0), d = delta.get_i(0);
  if (d == 0) return -1;
  int64_t span = l - s;
  if ((span > 0) != (d > 0) || span == 0) return 0;
  return d > 0 ? (span + d - 1) / d : (span + d + 1) / d;
}

void infer_range(InferCtx& c) {
  DType t = c.in_types[0];
  if (t != DType::F32 && t != DType::F64 && t != DType::I32 && t != DType::I64)
    c.fail(std::string("type ") + dtype_name(t) + " is not supported (fp32, fp64, int32, int64)");
  for (size_t i = 0; i < 3; ++i) {
    if (c.in_types[i] != t) c.fail("start, limit and delta differ in type");
    if (c.rank(i) > 1 || (c.rank(i) == 1 && !(c.in_shapes[i][0] == Dim(1)))) c.fail("start, limit and delta must be scalars");
  }
  Dim n = dim_unknown();
  if (c.value(0) && c.value(1) && c.value(2)) {
    int64_t k = range_count(*c.value(0), *c.value(1), *c.value(2));
    if (k < 0) c.fail("delta is 0");
    n = Dim(k);
  }
  c.set(0, t, {n});
}

void infer_constant_of_shape(InferCtx& c) {
  if (c.in_types[0] != DType::I64) c.fail("the shape input must be int64");
  if (c.rank(0) != 1) c.fail("the shape input must be 1-D");
  const Tensor* v = c.node.attr_t("value");
  if (v && v->numel() != 1) c.fail("attribute 'value' must hold one element");
  DType t = v ? v->dtype() : DType::F32;
  auto target = sym_of(c, 0);
  Shape out;
  if (target) {
    for (auto& s : *target) out.push_back(to_dim(c, s));
  } else {
    if (!c.in_shapes[0][0].known()) c.fail("the length of the shape input is unknown, so is the output's rank");
    out.assign(size_t(c.in_shapes[0][0].value), dim_unknown());
  }
  c.set(0, t, out);
}

std::string validate_constant(const Node& n) {
  int k = 0;
  for (const char* a : {"value", "value_float", "value_floats", "value_int", "value_ints"}) k += n.has_attr(a);
  if (k != 1) return "Constant needs exactly one of value, value_float, value_floats, value_int, value_ints";
  return "";
}

void infer_constant(InferCtx& c) {
  const Node& n = c.node;
  if (const Tensor* t = n.attr_t("value")) c.set(0, t->dtype(), dims_shape(t->dims()));
  else if (n.has_attr("value_float")) c.set(0, DType::F32, {});
  else if (n.has_attr("value_floats")) c.set(0, DType::F32, {Dim(int64_t(n.attr_floats("value_floats").size()))});
  else if (n.has_attr("value_int")) c.set(0, DType::I64, {});
  else if (n.has_attr("value_ints")) c.set(0, DType::I64, {Dim(int64_t(n.attr_ints("value_ints").size()))});
  else c.fail("no value attribute");
}

void infer_eyelike(InferCtx& c) {
  if (c.rank(0) != 2) c.fail("input must be 2-D");
  DType t = c.in_types[0];
  if (c.node.has_attr("dtype")) {
    t = dtype_from_onnx(int(c.node.attr_i("dtype")));
    if (t == DType::Undefined) c.fail("dtype " + std::to_string(c.node.attr_i("dtype")) + " is not supported");
  }
  c.set(0, t, c.in_shapes[0]);
}

void infer_trilu(InferCtx& c) {
  if (c.rank(0) < 2) c.fail("input must have rank >= 2");
  if (c.has(1) && c.in_types[1] != DType::I64) c.fail("k must be int64");
  c.set(0, c.in_types[0], c.in_shapes[0]);
}

void infer_dropout(InferCtx& c) {
  if (c.has(2)) {
    if (c.in_types[2] != DType::Bool) c.fail("training_mode must be bool");
    if (const Tensor* tm = c.value(2); tm && tm->get_i(0)) {
      const Tensor* ratio = c.value(1);
      double r = c.has(1) ? (ratio ? ratio->get_f(0) : -1) : 0.5;
      if (r != 0) c.fail("training mode (random dropout) is not supported by this inference engine");
    }
  }
  c.set(0, c.in_types[0], c.in_shapes[0]);
  c.set(1, DType::Bool, c.in_shapes[0]);
}

std::string validate_pad(const Node& n) {
  std::string m = n.attr_s("mode", "constant");
  if (m != "constant" && m != "reflect" && m != "edge" && m != "wrap")
    return "Pad mode '" + m + "' is not supported (constant|reflect|edge|wrap)";
  return "";
}

void infer_pad(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  int64_t r = c.rank(0);
  if (c.in_types[1] != DType::I64) c.fail("pads must be int64");
  if (c.has(2) && c.in_types[2] != c.in_types[0]) c.fail("constant_value must have the data's type");
  auto pads = ints_of(c, 1);
  std::optional<std::vector<int64_t>> axes;
  if (c.has(3)) axes = ints_of(c, 3);
  if (!pads || (c.has(3) && !axes)) {
    Shape out(size_t(r), dim_unknown());
    c.set(0, c.in_types[0], out);
    return;
  }
  std::vector<int64_t> ax;
  if (axes) ax = *axes;
  else for (int64_t i = 0; i < r; ++i) ax.push_back(i);
  if (pads->size() != 2 * ax.size()) c.fail("pads has " + std::to_string(pads->size()) + " entries for " + std::to_string(ax.size()) + " axes");
  Shape out = in;
  size_t n = ax.size();
  std::vector<bool> seen(size_t(r), false);
  for (size_t i = 0; i < n; ++i) {
    int64_t a = c.axis(ax[i], r);
    if (seen[size_t(a)]) c.fail("axes repeat");
    seen[size_t(a)] = true;
    int64_t add, padded = 0;
    const Dim& d = in[size_t(a)];
    if (__builtin_add_overflow((*pads)[i], (*pads)[i + n], &add) ||
        (d.known() && __builtin_add_overflow(d.value, add, &padded)))
      c.fail("pads of axis " + std::to_string(a) + " overflow 64 bits");
    if (d.known()) {
      if (padded < 0) c.fail("pads remove more than axis " + std::to_string(a) + " holds");
      out[size_t(a)] = Dim(padded);
    } else {
      out[size_t(a)] = add == 0 ? d : add > 0 ? dim_add(d, Dim(add)) : dim_unknown();
    }
  }
  c.set(0, c.in_types[0], out);
}

int64_t blocksize(const InferCtx& c) {
  int64_t b = c.node.attr_i("blocksize", 0);
  if (b < 1) c.fail("blocksize must be >= 1");
  if (c.rank(0) != 4) c.fail("input must be 4-D (N, C, H, W)");
  return b;
}

std::string validate_depth_to_space(const Node& n) {
  std::string m = n.attr_s("mode", "DCR");
  if (m != "DCR" && m != "CRD") return "DepthToSpace mode '" + m + "' is not supported (DCR|CRD)";
  return "";
}

void infer_depth_to_space(InferCtx& c) {
  int64_t b = blocksize(c);
  Shape s = c.in_shapes[0];
  Dim ch = dim_unknown();
  if (s[1].known()) {
    if (s[1].value % (b * b)) c.fail("channels " + s[1].str() + " not divisible by blocksize^2");
    ch = Dim(s[1].value / (b * b));
  }
  c.set(0, c.in_types[0], {s[0], ch, dim_mul(s[2], Dim(b)), dim_mul(s[3], Dim(b))});
}

void infer_space_to_depth(InferCtx& c) {
  int64_t b = blocksize(c);
  Shape s = c.in_shapes[0];
  auto div = [&](const Dim& d) {
    if (!d.known()) return dim_unknown();
    if (d.value % b) c.fail("spatial dim " + d.str() + " not divisible by blocksize");
    return Dim(d.value / b);
  };
  c.set(0, c.in_types[0], {s[0], dim_mul(s[1], Dim(b * b)), div(s[2]), div(s[3])});
}

}  // namespace

void register_shape_create_schemas() {
  add_schema("Shape", 1, 1, 1, 1, {"start", "end"}, infer_shape);
  add_schema("Size", 1, 1, 1, 1, {}, [](InferCtx& c) { c.set(0, DType::I64, {}); });
  add_schema("Range", 3, 3, 1, 1, {}, infer_range, true);
  add_schema("ConstantOfShape", 1, 1, 1, 1, {"value"}, infer_constant_of_shape, true);
  add_schema("Constant", 0, 0, 1, 1, {"value", "value_float", "value_floats", "value_int", "value_ints"},
             infer_constant, false, validate_constant);
  add_schema("EyeLike", 1, 1, 1, 1, {"dtype", "k"}, infer_eyelike);
  add_schema("Trilu", 1, 2, 1, 1, {"upper"}, infer_trilu);
  // is_test/ratio are opset <= 10 attributes; this engine always runs inference.
  add_schema("Dropout", 1, 3, 1, 2, {"seed", "ratio", "is_test"}, infer_dropout);
  add_schema("Pad", 2, 4, 1, 1, {"mode"}, infer_pad, true, validate_pad);
  add_schema("DepthToSpace", 1, 1, 1, 1, {"blocksize", "mode"}, infer_depth_to_space, false, validate_depth_to_space);
  add_schema("SpaceToDepth", 1, 1, 1, 1, {"blocksize"}, infer_space_to_depth);
}

}  // namespace shardrt::shape_ops
