// Dead-code elimination: removes nodes none of whose outputs is used (graph outputs count as
// used) and drops the values nothing refers to any more (unused constants included). Also
// bypasses Identity nodes (and inference-mode Dropout) whose output is not a graph output.
#include <set>

#include "passes/pass_manager.h"

namespace shardrt {

namespace {

class DeadCodeElim : public Pass {
 public:
  std::string name() const override { return "dce"; }

  bool run(Graph& g) override {
    int bypassed = 0, removed = 0;
    for (auto& up : g.nodes) {
      Node* n = up.get();
      if (n->dead || !is_passthrough(g, *n)) continue;
      Value* in = n->in(0);
      Value* out = n->out(0);
      // A graph output keeps its producer: bypassing would need another Identity to carry
      // the name when the input is a graph input or constant.
      if (!in || !out || g.is_output(out)) continue;
      g.replace_all_uses(out, in);
      ++bypassed;
    }
    // Reverse topological order: removing a node can make its producers dead in turn.
    for (auto it = g.nodes.rbegin(); it != g.nodes.rend(); ++it) {
      Node* n = it->get();
      if (n->dead) continue;
      // A node without outputs exists for its effect (a send, a barrier): never dead.
      bool used = true;
      for (Value* o : n->outputs)
        if (o) used = false;
      for (Value* o : n->outputs)
        if (o && (!o->users.empty() || g.is_output(o))) used = true;
      if (used) continue;
      g.remove_node(n);
      ++removed;
    }
    size_t before = g.values.size();
    g.compact();
    size_t dropped = before - g.values.size();
    if (bypassed) note("bypassed " + std::to_string(bypassed) + " Identity/Dropout nodes");
    if (removed) note("removed " + std::to_string(removed) + " unused nodes");
    if (dropped) note("dropped " + std::to_string(dropped) + " unused values");
    return bypassed || removed || dropped;
  }

 private:
  // Identity, and Dropout in inference (its output 0 is its input; the mask output, when
  // somebody reads it, keeps the node).
  // Dropout with training_mode set (input 2, true or unknown) really drops and is kept.
  static bool is_passthrough(const Graph& g, const Node& n) {
    if (n.op == "Identity") return true;
    if (n.op == "Dropout") {
      const Value* mask = n.out(1);
      if (mask && (!mask->users.empty() || g.is_output(mask))) return false;
      const Value* train = n.in(2);
      double t = 0;
      return !train || (pass_util::const_scalar(train, t) && t == 0);
    }
    return false;
  }
};

}  // namespace

PassPtr make_dce_pass() { return std::make_unique<DeadCodeElim>(); }

}  // namespace shardrt
