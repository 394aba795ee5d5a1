// A decoder's cached attention + the Linear that projects its output → one op, so that on
// the GPU a decode step merges the attention's key splits in the prologue of the projection's
// GEMV instead of in a last CTA of the attention kernel (no completion counter, no second
// pass over the partials; GPT-2's decode step, bench/RESULTS.md):
//   Y = shardrt.Linear(shardrt.CachedAttention(QKV, PastLens, [InvFreq]), W, [B])
//     → (Y, Attn) = shardrt.CachedAttention(QKV, PastLens, [InvFreq], W, [B])
// Conditions: the attention's output is read by that Linear alone (as X) and is no graph
// output; the Linear has no activation; W and B have QKV's dtype. The attention's output
// survives as the fused op's second output (written, read by nobody), so nothing is lost.
//
// It runs in the late stage (after autocast: dtypes final); tensor-parallel decoders are
// sharded by their loader, so each rank's graph is fused as it is built.
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

class FuseAttentionLinearPass : public Pass {
 public:
  std::string name() const override { return "fuse_attention_linear"; }
  std::vector<std::string> target_ops() const override { return {"shardrt.Linear"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "shardrt.Linear", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  bool try_fuse(Graph& g, Node* lin) {
    Value* attn = lin->in(0);
    Node* at = pass_util::producer(attn, "shardrt.CachedAttention");
    if (!at || at->out(0) != attn || !pass_util::single_use(g, attn)) return false;
    // Not one that carries a projection already (its output 0 is then the projection's).
    if (at->inputs.size() > 3 && at->in(3)) return false;
    if (lin->attr_s("activation", "none") != "none") return false;
    Value* w = lin->in(1);
    Value* b = lin->in(2);
    if (!w || w->dtype != attn->dtype || (b && b->dtype != attn->dtype)) return false;

    std::map<std::string, Attr> attrs = at->attrs;
    attrs["trans_b"] = Attr::of(lin->attr_i("trans_b", 0));
    Value* y = lin->out(0);
    Node* f = g.add_node("shardrt.CachedAttention", at->name + "_proj", {at->in(0), at->in(1), at->in(2), w, b},
                         {y->name + "_al", attn->name + "_al"}, std::move(attrs));
    f->fused_from = pass_util::node_tag(at) + " + " + pass_util::node_tag(lin);
    infer_node(g, *f);
    g.replace_all_uses(y, f->out(0));
    g.remove_node(lin);
    g.replace_all_uses(attn, f->out(1));
    g.remove_node(at);
    note("fused shardrt.Linear '" + lin->name + "' into shardrt.CachedAttention '" + f->name + "'");
    return true;
  }
};

}  // namespace

PassPtr make_fuse_attention_linear_pass() { return std::make_unique<FuseAttentionLinearPass>(); }

}  // namespace shardrt
