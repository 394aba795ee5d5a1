// Rotary position embedding (rotate-half form, Llama / GPT-NeoX) → shardrt.Rotary:
//   Y = Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, D/2:D)), Slice(x, 0:D/2), axis -1), sin))
// with the full head dim rotating (cos/sin last dim == D) and cos/sin broadcasting into x
// without growing it.
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "passes/pattern.h"

namespace shardrt {

namespace {

using namespace pattern;

bool rot_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Slice(x, [s], [e], [last axis], [1]) of a rank-r value: sets x, s, e.
bool last_axis_slice(Node* sl, Value*& x, int64_t& s, int64_t& e) {
  if (!sl || sl->op != "Slice" || !sl->in(3)) return false;
  x = sl->in(0);
  int64_t r = rank_of(x);
  auto st = int_value(sl->in(1)), en = int_value(sl->in(2)), ax = int_value(sl->in(3));
  if (r < 1 || !st || !en || !ax || (*ax != -1 && *ax != r - 1)) return false;
  if (sl->in(4)) {
    auto sp = int_value(sl->in(4));
    if (!sp || *sp != 1) return false;
  }
  s = *st;
  e = *en;
  return true;
}

class FuseRotaryPass : public Pass {
 public:
  std::string name() const override { return "fuse_rotary"; }
  std::vector<std::string> target_ops() const override { return {"Neg"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "Add", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  bool try_fuse(Graph& g, Node* add) {
    if (add->inputs.size() != 2) return false;
    for (int k = 0; k < 2; ++k) {
      Node* mc = producer(add->in(size_t(k)), "Mul");
      Node* ms = producer(add->in(size_t(1 - k)), "Mul");
      if (!mc || !ms || mc == ms) continue;
      if (!single_use(g, mc->out(0)) || !single_use(g, ms->out(0))) continue;
      Value *rot, *sin;
      if (!split_operands(ms, "Concat", rot, sin)) continue;
      Node* cat = producer(rot);
      if (cat->inputs.size() != 2 || !single_use(g, rot)) continue;
      Node* neg = producer(cat->in(0), "Neg");
      if (!neg || !single_use(g, neg->out(0))) continue;
      Value *x1, *x0;
      int64_t s1, e1, s0, e0;
      if (!last_axis_slice(producer(neg->in(0)), x1, s1, e1) || !last_axis_slice(producer(cat->in(1)), x0, s0, e0))
        continue;
      if (x0 != x1 || !single_use(g, neg->in(0)) || !single_use(g, cat->in(1))) continue;
      Value* x = x0;
      // x must be the other Mul's operand; the rest is cos.
      Value* cos = mc->in(0) == x ? mc->in(1) : (mc->in(1) == x ? mc->in(0) : nullptr);
      if (!cos || !rot_type(x->dtype)) continue;
      const int64_t r = rank_of(x);
      int64_t cat_axis = cat->attr_i("axis", 0);
      if (r < 2 || (cat_axis != -1 && cat_axis != r - 1)) continue;
      DimExpr dd = dim_of(x, -1);
      if (dd.kind != DimExpr::Known || dd.value % 2 || dd.value <= 0) continue;
      const int64_t D = dd.value, h = D / 2;
      if (s1 != h || e1 < D || s0 != 0 || e0 != h) continue;
      if (!cos_sin_ok(cos, x, D) || !cos_sin_ok(sin, x, D)) continue;
      Node* rn = g.add_node("shardrt.Rotary", add->name + "_rotary", {x, cos, sin}, {add->out(0)->name + "_rot"},
                            {{"interleaved", Attr::of(int64_t(0))}});
      rn->fused_from = "Mul/Slice/Neg/Concat/Mul/Add";
      infer_node(g, *rn);
      g.replace_all_uses(add->out(0), rn->out(0));
      remove_unused(g, {add, mc, ms, cat, neg, producer(neg->in(0)), producer(cat->in(1))});
      note("fused rotary embedding at '" + add->name + "' into shardrt.Rotary '" + rn->name + "'");
      return true;
    }
    return false;
  }

  // cos/sin: float, last dim exactly D, leading dims broadcasting into x's.
  static bool cos_sin_ok(const Value* c, const Value* x, int64_t D) {
    if (!c || !rot_type(c->dtype)) return false;
    int64_t rc = rank_of(c), rx = rank_of(x);
    if (rc < 1 || rc > rx) return false;
    DimExpr last = dim_of(c, -1);
    if (last.kind != DimExpr::Known || last.value != D) return false;
    for (int64_t i = 1; i < rc; ++i)
      if (!not_incompatible(dim_of(c, -1 - i), dim_of(x, -1 - i))) return false;
    return true;
  }
};

}  // namespace

PassPtr make_fuse_rotary_pass() { return std::make_unique<FuseRotaryPass>(); }

}  // namespace shardrt
