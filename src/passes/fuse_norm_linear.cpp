// Norm + the Linear that reads it → one op, so that a decode step's norm runs in the
// prologue of the GEMV that consumes it (a quarter of a transformer layer's kernels):
//   Y = shardrt.Linear(LayerNormalization(X, Scale, [Bias]), W, [B])   → shardrt.NormLinear
//   Y = shardrt.Linear(shardrt.RMSNorm(X, W0), W, [B])                   → shardrt.NormLinear
//   (Y0, S) = shardrt.AddLayerNorm / AddRMSNorm(A, R, ...); Y = shardrt.Linear(Y0, ...)
//       → (Y, Normed, S) = shardrt.NormLinear(A, R, ...)   (S keeps its readers)
// Conditions: the norm's output is read by that Linear alone (and is no graph output), the
// norm is over the last axis with [D] parameters in X's dtype (fp32/fp16/bf16), and
// LayerNormalization's Mean / InvStdDev outputs are unused. The norm's output survives as
// the fused op's Normed output (written, read by nobody), so nothing is lost.
//
// It runs in its own stage after autocast (the dtypes are final, and the Linear has taken
// its bias and activation by then); the tensor-parallel build runs it after sharding (the
// sharding rules know the norms and Linear, not this op).
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

class FuseNormLinearPass : public Pass {
 public:
  std::string name() const override { return "fuse_norm_linear"; }
  std::vector<std::string> target_ops() const override { return {"shardrt.Linear"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "shardrt.Linear", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  bool try_fuse(Graph& g, Node* lin) {
    Value* y0 = lin->in(0);
    Node* norm = pass_util::producer(y0);
    if (!norm || !pass_util::single_use(g, y0) || norm->out(0) != y0) return false;
    const std::string& op = norm->op;
    const bool add = op == "shardrt.AddLayerNorm" || op == "shardrt.AddRMSNorm";
    const bool rms = op == "shardrt.RMSNorm" || op == "shardrt.AddRMSNorm";
    if (!add && !rms && op != "LayerNormalization") return false;
    Value* x = norm->in(0);
    if (!x || !pass_util::norm_float(x->dtype) || x->shape.empty() || y0->dtype != x->dtype) return false;
    if (!lin->in(1) || lin->in(1)->dtype != x->dtype || (lin->in(2) && lin->in(2)->dtype != x->dtype)) return false;
    Value* r = add ? norm->in(1) : nullptr;
    if (add && (!r || r->dtype != x->dtype)) return false;
    const size_t pi = add ? 2 : 1;  // Scale / W0
    Value* scale = norm->in(pi);
    Value* nbias = rms ? nullptr : norm->in(pi + 1);
    if (!pass_util::norm_param(scale, x) || (nbias && !pass_util::norm_param(nbias, x))) return false;
    float eps = norm->attr_f("epsilon", rms ? 1e-6f : 1e-5f);
    if (op == "LayerNormalization") {
      int64_t axis = norm->attr_i("axis", -1);
      if (axis < 0) axis += int64_t(x->shape.size());
      if (axis != int64_t(x->shape.size()) - 1 || norm->attr_i("stash_type", 1) != 1) return false;
      if (!pass_util::unused_output(g, norm->out(1)) || !pass_util::unused_output(g, norm->out(2))) return false;
    }
    Value* sum = add ? norm->out(1) : nullptr;
    if (add && !sum) return false;

    std::map<std::string, Attr> attrs;
    attrs["norm"] = Attr::of(std::string(rms ? "rms" : "layer"));
    attrs["epsilon"] = Attr::of(eps);
    attrs["trans_b"] = Attr::of(lin->attr_i("trans_b", 0));
    attrs["activation"] = Attr::of(lin->attr_s("activation", "none"));
    Value* y = lin->out(0);
    std::vector<std::string> outs = {y->name + "_nl", y0->name + "_nl"};
    if (add) outs.push_back(sum->name + "_nl");
    Node* f = g.add_node("shardrt.NormLinear", lin->name + "_normlinear", {x, r, scale, nbias, lin->in(1), lin->in(2)},
                         outs, std::move(attrs));
    f->fused_from = pass_util::node_tag(norm) + " + " + pass_util::node_tag(lin);
    infer_node(g, *f);
    g.replace_all_uses(y, f->out(0));
    g.remove_node(lin);
    g.replace_all_uses(y0, f->out(1));
    if (add) g.replace_all_uses(sum, f->out(2));
    g.remove_node(norm);
    note("fused " + op + " '" + norm->name + "' into shardrt.Linear '" + lin->name + "' as shardrt.NormLinear '" +
         f->name + "'");
    return true;
  }
};

}  // namespace

PassPtr make_fuse_norm_linear_pass() { return std::make_unique<FuseNormLinearPass>(); }

}  // namespace shardrt
