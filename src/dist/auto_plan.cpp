// `--tp-plan auto` (plan.h): structural recognition on the fused graph, so that it works
// whatever the exporter named things. Attention blocks are found from shardrt.Attention
// nodes, MLPs from a linear layer fed (through elementwise ops) only by linear layers that
// share one input, the token embedding from a Gather of a graph input, the LM head from a
// linear layer producing a graph output.
#include <functional>
#include <map>
#include <set>

#include "dist/plan.h"
#include "ir/graph.h"

namespace shardrt::dist {

namespace {

const std::set<std::string> kThrough = {"Transpose", "Reshape", "Squeeze", "Unsqueeze", "Identity", "shardrt.Rotary",
                                        "Split", "Flatten", "Cast"};
const std::set<std::string> kElementwise = {"Relu", "Gelu", "shardrt.Silu", "Sigmoid", "Tanh", "Mul", "shardrt.SwiGLU",
                                            "Add", "Div", "Erf", "Identity", "Cast", "Reshape"};

// (A packed gate/up Linear, activation swiglu, is left whole: its weight splits in two halves.)
bool is_linear(const Node* n) {
  return n && (n->op == "shardrt.Linear" || n->op == "MatMul") && n->in(1) && n->in(1)->is_constant() &&
         n->in(1)->shape.size() == 2 && n->attr_s("activation", "none") != "swiglu";
}
int64_t out_features(const Node* n) {
  bool tb = n->op == "shardrt.Linear" && n->attr_i("trans_b", 0) != 0;
  return n->in(1)->constant->dim(tb ? 0 : 1);
}
int64_t in_features(const Node* n) {
  bool tb = n->op == "shardrt.Linear" && n->attr_i("trans_b", 0) != 0;
  return n->in(1)->constant->dim(tb ? 1 : 0);
}

// The linear layer `v` comes from through view ops, rotary and splits; null if none.
const Node* linear_source(const Value* v) {
  for (int guard = 0; v && v->producer && guard < 16; ++guard) {
    const Node* p = v->producer;
    if (is_linear(p)) return p;
    if (!kThrough.count(p->op)) return nullptr;
    v = p->in(0);
  }
  return nullptr;
}

// The linear layer that consumes `v` through single-use view ops; null if none.
const Node* linear_sink(const Graph& g, const Value* v) {
  for (int guard = 0; v && guard < 16; ++guard) {
    // Shape reads of the value (exporters compute reshape targets from them) do not count.
    const Node* u = nullptr;
    int real = 0;
    for (const Node* x : v->users)
      if (x->op != "Shape") { u = x; ++real; }
    if (real != 1 || g.is_output(v)) return nullptr;
    if (is_linear(u) && u->in(0) == v) return u;
    if (u->op != "Transpose" && u->op != "Reshape" && u->op != "Flatten") return nullptr;
    v = u->out(0);
  }
  return nullptr;
}

}  // namespace

ShardingPlan auto_plan(const Graph& g, int tp, std::string& report) {
  ShardingPlan plan;
  plan.source = "auto";
  std::map<const Node*, std::string> style;
  std::vector<const Node*> order;
  auto choose = [&](const Node* n, const std::string& s, const std::string& why) {
    if (!n || style.count(n)) return;
    style[n] = s;
    order.push_back(n);
    report += "  " + n->name + " (" + n->op + " " + n->in(1)->name + "): " + s + "  [" + why + "]\n";
  };
  std::set<const Node*> in_attention;
  for (auto& up : g.nodes) {
    const Node* n = up.get();
    if (n->op != "shardrt.Attention") continue;
    const Node* q = linear_source(n->in(0));
    const Node* k = linear_source(n->in(1));
    const Node* v = linear_source(n->in(2));
    const Node* o = linear_sink(g, n->out(0));
    if (!q || !o) {
      report += "  attention '" + n->name + "': no Q projection / output projection found; left replicated\n";
      continue;
    }
    Dim hq = n->in(0)->shape.size() == 4 ? n->in(0)->shape[1] : Dim();
    Dim hkv = n->in(1)->shape.size() == 4 ? n->in(1)->shape[1] : Dim();
    // Heads unknown at build time (TorchScript exports compute reshape targets): the
    // sharding pass checks them on the reshapes.
    if (!hq.known() && !hkv.known() && out_features(q) % tp == 0) { hq = Dim(tp); hkv = Dim(tp); }
    if (!hq.known() || hq.value % tp != 0) {
      report += "  attention '" + n->name + "': " + hq.str() + " query heads do not divide by tp=" + std::to_string(tp) +
                "; left replicated\n";
      continue;
    }
    bool split_kv = hkv.known() && hkv.value % tp == 0;
    if (k == q || v == q) {  // fused Q|K|V projection
      if (!split_kv) { report += "  attention '" + n->name + "': fused QKV with kv heads not divisible by tp; left replicated\n"; continue; }
      choose(q, "colwise", "fused Q/K/V projection of attention '" + n->name + "'");
    } else {
      choose(q, "colwise", "Q projection of attention '" + n->name + "', " + hq.str() + " heads");
      if (split_kv) {
        choose(k, "colwise", "K projection, " + hkv.str() + " kv heads");
        choose(v, "colwise", "V projection, " + hkv.str() + " kv heads");
      } else {
        report += "  attention '" + n->name + "': " + hkv.str() + " kv heads do not divide by tp=" + std::to_string(tp) +
                  ": K/V projections replicated, each rank slices the kv heads its query heads use\n";
      }
    }
    choose(o, "rowwise", "output projection of attention '" + n->name + "'");
    for (const Node* x : {q, k, v, o}) if (x) in_attention.insert(x);
  }
  // MLPs: a linear layer (down) whose input comes through elementwise ops from linear
  // layers (up/gate) that all read one value.
  for (auto& up : g.nodes) {
    const Node* down = up.get();
    if (!is_linear(down) || in_attention.count(down) || style.count(down)) continue;
    std::vector<const Node*> ups;
    bool ok = true;
    const Value* shared = nullptr;
    std::function<void(const Value*, int)> walk = [&](const Value* v, int depth) {
      if (!ok) return;
      if (!v || !v->producer || depth > 8) { if (!(v && v->is_constant())) ok = false; return; }
      const Node* p = v->producer;
      if (is_linear(p)) {
        if (shared && p->in(0) != shared) ok = false;
        shared = p->in(0);
        if (std::find(ups.begin(), ups.end(), p) == ups.end()) ups.push_back(p);
        return;
      }
      if (!kElementwise.count(p->op)) { ok = false; return; }
      // Views carry their data in input 0 (the rest is shape math).
      if (p->op == "Reshape" || p->op == "Cast" || p->op == "Identity") { walk(p->in(0), depth + 1); return; }
      for (Value* i : p->inputs) if (i && !i->is_constant()) walk(i, depth + 1);
    };
    walk(down->in(0), 0);
    if (!ok || ups.empty()) continue;
    bool divisible = in_features(down) % tp == 0;
    for (const Node* u : ups) divisible &= out_features(u) % tp == 0 && !in_attention.count(u) && !style.count(u);
    if (!divisible) continue;
    for (const Node* u : ups) choose(u, "colwise", "MLP up/gate projection into '" + down->name + "'");
    choose(down, "rowwise", "MLP down projection, " + std::to_string(in_features(down)) + " features");
  }
  // Token embeddings (row-wise over the vocabulary) and the LM head.
  std::vector<std::pair<const Node*, std::string>> extra;
  for (auto& up : g.nodes) {
    const Node* n = up.get();
    if (n->op == "Gather" && n->in(0) && n->in(0)->is_constant() && n->in(0)->shape.size() == 2 && n->attr_i("axis", 0) == 0) {
      const Value* ids = n->in(1);
      while (ids && ids->producer && (ids->producer->op == "Reshape" || ids->producer->op == "Cast")) ids = ids->producer->in(0);
      bool from_input = false;
      for (Value* i : g.inputs) from_input |= i == ids;
      int64_t V = n->in(0)->constant->dim(0);
      if (from_input && V % tp == 0 && V >= 16 * tp) {
        extra.push_back({n, "rowwise"});
        report += "  " + n->name + " (Gather " + n->in(0)->name + "): rowwise  [token embedding, vocabulary " + std::to_string(V) + "]\n";
      }
    }
    if (is_linear(n) && !style.count(n) && out_features(n) % tp == 0) {
      const Value* y = n->out(0);
      for (int guard = 0; guard < 4 && y && !g.is_output(y) && y->users.size() == 1 &&
                          (y->users[0]->op == "Reshape" || y->users[0]->op == "Identity"); ++guard)
        y = y->users[0]->out(0);
      if (y && g.is_output(y)) {
        extra.push_back({n, "colwise_out"});
        report += "  " + n->name + " (" + n->op + " " + n->in(1)->name + "): colwise, output Replicate  [LM head / output projection]\n";
      }
    }
  }
  for (const Node* n : order) {
    PlanEntry e;
    e.pattern = n->name;
    e.style = style[n];
    e.origin = "auto plan";
    plan.entries.push_back(e);
  }
  for (auto& [n, s] : extra) {
    PlanEntry e;
    e.pattern = n->name;
    e.origin = "auto plan";
    if (s == "rowwise") {
      e.style = "rowwise";
      e.input_layout = Placement::replicate();
    } else {
      e.style = "colwise";
      e.output_layout = Placement::replicate();
    }
    plan.entries.push_back(e);
  }
  if (plan.entries.empty()) report += "  nothing recognised: every layer stays replicated\n";
  return plan;
}

}  // namespace shardrt::dist
