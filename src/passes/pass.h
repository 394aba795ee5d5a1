// The graph-pass interface. A pass rewrites a Graph in place and says whether it changed
// anything; the PassManager (pass_manager.h) runs passes to a fixed point.
//
// Contract every pass keeps: on return the graph verifies (Graph::verify()), is sorted
// topologically (Graph::sort()) with dead nodes compacted away (Graph::compact()), and every
// value a pass created has its dtype/shape set (run infer_node on new nodes). Graph outputs
// keep their names. `run` returns true only when it really changed the graph, so that the
// fixed-point loop terminates.
#pragma once
#include <map>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ir/graph.h"

namespace shardrt {

class Pass {
 public:
  virtual ~Pass() = default;
  // Stable name: used in logs, stats and BuildConfig::disabled_passes ("constant_fold").
  virtual std::string name() const = 0;
  // Rewrites `g`; returns whether anything changed.
  virtual bool run(Graph& g) = 0;
  // A cheap filter, as ONNX Runtime's rewrite rules have: the op types a rewrite can start
  // from. When non-empty, the manager skips the pass on graphs holding none of them.
  virtual std::vector<std::string> target_ops() const { return {}; }
  // Passes that are not idempotent by construction (autocast) run once per PassManager::run
  // instead of being iterated to a fixed point.
  virtual bool run_once() const { return false; }

  // A pass records each rewrite it makes ("fused MatMul 'a' + Add 'b' into shardrt.Linear
  // 'a'"); the manager counts these and prints them in verbose mode.
  void note(std::string what) { notes_.push_back(std::move(what)); }
  std::vector<std::string> take_notes() { return std::exchange(notes_, {}); }

 private:
  std::vector<std::string> notes_;
};

using PassPtr = std::unique_ptr<Pass>;

// Small pattern-matching helpers shared by the passes.
namespace pass_util {

// The node producing `v`, when it exists and has op type `op` (any op when `op` is empty).
inline Node* producer(const Value* v, const std::string& op = {}) {
  if (!v || !v->producer || v->producer->dead) return nullptr;
  return op.empty() || v->producer->op == op ? v->producer : nullptr;
}

// Whether `v` can be folded into a fusion: used by exactly one node and not a graph output.
inline bool single_use(const Graph& g, const Value* v) {
  return v && v->users.size() == 1 && !g.is_output(v);
}

// The value of a constant with exactly one element (any dtype, any rank); false otherwise.
inline bool const_scalar(const Value* v, double& out) {
  if (!v || !v->constant || v->constant->numel() != 1) return false;
  out = v->constant->get_f(0);
  return true;
}

// Whether `v` is a constant with one element within `tol` of `want`.
inline bool const_near(const Value* v, double want, double tol = 1e-6) {
  double x;
  return const_scalar(v, x) && (x - want <= tol * (1 + (want < 0 ? -want : want))) &&
         (want - x <= tol * (1 + (want < 0 ? -want : want)));
}

// Turns `n` into another op in place, keeping its name and outputs (so graph outputs keep
// their names and users need no rewiring): detaches its old inputs, sets the new ones.
// Call infer_node(g, *n) afterwards.
inline void rewrite_node(Graph& g, Node* n, const std::string& op, const std::vector<Value*>& ins,
                         std::map<std::string, Attr> attrs) {
  for (size_t i = 0; i < n->inputs.size(); ++i) g.set_input(n, i, nullptr);
  n->inputs.clear();
  for (size_t i = 0; i < ins.size(); ++i) g.set_input(n, i, ins[i]);
  n->op = op;
  n->attrs = std::move(attrs);
  n->opset = 0;
}

// The dtypes the fused norm kernels take.
inline bool norm_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// Dims that are equal at every run: both known and equal, or the same named symbol.
inline bool same_dim(const Dim& a, const Dim& b) {
  if (a.known() || b.known()) return a.known() && b.known() && a.value == b.value;
  return !a.sym.empty() && a.sym != "?" && a.sym == b.sym;
}

// A norm's scale/shift that the fused kernels read as [D]: x's dtype, leading dims 1, last
// dim the same as x's.
inline bool norm_param(const Value* p, const Value* x) {
  if (!p || p->dtype != x->dtype || p->shape.empty() || x->shape.empty()) return false;
  for (size_t i = 0; i + 1 < p->shape.size(); ++i)
    if (!(p->shape[i].known() && p->shape[i].value == 1)) return false;
  return same_dim(p->shape.back(), x->shape.back());
}

// An optional output nobody reads (absent, no users, not a graph output).
inline bool unused_output(const Graph& g, const Value* v) { return !v || (v->users.empty() && !g.is_output(v)); }

// "Op 'name'" for Node::fused_from lists.
inline std::string node_tag(const Node* n) {
  std::string s = n->op + " '" + n->name + "'";
  if (!n->fused_from.empty()) s += " [" + n->fused_from + "]";
  return s;
}

// Calls `try_rewrite` on every live node of type `op` present when the call starts (nodes
// it creates are not visited); when any call returns true, re-sorts and compacts the graph
// as the Pass contract requires. Returns whether anything changed.
inline bool rewrite_each(Graph& g, const std::string& op, const std::function<bool(Node*)>& try_rewrite) {
  std::vector<Node*> snapshot;
  for (auto& n : g.nodes)
    if (n->op == op) snapshot.push_back(n.get());
  bool changed = false;
  for (Node* n : snapshot)
    if (!n->dead) changed |= try_rewrite(n);
  if (changed) {
    g.sort();
    g.compact();
  }
  return changed;
}

}  // namespace pass_util

}  // namespace shardrt
