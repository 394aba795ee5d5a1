// Linear fusion: MatMul(X, W) with a constant 2-D W, or Gemm(A, B, C) with constant B and C
// (alpha = beta = 1, transA = 0), becomes shardrt.Linear; a following Add of a constant bias
// over the last axis and then a following Relu / Gelu / shardrt.Silu fold into it. A Linear
// without bias or activation (made in an earlier round) picks them up the same way.
//
// The Linear node reuses the MatMul/Gemm node (its name stays, for `inspect`), takes over the
// final value's uses (and its name when it is a graph output) and lists what it replaced in
// Node::fused_from.
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

using pass_util::node_tag;
using pass_util::single_use;

bool lin_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

// The single user of `v` when it has op `op`, else null.
Node* sole_user(const Graph& g, const Value* v, const std::string& op) {
  if (!single_use(g, v)) return nullptr;
  Node* u = v->users[0];
  return !u->dead && u->op == op ? u : nullptr;
}

// A constant usable as Linear's bias for an output of shape `y` with N = `n` columns:
// `n` elements laid out along the last axis only ([N], [1,N], [1,1,N] ...; a single element
// is broadcast when N == 1 or repeated otherwise), of rank <= y's (so the Add does not grow
// the output's rank). Returns the bias as a [N] tensor.
bool bias_of(const Value* b, DType t, const Shape& y, int64_t n, Tensor& out) {
  if (!b || !b->constant || b->dtype != t) return false;
  const Tensor& c = *b->constant;
  if (c.rank() > int64_t(y.size())) return false;
  for (int64_t i = 0; i + 1 < c.rank(); ++i)
    if (c.dim(i) != 1) return false;
  if (c.numel() == n) {
    out = c.reshaped({n}).clone();
    return true;
  }
  if (c.numel() == 1 && n > 0) {
    // A scalar bias: repeat it over N (small: one row).
    Tensor r(t, {n});
    for (int64_t j = 0; j < n; ++j) r.set_f(j, c.get_f(0));
    out = std::move(r);
    return true;
  }
  return false;
}

class FuseLinear : public Pass {
 public:
  std::string name() const override { return "fuse_linear"; }
  std::vector<std::string> target_ops() const override { return {"MatMul", "Gemm", "shardrt.Linear"}; }

  bool run(Graph& g) override {
    bool changed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      Node* n = g.nodes[i].get();
      if (n->dead) continue;
      if ((n->op == "MatMul" && from_matmul(g, n)) || (n->op == "Gemm" && from_gemm(g, n))) changed = true;
      if (n->op == "shardrt.Linear" && extend(g, n)) changed = true;
    }
    if (changed) {
      g.compact();
      g.sort();
    }
    return changed;
  }

 private:
  bool from_matmul(Graph& g, Node* m) {
    Value* x = m->in(0);
    Value* w = m->in(1);
    if (!x || !w || !w->constant || w->constant->rank() != 2 || x->constant) return false;
    if (!x->shape_inferred || x->shape.empty() || !lin_float(x->dtype) || w->dtype != x->dtype) return false;
    std::string from = node_tag(m);
    pass_util::rewrite_node(g, m, "shardrt.Linear", {x, w}, {{"trans_b", Attr::of(int64_t(0))}});
    m->fused_from = from;
    infer_node(g, *m);
    extend(g, m);
    note("MatMul '" + m->name + "' -> shardrt.Linear [" + m->fused_from + "]");
    return true;
  }

  bool from_gemm(Graph& g, Node* m) {
    Value* a = m->in(0);
    Value* b = m->in(1);
    Value* c = m->in(2);
    if (!a || !b || !b->constant || b->constant->rank() != 2 || a->constant) return false;
    if (!a->shape_inferred || a->shape.size() != 2 || !lin_float(a->dtype) || b->dtype != a->dtype) return false;
    if (m->attr_f("alpha", 1.f) != 1.f || m->attr_f("beta", 1.f) != 1.f || m->attr_i("transA", 0) != 0) return false;
    const int64_t tb = m->attr_i("transB", 0) ? 1 : 0;
    const int64_t n = tb ? b->constant->dim(0) : b->constant->dim(1);
    Value* bias = nullptr;
    if (c) {
      Tensor bt;
      // C broadcasts to [M, N]; only a per-column C ([N], [1,N] or a scalar) is a bias.
      if (!bias_of(c, a->dtype, m->out(0)->shape, n, bt)) return false;
      bias = c->constant->rank() == 1 && c->constant->numel() == n ? c : g.add_constant(c->name + "/bias", std::move(bt));
    }
    std::string from = node_tag(m);
    std::vector<Value*> ins{a, b};
    if (bias) ins.push_back(bias);
    pass_util::rewrite_node(g, m, "shardrt.Linear", ins, {{"trans_b", Attr::of(tb)}});
    m->fused_from = from;
    infer_node(g, *m);
    extend(g, m);
    note("Gemm '" + m->name + "' -> shardrt.Linear [" + m->fused_from + "]");
    return true;
  }

  // Folds a following bias Add (when the Linear has none) and then an activation (when it
  // has none) into `lin`. Returns whether it absorbed anything.
  bool extend(Graph& g, Node* lin) {
    bool any = false;
    Value* y = lin->out(0);
    if (!y || !y->shape_inferred || y->shape.empty()) return false;
    const Dim& nd = y->shape.back();
    // Only before an activation: act(x·W) + b is not act(x·W + b).
    if (!lin->in(2) && nd.known() && lin->attr_s("activation", "none") == "none") {
      if (Node* add = sole_user(g, y, "Add")) {
        Value* other = add->in(0) == y ? add->in(1) : add->in(0);
        Tensor bt;
        // bias_of admits only biases along the last axis of rank <= y's, so the Add's
        // output has y's shape and the Add is exactly Linear's bias.
        if (other != y && bias_of(other, y->dtype, y->shape, nd.value, bt)) {
          Value* bias = other->constant->rank() == 1 ? other : g.add_constant(other->name + "/bias", std::move(bt));
          g.set_input(lin, 2, bias);
          absorb(g, lin, add);
          any = true;
        }
      }
    }
    if (lin->attr_s("activation", "none") == "none") {
      Value* y2 = lin->out(0);
      if (single_use(g, y2)) {
        Node* act = y2->users[0];
        // Exporters put a Reshape between a 2-D Gemm and its activation ([B*S, N] back to
        // [B, S, N]); an elementwise activation commutes with it, so it folds all the same.
        Node* reshape = nullptr;
        if (act->op == "Reshape" && act->in(0) == y2 && act->out(0) && single_use(g, act->out(0))) {
          reshape = act;
          act = reshape->out(0)->users[0];
        }
        Value* act_in = reshape ? reshape->out(0) : y2;
        std::string a;
        if (act->op == "Relu") a = "relu";
        else if (act->op == "shardrt.Silu") a = "silu";
        else if (act->op == "Gelu") {
          std::string ap = act->attr_s("approximate", "none");
          a = ap == "none" ? "gelu" : ap == "tanh" ? "gelu_tanh" : "";
        }
        if (!a.empty() && act->in(0) == act_in && act->inputs.size() == 1) {
          lin->attrs["activation"] = Attr::of(a);
          if (reshape) {
            // act(reshape(y)) == reshape(act(y)): the Reshape now yields the activation's output.
            Value* out = act->out(0);
            lin->fused_from += " + " + node_tag(act);
            g.remove_node(act);
            g.replace_all_uses(out, reshape->out(0));
          } else {
            absorb(g, lin, act);
          }
          any = true;
        }
      }
    }
    if (any) infer_node(g, *lin);
    return any;
  }

  // `lin`'s output takes over `n`'s output (uses and, for a graph output, the name); `n` goes.
  void absorb(Graph& g, Node* lin, Node* n) {
    Value* from = n->out(0);
    lin->fused_from += " + " + node_tag(n);
    g.remove_node(n);
    g.replace_all_uses(from, lin->out(0));
  }
};

}  // namespace

PassPtr make_fuse_linear_pass() { return std::make_unique<FuseLinear>(); }

}  // namespace shardrt
