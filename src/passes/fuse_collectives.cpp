// Start/Wait pairs → fused collectives. Exporters that trace PyTorch's functional
// collectives emit shardrt.XStart followed by shardrt.Wait; when the Start's only user is
// its Wait (nothing is meant to overlap with it), the pair becomes the plain collective,
// which the CPU engine runs without the Wait's copy. A Start with other users is left as it
// is (the work between them is what a backend may overlap).
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

class FuseCollectives : public Pass {
 public:
  std::string name() const override { return "fuse_collectives"; }
  std::vector<std::string> target_ops() const override { return {"shardrt.Wait"}; }

  bool run(Graph& g) override {
    bool changed = false;
    for (auto& up : g.nodes) {
      Node* wait = up.get();
      if (wait->dead || wait->op != "shardrt.Wait" || !wait->out(0)) continue;
      Node* start = pass_util::producer(wait->in(0));
      if (!start || !is_start(start->op) || !pass_util::single_use(g, wait->in(0))) continue;
      // The Wait becomes the collective (it keeps its name and output, so graph outputs keep
      // theirs); the Start goes.
      std::string op = start->op.substr(0, start->op.size() - 5);
      std::string from = pass_util::node_tag(start) + " + " + pass_util::node_tag(wait);
      Value* x = start->in(0);
      auto attrs = start->attrs;
      std::string start_name = start->name;
      g.remove_node(start);
      pass_util::rewrite_node(g, wait, op, {x}, attrs);
      wait->fused_from = from;
      infer_node(g, *wait);
      note("fused " + op.substr(8) + "Start '" + start_name + "' + Wait '" + wait->name + "' into " + op);
      changed = true;
    }
    if (changed) {
      g.compact();
      g.sort();
    }
    return changed;
  }

 private:
  static bool is_start(const std::string& op) {
    return op == "shardrt.AllReduceStart" || op == "shardrt.AllGatherStart" || op == "shardrt.ReduceScatterStart";
  }
};

}  // namespace

PassPtr make_fuse_collectives_pass() { return std::make_unique<FuseCollectives>(); }

}  // namespace shardrt
