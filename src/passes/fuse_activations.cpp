// Activation fusions:
//  - GELU, erf form x * 0.5 * (1 + erf(x / sqrt(2))) in the association orders exporters emit
//    (PyTorch: ((x * (erf(x / 1.414...) + 1)) * 0.5); Hugging Face / TF: (x * 0.5) * (1 +
//    erf(x * 0.7071...)); 0.5 * (...) * x; a final / 2), → ONNX Gelu(approximate="none").
//  - GELU, tanh form 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))) with x^3 as
//    Pow(x, 3), x * (x * x) or (x * x) * x, → Gelu(approximate="tanh").
//  - x * sigmoid(x) → shardrt.Silu; then silu(g) * u with g and u of one shape → shardrt.SwiGLU.
// Every intermediate value must have a single use (and not be a graph output): a value read
// elsewhere has to be computed anyway, and removing its producer would break that reader.
// The node computing the pattern's final value is turned into the fused op in place, so the
// result keeps its name (and its place among the graph outputs).
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

using pass_util::const_near;
using pass_util::node_tag;
using pass_util::producer;
using pass_util::single_use;

// Constants are matched with a relative tolerance loose enough for fp16-rounded exports
// (1.414 in fp16 is 1.4140625, 0.044715 is 0.044708: relative errors below 2e-4).
constexpr double kTol = 1e-3;

Node* sole_user(const Graph& g, const Value* v, const std::string& op) {
  if (!single_use(g, v)) return nullptr;
  Node* u = v->users[0];
  return !u->dead && u->op == op ? u : nullptr;
}

// The input of binary node `n` that is not `v` (null when `v` is not an input of `n`).
Value* other(const Node* n, const Value* v) {
  if (n->inputs.size() != 2) return nullptr;
  if (n->inputs[0] == v) return n->inputs[1];
  if (n->inputs[1] == v) return n->inputs[0];
  return nullptr;
}

// A one-element constant near `want` that does not raise the rank of `x` by broadcasting.
bool scalar_near(const Value* c, double want, const Value* x) {
  return const_near(c, want, kTol) && c->constant->rank() <= int64_t(x->shape.size());
}

// Binary node `n` (of op `op`) computes f(x, c) with c a scalar near `want`, either order.
bool binary_with_const(const Node* n, const std::string& op, const Value* x, double want) {
  if (!n || n->op != op || n->inputs.size() != 2) return false;
  const Value* c = other(n, x);
  return c && c != x && scalar_near(c, want, x);
}

struct Match {
  Node* final = nullptr;
  std::vector<Node*> inner;  // replaced nodes other than `final`, in graph order
};

// Given s = 1 + f(x) (single use), finds x * 0.5 * s in any association; fills `m`.
bool match_half_x_times(const Graph& g, Value* s, Value* x, Match& m) {
  Node* m1 = sole_user(g, s, "Mul");
  if (!m1) return false;
  Value* o1 = other(m1, s);
  if (!o1) return false;
  if (o1 == x) {  // (x * s) * 0.5 or (x * s) / 2
    Value* y = m1->out(0);
    if (!single_use(g, y)) return false;
    Node* m2 = y->users[0];
    bool ok = binary_with_const(m2, "Mul", y, 0.5) ||
              (m2->op == "Div" && m2->in(0) == y && scalar_near(m2->in(1), 2.0, x));
    if (!ok) return false;
    m.inner.push_back(m1);
    m.final = m2;
    return true;
  }
  if (scalar_near(o1, 0.5, x)) {  // (0.5 * s) * x
    Node* m2 = sole_user(g, m1->out(0), "Mul");
    if (!m2 || other(m2, m1->out(0)) != x) return false;
    m.inner.push_back(m1);
    m.final = m2;
    return true;
  }
  // (x * 0.5) * s or (x / 2) * s
  Node* p = producer(o1);
  if (!p || !single_use(g, o1)) return false;
  bool half = (p->op == "Mul" && other(p, x) && binary_with_const(p, "Mul", x, 0.5)) ||
              (p->op == "Div" && p->in(0) == x && scalar_near(p->in(1), 2.0, x));
  if (!half) return false;
  m.inner.push_back(p);
  m.final = m1;
  return true;
}

// s = Add(v, 1) in either order, v single use; returns s or null.
Value* plus_one(const Graph& g, Value* v, const Value* x) {
  Node* a = sole_user(g, v, "Add");
  if (!a || !binary_with_const(a, "Add", v, 1.0)) return nullptr;
  (void)x;
  return a->out(0);
}

class FuseActivations : public Pass {
 public:
  std::string name() const override { return "fuse_activations"; }
  std::vector<std::string> target_ops() const override { return {"Erf", "Tanh", "Sigmoid", "shardrt.Silu"}; }

  bool run(Graph& g) override {
    bool changed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      Node* n = g.nodes[i].get();
      if (n->dead) continue;
      if (n->op == "Erf") changed |= gelu_erf(g, n);
      else if (n->op == "Tanh") changed |= gelu_tanh(g, n);
      else if (n->op == "Sigmoid") changed |= silu(g, n);
      else if (n->op == "Mul") changed |= swiglu(g, n);
    }
    if (changed) {
      g.compact();
      g.sort();
    }
    return changed;
  }

 private:
  // Turns m.final into `op`(ins) and removes m.inner (and `first`, the anchor chain's head).
  void commit(Graph& g, Match& m, const std::vector<Node*>& chain, const std::string& op,
              const std::vector<Value*>& ins, std::map<std::string, Attr> attrs) {
    std::vector<Node*> all = chain;
    all.insert(all.end(), m.inner.begin(), m.inner.end());
    std::string from;
    for (Node* n : all) from += (from.empty() ? "" : " + ") + node_tag(n);
    from += " + " + node_tag(m.final);
    pass_util::rewrite_node(g, m.final, op, ins, std::move(attrs));
    m.final->fused_from = from;
    for (Node* n : all) g.remove_node(n);
    infer_node(g, *m.final);
    note(op + " '" + m.final->name + "' from " + from);
  }

  // erf(x / sqrt2) or erf(x * (1/sqrt2)), then + 1, then x * 0.5 * (...).
  bool gelu_erf(Graph& g, Node* e) {
    Value* d = e->in(0);
    Node* p = producer(d);
    if (!p || !single_use(g, d) || p->inputs.size() != 2) return false;
    Value* x = nullptr;
    if (p->op == "Div" && scalar_near(p->in(1), 1.4142135623730951, p->in(0))) x = p->in(0);
    else if (p->op == "Mul") {
      for (int k = 0; k < 2 && !x; ++k)
        if (scalar_near(p->in(1 - k), 0.7071067811865476, p->in(k))) x = p->in(k);
    }
    if (!x || x->constant || !is_float(x->dtype)) return false;
    Value* s = plus_one(g, e->out(0), x);
    Match m;
    if (!s || !match_half_x_times(g, s, x, m)) return false;
    commit(g, m, {p, e, s->producer}, "Gelu", {x}, {{"approximate", Attr::of(std::string("none"))}});
    return true;
  }

  // tanh(c1 * (x + c2 * x^3)), then + 1, then x * 0.5 * (...).
  bool gelu_tanh(Graph& g, Node* t) {
    Value* u = t->in(0);
    Node* pm = producer(u, "Mul");
    if (!pm || !single_use(g, u) || pm->inputs.size() != 2) return false;
    std::vector<Node*> chain{pm};
    Value* inner = nullptr;
    for (int k = 0; k < 2 && !inner; ++k)
      if (const_near(pm->in(1 - k), 0.7978845608028654, kTol)) inner = pm->in(k);
    Node* add = producer(inner, "Add");
    if (!add || !single_use(g, inner) || add->inputs.size() != 2) return false;
    for (int k = 0; k < 2; ++k) {
      Value* x = add->in(k);
      Value* c3 = add->in(1 - k);
      if (!x || x->constant || !is_float(x->dtype)) continue;
      std::vector<Node*> cube_nodes;
      if (!cubic_term(g, c3, x, cube_nodes)) continue;
      if (!scalar_near(pm->in(pm->in(0) == inner ? 1 : 0), 0.7978845608028654, x)) return false;
      Value* s = plus_one(g, t->out(0), x);
      Match m;
      if (!s || !match_half_x_times(g, s, x, m)) return false;
      std::vector<Node*> all = cube_nodes;
      all.push_back(add);
      all.push_back(pm);
      all.push_back(t);
      all.push_back(s->producer);
      commit(g, m, all, "Gelu", {x}, {{"approximate", Attr::of(std::string("tanh"))}});
      return true;
    }
    return false;
  }

  // v = 0.044715 * x^3 (single use), x^3 as Pow(x, 3), x * (x * x) or (x * x) * x.
  static bool cubic_term(const Graph& g, Value* v, Value* x, std::vector<Node*>& nodes) {
    Node* mc = producer(v, "Mul");
    if (!mc || !single_use(g, v) || mc->inputs.size() != 2) return false;
    Value* cube = nullptr;
    for (int k = 0; k < 2 && !cube; ++k)
      if (scalar_near(mc->in(1 - k), 0.044715, x)) cube = mc->in(k);
    if (!cube || !single_use(g, cube)) return false;
    Node* pc = producer(cube);
    if (!pc) return false;
    if (pc->op == "Pow" && pc->in(0) == x && scalar_near(pc->in(1), 3.0, x)) {
      nodes = {pc, mc};
      return true;
    }
    if (pc->op == "Mul" && pc->inputs.size() == 2) {
      Value* sq = other(pc, x);
      Node* ps = producer(sq, "Mul");
      if (ps && single_use(g, sq) && ps->in(0) == x && ps->in(1) == x) {
        nodes = {ps, pc, mc};
        return true;
      }
    }
    return false;
  }

  // x * sigmoid(x) → shardrt.Silu(x).
  bool silu(Graph& g, Node* sg) {
    Value* x = sg->in(0);
    Value* y = sg->out(0);
    Node* m = sole_user(g, y, "Mul");
    if (!x || !m || other(m, y) != x) return false;
    Match mt;
    mt.final = m;
    commit(g, mt, {sg}, "shardrt.Silu", {x}, {});
    return true;
  }

  // shardrt.Silu(g) * u → shardrt.SwiGLU(g, u) when g and u have one shape and dtype.
  bool swiglu(Graph& g, Node* m) {
    if (m->inputs.size() != 2) return false;
    for (int k = 0; k < 2; ++k) {
      Value* s = m->in(k);
      Value* u = m->in(1 - k);
      Node* sl = producer(s, "shardrt.Silu");
      if (!sl || !u || u == s || !single_use(g, s)) continue;
      Value* gate = sl->in(0);
      if (!gate || !u->shape_inferred || !gate->shape_inferred || u->dtype != gate->dtype) continue;
      if (gate->shape.size() != u->shape.size() || !(gate->shape == u->shape)) continue;
      Match mt;
      mt.final = m;
      commit(g, mt, {sl}, "shardrt.SwiGLU", {gate, u}, {});
      return true;
    }
    return false;
  }
};

}  // namespace

PassPtr make_fuse_activations_pass() { return std::make_unique<FuseActivations>(); }

}  // namespace shardrt
