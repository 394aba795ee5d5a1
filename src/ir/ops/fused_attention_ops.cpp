// Schemas of shardrt's transformer ops: shardrt.RMSNorm, shardrt.Attention and
// shardrt.Rotary (definitions in docs; the fusion passes in src/passes produce them).
#include <string>

#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

// The kernels compute in fp32 and read/write fp32, fp16 and bf16. fp64 is refused rather
// than silently computed at lower precision (the passes leave fp64 graphs unfused).
bool attn_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

void need_float(const InferCtx& c, size_t i, const char* what) {
  if (!attn_float(c.in_types[i]))
    c.fail(std::string(what) + " has type " + dtype_name(c.in_types[i]) + ", expected fp32, fp16 or bf16");
}

// Two dims that must be equal: fails only when both are known and differ.
void same_dim(const InferCtx& c, const Dim& a, const Dim& b, const std::string& what) {
  if (a.known() && b.known() && a.value != b.value)
    c.fail(what + " differ (" + a.str() + " vs " + b.str() + ")");
}

// `small` broadcasts onto `big` without growing it (right-aligned, each dim 1 or equal).
void broadcasts_onto(const InferCtx& c, const Shape& small, const Shape& big, const std::string& what) {
  if (small.size() > big.size())
    c.fail(what + " " + shape_str(small) + " has a higher rank than " + shape_str(big));
  for (size_t i = 0; i < small.size(); ++i) {
    const Dim& s = small[small.size() - 1 - i];
    const Dim& b = big[big.size() - 1 - i];
    if (s.known() && s.value == 1) continue;
    if (s.known() && b.known() && s.value != b.value)
      c.fail(what + " " + shape_str(small) + " does not broadcast to " + shape_str(big));
  }
}

void rmsnorm() {
  OpSchema s;
  s.name = "shardrt.RMSNorm";
  s.min_inputs = s.max_inputs = 2;
  s.attrs = {"epsilon"};
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "X");
    if (c.in_types[1] != c.in_types[0])
      c.fail(std::string("W has type ") + dtype_name(c.in_types[1]) + ", X has " + dtype_name(c.in_types[0]));
    const Shape& x = c.in_shapes[0];
    const Shape& w = c.in_shapes[1];
    if (x.empty()) c.fail("X must have rank >= 1");
    // W scales the last axis: every dim of W but the last is 1 (the kernel reads W as [D]).
    if (w.empty()) c.fail("W must have rank >= 1");
    if (w.size() > x.size()) c.fail("W " + shape_str(w) + " has a higher rank than X " + shape_str(x));
    for (size_t i = 0; i + 1 < w.size(); ++i)
      if (!(w[i].known() && w[i].value == 1)) c.fail("W " + shape_str(w) + " must be [D] (leading dims 1)");
    same_dim(c, w.back(), x.back(), "W's last dim and X's last dim");
    c.set(0, c.in_types[0], x);
  };
  s.validate = [](const Node& n) -> std::string {
    float e = n.attr_f("epsilon", 1e-6f);
    return e >= 0 ? "" : "shardrt.RMSNorm epsilon must be >= 0";
  };
  register_schema(std::move(s));
}

void attention() {
  OpSchema s;
  s.name = "shardrt.Attention";
  s.min_inputs = 3;
  s.max_inputs = 4;
  s.attrs = {"scale", "causal"};
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "Q");
    for (size_t i : {1, 2})
      if (c.in_types[i] != c.in_types[0])
        c.fail(std::string(i == 1 ? "K" : "V") + " has type " + dtype_name(c.in_types[i]) + ", Q has " +
               dtype_name(c.in_types[0]));
    for (size_t i = 0; i < 3; ++i)
      if (c.rank(i) != 4)
        c.fail(std::string("QKV").substr(i, 1) + " must be 4-D [B, H, S, D], got " + shape_str(c.in_shapes[i]));
    const Shape& q = c.in_shapes[0];
    const Shape& k = c.in_shapes[1];
    const Shape& v = c.in_shapes[2];
    same_dim(c, q[0], k[0], "batch sizes of Q and K");
    same_dim(c, q[0], v[0], "batch sizes of Q and V");
    same_dim(c, k[1], v[1], "head counts of K and V");
    same_dim(c, k[2], v[2], "sequence lengths of K and V");
    same_dim(c, q[3], k[3], "head sizes of Q and K");
    if (q[1].known() && k[1].known() && (k[1].value == 0 || q[1].value % k[1].value != 0))
      c.fail("Q's " + q[1].str() + " heads are not a multiple of K/V's " + k[1].str());
    if (c.has(3)) {
      DType mt = c.in_types[3];
      if (mt != DType::Bool && !attn_float(mt))
        c.fail(std::string("Mask has type ") + dtype_name(mt) + ", expected bool, fp32, fp16 or bf16");
      broadcasts_onto(c, c.in_shapes[3], Shape{q[0], q[1], q[2], k[2]}, "Mask");
    }
    c.set(0, c.in_types[0], Shape{q[0], q[1], q[2], v[3]});
  };
  s.validate = [](const Node& n) -> std::string {
    int64_t causal = n.attr_i("causal", 0);
    if (causal != 0 && causal != 1) return "shardrt.Attention causal must be 0 or 1";
    float scale = n.attr_f("scale", 0.f);
    if (!(scale >= 0) && !(scale < 0)) return "shardrt.Attention scale is NaN";
    return "";
  };
  register_schema(std::move(s));
}

void rotary() {
  OpSchema s;
  s.name = "shardrt.Rotary";
  s.min_inputs = s.max_inputs = 3;
  s.attrs = {"interleaved"};
  s.infer = [](InferCtx& c) {
    need_float(c, 0, "X");
    need_float(c, 1, "Cos");
    need_float(c, 2, "Sin");
    const Shape& x = c.in_shapes[0];
    if (x.size() < 2) c.fail("X must be [..., S, D], got " + shape_str(x));
    for (size_t i : {1, 2}) {
      const Shape& cs = c.in_shapes[i];
      const char* nm = i == 1 ? "Cos" : "Sin";
      if (cs.empty()) c.fail(std::string(nm) + " must have rank >= 1");
      const Dim& r = cs.back();
      if (r.known()) {
        if (r.value % 2 != 0) c.fail(std::string(nm) + "'s last dim " + r.str() + " must be even");
        if (x.back().known() && r.value > x.back().value)
          c.fail(std::string(nm) + "'s last dim " + r.str() + " exceeds X's head size " + x.back().str());
      }
      Shape lead_c(cs.begin(), cs.end() - 1), lead_x(x.begin(), x.end() - 1);
      broadcasts_onto(c, lead_c, lead_x, std::string(nm) + "'s leading dims");
    }
    same_dim(c, c.in_shapes[1].back(), c.in_shapes[2].back(), "last dims of Cos and Sin");
    c.set(0, c.in_types[0], x);
  };
  s.validate = [](const Node& n) -> std::string {
    int64_t v = n.attr_i("interleaved", 0);
    return v == 0 || v == 1 ? "" : "shardrt.Rotary interleaved must be 0 or 1";
  };
  register_schema(std::move(s));
}

}  // namespace

void register_fused_attention_schemas() {
  rmsnorm();
  attention();
  rotary();
}

}  // namespace shardrt
