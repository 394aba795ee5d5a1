// CPU kernels: one function per op, registered by op family (one file per family here).
// A kernel gets its inputs (null for omitted optional ones) and outputs already allocated
// with the shapes the op's shape rule gave; it fills the outputs.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <typeindex>
#include <utility>
#include <vector>

#include "ir/graph.h"
#include "ir/op_schema.h"

namespace shardrt::dist {
class Communicator;
}

namespace shardrt::cpu {

// State that kernels keep across the runs of one execution context (the KV cache of
// shardrt.CachedAttention), per node: created by `make` on first request, freed with the
// context. Kernels evaluated outside a context (constant folding, eval_node) get none.
class NodeStates {
 public:
  template <class T>
  T& get(const Node& n, const std::function<std::shared_ptr<T>()>& make) {
    auto& p = state_[{&n, std::type_index(typeid(T))}];
    if (!p) p = make();
    return *static_cast<T*>(p.get());
  }

 private:
  // Per (node, state type): a fused node runs the kernels of the ops it fused, each with its own state.
  std::map<std::pair<const Node*, std::type_index>, std::shared_ptr<void>> state_;
};

struct KernelCtx {
  const Node& node;
  std::vector<const Tensor*> in;
  std::vector<Tensor*> out;
  // The communicator of the running context, for collective ops (null outside a
  // distributed run: collectives then fail naming the node).
  dist::Communicator* comm = nullptr;
  // The running context's per-node state (null outside a context: stateful kernels fail).
  NodeStates* state = nullptr;
  const Tensor* input(size_t i) const { return i < in.size() ? in[i] : nullptr; }
  [[noreturn]] void fail(const std::string& msg) const { throw GraphError(node.describe() + ": " + msg); }
};
using Kernel = std::function<void(KernelCtx&)>;

void register_kernel(const std::string& op, Kernel k);
const Kernel* find_kernel(const std::string& op);  // null when the CPU backend lacks it
bool supports(const Node& n);                      // the partitioner's question
std::vector<std::string> kernel_names();

// Evaluates one node on concrete inputs: runs its shape rule with the values, allocates
// outputs and runs the kernel. Used by constant folding and by the executor's slow path.
std::vector<Tensor> eval_node(const Node& n, const std::vector<const Tensor*>& ins);
// Runs only the node's shape rule on concrete inputs; returns output dtypes and dims.
void infer_concrete(const Node& n, const std::vector<const Tensor*>& ins,
                    std::vector<DType>& types, std::vector<Dims>& dims);

// Families (each in its own kernels_*.cpp); all_kernels.cpp calls them once.
void register_all_kernels();
void register_elementwise_kernels();
void register_reduce_kernels();
void register_shape_kernels();
void register_nn_kernels();
void register_fused_linear_kernels();
void register_fused_attention_kernels();
void register_collective_kernels();  // through KernelCtx::comm (kernels_collective.cpp)
void register_fused_norm_kernels();  // shardrt.AddLayerNorm / AddRMSNorm (kernels_fused_norm.cpp)
void register_cached_attention_kernels();  // shardrt.CachedAttention, through KernelCtx::state

// Helpers for kernels: run `fn(begin, end)` over [0, n) split across the cores when n is
// large enough to pay for it (grain: the smallest chunk worth a thread).
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace shardrt::cpu
