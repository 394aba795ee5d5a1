// RMSNorm as Llama-style models export it → shardrt.RMSNorm:
//   xc = [Cast](X → fp32); r = ReduceMean(Pow(xc, 2) | Mul(xc, xc), [-1])
//   n = Mul(xc, Reciprocal(Sqrt(Add(r, eps))) | Div(1, Sqrt(..)))  |  Div(xc, Sqrt(..))
//   Y = [Mul](W, [Cast](n → X's type))                         (W constant, [D])
// The casts are absorbed only in pairs (X's type in and out): the fused op accumulates in
// fp32 whatever X's type is.
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "passes/pattern.h"

namespace shardrt {

namespace {

using namespace pattern;

Node* sole_user(const Graph& g, const Value* v, const std::string& op) {
  if (!single_use(g, v)) return nullptr;
  Node* u = v->users[0];
  return u->op == op ? u : nullptr;
}

bool rms_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

class FuseRMSNormPass : public Pass {
 public:
  std::string name() const override { return "fuse_rmsnorm"; }
  std::vector<std::string> target_ops() const override { return {"ReduceMean"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "ReduceMean", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  bool try_fuse(Graph& g, Node* mean) {
    if (!reduces_last_axis(mean)) return false;
    Node* sq = producer(mean->in(0));
    if (!sq || !single_use(g, mean->in(0))) return false;
    Value* xc = nullptr;
    if (sq->op == "Pow" && pass_util::const_near(sq->in(1), 2.0)) xc = sq->in(0);
    else if (sq->op == "Mul" && sq->in(0) == sq->in(1)) xc = sq->in(0);
    if (!xc) return false;
    // Centred input: that is LayerNorm's variance, left to fuse_layernorm.
    if (Node* s = producer(xc, "Sub"))
      if (Node* m = producer(s->in(1), "ReduceMean"); m && m->in(0) == s->in(0)) return false;
    if (!rms_type(xc->dtype)) return false;
    DimExpr dd = dim_of(xc, -1);
    if (dd.kind != DimExpr::Known || dd.value <= 0) return false;
    const int64_t D = dd.value;

    Node* add = sole_user(g, mean->out(0), "Add");
    if (!add) return false;
    double eps;
    if (!const_scalar(add->in(0) == mean->out(0) ? add->in(1) : add->in(0), eps) || eps < 0) return false;
    Node* sqrt = sole_user(g, add->out(0), "Sqrt");
    if (!sqrt || !single_use(g, sqrt->out(0))) return false;
    std::vector<Node*> body = {sq, mean, add, sqrt};
    Node* u = sqrt->out(0)->users[0];
    Node* norm = nullptr;
    if (u->op == "Div" && u->in(0) == xc && u->in(1) == sqrt->out(0)) {
      norm = u;
    } else if (u->op == "Reciprocal" || (u->op == "Div" && u->in(1) == sqrt->out(0) && pass_util::const_near(u->in(0), 1.0))) {
      body.push_back(u);
      Node* mul = sole_user(g, u->out(0), "Mul");
      if (!mul) return false;
      Value* other = mul->in(0) == u->out(0) ? mul->in(1) : mul->in(0);
      if (other != xc) return false;
      norm = mul;
    } else {
      return false;
    }
    body.push_back(norm);
    Value* y = norm->out(0);
    Value* x = xc;
    // Paired casts: xc = Cast(X) and Cast(y → X's type).
    Node* cin = producer(xc, "Cast");
    Node* cout = sole_user(g, y, "Cast");
    if (cin && cout && cin->in(0) && rms_type(cin->in(0)->dtype) && cout->out(0)->dtype == cin->in(0)->dtype) {
      x = cin->in(0);
      y = cout->out(0);
      body.push_back(cout);
    }
    const DType t = x->dtype;
    // The weight, when it is a constant of X's type shaped [D] (or [1,..,D]).
    Value* w = nullptr;
    if (Node* wm = sole_user(g, y, "Mul")) {
      Value* c = wm->in(0) == y ? wm->in(1) : wm->in(0);
      if (c && c->constant && c->constant->dtype() == t && c->constant->numel() == D &&
          !c->constant->dims().empty() && c->constant->dims().back() == D &&
          c->constant->rank() <= rank_of(y)) {
        w = c;
        body.push_back(wm);
        y = wm->out(0);
      }
    }
    if (!w) {
      Tensor ones = Tensor::from_f32({D}, std::vector<float>(size_t(D), 1.0f)).cast(t);
      w = g.add_constant(mean->name + "_rms_weight", std::move(ones));
    }
    Node* rn = g.add_node("shardrt.RMSNorm", mean->name + "_rmsnorm", {x, w}, {y->name + "_rms"},
                          {{"epsilon", Attr::of(float(eps))}});
    rn->fused_from = "Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul" + std::string(y != norm->out(0) ? "/Mul" : "");
    infer_node(g, *rn);
    g.replace_all_uses(y, rn->out(0));
    remove_unused(g, body);
    if (cin) remove_unused(g, {cin});
    note("fused RMSNorm at '" + mean->name + "' into shardrt.RMSNorm '" + rn->name + "'");
    return true;
  }
};

}  // namespace

PassPtr make_fuse_rmsnorm_pass() { return std::make_unique<FuseRMSNormPass>(); }

}  // namespace shardrt
