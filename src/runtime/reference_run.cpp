#include "runtime/reference_run.h"

#include <unordered_map>

#include "backends/cpu/cpu_kernels.h"
#include "ir/op_schema.h"

namespace shardrt {

std::map<std::string, Tensor> run_graph_reference(const Graph& g, const std::map<std::string, Tensor>& inputs) {
  std::unordered_map<const Value*, Tensor> env;
  for (Value* v : g.inputs) {
    auto it = inputs.find(v->name);
    if (it == inputs.end()) throw GraphError("missing input '" + v->name + "'");
    env[v] = it->second;
  }
  for (auto& vp : g.values)
    if (vp->constant) env[vp.get()] = *vp->constant;
  for (auto& n : g.nodes) {
    if (n->dead) continue;
    std::vector<const Tensor*> ins;
    for (Value* v : n->inputs) ins.push_back(v ? &env.at(v) : nullptr);
    auto outs = cpu::eval_node(*n, ins);
    for (size_t i = 0; i < n->outputs.size() && i < outs.size(); ++i)
      if (n->outputs[i]) env[n->outputs[i]] = std::move(outs[i]);
  }
  std::map<std::string, Tensor> r;
  for (Value* v : g.outputs) r[v->name] = env.at(v);
  return r;
}

}  // namespace shardrt
