#include "build/memory_plan.h"

#include <algorithm>
#include <unordered_map>

namespace shardrt {

bool is_view_op(const Node& n) {
  if (n.op == "Reshape" || n.op == "Squeeze" || n.op == "Unsqueeze" || n.op == "Flatten" || n.op == "Identity")
    return true;
  // Dropout in inference is an identity on its first output when no mask is asked for.
  return n.op == "Dropout" && (n.outputs.size() < 2 || n.outputs[1] == nullptr);
}

MemoryPlan plan_memory(const Graph& g, const std::map<std::string, size_t>& bytes) {
  MemoryPlan plan;
  // Resolve view aliases to the value that owns the bytes.
  std::unordered_map<const Value*, const Value*> root;
  auto root_of = [&](const Value* v) {
    while (root.count(v)) v = root.at(v);
    return v;
  };
  for (auto& n : g.nodes) {
    if (!is_view_op(*n) || !n->in(0) || !n->out(0) || g.is_output(n->out(0))) continue;
    root[n->out(0)] = root_of(n->in(0));
    plan.aliases[n->out(0)->name] = n->in(0)->name;
  }
  struct Life { const Value* v; size_t first, last, bytes; };
  std::unordered_map<const Value*, Life> life;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node& n = *g.nodes[i];
    for (Value* o : n.outputs) {
      if (!o || root.count(o) || g.is_output(o)) continue;
      auto it = bytes.find(o->name);
      if (it == bytes.end()) continue;
      life[o] = {o, i, i, it->second};
    }
    auto touch = [&](const Value* v) {
      auto it = life.find(root_of(v));
      if (it != life.end()) it->second.last = std::max(it->second.last, i);
    };
    for (Value* in : n.inputs) if (in) touch(in);
    for (Value* o : n.outputs) if (o && root.count(o)) touch(o);  // a view keeps its root alive
  }
  // Greedy by size (largest first), lowest offset that fits beside every placed value whose
  // lifetime overlaps: the TFLite arena planner's strategy.
  std::vector<Life> order;
  for (auto& [v, l] : life) order.push_back(l);
  std::sort(order.begin(), order.end(), [](const Life& a, const Life& b) {
    return a.bytes != b.bytes ? a.bytes > b.bytes : a.first < b.first;
  });
  struct Placed { size_t first, last, off, end; };
  std::vector<Placed> placed;
  constexpr size_t kAlign = 64;
  for (auto& l : order) {
    size_t sz = (std::max<size_t>(l.bytes, 1) + kAlign - 1) / kAlign * kAlign;
    std::vector<std::pair<size_t, size_t>> busy;
    for (auto& p : placed)
      if (!(p.last < l.first || l.last < p.first)) busy.push_back({p.off, p.end});
    std::sort(busy.begin(), busy.end());
    size_t off = 0;
    for (auto& [b, e] : busy) {
      if (off + sz <= b) break;
      off = std::max(off, e);
    }
    placed.push_back({l.first, l.last, off, off + sz});
    plan.slots[l.v->name] = {off, sz};
    plan.arena_bytes = std::max(plan.arena_bytes, off + sz);
    plan.unplanned_bytes_sum += sz;
  }
  return plan;
}

}  // namespace shardrt
