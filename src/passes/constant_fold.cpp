// Constant folding: evaluates nodes whose inputs are all known and turns their outputs into
// constants. Besides ordinary constant subgraphs (exporters' Cast/Transpose/Reshape of
// weights, mask construction from constants) it folds the shape arithmetic that exporters
// emit for dynamic axes wherever the result is known although the tensor is not: Shape and
// Size of values whose (relevant) dims are known, and Gather/Slice of a Shape picking only
// known dims.
//
// A folded value becomes a constant in place: the Value keeps its name (so graph outputs stay
// outputs under their names) and loses its producer, which is removed.
#include <algorithm>
#include <set>

#include "backends/cpu/cpu_kernels.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

// Ops that must not be folded although their inputs are known: random generators give a
// new sample per run.
const std::set<std::string> kNoFold = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                       "RandomUniformLike", "Multinomial", "Bernoulli"};

// shardrt's own ops that are pure computations. Its other ops (collectives: AllReduce,
// Start/Wait pairs, ...) talk to other ranks and are never evaluated at build time.
const std::set<std::string> kPureShardrt = {"shardrt.Linear", "shardrt.Silu", "shardrt.SwiGLU",
                                            "shardrt.RMSNorm", "shardrt.Attention", "shardrt.Rotary"};

bool foldable_op(const std::string& op) {
  if (kNoFold.count(op)) return false;
  return op.rfind("shardrt.", 0) != 0 || kPureShardrt.count(op);
}

// The dims Shape(x) reports (its start/end attributes applied), unknown ones as -1.
std::vector<int64_t> shape_op_dims(const Node& n, const Value& x) {
  int64_t r = int64_t(x.shape.size());
  int64_t start = n.attr_i("start", 0), end = n.attr_i("end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, 0, r);
  std::vector<int64_t> d;
  for (int64_t i = start; i < end; ++i) d.push_back(x.shape[size_t(i)].known() ? x.shape[size_t(i)].value : -1);
  return d;
}

bool all_known(const std::vector<int64_t>& d) {
  for (int64_t v : d)
    if (v < 0) return false;
  return true;
}

class ConstantFold : public Pass {
 public:
  explicit ConstantFold(size_t cap) : cap_(cap) {}
  std::string name() const override { return "constant_fold"; }

  bool run(Graph& g) override {
    bool changed = false;
    for (auto& up : g.nodes) {
      Node* n = up.get();
      if (n->dead || !foldable_op(n->op) || n->outputs.empty()) continue;
      if (fold_shape_math(g, n) || fold_all_constant(g, n)) changed = true;
    }
    if (changed) {
      g.compact();
      reinfer(g);
    }
    return changed;
  }

 private:
  size_t cap_;

  // Re-runs the shape rules so that the new constants sharpen the shapes downstream (a
  // Reshape whose target shape just became known, ...), which lets the next round fold
  // further. A rule that fails here is left as it was: the build's own inference reports it.
  static void reinfer(Graph& g) {
    for (auto& n : g.nodes) {
      bool ready = true;
      for (Value* v : n->inputs)
        if (v && !v->shape_inferred) ready = false;
      if (!ready) continue;
      try {
        infer_node(g, *n);
      } catch (const std::exception&) {
      }
    }
  }

  // Makes output `i` of `n` the constant `t` (in place), recording the rewrite.
  static void set_const(Value* o, Tensor t) {
    o->dtype = t.dtype();
    o->shape = dims_shape(t.dims());
    o->shape_inferred = true;
    o->constant = std::make_shared<Tensor>(std::move(t));
  }
  void finish(Graph& g, Node* n, const std::string& how) {
    note("folded " + n->op + " '" + n->name + "'" + how);
    g.remove_node(n);
  }

  // Every input known: evaluate with the CPU kernel.
  bool fold_all_constant(Graph& g, Node* n) {
    size_t in_bytes = 0;
    std::vector<const Tensor*> ins;
    for (Value* v : n->inputs) {
      if (v && !v->constant) return false;
      ins.push_back(v ? v->constant.get() : nullptr);
      if (v) in_bytes += v->constant->nbytes();
    }
    if (!cpu::find_kernel(n->op)) return false;
    // Size cap: folding Expand/ConstantOfShape/Tile/Range into a huge constant would bloat the
    // engine file for a value that is cheap to compute. The cap applies only when the outputs
    // are bigger than the inputs: a transpose or cast of a large weight is as big as the weight
    // it replaces (which becomes unused and is dropped), so it folds regardless.
    size_t out_bytes = 0;
    for (Value* o : n->outputs)
      if (o && o->shape_inferred && shape_known(o->shape))
        out_bytes += size_t(numel(shape_dims(o->shape))) * dtype_size(o->dtype);
    if (out_bytes > cap_ && out_bytes > in_bytes) return false;
    std::vector<Tensor> outs;
    try {
      outs = cpu::eval_node(*n, ins);
    } catch (const std::exception&) {
      return false;  // leave it for run time, where the same error names the node
    }
    out_bytes = 0;
    for (auto& t : outs) out_bytes += t.nbytes();
    if (out_bytes > cap_ && out_bytes > in_bytes) return false;
    for (size_t i = 0; i < n->outputs.size() && i < outs.size(); ++i)
      if (n->outputs[i]) set_const(n->outputs[i], std::move(outs[i]));
    finish(g, n, "");
    return true;
  }

  // Shape/Size of a value of known dims, Gather/Slice of known dims of a Shape.
  bool fold_shape_math(Graph& g, Node* n) {
    Value* x = n->in(0);
    Value* o = n->out(0);
    if (!x || !o || !x->shape_inferred) return false;
    if (n->op == "Shape") {
      if (x->constant) return false;  // the general path folds it
      auto d = shape_op_dims(*n, *x);
      if (!all_known(d)) return false;
      set_const(o, Tensor::from_i64(d));
      finish(g, n, " (input shape " + shape_str(x->shape) + " is known)");
      return true;
    }
    if (n->op == "Size") {
      if (x->constant || !shape_known(x->shape)) return false;
      set_const(o, Tensor::scalar_i64(numel(shape_dims(x->shape))));
      finish(g, n, " (input shape " + shape_str(x->shape) + " is known)");
      return true;
    }
    if (n->op == "Gather" || n->op == "Slice") {
      Node* sh = pass_util::producer(x, "Shape");
      if (!sh || !sh->in(0) || !sh->in(0)->shape_inferred) return false;
      for (size_t i = 1; i < n->inputs.size(); ++i)
        if (n->inputs[i] && !n->inputs[i]->constant) return false;
      auto d = shape_op_dims(*sh, *sh->in(0));
      if (all_known(d)) return false;  // Shape itself folds first
      // Run the op on the positions 0..r-1 instead of the dims: the result says which dims it
      // picks, whatever Gather's indices or Slice's starts/ends/steps are.
      Tensor pos(DType::I64, {int64_t(d.size())});
      for (size_t i = 0; i < d.size(); ++i) pos.data<int64_t>()[i] = int64_t(i);
      std::vector<const Tensor*> ins{&pos};
      for (size_t i = 1; i < n->inputs.size(); ++i) ins.push_back(n->inputs[i] ? n->inputs[i]->constant.get() : nullptr);
      std::vector<Tensor> outs;
      try {
        outs = cpu::eval_node(*n, ins);
      } catch (const std::exception&) {
        return false;
      }
      if (outs.empty() || outs[0].dtype() != DType::I64) return false;
      Tensor& r = outs[0];
      for (int64_t i = 0; i < r.numel(); ++i) {
        int64_t p = r.data<int64_t>()[i];
        if (p < 0 || p >= int64_t(d.size()) || d[size_t(p)] < 0) return false;  // picks an unknown dim
        r.data<int64_t>()[i] = d[size_t(p)];
      }
      set_const(o, std::move(r));
      finish(g, n, " (it picks known dims of " + shape_str(sh->in(0)->shape) + ")");
      return true;
    }
    return false;
  }
};

}  // namespace

PassPtr make_constant_fold_pass(size_t size_cap) { return std::make_unique<ConstantFold>(size_cap); }

}  // namespace shardrt
