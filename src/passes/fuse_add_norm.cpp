// Residual add + norm → one op (the pre-norm transformer's residual stream):
//   S = Add(A, B); Y = LayerNormalization(S, Scale, [Bias])  →  (Y, S) = shardrt.AddLayerNorm(A, B, Scale, [Bias])
//   S = Add(A, B); Y = shardrt.RMSNorm(S, W)                  →  (Y, S) = shardrt.AddRMSNorm(A, B, W)
// S may have other users (the next residual add reads it): they read the fused op's Sum
// output, so the fusion pays whenever the norm reads the add. Conditions: A and B have
// provably the same shape (no broadcasting; known equal dims or the same symbol), fp32 /
// fp16 / bf16, the norm is over the last axis only with [D] parameters, and
// LayerNormalization's Mean / InvStdDev outputs are unused.
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

bool same_shape(const Shape& a, const Shape& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!pass_util::same_dim(a[i], b[i])) return false;
  return true;
}

class FuseAddNormPass : public Pass {
 public:
  std::string name() const override { return "fuse_add_norm"; }
  std::vector<std::string> target_ops() const override { return {"LayerNormalization", "shardrt.RMSNorm"}; }

  bool run(Graph& g) override {
    bool changed = pass_util::rewrite_each(g, "LayerNormalization", [&](Node* n) { return try_fuse(g, n, false); });
    changed |= pass_util::rewrite_each(g, "shardrt.RMSNorm", [&](Node* n) { return try_fuse(g, n, true); });
    return changed;
  }

 private:
  bool try_fuse(Graph& g, Node* norm, bool rms) {
    Value* s = norm->in(0);
    Node* add = pass_util::producer(s, "Add");
    if (!add || add->outputs.size() != 1) return false;
    Value* a = add->in(0);
    Value* b = add->in(1);
    if (!a || !b || !pass_util::norm_float(s->dtype) || a->dtype != s->dtype || b->dtype != s->dtype) return false;
    if (s->shape.empty() || !same_shape(a->shape, b->shape) || !same_shape(a->shape, s->shape)) return false;
    const int64_t rank = int64_t(s->shape.size());
    std::map<std::string, Attr> attrs;
    std::vector<Value*> ins = {a, b};
    if (rms) {
      if (!pass_util::norm_param(norm->in(1), s)) return false;
      ins.push_back(norm->in(1));
      attrs["epsilon"] = Attr::of(norm->attr_f("epsilon", 1e-6f));
    } else {
      int64_t axis = norm->attr_i("axis", -1);
      if (axis < 0) axis += rank;
      if (axis != rank - 1 || norm->attr_i("stash_type", 1) != 1) return false;
      if (!pass_util::unused_output(g, norm->out(1)) || !pass_util::unused_output(g, norm->out(2))) return false;
      if (!pass_util::norm_param(norm->in(1), s)) return false;
      ins.push_back(norm->in(1));
      if (norm->in(2)) {
        if (!pass_util::norm_param(norm->in(2), s)) return false;
        ins.push_back(norm->in(2));
      }
      attrs["epsilon"] = Attr::of(norm->attr_f("epsilon", 1e-5f));
      attrs["axis"] = Attr::of(int64_t(-1));
    }
    Value* y = norm->out(0);
    if (!y) return false;
    const std::string op = rms ? "shardrt.AddRMSNorm" : "shardrt.AddLayerNorm";
    Node* f = g.add_node(op, norm->name + "_addnorm", ins, {y->name + "_addnorm", s->name + "_addnorm"},
                         std::move(attrs));
    f->fused_from = pass_util::node_tag(add) + " + " + pass_util::node_tag(norm);
    infer_node(g, *f);
    // The norm goes first (it reads s), then every reader of s moves to the Sum output.
    g.replace_all_uses(y, f->out(0));
    g.remove_node(norm);
    g.replace_all_uses(s, f->out(1));
    g.remove_node(add);
    note("fused Add '" + add->name + "' + " + (rms ? "shardrt.RMSNorm '" : "LayerNormalization '") + norm->name +
         "' into " + op + " '" + f->name + "'");
    return true;
  }
};

}  // namespace

PassPtr make_fuse_add_norm_pass() { return std::make_unique<FuseAddNormPass>(); }

}  // namespace shardrt
