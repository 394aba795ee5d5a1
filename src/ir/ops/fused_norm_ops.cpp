// Schemas of the residual+norm fusions the fuse_add_norm pass makes:
//   shardrt.AddLayerNorm(A, B, Scale, [Bias]), attrs epsilon (1e-5), axis (-1 only)
//   shardrt.AddRMSNorm(A, B, W), attr epsilon (1e-6)
// Outputs (Y, Sum): Sum = A + B (same shape, no broadcasting) and Y = the norm of Sum over
// the last axis, exactly as LayerNormalization / shardrt.RMSNorm of the stored Sum.
//
// and the norm + linear fusion the fuse_norm_linear pass makes (the decode step's norm
// then runs in the prologue of the GEMV that reads it: one kernel instead of two):
//   shardrt.NormLinear(X, [R], Scale, [NormBias], W, [B]) -> (Y, Normed, [Sum]),
//   attrs norm ("layer" | "rms"), epsilon, trans_b, activation (shardrt.Linear's)
// Sum = X + R when R is given (rounded to the dtype, as shardrt.AddLayerNorm stores it; the
// Sum output exists only then, and the kernels require it), Normed = LayerNormalization(S, Scale, NormBias)
// or shardrt.RMSNorm(S, Scale) over the last axis of S (Sum, or X without R), and
// Y = shardrt.Linear(Normed, W, B) with trans_b and activation. Every output is written.
#include <string>

#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

bool norm_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// A [D]-like parameter (leading dims 1) of X's dtype whose last dim matches X's.
void check_param(const InferCtx& c, size_t i, const char* what) {
  if (c.in_types[i] != c.in_types[0])
    c.fail(std::string(what) + " has type " + dtype_name(c.in_types[i]) + ", A has " + dtype_name(c.in_types[0]));
  const Shape& x = c.in_shapes[0];
  const Shape& w = c.in_shapes[i];
  if (w.empty()) c.fail(std::string(what) + " must have rank >= 1");
  for (size_t k = 0; k + 1 < w.size(); ++k)
    if (!(w[k].known() && w[k].value == 1)) c.fail(std::string(what) + " " + shape_str(w) + " must be [D] (leading dims 1)");
  if (w.back().known() && x.back().known() && w.back().value != x.back().value)
    c.fail(std::string(what) + "'s last dim " + w.back().str() + " differs from A's " + x.back().str());
}

void infer_add_norm(InferCtx& c, bool rms) {
  if (!norm_float(c.in_types[0]))
    c.fail(std::string("A has type ") + dtype_name(c.in_types[0]) + ", expected fp32, fp16 or bf16");
  if (c.in_types[1] != c.in_types[0]) c.fail("A and B must have the same dtype");
  const Shape& a = c.in_shapes[0];
  const Shape& b = c.in_shapes[1];
  if (a.empty()) c.fail("A must have rank >= 1");
  if (a.size() != b.size()) c.fail("A " + shape_str(a) + " and B " + shape_str(b) + " must have the same shape");
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].known() && b[k].known() && a[k].value != b[k].value)
      c.fail("A " + shape_str(a) + " and B " + shape_str(b) + " must have the same shape");
  check_param(c, 2, rms ? "W" : "Scale");
  if (!rms && c.has(3)) check_param(c, 3, "Bias");
  // Where one of A/B has a dim the other leaves symbolic, give the known one.
  Shape out = a;
  for (size_t k = 0; k < a.size(); ++k)
    if (!a[k].known() && b[k].known()) out[k] = b[k];
  c.set(0, c.in_types[0], out);
  c.set(1, c.in_types[0], out);
}

void add_layernorm() {
  OpSchema s;
  s.name = "shardrt.AddLayerNorm";
  s.min_inputs = 3;
  s.max_inputs = 4;
  s.min_outputs = s.max_outputs = 2;
  s.attrs = {"epsilon", "axis"};
  s.infer = [](InferCtx& c) { infer_add_norm(c, false); };
  s.validate = [](const Node& n) -> std::string {
    if (n.attr_i("axis", -1) != -1) return "shardrt.AddLayerNorm supports only axis=-1";
    return n.attr_f("epsilon", 1e-5f) >= 0 ? "" : "shardrt.AddLayerNorm epsilon must be >= 0";
  };
  register_schema(std::move(s));
}

void add_rmsnorm() {
  OpSchema s;
  s.name = "shardrt.AddRMSNorm";
  s.min_inputs = s.max_inputs = 3;
  s.min_outputs = s.max_outputs = 2;
  s.attrs = {"epsilon"};
  s.infer = [](InferCtx& c) { infer_add_norm(c, true); };
  s.validate = [](const Node& n) -> std::string {
    return n.attr_f("epsilon", 1e-6f) >= 0 ? "" : "shardrt.AddRMSNorm epsilon must be >= 0";
  };
  register_schema(std::move(s));
}

// shardrt.NormLinear: inputs X, R, Scale, NormBias, W, B (R, NormBias, B optional).
void norm_linear() {
  OpSchema s;
  s.name = "shardrt.NormLinear";
  s.min_inputs = 5;
  s.max_inputs = 6;
  s.min_outputs = 2;
  s.max_outputs = 3;
  s.attrs = {"norm", "epsilon", "trans_b", "activation"};
  s.infer = [](InferCtx& c) {
    if (!norm_float(c.in_types[0]))
      c.fail(std::string("X has type ") + dtype_name(c.in_types[0]) + ", expected fp32, fp16 or bf16");
    const Shape& x = c.in_shapes[0];
    if (x.empty()) c.fail("X must have rank >= 1");
    const bool res = c.has(1);
    if (res) {
      if (c.in_types[1] != c.in_types[0]) c.fail("X and R must have the same dtype");
      const Shape& r = c.in_shapes[1];
      bool same = r.size() == x.size();
      for (size_t k = 0; same && k < x.size(); ++k)
        if (x[k].known() && r[k].known() && x[k].value != r[k].value) same = false;
      if (!same) c.fail("X " + shape_str(x) + " and R " + shape_str(r) + " must have the same shape");
    }
    check_param(c, 2, "Scale");
    if (c.has(3)) {
      if (c.node.attr_s("norm", "layer") == "rms") c.fail("NormBias is given but norm is rms");
      check_param(c, 3, "NormBias");
    }
    const Shape y = linear_output_shape(c, 0, 4, 5);
    Shape sx = x;  // where R has a dim X leaves symbolic, give the known one
    if (res)
      for (size_t i = 0; i < x.size(); ++i)
        if (!x[i].known() && c.in_shapes[1][i].known()) sx[i] = c.in_shapes[1][i];
    c.set(0, c.in_types[0], y);
    c.set(1, c.in_types[0], sx);
    if (res) c.set(2, c.in_types[0], sx);
  };
  s.validate = [](const Node& n) -> std::string {
    const std::string norm = n.attr_s("norm", "layer");
    if (norm != "layer" && norm != "rms") return "shardrt.NormLinear norm '" + norm + "' is not supported (layer|rms)";
    if (!(n.attr_f("epsilon", 1e-5f) >= 0)) return "shardrt.NormLinear epsilon must be >= 0";
    return linear_attr_error(n);
  };
  register_schema(std::move(s));
}

}  // namespace

void register_fused_norm_schemas() {
  add_layernorm();
  add_rmsnorm();
  norm_linear();
}

}  // namespace shardrt
