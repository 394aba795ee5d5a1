// Autocast: lowers float32 math to fp16 or bf16 on request (BuildConfig::autocast).
//
// The interface does not change: graph inputs and outputs keep their declared dtypes (a Cast
// follows each fp32 input where lowered math reads it, and a Cast restores each fp32 output).
// fp32 constants read by lowered nodes are converted once (a converted copy; the fp32
// original is dropped when nothing else reads it). fp64 and integer math is left alone.
//
// Which nodes stay in fp32 (the rule, decided per node in topological order):
//  1. "fp32 islands": ops whose result loses too much in half precision even though our
//     kernels accumulate in fp32 internally, because their *inputs or outputs* overflow or
//     lose the integer grid: Pow (x^2 of an unfused norm overflows fp16 beyond |x| > 256),
//     Exp/Log/Softplus (exp overflows fp16 beyond 11), the summing reductions
//     (ReduceSum/Mean/SumSquare/L1/L2/LogSum/LogSumExp/Prod) and CumSum (their outputs grow
//     with the reduced size), Range (positions beyond 2048 (fp16) or 256 (bf16) are no longer
//     exact), and random generators (their dtype attribute is the user's choice).
//     Softmax, LayerNormalization, shardrt.RMSNorm/Attention and the other fused ops are
//     lowered: their kernels keep the sensitive part in fp32.
//  2. Sources: nodes making fp32 from non-fp32 inputs (Cast from an integer, ConstantOfShape,
//     ...): they belong to the index/position/mask subgraphs (rotary positions, masks from
//     integer ids, sizes computed in float) that must keep their exact values.
//  3. Propagation: a node whose non-constant fp32 inputs all come from fp32 nodes stays fp32,
//     so a chain that starts at an island or a source (ReduceMean → Add eps → Sqrt of an
//     unfused norm, Cast(positions) → Mul(inv_freq) → Cos/Sin) stays fp32 until it meets
//     lowered data, where one Cast joins the two.
//  Everything else with fp32 inputs or outputs is lowered. Inputs that ONNX requires in
//  fp32 whatever the data type (Resize's roi and scales, Upsample's scales, CachedAttention's
//  InvFreq) stay fp32.
//  Shape and Size read only dims and Cast reads any type: their inputs never get a Cast.
#include <set>

#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"

namespace shardrt {

namespace {

const std::set<std::string> kIslands = {
    "Pow", "Exp", "Log", "Softplus", "ReduceSum", "ReduceMean", "ReduceSumSquare", "ReduceL1",
    "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "CumSum", "Range",
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"};

const std::set<std::string> kTypeAgnosticInputs = {"Shape", "Size", "Cast"};

bool must_stay_fp32(const Node& n, size_t i) {
  if (n.op == "Resize") return i == 1 || i == 2;
  if (n.op == "Upsample") return i == 1;
  if (n.op == "shardrt.CachedAttention") return i == 2;  // InvFreq is fp32 whatever QKV is
  return false;
}

class Autocast : public Pass {
 public:
  explicit Autocast(DType to) : to_(to) {}
  std::string name() const override { return "autocast"; }
  bool run_once() const override { return true; }

  bool run(Graph& g) override {
    if (to_ != DType::F16 && to_ != DType::BF16)
      throw GraphError(std::string("autocast to ") + dtype_name(to_) + " is not supported (fp16 or bf16)");
    for (auto& v : g.values) orig_[v.get()] = v->dtype;
    std::vector<Node*> order;
    for (auto& n : g.nodes)
      if (!n->dead) order.push_back(n.get());

    for (Node* n : order)
      if (stays_fp32(*n)) keep_.insert(n);

    int lowered = 0;
    for (Node* n : order) {
      bool k = keep_.count(n) != 0;
      bool touched = false;
      if (!kTypeAgnosticInputs.count(n->op)) {
        for (size_t i = 0; i < n->inputs.size(); ++i) {
          Value* v = n->inputs[i];
          if (!v || orig(v) != DType::F32) continue;
          DType want = k || must_stay_fp32(*n, i) ? DType::F32 : to_;
          Value* r = v->constant ? (want == DType::F32 ? v : lowered_const(g, v)) : cast_to(g, v, want);
          if (r != v) g.set_input(n, i, r);
          touched = true;
        }
      }
      if (!k && n->op == "Cast" && dtype_from_onnx(int(n->attr_i("to", 0))) == DType::F32) {
        n->attrs["to"] = Attr::of(int64_t(dtype_to_onnx(to_)));
        touched = true;
      }
      infer_node(g, *n);
      if (touched && !k) ++lowered;
    }

    // Restore the declared dtype of each graph output.
    int restored = 0;
    for (size_t i = 0; i < g.outputs.size(); ++i) {
      Value* o = g.outputs[i];
      if (orig(o) != DType::F32 || o->dtype == DType::F32) continue;
      Node* c = g.add_node("Cast", o->name + "/autocast_out", {}, {o->name + "_fp32"},
                           {{"to", Attr::of(int64_t(onnx_type::FLOAT))}});
      Value* t = c->outputs[0];
      // Graph::replace_all_uses hands `o`'s name and output slot to `t`; its other readers
      // go back to `o` (they compute in the lower precision).
      std::vector<std::pair<Node*, size_t>> readers;
      for (Node* u : o->users)
        for (size_t k = 0; k < u->inputs.size(); ++k)
          if (u->inputs[k] == o) readers.emplace_back(u, k);
      g.replace_all_uses(o, t);
      for (auto& [u, k] : readers) g.set_input(u, k, o);
      g.set_input(c, 0, o);
      infer_node(g, *c);
      ++restored;
    }
    g.sort();
    g.compact();
    infer_graph(g);
    note("lowered " + std::to_string(lowered) + " nodes to " + dtype_name(to_) + ", kept " +
         std::to_string(keep_.size()) + " in fp32, inserted " + std::to_string(casts_) + " casts, converted " +
         std::to_string(consts_.size()) + " constants, restored " + std::to_string(restored) + " outputs");
    return lowered || restored || casts_ || !consts_.empty();
  }

 private:
  DType to_;
  std::map<const Value*, DType> orig_;
  std::set<const Node*> keep_;
  std::map<std::pair<Value*, DType>, Value*> cast_cache_;
  std::map<Value*, Value*> consts_;
  int casts_ = 0;

  DType orig(const Value* v) const {
    auto it = orig_.find(v);
    return it == orig_.end() ? v->dtype : it->second;
  }

  bool stays_fp32(const Node& n) const {
    bool f32_in = false, f32_out = false, nonconst = false, all_kept = true;
    for (Value* v : n.inputs) {
      if (!v || orig(v) != DType::F32) continue;
      f32_in = true;
      if (v->constant) continue;
      nonconst = true;
      if (!(v->producer && keep_.count(v->producer))) all_kept = false;
    }
    for (Value* o : n.outputs)
      if (o && orig(o) == DType::F32) f32_out = true;
    if (!f32_in && !f32_out) return false;  // no fp32 math: nothing to decide
    if (kIslands.count(n.op)) return true;
    if (!f32_in) return true;  // a source
    return nonconst && all_kept;
  }

  Value* lowered_const(Graph& g, Value* v) {
    auto it = consts_.find(v);
    if (it != consts_.end()) return it->second;
    Value* c = g.add_constant(v->name + "_" + dtype_name(to_), v->constant->cast(to_));
    consts_[v] = c;
    return c;
  }

  Value* cast_to(Graph& g, Value* v, DType want) {
    if (v->dtype == want) return v;
    auto key = std::make_pair(v, want);
    auto it = cast_cache_.find(key);
    if (it != cast_cache_.end()) return it->second;
    Node* c = g.add_node("Cast", v->name + "/autocast_" + dtype_name(want), {v},
                         {v->name + "_" + dtype_name(want)}, {{"to", Attr::of(int64_t(dtype_to_onnx(want)))}});
    infer_node(g, *c);
    ++casts_;
    cast_cache_[key] = c->outputs[0];
    return c->outputs[0];
  }
};

}  // namespace

PassPtr make_autocast_pass(DType to) { return std::make_unique<Autocast>(to); }

}  // namespace shardrt
