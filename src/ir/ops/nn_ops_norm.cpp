// Schemas of the normalizations (BatchNormalization in inference form, Instance-, Group- and
// LayerNormalization) and LRN.
#include "ir/op_schema.h"

namespace shardrt {

namespace {

bool float_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

void need_float(const InferCtx& c) {
  if (!float_type(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
}

// A per-channel parameter must be 1-D with C elements (when both are known).
void check_channel_param(const InferCtx& c, size_t i, const Dim& C, const char* what) {
  if (!c.has(i)) return;
  const Shape& s = c.in_shapes[i];
  if (s.size() != 1) c.fail(std::string(what) + " must be 1-D, got " + shape_str(s));
  if (s[0].known() && C.known() && s[0].value != C.value)
    c.fail(std::string(what) + " has " + s[0].str() + " elements for " + C.str() + " channels");
}

void infer_batchnorm(InferCtx& c) {
  need_float(c);
  const Shape& x = c.in_shapes[0];
  if (x.size() < 2) c.fail("input must have rank >= 2");
  const char* names[] = {"", "scale", "B", "input_mean", "input_var"};
  for (size_t i = 1; i < 5; ++i) check_channel_param(c, i, x[1], names[i]);
  c.set(0, c.in_types[0], x);
}

void infer_instancenorm(InferCtx& c) {
  need_float(c);
  const Shape& x = c.in_shapes[0];
  if (x.size() < 3) c.fail("input must have rank >= 3");
  check_channel_param(c, 1, x[1], "scale");
  check_channel_param(c, 2, x[1], "B");
  c.set(0, c.in_types[0], x);
}

void infer_groupnorm(InferCtx& c) {
  need_float(c);
  const Shape& x = c.in_shapes[0];
  if (x.size() < 2) c.fail("input must have rank >= 2");
  const int64_t g = c.node.attr_i("num_groups");
  if (g < 1) c.fail("num_groups must be positive");
  if (x[1].known() && x[1].value % g != 0) c.fail("channels " + x[1].str() + " not divisible by num_groups " + std::to_string(g));
  // scale/bias: per group (opset 18) or per channel (opset 21).
  for (size_t i = 1; i < 3; ++i) {
    const Shape& s = c.in_shapes[i];
    if (s.size() != 1) c.fail("scale and bias must be 1-D");
    if (s[0].known() && x[1].known() && s[0].value != g && s[0].value != x[1].value)
      c.fail("scale/bias have " + s[0].str() + " elements: need num_groups (" + std::to_string(g) +
             ") or channels (" + x[1].str() + ")");
  }
  c.set(0, c.in_types[0], x);
}

void infer_layernorm(InferCtx& c) {
  need_float(c);
  const Shape& x = c.in_shapes[0];
  const int64_t r = int64_t(x.size());
  if (r < 1) c.fail("input must have rank >= 1");
  const int64_t axis = c.axis(c.node.attr_i("axis", -1), r);
  for (size_t i = 1; i < 3; ++i) {
    if (!c.has(i)) continue;
    if (c.in_types[i] != c.in_types[0]) c.fail("scale/bias dtype differs from the input's");
    const Shape& s = c.in_shapes[i];
    if (int64_t(s.size()) > r - axis) c.fail("scale/bias " + shape_str(s) + " have more dims than the normalized axes");
    for (size_t k = 0; k < s.size(); ++k) {
      const Dim& d = s[k];
      const Dim& xd = x[size_t(r) - s.size() + k];
      if (d.known() && xd.known() && d.value != 1 && d.value != xd.value)
        c.fail("scale/bias " + shape_str(s) + " do not broadcast to the normalized dims of " + shape_str(x));
    }
  }
  c.set(0, c.in_types[0], x);
  Shape stat = x;
  for (int64_t i = axis; i < r; ++i) stat[size_t(i)] = Dim(1);
  if (c.node.out(1)) c.set(1, DType::F32, stat);
  if (c.node.out(2)) c.set(2, DType::F32, stat);
}

void infer_lrn(InferCtx& c) {
  need_float(c);
  if (c.rank(0) < 2) c.fail("input must have rank >= 2");
  c.set(0, c.in_types[0], c.in_shapes[0]);
}

}  // namespace

void register_nn_norm_schemas() {
  register_schema({"BatchNormalization", 5, 5, 1, 3, {"epsilon", "momentum", "training_mode", "spatial"},
                   infer_batchnorm, [](const Node& n) -> std::string {
                     if (n.attr_i("training_mode", 0) != 0)
                       return "BatchNormalization with training_mode=1 is not supported (inference only)";
                     if (n.attr_i("spatial", 1) != 1) return "BatchNormalization with spatial=0 is not supported";
                     if (n.out(1) || n.out(2)) return "BatchNormalization's running mean/var outputs are not supported";
                     return "";
                   }});
  register_schema({"InstanceNormalization", 3, 3, 1, 1, {"epsilon"}, infer_instancenorm, nullptr});
  register_schema({"GroupNormalization", 3, 3, 1, 1, {"epsilon", "num_groups", "stash_type"}, infer_groupnorm,
                   [](const Node& n) -> std::string {
                     if (!n.has_attr("num_groups")) return "GroupNormalization needs num_groups";
                     if (n.attr_i("stash_type", 1) != 1) return "only stash_type=1 (fp32) is supported";
                     return "";
                   }});
  register_schema({"LayerNormalization", 1, 3, 1, 3, {"axis", "epsilon", "stash_type"}, infer_layernorm,
                   [](const Node& n) -> std::string {
                     if (n.attr_i("stash_type", 1) != 1) return "only stash_type=1 (fp32) is supported";
                     return "";
                   }});
  register_schema({"LRN", 1, 1, 1, 1, {"alpha", "beta", "bias", "size"}, infer_lrn, [](const Node& n) -> std::string {
    if (!n.has_attr("size") || n.attr_i("size", 0) < 1) return "LRN needs a positive size";
    return "";
  }});
}

}  // namespace shardrt
