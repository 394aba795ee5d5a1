// Common-subexpression elimination: merges constants with identical small contents, then
// nodes with the same op, the same inputs and the same attributes (the later node's uses
// move to the earlier one's outputs). Exporters duplicate shape subgraphs and small
// constants per layer; merging them lets folding and fusion see one value.
#include <cstring>
#include <map>
#include <set>

#include "passes/pass_manager.h"

namespace shardrt {

namespace {

// Random generators give a different sample per node.
const std::set<std::string> kNoMerge = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                        "RandomUniformLike", "Multinomial", "Bernoulli"};

// shardrt's pure compute ops; the others (collectives) are left alone: merging two would
// change how often the ranks communicate, which is the exporter's decision.
const std::set<std::string> kPureShardrt = {"shardrt.Linear", "shardrt.Silu", "shardrt.SwiGLU",
                                            "shardrt.RMSNorm", "shardrt.Attention", "shardrt.Rotary"};

bool mergeable_op(const std::string& op) {
  if (kNoMerge.count(op)) return false;
  return op.rfind("shardrt.", 0) != 0 || kPureShardrt.count(op);
}

// Constants up to this size are compared by contents (bigger ones, weights, are left alone:
// hashing megabytes for a rare hit is not worth it).
constexpr size_t kMaxConstBytes = 4096;

std::string bytes_key(const Tensor& t) {
  std::string k = std::string(dtype_name(t.dtype())) + dims_str(t.dims()) + ":";
  k.append(static_cast<const char*>(t.raw()), t.nbytes());
  return k;
}

// An exact key of an attribute (floats by their bits: Attr::str rounds them).
std::string attr_key(const Attr& a) {
  std::string k = std::to_string(int(a.kind)) + ":";
  auto bits = [&](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    k += std::to_string(u) + ",";
  };
  switch (a.kind) {
    case Attr::Int: k += std::to_string(a.i); break;
    case Attr::Float: bits(a.f); break;
    case Attr::String: k += std::to_string(a.s.size()) + ":" + a.s; break;
    case Attr::Ints: for (auto v : a.ints) k += std::to_string(v) + ","; break;
    case Attr::Floats: for (auto v : a.floats) bits(v); break;
    case Attr::Strings: for (auto& v : a.strings) k += std::to_string(v.size()) + ":" + v; break;
    case Attr::TensorV: k += a.t ? bytes_key(*a.t) : "null"; break;
  }
  return k;
}

class CommonSubexprElim : public Pass {
 public:
  std::string name() const override { return "cse"; }

  bool run(Graph& g) override {
    int merged_consts = 0, merged_nodes = 0;
    // Constants first: nodes reading two equal constants become equal themselves.
    std::map<std::string, Value*> consts;
    std::vector<Value*> all;
    for (auto& v : g.values) all.push_back(v.get());
    for (Value* v : all) {
      if (!v->constant || v->users.empty() || g.is_output(v) || v->constant->nbytes() > kMaxConstBytes) continue;
      auto [it, fresh] = consts.emplace(bytes_key(*v->constant), v);
      if (fresh) continue;
      g.replace_all_uses(v, it->second);
      ++merged_consts;
    }
    std::map<std::string, Node*> seen;
    for (auto& up : g.nodes) {
      Node* n = up.get();
      if (n->dead || !mergeable_op(n->op) || n->outputs.empty()) continue;
      std::string k = n->op + "|" + std::to_string(n->outputs.size()) + "|";
      for (Value* v : n->inputs) k += std::to_string(reinterpret_cast<uintptr_t>(v)) + ",";
      k += "|";
      for (auto& [name, a] : n->attrs) k += name + "=" + attr_key(a) + ";";
      auto [it, fresh] = seen.emplace(k, n);
      if (fresh) continue;
      Node* keep = it->second;
      // Both outputs being graph outputs would need an Identity to carry the second name:
      // keep such nodes apart.
      bool both_out = false;
      for (size_t i = 0; i < n->outputs.size(); ++i)
        if (n->outputs[i] && g.is_output(n->outputs[i]) && keep->outputs[i] && g.is_output(keep->outputs[i]))
          both_out = true;
      if (both_out) continue;
      bool ok = true;
      for (size_t i = 0; i < n->outputs.size(); ++i)
        if (n->outputs[i] && !keep->outputs[i]) ok = false;  // `keep` omits an output `n` has
      if (!ok) continue;
      for (size_t i = 0; i < n->outputs.size(); ++i)
        if (n->outputs[i]) g.replace_all_uses(n->outputs[i], keep->outputs[i]);
      note("merged " + n->op + " '" + n->name + "' into '" + keep->name + "'");
      g.remove_node(n);
      ++merged_nodes;
    }
    if (merged_consts) note("merged " + std::to_string(merged_consts) + " duplicate constants");
    if (!merged_consts && !merged_nodes) return false;
    g.compact();
    return true;
  }
};

}  // namespace

PassPtr make_cse_pass() { return std::make_unique<CommonSubexprElim>(); }

}  // namespace shardrt
