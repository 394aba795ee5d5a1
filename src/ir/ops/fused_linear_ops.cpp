// Schemas of shardrt's linear-family fused ops: shardrt.Linear (MatMul/Gemm + bias +
// activation, or a packed gate/up projection with activation swiglu), shardrt.Silu and
// shardrt.SwiGLU. The fusion passes in src/passes produce them.
#include <string>

#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

// Floating types only: these ops are produced from float patterns, and the kernels compute
// in fp32 (fp64 in fp64).
bool lin_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

void need_float(const InferCtx& c, size_t i, const char* what) {
  if (!lin_float(c.in_types[i]))
    c.fail(std::string(what) + " has type " + dtype_name(c.in_types[i]) + ", expected fp32, fp16, bf16 or fp64");
}

void same_type(const InferCtx& c, size_t i, const char* what) {
  if (c.in_types[i] != c.in_types[0])
    c.fail(std::string(what) + " has type " + dtype_name(c.in_types[i]) + ", X has " + dtype_name(c.in_types[0]));
}

void linear() {
  OpSchema s;
  s.name = "shardrt.Linear";
  s.min_inputs = 2;
  s.max_inputs = 3;
  s.attrs = {"trans_b", "activation"};
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "X");
    c.set(0, c.in_types[0], linear_output_shape(c, 0, 1, 2));
  };
  s.validate = [](const Node& n) { return linear_attr_error(n); };
  register_schema(std::move(s));
}

void silu() {
  OpSchema s;
  s.name = "shardrt.Silu";
  s.min_inputs = s.max_inputs = 1;
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "X");
    c.set(0, c.in_types[0], c.in_shapes[0]);
  };
  register_schema(std::move(s));
}

void swiglu() {
  OpSchema s;
  s.name = "shardrt.SwiGLU";
  s.min_inputs = s.max_inputs = 2;
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "G");
    same_type(c, 1, "U");
    const Shape& g = c.in_shapes[0];
    const Shape& u = c.in_shapes[1];
    // Same shape, no broadcasting (the pass only fuses equal shapes).
    if (g.size() != u.size()) c.fail("G " + shape_str(g) + " and U " + shape_str(u) + " differ in rank");
    Shape y = g;
    for (size_t i = 0; i < g.size(); ++i) {
      if (g[i].known() && u[i].known() && g[i].value != u[i].value)
        c.fail("G " + shape_str(g) + " and U " + shape_str(u) + " differ");
      if (!g[i].known() && u[i].known()) y[i] = u[i];
    }
    c.set(0, c.in_types[0], y);
  };
  register_schema(std::move(s));
}

}  // namespace

std::string linear_attr_error(const Node& n) {
  const int64_t tb = n.attr_i("trans_b", 0);
  if (tb != 0 && tb != 1) return n.op + " trans_b must be 0 or 1";
  const std::string a = n.attr_s("activation", "none");
  if (a != "none" && a != "relu" && a != "gelu" && a != "gelu_tanh" && a != "silu" && a != "swiglu")
    return n.op + " activation '" + a + "' is not supported (none|relu|gelu|gelu_tanh|silu|swiglu)";
  return "";
}

Shape linear_output_shape(const InferCtx& c, size_t xi, size_t wi, size_t bi) {
  return linear_output_shape(c, c.in_shapes[xi], c.in_types[xi], wi, bi);
}

Shape linear_output_shape(const InferCtx& c, const Shape& x, DType xt, size_t wi, size_t bi) {
  auto same = [&](size_t i, const char* what) {
    if (c.in_types[i] != xt)
      c.fail(std::string(what) + " has type " + dtype_name(c.in_types[i]) + ", X has " + dtype_name(xt));
  };
  same(wi, "W");
  const Shape& w = c.in_shapes[wi];
  if (x.empty()) c.fail("X must have rank >= 1");
  if (w.size() != 2) c.fail("W must be 2-D, got " + shape_str(w));
  const bool tb = c.node.attr_i("trans_b", 0) != 0;
  const Dim& k = tb ? w[1] : w[0];
  const Dim& n = tb ? w[0] : w[1];
  if (k.known() && x.back().known() && k.value != x.back().value)
    c.fail("X " + shape_str(x) + " and W " + shape_str(w) + (tb ? " (trans_b)" : "") + " disagree on K");
  if (c.has(bi)) {
    same(bi, "B");
    const Shape& b = c.in_shapes[bi];
    if (b.size() != 1) c.fail("B must be 1-D [N], got " + shape_str(b));
    if (b[0].known() && n.known() && b[0].value != n.value) c.fail("B " + shape_str(b) + " does not match N = " + n.str());
  }
  Shape y(x.begin(), x.end() - 1);
  // swiglu: W packs the gate's N/2 outputs then the up projection's N/2 (B likewise), and
  // Y has the N/2 products.
  if (c.node.attr_s("activation", "none") == "swiglu") {
    if (n.known() && n.value % 2 != 0)
      c.fail("activation swiglu needs an even N (gate then up outputs packed in W), got N = " + n.str());
    y.push_back(n.known() ? Dim(n.value / 2) : dim_unknown());
  } else {
    y.push_back(n);
  }
  return y;
}

void register_fused_linear_schemas() {
  linear();
  silu();
  swiglu();
}

}  // namespace shardrt
