// The sharding pass (see shard.h). One forward walk over the graph with global shapes: each
// node either matches a plan entry (a parallel style applied to a Linear/MatMul, embedding
// Gather or norm) or follows its op's propagation rule; a node no rule covers gets its
// inputs redistributed to Replicate, which is always correct (and noted). Local shapes are
// inferred once at the end.
#include "passes/shard.h"

#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "dist/collective_exec.h"
#include "ir/op_schema.h"
#include "shardrt/engine.h"

namespace shardrt {

using dist::Placement;

std::vector<std::string> plan_names(const Node& n) {
  std::vector<std::string> r = {n.name};
  // TorchScript exports name nodes "/model/layers.0/self_attn/q_proj/MatMul": the module
  // path is that name with '.' for '/', without the leading '/' and the op suffix.
  if (n.name.find('/') != std::string::npos) {
    std::string s = n.name;
    while (!s.empty() && s[0] == '/') s.erase(0, 1);
    for (auto& c : s) if (c == '/') c = '.';
    r.push_back(s);
    auto dot = s.rfind('.');
    if (dot != std::string::npos) r.push_back(s.substr(0, dot));
  }
  for (Value* v : n.inputs) {
    if (!v || !v->is_constant()) continue;
    r.push_back(v->name);
    for (const char* suf : {".weight", ".bias"}) {
      size_t k = std::strlen(suf);
      if (v->name.size() > k && v->name.compare(v->name.size() - k, k, suf) == 0) r.push_back(v->name.substr(0, v->name.size() - k));
    }
  }
  return r;
}

std::string ShardResult::report() const {
  std::ostringstream o;
  o << "bindings:\n";
  for (auto& [n, p] : inputs) o << "  input " << n << ": " << p.str() << "\n";
  for (auto& [n, p] : outputs) o << "  output " << n << ": " << p.str() << "\n";
  if (!matched.empty()) { o << "plan matches:\n"; for (auto& s : matched) o << "  " << s << "\n"; }
  if (!collectives.empty()) { o << "collectives:\n"; for (auto& s : collectives) o << "  " << s << "\n"; }
  if (!notes.empty()) { o << "notes:\n"; for (auto& s : notes) o << "  " << s << "\n"; }
  o << "placements:\n";
  for (auto& [n, p] : placements) o << "  " << n << ": " << p.str() << "\n";
  return o.str();
}

namespace {

std::string dims_of(const Shape& s) { return shape_str(s); }

// Rank `idx`'s torch.chunk piece of `t` along `dim`; with `groups` > 1 the dim is first cut
// into that many equal groups (a fused Q|K|V weight) and each group is chunked.
Tensor chunk_tensor(const Tensor& t, int64_t dim, int parts, int idx, int64_t groups = 1) {
  const Dims& d = t.dims();
  int64_t n = d[size_t(dim)], gsz = n / groups;
  auto sizes = dist::chunk_sizes(gsz, parts);
  int64_t start = 0;
  for (int i = 0; i < idx; ++i) start += sizes[size_t(i)];
  int64_t len = sizes[size_t(idx)];
  Dims od = d;
  od[size_t(dim)] = len * groups;
  Tensor out(t.dtype(), od);
  int64_t outer = 1, inner = int64_t(dtype_size(t.dtype()));
  for (int64_t i = 0; i < dim; ++i) outer *= d[size_t(i)];
  for (size_t i = size_t(dim) + 1; i < d.size(); ++i) inner *= d[i];
  auto* src = static_cast<const char*>(t.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t gi = 0; gi < groups; ++gi)
      std::memcpy(dst + ((o * groups + gi) * len) * inner, src + (o * n + gi * gsz + start) * inner, size_t(len * inner));
  return out;
}

bool known_prod(const Shape& s, size_t from, size_t to, int64_t& p) {
  p = 1;
  for (size_t i = from; i < to; ++i) {
    if (!s[i].known()) return false;
    p *= s[i].value;
  }
  return true;
}

const std::set<std::string> kUnary = {"Relu", "Gelu", "shardrt.Silu", "Sigmoid", "Tanh", "Erf", "Exp", "Log", "Sqrt",
                                      "Neg", "Abs", "Cast", "Identity", "Softplus", "LeakyRelu", "Elu", "Reciprocal",
                                      "Sin", "Cos", "Not", "IsNaN", "Floor", "Ceil", "Round", "Sign", "HardSigmoid",
                                      "Dropout", "Clip", "CastLike", "Mish", "HardSwish", "Selu"};
const std::set<std::string> kBinary = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Equal", "Less",
                                       "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "Mod",
                                       "shardrt.SwiGLU", "BitShift", "PRelu"};
const std::set<std::string> kViews = {"Reshape", "Squeeze", "Unsqueeze", "Flatten"};

class Sharder {
 public:
  Sharder(Graph& g, const dist::ShardingPlan& plan, int tp, int r, bool dim0_varies)
      : g_(g), plan_(plan), tp_(tp), r_(r), dim0_varies_(dim0_varies) {}

  ShardResult run() {
    // The nodes to visit are the model's own: collectives inserted for graph inputs below
    // are named after the input and would otherwise match its plan entry again.
    std::vector<Node*> order;
    for (auto& n : g_.nodes) if (!n->dead) order.push_back(n.get());
    // A KV cache per rank has no placement rule: decoders come sharded per rank from
    // their loader instead.
    for (Node* n : order)
      if (n->op == "shardrt.CachedAttention")
        refuse(n, "graphs with a KV cache (shardrt.CachedAttention) are not sharded by a plan; build each rank's "
                  "decoder already sharded (the checkpoint loader does so per rank)");
    for (Value* v : g_.inputs) {
      res_.global_dims[v->name] = dims_strs(v->shape);
      // prepare_input entries may name a graph input directly.
      const dist::PlanEntry* e = plan_.match({v->name});
      if (e && e->style == "prepare_input") {
        Placement have = e->input_layout.value_or(Placement::replicate()).normalized(rank(v));
        declare(v, have, e->origin);
        if (e->desired_input_layout) {
          Placement want = e->desired_input_layout->normalized(rank(v));
          if (!(want == have)) {
            auto users = v->users;
            Value* nv = redistribute(v, want, nullptr);
            rewire(users, v, nv);
          }
        }
      }
    }
    for (Value* v : g_.outputs) res_.global_dims[v->name] = dims_strs(v->shape);
    for (Node* n : order) visit(n);
    for (auto& e : plan_.entries)
      if (!used_.count(&e) && !(e.style == "prepare_input" && declared_any(e)))
        throw Error("sharding (tp=" + std::to_string(tp_) + "): " + (e.origin.empty() ? "plan entry '" + e.pattern + "'" : e.origin) +
                    " (" + e.str() + ") matches no node it applies to: " +
                    (e.style == "sequence" ? "sequence applies to norms (LayerNormalization, RMSNorm)"
                     : e.style == "prepare_input" ? "prepare_input applies to a node or graph input"
                                                  : e.style + " applies to linear layers (MatMul/Gemm/shardrt.Linear with a constant weight) and embeddings (Gather of a constant table)"));
    for (Value* v : g_.inputs) res_.inputs[v->name] = get(v);
    // Partial outputs are reduced so that every rank's output is a real value; Shard
    // outputs stay local (the launcher gathers them).
    for (size_t i = 0; i < g_.outputs.size(); ++i) {
      Value* v = g_.outputs[i];
      if (get(v).is_partial() || (get(v).is_shard() && get(v).dim != 0)) {
        Value* nv = insert_after(v, [&](Value* x) { return redistribute(x, Placement::replicate(), nullptr); });
        v = nv;
      }
      res_.outputs[v->name] = get(v);
    }
    // Each rank is fed its chunk of a sharded input.
    for (Value* v : g_.inputs) {
      Placement p = get(v);
      if (p.is_shard() && v->shape[size_t(p.dim)].known())
        v->shape[size_t(p.dim)] = Dim(dist::chunk_sizes(v->shape[size_t(p.dim)].value, tp_)[size_t(r_)]);
    }
    g_.sort();
    g_.compact();
    try {
      infer_graph(g_);
    } catch (const std::exception& e) {
      throw Error(std::string("sharding: the sharded graph does not infer: ") + e.what());
    }
    g_.verify();
    for (auto& [v, p] : pl_)
      if (!p.is_replicate()) res_.placements[v->name] = p;
    for (auto& n : g_.nodes)
      if (dist::is_collective_op(n->op)) {
        Value* x = n->in(0);
        // Message size: exact when the shape is known, else bytes per unit of the symbolic dims.
        int64_t known = int64_t(dtype_size(x->dtype));
        std::string syms;
        for (auto& d : x->shape) {
          if (d.known()) known *= d.value;
          else syms += (syms.empty() ? "" : "*") + d.str();
        }
        std::string bytes = std::to_string(known) + " bytes" + (syms.empty() ? "" : " x " + syms);
        std::string ax = n->has_attr("axis") ? " axis " + std::to_string(n->attr_i("axis")) : "";
        res_.collectives.push_back(n->op.substr(8) + " '" + n->name + "' (group " + n->attr_s("group", "tp") + ax + ") " +
                                   dtype_name(x->dtype) + shape_str(x->shape) + " " + bytes);
      }
    return std::move(res_);
  }

 private:
  Graph& g_;
  const dist::ShardingPlan& plan_;
  int tp_, r_;
  bool dim0_varies_;
  std::unordered_map<const Value*, Placement> pl_;
  std::set<const Value*> declared_;
  std::set<const dist::PlanEntry*> used_;
  std::map<std::pair<const Value*, std::string>, Value*> cache_;
  // Global shapes learnt beyond inference (a Reshape's constant target entries where the
  // inferred dims are unknown), carried through Transpose, Attention and Rotary.
  std::unordered_map<const Value*, Shape> refined_;
  ShardResult res_;
  const Shape& gshape(const Value* v) const {
    auto it = refined_.find(v);
    return it == refined_.end() ? v->shape : it->second;
  }

  static std::vector<std::string> dims_strs(const Shape& s) {
    std::vector<std::string> r;
    for (auto& d : s) r.push_back(d.str());
    return r;
  }
  static int64_t rank(const Value* v) { return int64_t(v->shape.size()); }
  Placement get(const Value* v) const {
    auto it = pl_.find(v);
    return it == pl_.end() ? Placement::replicate() : it->second;
  }
  void set(Value* v, Placement p) { if (v) pl_[v] = p.normalized(rank(v)); }
  bool is_graph_input(const Value* v) const {
    for (Value* i : g_.inputs) if (i == v) return true;
    return false;
  }
  [[noreturn]] void refuse(const Node* n, const std::string& msg) const {
    throw Error("sharding (tp=" + std::to_string(tp_) + "): " + (n ? n->describe() + ": " : std::string()) + msg);
  }
  void note(const std::string& s) { res_.notes.push_back(s); }

  // A graph input's placement is what the plan declares for it (how each rank is fed).
  void declare(Value* v, Placement p, const std::string& why) {
    if (!v || !is_graph_input(v)) return;
    p = p.normalized(rank(v));
    if (p.is_partial()) throw Error("sharding: " + why + ": graph input '" + v->name + "' cannot be Partial");
    if (declared_.count(v)) {
      if (!(get(v) == p))
        throw Error("sharding: " + why + " declares input '" + v->name + "' as " + p.str() + ", but it was declared " + get(v).str() + " already");
      return;
    }
    if (p.is_shard() && (p.dim < 0 || p.dim >= rank(v)))
      throw Error("sharding: " + why + ": " + p.str() + " is out of range for input '" + v->name + "' of shape " + dims_of(v->shape));
    declared_.insert(v);
    set(v, p);
  }

  bool declared_any(const dist::PlanEntry& e) const {
    for (Value* v : g_.inputs) if (dist::glob_match(e.pattern, v->name)) return true;
    return false;
  }

  Value* new_const(const std::string& base, Tensor t) { return g_.add_constant(g_.unique_name(base + "/tp" + std::to_string(r_)), std::move(t)); }

  Node* add(const std::string& op, const std::string& base, std::vector<Value*> ins, std::map<std::string, Attr> a, DType t, Shape s) {
    Node* n = g_.add_node(op, base, std::move(ins), {base}, std::move(a));
    n->outputs[0]->dtype = t;
    n->outputs[0]->shape = std::move(s);
    n->outputs[0]->shape_inferred = true;
    return n;
  }

  // Rank r's chunk along `d` of a replicated value: a sliced constant, or a Slice node.
  Value* local_chunk(Value* v, int64_t d, const Node* why, int64_t size_hint = -1) {
    if (v->is_constant()) {
      Value* c = new_const(v->name, chunk_tensor(*v->constant, d, tp_, r_));
      set(c, Placement::shard(d));
      return c;
    }
    int64_t full = v->shape[size_t(d)].known() ? v->shape[size_t(d)].value : size_hint;
    if (full < 0)
      refuse(why, "taking this rank's chunk of '" + v->name + "' " + dims_of(v->shape) + " along dim " + std::to_string(d) +
                      " needs its size at build time");
    auto sizes = dist::chunk_sizes(full, tp_);
    int64_t start = 0;
    for (int i = 0; i < r_; ++i) start += sizes[size_t(i)];
    std::string base = v->name + "/chunk";
    Value* st = g_.add_constant(g_.unique_name(base + "/starts"), Tensor::from_i64({start}));
    Value* en = g_.add_constant(g_.unique_name(base + "/ends"), Tensor::from_i64({start + sizes[size_t(r_)]}));
    Value* ax = g_.add_constant(g_.unique_name(base + "/axes"), Tensor::from_i64({d}));
    Shape s = v->shape;  // global shape: the value stands for the whole tensor
    Node* n = add("Slice", base, {v, st, en, ax}, {}, v->dtype, s);
    set(n->outputs[0], Placement::shard(d));
    return n->outputs[0];
  }

  Node* collective(const std::string& op, Value* v, std::map<std::string, Attr> a) {
    a["group"] = Attr::of(std::string("tp"));
    std::string base = v->name + "/" + op.substr(8);
    return add(op, base, {v}, std::move(a), v->dtype, v->shape);
  }

  // A value carrying `v`'s data with placement `want` (cached per value and target).
  Value* redistribute(Value* v, Placement want, const Node* why) {
    Placement have = get(v);
    want = want.normalized(rank(v));
    if (have == want) return v;
    auto key = std::make_pair((const Value*)v, want.str());
    if (auto it = cache_.find(key); it != cache_.end()) return it->second;
    Value* out = nullptr;
    if (have.is_shard() && want.is_replicate()) {
      std::map<std::string, Attr> a = {{"axis", Attr::of(have.dim)}};
      if (v->shape[size_t(have.dim)].known() && !(dim0_varies_ && have.dim == 0)) a["gathered_size"] = Attr::of(v->shape[size_t(have.dim)].value);
      out = collective("shardrt.AllGather", v, a)->outputs[0];
    } else if (have.is_partial() && want.is_replicate()) {
      out = collective("shardrt.AllReduce", v, {{"reduce", Attr::of(have.reduce)}})->outputs[0];
    } else if (have.is_partial() && want.is_shard()) {
      out = collective("shardrt.ReduceScatter", v, {{"axis", Attr::of(want.dim)}, {"reduce", Attr::of(have.reduce)}})->outputs[0];
    } else if (have.is_replicate() && want.is_shard()) {
      out = local_chunk(v, want.dim, why);
    } else if (have.is_shard() && want.is_shard()) {
      Value* full = redistribute(v, Placement::replicate(), why);
      out = local_chunk(full, want.dim, why);
    } else {
      refuse(why, "cannot turn '" + v->name + "' from " + have.str() + " into " + want.str());
    }
    set(out, want);
    cache_[key] = out;
    return out;
  }

  void rewire(const std::vector<Node*>& users, Value* from, Value* to) {
    for (Node* u : users)
      for (size_t i = 0; i < u->inputs.size(); ++i)
        if (u->inputs[i] == from) g_.set_input(u, i, to);
  }

  // Routes every use of `v` (graph output included, keeping its name) through make(v).
  Value* insert_after(Value* v, const std::function<Value*(Value*)>& make) {
    auto users = v->users;
    Value* nv = make(v);
    if (nv == v) return v;
    rewire(users, v, nv);
    for (auto& o : g_.outputs)
      if (o == v) {
        std::string name = v->name;
        g_.rename(v, g_.unique_name(name + "/local"));
        g_.rename(nv, name);
        o = nv;
      }
    return nv;
  }

  void gather_all(Node* n, const std::string& why) {
    bool any = false;
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      Value* v = n->inputs[i];
      if (!v || get(v).is_replicate()) continue;
      any = true;
      g_.set_input(n, i, redistribute(v, Placement::replicate(), n));
    }
    if (any) note(n->describe() + ": inputs made Replicate (" + why + ")");
    for (Value* o : n->outputs) if (o) set(o, Placement::replicate());
  }

  void visit(Node* n) {
    const dist::PlanEntry* e = plan_.match(plan_names(*n));
    bool is_linear = (n->op == "shardrt.Linear" || n->op == "MatMul") && n->in(1) && n->in(1)->is_constant() && rank(n->in(1)) == 2;
    bool is_embed = n->op == "Gather" && n->in(0) && n->in(0)->is_constant() && rank(n->in(0)) == 2 && n->attr_i("axis", 0) == 0;
    bool is_norm = n->op == "LayerNormalization" || n->op == "shardrt.RMSNorm";
    if (e && e->style == "prepare_input") {
      Value* x = n->in(0);
      Placement have = e->input_layout.value_or(get(x));
      declare(x, have, e->origin);
      if (e->desired_input_layout) g_.set_input(n, 0, redistribute(x, *e->desired_input_layout, n));
      res_.matched.push_back(n->describe() + ": " + e->str() + " from '" + e->pattern + "'");
      used_.insert(e);
      e = nullptr;  // then the node's own rule
    }
    if (e && (e->style == "colwise" || e->style == "rowwise") && (is_linear || is_embed)) {
      res_.matched.push_back(n->describe() + ": " + e->str() + " from '" + e->pattern + "'");
      used_.insert(e);
      if (is_linear && n->attr_s("activation", "none") == "swiglu")
        refuse(n, e->style + " cannot split a packed gate/up weight (activation swiglu): shard the gate and up "
                             "projections as separate Linears");
      if (is_linear) return linear(n, *e);
      return embedding(n, *e);
    }
    if (e && e->style == "sequence" && (is_norm || kUnary.count(n->op))) {
      res_.matched.push_back(n->describe() + ": " + e->str() + " from '" + e->pattern + "'");
      used_.insert(e);
      return sequence(n, *e);
    }
    // An entry matching a node it does not apply to (a module path also names the module's
    // reshapes) is skipped there; an entry that applies nowhere is refused at the end.
    propagate(n);
  }

  void linear(Node* n, const dist::PlanEntry& e) {
    Value* x = n->in(0);
    Value* w = n->in(1);
    Value* b = n->in(2);
    bool tb = n->op == "shardrt.Linear" && n->attr_i("trans_b", 0) != 0;
    int64_t N = w->constant->dim(tb ? 0 : 1), K = w->constant->dim(tb ? 1 : 0);
    int64_t xr = rank(x);
    if (e.input_layout) declare(x, *e.input_layout, e.origin);
    Value* y = n->out(0);
    if (e.style == "colwise") {
      // A fused projection (GPT-2's c_attn: Q|K|V in one weight) whose output is split in
      // equal parts along the features: each part is chunked on its own.
      int64_t groups = fused_groups(y);
      if (groups > 1) {
        if (N % (groups * tp_) != 0)
          refuse(n, "colwise: each of the " + std::to_string(groups) + " fused parts of weight '" + w->name + "' " +
                        dims_str(w->constant->dims()) + " (" + std::to_string(N / groups) + " features) is not divisible by tp=" + std::to_string(tp_));
        note(n->describe() + ": fused projection of " + std::to_string(groups) + " parts; each part chunked separately");
      }
      if (N % tp_ != 0)
        refuse(n, "colwise: output features of weight '" + w->name + "' " + dims_str(w->constant->dims()) + " (" +
                      std::to_string(N) + ") are not divisible by tp=" + std::to_string(tp_));
      g_.set_input(n, 0, redistribute(x, Placement::replicate(), n));
      g_.set_input(n, 1, new_const(w->name, chunk_tensor(*w->constant, tb ? 0 : 1, tp_, r_, groups)));
      if (b && b->is_constant()) g_.set_input(n, 2, new_const(b->name, chunk_tensor(*b->constant, rank(b) - 1, tp_, r_, groups)));
      set(y, Placement::shard(rank(y) - 1));
      Placement want = e.output_or_default().normalized(rank(y));
      if (!(want == get(y))) insert_after(y, [&](Value* v) { return redistribute(v, want, n); });
      return;
    }
    // rowwise
    if (K % tp_ != 0)
      refuse(n, "rowwise: input features of weight '" + w->name + "' " + dims_str(w->constant->dims()) + " (" +
                    std::to_string(K) + ") are not divisible by tp=" + std::to_string(tp_));
    {
      Placement px = get(x);
      // A replicated input of unknown width: the weight says it is K wide.
      if (px.is_replicate() && !x->shape.back().known()) {
        Value* c = local_chunk(x, xr - 1, n, K);
        note(n->describe() + ": input '" + x->name + "' was Replicate; sliced to this rank's " + std::to_string(K / tp_) + " features");
        g_.set_input(n, 0, c);
      } else {
        g_.set_input(n, 0, redistribute(x, Placement::shard(xr - 1), n));
      }
    }
    g_.set_input(n, 1, new_const(w->name, chunk_tensor(*w->constant, tb ? 1 : 0, tp_, r_)));
    // The bias is added once: by rank 0 (the others add zeros) before the reduction.
    if (b && b->is_constant() && r_ != 0) g_.set_input(n, 2, new_const(b->name, Tensor(b->constant->dtype(), b->constant->dims())));
    else if (b && !b->is_constant()) refuse(n, "rowwise: the bias '" + b->name + "' is not a constant");
    std::string act = n->op == "shardrt.Linear" ? n->attr_s("activation", "none") : "none";
    if (act != "none") n->attrs["activation"] = Attr::of(std::string("none"));
    set(y, Placement::partial());
    Placement want = e.output_or_default().normalized(rank(y));
    if (want.is_partial() && act != "none") refuse(n, "rowwise with a fused activation cannot leave its output Partial");
    insert_after(y, [&](Value* v) {
      Value* z = redistribute(v, want, n);
      if (act == "none") return z;
      std::string op = act == "relu" ? "Relu" : act == "silu" ? "shardrt.Silu" : "Gelu";
      std::map<std::string, Attr> a;
      if (op == "Gelu") a["approximate"] = Attr::of(std::string(act == "gelu_tanh" ? "tanh" : "none"));
      Node* an = add(op, n->name + "/" + act, {z}, a, z->dtype, z->shape);
      set(an->outputs[0], want);
      return an->outputs[0];
    });
  }

  // Number of equal parts a Split (reached through views) cuts `y`'s last dim into; 1
  // when there is no such split.
  int64_t fused_groups(Value* y) {
    Value* t = y;
    while (t->users.size() == 1 && kViews.count(t->users[0]->op) && !g_.is_output(t)) t = t->users[0]->out(0);
    if (t->users.size() != 1 || t->users[0]->op != "Split" || g_.is_output(t)) return 1;
    Node* s = t->users[0];
    int64_t axis = s->attr_i("axis", 0);
    if (axis < 0) axis += rank(t);
    if (axis != rank(t) - 1 || s->outputs.size() < 2) return 1;
    const Dim& d0 = s->outputs[0] ? s->outputs[0]->shape[size_t(axis)] : Dim();
    for (Value* o : s->outputs)
      if (!o || !(o->shape[size_t(axis)] == d0) || !d0.known()) return 1;
    return int64_t(s->outputs.size());
  }

  void embedding(Node* n, const dist::PlanEntry& e) {
    Value* w = n->in(0);
    Value* ids = n->in(1);
    Value* y = n->out(0);
    int64_t V = w->constant->dim(0), E = w->constant->dim(1);
    g_.set_input(n, 1, redistribute(ids, Placement::replicate(), n));
    if (e.style == "colwise") {
      if (E % tp_ != 0)
        refuse(n, "colwise embedding: the embedding dim of '" + w->name + "' " + dims_str(w->constant->dims()) +
                      " is not divisible by tp=" + std::to_string(tp_));
      g_.set_input(n, 0, new_const(w->name, chunk_tensor(*w->constant, 1, tp_, r_)));
      set(y, Placement::shard(rank(y) - 1));
    } else {
      // Rows [start, start+len) live here: ids outside give zero rows; the sum over ranks
      // is the lookup.
      auto sizes = dist::chunk_sizes(V, tp_);
      int64_t start = 0;
      for (int i = 0; i < r_; ++i) start += sizes[size_t(i)];
      int64_t len = sizes[size_t(r_)];
      g_.set_input(n, 0, new_const(w->name, chunk_tensor(*w->constant, 0, tp_, r_)));
      Value* idv = n->in(1);
      auto c64 = [&](int64_t v, const char* nm) {
        Tensor t(idv->dtype, {});
        t.set_f(0, double(v));
        return g_.add_constant(g_.unique_name(n->name + nm), t);
      };
      Shape is = idv->shape;
      Node* ge = add("GreaterOrEqual", n->name + "/ge", {idv, c64(start, "/start")}, {}, DType::Bool, is);
      Node* lt = add("Less", n->name + "/lt", {idv, c64(start + len, "/end")}, {}, DType::Bool, is);
      Node* in = add("And", n->name + "/in", {ge->outputs[0], lt->outputs[0]}, {}, DType::Bool, is);
      Node* sub = add("Sub", n->name + "/local_ids", {idv, c64(start, "/start2")}, {}, idv->dtype, is);
      Node* wh = add("Where", n->name + "/ids", {in->outputs[0], sub->outputs[0], c64(0, "/zero")}, {}, idv->dtype, is);
      g_.set_input(n, 1, wh->outputs[0]);
      Shape ms = is;
      ms.push_back(Dim(1));
      Node* un = add("Unsqueeze", n->name + "/mask", {in->outputs[0], g_.add_constant(g_.unique_name(n->name + "/axes"), Tensor::from_i64({-1}))},
                     {}, DType::Bool, ms);
      static const int onnx_type[] = {1, 10, 16, 7, 6, 3, 2, 9, 11};
      Node* cf = add("Cast", n->name + "/maskf", {un->outputs[0]}, {{"to", Attr::of(int64_t(onnx_type[int(y->dtype)]))}}, y->dtype, ms);
      set(y, Placement::partial());
      Placement want = e.output_or_default().normalized(rank(y));
      insert_after(y, [&](Value* v) {
        Node* mul = add("Mul", n->name + "/masked", {v, cf->outputs[0]}, {}, v->dtype, v->shape);
        set(mul->outputs[0], Placement::partial());
        return redistribute(mul->outputs[0], want, n);
      });
      return;
    }
    Placement want = e.output_or_default().normalized(rank(y));
    if (!(want == get(y))) insert_after(y, [&](Value* v) { return redistribute(v, want, n); });
  }

  void sequence(Node* n, const dist::PlanEntry& e) {
    Value* x = n->in(0);
    int64_t sd = e.sequence_dim < 0 ? e.sequence_dim + rank(x) : e.sequence_dim;
    if (sd < 0 || sd >= rank(x) - 1)
      refuse(n, "sequence: sequence_dim " + std::to_string(e.sequence_dim) + " does not fit input '" + x->name + "' " + dims_of(x->shape));
    g_.set_input(n, 0, redistribute(x, Placement::shard(sd), n));
    for (Value* o : n->outputs) if (o) set(o, Placement::shard(sd));
  }

  // ---- propagation rules of unmatched nodes ----
  void propagate(Node* n) {
    bool all_rep = true;
    for (Value* v : n->inputs) if (v && !get(v).is_replicate()) all_rep = false;
    if (all_rep) { for (Value* o : n->outputs) if (o) set(o, Placement::replicate()); return; }
    const std::string& op = n->op;
    if (kUnary.count(op) || kBinary.count(op)) return elementwise(n);
    if (kViews.count(op)) return view(n);
    if (op == "Transpose") return transpose(n);
    if (op == "shardrt.Attention") return attention(n);
    if (op == "shardrt.Rotary") return rotary(n);
    if (op == "Softmax" || op == "LogSoftmax" || op == "LayerNormalization" || op == "shardrt.RMSNorm") return normlike(n);
    if (op == "Split" || op == "Slice" || op == "Concat" || op == "Gather") return along_axis(n);
    if (op == "MatMul" && rank(n->in(0)) >= 3 && rank(n->in(1)) >= 3) return batched_matmul(n);
    if ((op == "shardrt.Linear" || op == "MatMul") && n->in(1) && n->in(1)->is_constant()) {
      // An unmatched linear layer: sharded batch dims pass through; a sharded feature dim
      // is gathered first.
      Placement p = get(n->in(0));
      if (p.is_shard() && p.dim < rank(n->in(0)) - 1) { set(n->out(0), p); return; }
    }
    gather_all(n, "no sharding rule for " + op + " with these placements");
  }

  void elementwise(Node* n) {
    Value* y = n->out(0);
    int64_t R = rank(y);
    bool partial = false, sharded = false;
    std::optional<int64_t> sd;
    bool conflict = false;
    for (Value* v : n->inputs) {
      if (!v) continue;
      Placement p = get(v);
      if (p.is_partial()) partial = true;
      if (p.is_shard()) {
        sharded = true;
        int64_t od = p.dim + (R - rank(v));
        if (sd && *sd != od) conflict = true;
        sd = od;
      }
    }
    if (partial) {
      bool linear_op = n->op == "Neg" || n->op == "Identity";
      if ((n->op == "Add" || n->op == "Sub") && !sharded) {
        bool all_partial = true;
        for (Value* v : n->inputs) if (v && !get(v).is_partial()) all_partial = false;
        linear_op = all_partial;
      }
      if ((n->op == "Mul" || n->op == "Div") && !sharded) {
        int np = 0;
        for (Value* v : n->inputs) np += v && get(v).is_partial();
        linear_op = np == 1 && get(n->in(0)).is_partial() == true || (n->op == "Mul" && np == 1);
      }
      if (linear_op && !sharded) { set(y, Placement::partial()); return; }
      for (size_t i = 0; i < n->inputs.size(); ++i)
        if (n->inputs[i] && get(n->inputs[i]).is_partial()) g_.set_input(n, i, redistribute(n->inputs[i], Placement::replicate(), n));
      if (!sharded) { set(y, Placement::replicate()); return; }
    }
    if (conflict) return gather_all(n, "inputs sharded along different dims");
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      Value* v = n->inputs[i];
      if (!v || !get(v).is_replicate()) continue;
      int64_t id = *sd - (R - rank(v));
      if (id < 0 || (v->shape[size_t(id)].known() && v->shape[size_t(id)].value == 1)) continue;  // broadcast
      if (!v->shape[size_t(id)].known() && !v->is_constant()) {
        // Unknown at build time (an attention mask computed from the inputs): taken to
        // broadcast along the sharded dim, as masks over heads do.
        note(n->describe() + ": '" + v->name + "' " + dims_of(v->shape) + " assumed to broadcast along dim " + std::to_string(id));
        continue;
      }
      g_.set_input(n, i, redistribute(v, Placement::shard(id), n));
    }
    for (Value* o : n->outputs) if (o) set(o, Placement::shard(*sd));
  }

  // Reshape-like ops: Shard(d) of the input maps to Shard(e) of the output when the dims
  // from d on and from e on hold the same elements (prod in[d:] == prod out[e:]) and both
  // in[d] and out[e] divide by tp; Reshape's target shape is rewritten to the local size.
  void view(Node* n) {
    Value* x = n->in(0);
    Value* y = n->out(0);
    Placement p = get(x);
    if (p.is_partial()) { set(y, p); return; }  // a view of a partial sum is a partial sum
    int64_t d = p.dim, pin;
    const Shape& is = gshape(x);
    Shape os = y->shape;
    bool last_computed = false;  // the target's last entry comes from run-time (local) shapes
    if (n->op == "Reshape") {
      std::vector<std::optional<int64_t>> ent = target_entries(n->in(1), int64_t(os.size()));
      for (size_t k = 0; k < os.size() && k < ent.size(); ++k)
        if (!os[k].known() && ent[k] && *ent[k] > 0) os[k] = Dim(*ent[k]);
      if (!ent.empty() && !ent.back()) last_computed = true;
      refined_[y] = os;
    }
    if (n->op == "Reshape" && last_computed && d == int64_t(is.size()) - 1 && !os.back().known()) {
      // Reshape(x, [..., x.shape[-1]]): flattening leading dims of a tensor sharded on its
      // last dim; the last entry is read from the local shape at run time.
      note(n->describe() + ": last target dim read from the local shape at run time; " + p.str() + " stays on the last dim");
      set(y, Placement::shard(int64_t(os.size()) - 1));
      return;
    }
    int64_t e = -1;
    if (known_prod(is, size_t(d), is.size(), pin))
      for (int64_t k = int64_t(os.size()) - 1; k >= 0; --k) {
        int64_t pout;
        if (!known_prod(os, size_t(k), os.size(), pout)) break;
        if (pout == pin) { e = k; }
        if (pout > pin) break;
      }
    // Splitting the sharded last dim into [heads, head_dim] with the head count left to
    // run time (-1 or computed): heads = G / head_dim must divide by tp.
    if (e < 0 && d == int64_t(is.size()) - 1 && os.size() == is.size() + 1 && is[size_t(d)].known() && os.back().known() &&
        !os[os.size() - 2].known() && is[size_t(d)].value % os.back().value == 0) {
      int64_t heads = is[size_t(d)].value / os.back().value;
      if (heads % tp_ != 0)
        refuse(n, "reshape of '" + x->name + "' " + dims_of(is) + " (" + p.str() + ") into heads of " + os.back().str() + ": " +
                      std::to_string(heads) + " heads are not divisible by tp=" + std::to_string(tp_));
      os[os.size() - 2] = Dim(heads);
      refined_[y] = os;
      e = int64_t(os.size()) - 2;
      if (n->op == "Reshape") rewrite_shape(n, e, heads);
      set(y, Placement::shard(e));
      return;
    }
    // The outermost dim with the same suffix product (skip leading 1s).
    while (e >= 0 && e + 1 < int64_t(os.size()) && os[size_t(e)].known() && os[size_t(e)].value == 1) ++e;
    if (e < 0 || !os[size_t(e)].known() || os[size_t(e)].value % tp_ != 0 || !is[size_t(d)].known() || is[size_t(d)].value % tp_ != 0) {
      if (n->op == "Reshape" && e >= 0 && os[size_t(e)].known() && os[size_t(e)].value % tp_ != 0)
        refuse(n, "reshape of '" + x->name + "' " + dims_of(is) + " (" + p.str() + ") to " + dims_of(os) + ": dim " +
                      std::to_string(e) + " (" + os[size_t(e)].str() + ", e.g. a head count) is not divisible by tp=" + std::to_string(tp_));
      return gather_all(n, "reshape " + dims_of(is) + " -> " + dims_of(os) + " does not keep " + p.str() + " contiguous");
    }
    if (n->op == "Reshape") rewrite_shape(n, e, os[size_t(e)].value);
    set(y, Placement::shard(e));
  }

  // The Reshape target's entries where they are constants (nullopt where computed).
  std::vector<std::optional<int64_t>> target_entries(Value* s, int64_t rank) {
    std::vector<std::optional<int64_t>> r;
    if (s->is_constant()) {
      for (int64_t v : s->constant->to_i64_vector()) r.push_back(v);
      return r;
    }
    Node* cat = pass_producer(s);
    if (!cat || cat->op != "Concat") return std::vector<std::optional<int64_t>>(size_t(rank));
    for (Value* piece : cat->inputs) {
      if (!piece || piece->shape.size() != 1 || !piece->shape[0].known()) return std::vector<std::optional<int64_t>>(size_t(rank));
      if (piece->is_constant()) for (int64_t v : piece->constant->to_i64_vector()) r.push_back(v);
      else for (int64_t i = 0; i < piece->shape[0].value; ++i) r.push_back(std::nullopt);
    }
    return r;
  }

  // Makes position `e` of the Reshape's target shape the local size (global / tp).
  void rewrite_shape(Node* n, int64_t e, int64_t global) {
    Value* s = n->in(1);
    auto fix = [&](const Tensor& t, int64_t pos) -> std::optional<Tensor> {
      Tensor c = t.clone();
      int64_t v = c.get_i(pos);
      if (v == 0 || v == -1) return std::nullopt;  // copies a local dim / inferred: already local
      if (v != global) refuse(n, "target shape entry " + std::to_string(pos) + " is " + std::to_string(v) + ", expected " + std::to_string(global));
      c.set_f(pos, double(global / tp_));
      return c;
    };
    if (s->is_constant()) {
      if (auto t = fix(*s->constant, e)) g_.set_input(n, 1, new_const(s->name, *t));
      return;
    }
    Node* cat = pass_producer(s);
    if (cat && cat->op == "Concat") {
      int64_t pos = 0;
      for (size_t i = 0; i < cat->inputs.size(); ++i) {
        Value* piece = cat->inputs[i];
        if (!piece || piece->shape.size() != 1 || !piece->shape[0].known()) break;
        int64_t len = piece->shape[0].value;
        if (e < pos + len) {
          if (!piece->is_constant()) {
            note(n->describe() + ": target dim " + std::to_string(e) + " comes from '" + piece->name + "' (computed at run time from local shapes)");
            return;
          }
          auto t = fix(*piece->constant, e - pos);
          if (!t) return;
          // A copy of the Concat for this Reshape alone (the original may be shared).
          std::vector<Value*> ins = cat->inputs;
          ins[i] = new_const(piece->name, *t);
          Node* nc = add("Concat", cat->name + "/tp", ins, cat->attrs, s->dtype, s->shape);
          g_.set_input(n, 1, nc->outputs[0]);
          return;
        }
        pos += len;
      }
    }
    note(n->describe() + ": target shape '" + s->name + "' is computed at run time; assumed to follow the local shapes");
  }

  static Node* pass_producer(Value* v) { return v && v->producer && !v->producer->dead ? v->producer : nullptr; }

  void transpose(Node* n) {
    Placement p = get(n->in(0));
    if (p.is_partial()) { set(n->out(0), p); return; }
    auto perm = n->attr_ints("perm");
    int64_t R = rank(n->in(0));
    if (perm.empty()) for (int64_t i = R - 1; i >= 0; --i) perm.push_back(i);
    const Shape& is = gshape(n->in(0));
    if (is.size() == perm.size()) {
      Shape os;
      for (int64_t a : perm) os.push_back(is[size_t(a)]);
      refined_[n->out(0)] = os;
    }
    for (size_t i = 0; i < perm.size(); ++i)
      if (perm[i] == p.dim) { set(n->out(0), Placement::shard(int64_t(i))); return; }
    gather_all(n, "bad perm");
  }

  void attention(Node* n) {
    Value* q = n->in(0);
    Value* k = n->in(1);
    Value* v = n->in(2);
    Placement pq = get(q), pk = get(k), pv = get(v);
    auto heads = [&](Value* t) { return gshape(t).size() == 4 ? gshape(t)[1] : Dim(); };
    refined_[n->out(0)] = gshape(q);
    if (pq == Placement::shard(1) && !(pk == pv)) {
      // Bring K and V to the same placement.
      if (pk.is_shard()) g_.set_input(n, 1, redistribute(k, Placement::replicate(), n));
      if (pv.is_shard()) g_.set_input(n, 2, redistribute(v, Placement::replicate(), n));
      pk = pv = Placement::replicate();
      k = n->in(1);
      v = n->in(2);
    }
    if (pq == Placement::shard(1) && (pk == Placement::shard(1) || pk.is_replicate()) && pk == pv) {
      if ((!heads(q).known() || !heads(k).known()) && pk.is_shard()) {
        // The reshapes that made the heads checked their divisibility.
        note(n->describe() + ": head counts unknown at build time; Q/K/V sharded on heads by their reshapes");
        set(n->out(0), Placement::shard(1));
        return;
      }
      if (!heads(q).known() || !heads(k).known()) return gather_all(n, "head counts unknown at build time");
      int64_t hq = heads(q).value, hkv = heads(k).value;
      if (hq % tp_ != 0) refuse(n, "query heads of '" + q->name + "' " + dims_of(q->shape) + " (" + std::to_string(hq) + ") are not divisible by tp=" + std::to_string(tp_));
      if (pk.is_shard() && hkv % tp_ != 0)
        refuse(n, "key/value heads of '" + k->name + "' " + dims_of(k->shape) + " (" + std::to_string(hkv) +
                      ") are not divisible by tp=" + std::to_string(tp_) + ": leave the K/V projections out of the plan (replicated) instead");
      if (pk.is_replicate()) {
        // Grouped-query attention with replicated K/V: this rank's query heads use a
        // contiguous range of kv heads, which it slices out.
        int64_t hl = hq / tp_, grp = hq / hkv, first = r_ * hl;
        int64_t a = first / grp, cnt;
        if (hl % grp == 0) cnt = hl / grp;
        else if (grp % hl == 0) cnt = 1;
        else
          refuse(n, "query heads per rank (" + std::to_string(hl) + ") and query heads per kv head (" + std::to_string(grp) +
                        ") do not nest: tp=" + std::to_string(tp_) + " cannot split " + std::to_string(hq) + " query / " +
                        std::to_string(hkv) + " kv heads");
        for (size_t i : {size_t(1), size_t(2)}) {
          Value* t = n->in(i);
          Value* st = g_.add_constant(g_.unique_name(t->name + "/kv/starts"), Tensor::from_i64({a}));
          Value* en = g_.add_constant(g_.unique_name(t->name + "/kv/ends"), Tensor::from_i64({a + cnt}));
          Value* ax = g_.add_constant(g_.unique_name(t->name + "/kv/axes"), Tensor::from_i64({1}));
          Node* sl = add("Slice", t->name + "/kv_heads", {t, st, en, ax}, {}, t->dtype, t->shape);
          set(sl->outputs[0], Placement::replicate());  // local by construction
          g_.set_input(n, i, sl->outputs[0]);
        }
        note(n->describe() + ": K/V replicated; this rank uses kv heads [" + std::to_string(a) + ", " + std::to_string(a + cnt) + ")");
      }
      if (Value* m = n->in(3)) {
        Placement pm = get(m);
        int64_t hd = 1 - (4 - rank(m));
        if (pm.is_partial()) g_.set_input(n, 3, m = redistribute(m, Placement::replicate(), n)), pm = Placement::replicate();
        if (pm.is_shard() && !(pm.dim == hd)) g_.set_input(n, 3, m = redistribute(m, Placement::replicate(), n)), pm = Placement::replicate();
        if (pm.is_replicate() && hd >= 0 && !m->shape[size_t(hd)].known())
          note(n->describe() + ": mask '" + m->name + "' has an unknown head dim; assumed 1 (broadcast over heads)");
        else if (pm.is_replicate() && hd >= 0 && m->shape[size_t(hd)].value != 1)
          g_.set_input(n, 3, redistribute(m, Placement::shard(hd), n));
      }
      set(n->out(0), Placement::shard(1));
      return;
    }
    if (pq.is_shard() && pq.dim == 0 && pk == pq && pv == pq) {
      set(n->out(0), pq);
      return;
    }
    gather_all(n, "attention with Q " + pq.str() + ", K " + pk.str() + ", V " + pv.str());
  }

  void rotary(Node* n) {
    Value* x = n->in(0);
    Placement p = get(x);
    int64_t R = rank(x);
    if (!p.is_shard() || p.dim >= R - 2) return gather_all(n, "rotary needs X sharded outside its last two dims");
    for (size_t i : {size_t(1), size_t(2)}) {
      Value* c = n->in(i);
      if (!c) continue;
      if (!get(c).is_replicate()) g_.set_input(n, i, c = redistribute(c, Placement::replicate(), n));
      int64_t id = p.dim - (R - rank(c));
      if (id >= 0 && !(c->shape[size_t(id)].known() && c->shape[size_t(id)].value == 1))
        g_.set_input(n, i, redistribute(c, Placement::shard(id), n));
    }
    refined_[n->out(0)] = gshape(x);
    set(n->out(0), p);
  }

  void normlike(Node* n) {
    Value* x = n->in(0);
    Placement p = get(x);
    int64_t R = rank(x);
    int64_t axis = n->op == "shardrt.RMSNorm" ? R - 1 : n->attr_i("axis", -1);
    if (axis < 0) axis += R;
    bool params_rep = true;
    for (size_t i = 1; i < n->inputs.size(); ++i) if (n->inputs[i] && !get(n->inputs[i]).is_replicate()) params_rep = false;
    if (p.is_shard() && params_rep && (n->op.find("Softmax") != std::string::npos ? p.dim != axis : p.dim < axis)) {
      set(n->out(0), p);
      for (size_t i = 1; i < n->outputs.size(); ++i) if (n->outputs[i]) set(n->outputs[i], p);
      return;
    }
    gather_all(n, "normalises across the sharded dim");
  }

  void along_axis(Node* n) {
    Value* x = n->in(0);
    Placement p = get(x);
    if (!p.is_shard()) return gather_all(n, "Partial input");
    for (size_t i = 1; i < n->inputs.size(); ++i)
      if (n->inputs[i] && !get(n->inputs[i]).is_replicate() && n->op != "Concat") return gather_all(n, "sharded index input");
    int64_t R = rank(x), axis = n->attr_i("axis", 0);
    if (axis < 0) axis += R;
    if (n->op == "Slice") {
      // Slice's axes input: every axis must be another dim.
      Value* ax = n->in(3);
      if (!ax) return gather_all(n, "slice over every dim");
      if (!ax->is_constant()) return gather_all(n, "slice axes unknown");
      for (int64_t a : ax->constant->to_i64_vector()) if ((a < 0 ? a + R : a) == p.dim) return gather_all(n, "slice along the sharded dim");
      for (Value* o : n->outputs) if (o) set(o, p);
      return;
    }
    if (n->op == "Concat") {
      for (Value* v : n->inputs) if (v && !(get(v) == p)) return gather_all(n, "inputs placed differently");
      if (axis == p.dim) return gather_all(n, "concat along the sharded dim");
      for (Value* o : n->outputs) if (o) set(o, p);
      return;
    }
    if (n->op == "Gather") {
      if (axis == p.dim) return gather_all(n, "gather along the sharded dim");
      int64_t ir = rank(n->in(1));
      set(n->out(0), Placement::shard(p.dim < axis ? p.dim : p.dim + ir - 1));
      return;
    }
    // Split
    if (axis != p.dim) { for (Value* o : n->outputs) if (o) set(o, p); return; }
    return split_sharded(n, p);
  }

  // Split along the sharded dim: every piece must divide by tp (a fused Q|K|V output
  // whose weight was sliced per group); the split sizes become local.
  void split_sharded(Node* n, Placement p) {
    Value* x = n->in(0);
    std::vector<int64_t> sizes;
    for (Value* o : n->outputs) {
      if (!o || !o->shape[size_t(p.dim)].known()) return gather_all(n, "split sizes unknown");
      sizes.push_back(o->shape[size_t(p.dim)].value);
    }
    for (int64_t z : sizes)
      if (z % tp_ != 0) return gather_all(n, "split along the sharded dim into parts not divisible by tp");
    if (Value* sp = n->in(1)) {
      if (!sp->is_constant()) return gather_all(n, "split sizes computed at run time");
      std::vector<int64_t> loc;
      for (int64_t z : sizes) loc.push_back(z / tp_);
      g_.set_input(n, 1, new_const(sp->name, Tensor::from_i64(loc)));
    }
    (void)x;
    for (Value* o : n->outputs) if (o) set(o, p);
    note(n->describe() + ": split along the sharded dim; each part is local");
  }

  void batched_matmul(Node* n) {
    Placement a = get(n->in(0)), b = get(n->in(1));
    int64_t ra = rank(n->in(0)), rb = rank(n->in(1)), R = rank(n->out(0));
    if (a.is_shard() && b.is_shard() && a.dim < ra - 2 && b.dim < rb - 2 && a.dim + (R - ra) == b.dim + (R - rb)) {
      set(n->out(0), Placement::shard(a.dim + (R - ra)));
      return;
    }
    gather_all(n, "matmul of " + a.str() + " and " + b.str());
  }
};

}  // namespace

ShardResult shard_graph(Graph& g, const dist::ShardingPlan& plan, int tp, int tp_rank, bool dim0_varies) {
  if (tp < 1 || tp_rank < 0 || tp_rank >= tp)
    throw Error("sharding: rank " + std::to_string(tp_rank) + " is not in a tensor-parallel group of " + std::to_string(tp));
  if (tp == 1) {
    ShardResult r;
    for (Value* v : g.inputs) r.inputs[v->name] = Placement::replicate();
    for (Value* v : g.outputs) r.outputs[v->name] = Placement::replicate();
    return r;
  }
  return Sharder(g, plan, tp, tp_rank, dim0_varies).run();
}

}  // namespace shardrt
