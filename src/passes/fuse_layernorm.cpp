// Decomposed LayerNorm → ONNX LayerNormalization (axis -1), as older opsets and hand-written
// models spell it:
//   m = ReduceMean(X, [-1]); d = Sub(X, m); v = ReduceMean(Pow(d, 2) | Mul(d, d), [-1])
//   n = Div(d, Sqrt(Add(v, eps)))  |  Mul(d, Reciprocal(Sqrt(Add(v, eps))))
//   Y = [Add]([Mul](n, gamma), beta)          (gamma/beta constant, [D])
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "passes/pattern.h"

namespace shardrt {

namespace {

using namespace pattern;

// The only user of `v` (a value used once, not a graph output), else null.
Node* sole_user(const Graph& g, const Value* v, const std::string& op) {
  if (!single_use(g, v)) return nullptr;
  Node* u = v->users[0];
  return u->op == op ? u : nullptr;
}

// A constant usable as a [D] scale/shift of the last axis: numel D and all leading dims 1.
// Returns it reshaped to [D] (a new constant when the rank differs).
Value* last_axis_param(Graph& g, Value* c, int64_t D, DType t) {
  if (!c || !c->constant || c->constant->dtype() != t || c->constant->numel() != D) return nullptr;
  const Dims& d = c->constant->dims();
  if (d.empty() || d.back() != D) return nullptr;
  if (d.size() == 1) return c;
  return g.add_constant(c->name + "_1d", c->constant->reshaped({D}));
}

class FuseLayerNormPass : public Pass {
 public:
  std::string name() const override { return "fuse_layernorm"; }
  std::vector<std::string> target_ops() const override { return {"ReduceMean"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "ReduceMean", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  bool try_fuse(Graph& g, Node* m1) {
    Value* x = m1->in(0);
    if (!x || !reduces_last_axis(m1)) return false;
    const DType t = x->dtype;
    if (!is_float(t) || t == DType::F64) return false;
    DimExpr dd = dim_of(x, -1);
    if (dd.kind != DimExpr::Known || dd.value <= 0) return false;
    const int64_t D = dd.value;
    Node* sub = sole_user(g, m1->out(0), "Sub");
    if (!sub || sub->in(0) != x || sub->in(1) != m1->out(0)) return false;
    Value* d = sub->out(0);
    if (g.is_output(d)) return false;
    // d feeds exactly the square and the normalisation.
    Node *sq = nullptr, *norm = nullptr;
    for (Node* u : d->users) {
      if (u == sq) continue;  // Mul(d, d) lists itself twice
      if (!sq && ((u->op == "Pow" && u->in(0) == d && pass_util::const_near(u->in(1), 2.0)) ||
                  (u->op == "Mul" && u->in(0) == d && u->in(1) == d)))
        sq = u;
      else if (!norm && (u->op == "Div" || u->op == "Mul"))
        norm = u;
      else
        return false;
    }
    if (!sq || !norm) return false;
    Node* m2 = sole_user(g, sq->out(0), "ReduceMean");
    if (!m2 || !reduces_last_axis(m2)) return false;
    Node* add = sole_user(g, m2->out(0), "Add");
    if (!add) return false;
    Value* epsv = add->in(0) == m2->out(0) ? add->in(1) : add->in(0);
    double eps;
    if (!const_scalar(epsv, eps) || eps < 0) return false;
    Node* sqrt = sole_user(g, add->out(0), "Sqrt");
    if (!sqrt) return false;
    std::vector<Node*> body = {m1, sub, sq, m2, add, sqrt, norm};
    if (norm->op == "Div") {
      if (norm->in(0) != d || norm->in(1) != sqrt->out(0)) return false;
    } else {
      Node* rcp = sole_user(g, sqrt->out(0), "Reciprocal");
      if (!rcp) return false;
      Value* other = norm->in(0) == d ? norm->in(1) : norm->in(0);
      if (other != rcp->out(0)) return false;
      body.push_back(rcp);
    }
    if (g.is_output(sqrt->out(0))) return false;
    // Optional scale and shift.
    Value* y = norm->out(0);
    Value* gamma = nullptr;
    Value* beta = nullptr;
    if (Node* mul = sole_user(g, y, "Mul")) {
      Value* c = mul->in(0) == y ? mul->in(1) : mul->in(0);
      if ((gamma = last_axis_param(g, c, D, t))) {
        body.push_back(mul);
        y = mul->out(0);
      }
    }
    if (Node* badd = sole_user(g, y, "Add")) {
      Value* c = badd->in(0) == y ? badd->in(1) : badd->in(0);
      if ((beta = last_axis_param(g, c, D, t))) {
        body.push_back(badd);
        y = badd->out(0);
      }
    }
    if (!gamma) {
      Tensor ones = Tensor::from_f32({D}, std::vector<float>(size_t(D), 1.0f)).cast(t);
      gamma = g.add_constant(m1->name + "_ln_scale", std::move(ones));
    }
    std::vector<Value*> ins = {x, gamma};
    if (beta) ins.push_back(beta);
    Node* ln = g.add_node("LayerNormalization", m1->name + "_layernorm", ins, {y->name + "_ln"},
                          {{"axis", Attr::of(int64_t(-1))}, {"epsilon", Attr::of(float(eps))}});
    ln->fused_from = "ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div" + std::string(beta ? "/Mul/Add" : "");
    infer_node(g, *ln);
    g.replace_all_uses(y, ln->out(0));
    remove_unused(g, body);
    note("fused decomposed LayerNorm at '" + m1->name + "' into LayerNormalization '" + ln->name + "'");
    return true;
  }
};

}  // namespace

PassPtr make_fuse_layernorm_pass() { return std::make_unique<FuseLayerNormPass>(); }

}  // namespace shardrt
