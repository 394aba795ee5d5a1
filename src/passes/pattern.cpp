#include "passes/pattern.h"

#include <algorithm>

namespace shardrt::pattern {

namespace {

constexpr int kMaxDepth = 48;  // shape chains are short; this only stops pathological walks

bool is_int_type(DType t) { return t == DType::I64 || t == DType::I32; }

// Shape-preserving single-input ops: every output dim is the input's.
bool same_shape_unary(const std::string& op) {
  static const char* ops[] = {"Cast", "Neg", "Relu", "Softmax", "Sqrt", "Reciprocal", "Sigmoid", "Tanh", "Erf",
                              "Identity", "Exp", "Abs", "Gelu", "IsNaN", "LayerNormalization", "shardrt.RMSNorm",
                              "shardrt.Rotary", "shardrt.Silu", "Dropout", "Cos", "Sin"};
  return std::find(std::begin(ops), std::end(ops), op) != std::end(ops);
}
bool binary_bcast(const std::string& op) {
  return op == "Add" || op == "Sub" || op == "Mul" || op == "Div" || op == "Pow" || op == "And" || op == "Or";
}

DimExpr dim_rec(const Value* v, int64_t axis, int depth);
std::optional<std::vector<DimExpr>> expr_rec(const Value* v, int depth);

// Dim `axis` (normalised, counted in `out_rank`) of the broadcast of the given operands.
DimExpr bcast_dim(const std::vector<const Value*>& ins, int64_t axis, int64_t out_rank, int depth) {
  std::vector<DimExpr> cands;
  for (const Value* in : ins) {
    int64_t r = rank_of(in);
    if (r < 0) return DimExpr::unknown();
    int64_t a = axis - (out_rank - r);
    if (a < 0) continue;  // the operand lacks this dim
    DimExpr d = dim_rec(in, a, depth + 1);
    if (d.kind == DimExpr::Known && d.value == 1) continue;
    cands.push_back(d);
  }
  if (cands.empty()) return DimExpr::known(1);
  for (size_t i = 1; i < cands.size(); ++i)
    if (!(cands[i] == cands[0])) return DimExpr::unknown();
  return cands[0];
}

DimExpr dim_rec(const Value* v, int64_t axis, int depth) {
  int64_t r = rank_of(v);
  if (r < 0 || depth > kMaxDepth) return DimExpr::unknown();
  if (axis < 0) axis += r;
  if (axis < 0 || axis >= r) return DimExpr::unknown();
  const Dim& d = v->shape[size_t(axis)];
  if (d.known()) return DimExpr::known(d.value);
  // A named symbol is exact in the IR (Dim::operator== treats equal names as equal dims).
  if (!d.sym.empty() && d.sym != "?") {
    DimExpr s;
    s.kind = DimExpr::Sym;
    s.sym = d.sym;
    return s;
  }
  DimExpr ref;
  ref.kind = DimExpr::Ref;
  ref.v = v;
  ref.axis = axis;
  Node* p = producer(v);
  if (!p) return ref;
  const std::string& op = p->op;
  if (p->outputs.empty() || p->outputs[0] != v) {
    if (op == "Split") {
      int64_t a = p->attr_i("axis", 0);
      int64_t ra = rank_of(p->in(0));
      if (ra == r && (a < 0 ? a + r : a) != axis) return dim_rec(p->in(0), axis, depth + 1);
    }
    return ref;
  }
  if (same_shape_unary(op) && p->in(0)) return dim_rec(p->in(0), axis, depth + 1);
  if (op == "shardrt.Linear" || op == "Gemm") {
    // Y = X·W: every dim but the last is X's (Gemm is 2-D without transA).
    if (axis < r - 1 && !(op == "Gemm" && p->attr_i("transA", 0))) return dim_rec(p->in(0), axis, depth + 1);
    return ref;
  }
  if (op == "Gather" && p->in(1)) {
    int64_t rd = rank_of(p->in(0)), ri = rank_of(p->in(1));
    int64_t a = p->attr_i("axis", 0);
    if (rd < 1 || ri < 0) return ref;
    if (a < 0) a += rd;
    if (axis < a) return dim_rec(p->in(0), axis, depth + 1);
    if (axis < a + ri) return dim_rec(p->in(1), axis - a, depth + 1);
    return dim_rec(p->in(0), axis - ri + 1, depth + 1);
  }
  if (op == "Concat") {
    int64_t a = p->attr_i("axis", 0);
    if (a < 0) a += r;
    if (a != axis && !p->inputs.empty()) return dim_rec(p->in(0), axis, depth + 1);
    return ref;
  }
  if (op == "Range") {
    // Range(0, n, 1) has n elements.
    auto st = expr_rec(p->in(0), depth + 1), dl = expr_rec(p->in(2), depth + 1);
    if (st && dl && st->size() == 1 && dl->size() == 1 && (*st)[0].kind == DimExpr::Known && (*st)[0].value == 0 &&
        (*dl)[0].kind == DimExpr::Known && (*dl)[0].value == 1) {
      auto n = expr_rec(p->in(1), depth + 1);
      if (n && n->size() == 1 && (*n)[0].kind != DimExpr::Unknown) return (*n)[0];
    }
    return ref;
  }
  if (op == "Transpose") {
    auto perm = p->attr_ints("perm");
    if (perm.empty()) return dim_rec(p->in(0), r - 1 - axis, depth + 1);
    if (int64_t(perm.size()) != r) return ref;
    return dim_rec(p->in(0), perm[size_t(axis)], depth + 1);
  }
  if (op == "Reshape") {
    auto e = expr_rec(p->in(1), depth + 1);
    if (!e || int64_t(e->size()) != r) return ref;
    const DimExpr& x = (*e)[size_t(axis)];
    if (x.kind == DimExpr::Known && x.value == -1) {
      // The inferred dim: cancel target dims against equal input dims; what is left must be
      // known on both sides.
      int64_t ri = rank_of(p->in(0));
      if (ri < 0) return ref;
      std::vector<DimExpr> in;
      for (int64_t i = 0; i < ri; ++i) in.push_back(dim_rec(p->in(0), i, depth + 1));
      int64_t num = 1, den = 1;
      for (size_t i = 0; i < e->size(); ++i) {
        if (int64_t(i) == axis) continue;
        DimExpr t = (*e)[i];
        if (t.kind == DimExpr::Known && t.value == 0 && p->attr_i("allowzero", 0) == 0) {
          if (int64_t(i) >= ri) return ref;
          t = in[i];
        }
        auto it = std::find(in.begin(), in.end(), t);
        if (it != in.end()) { in.erase(it); continue; }
        if (t.kind != DimExpr::Known || t.value <= 0) return ref;
        den *= t.value;
      }
      for (auto& d : in) {
        if (d.kind != DimExpr::Known) return ref;
        num *= d.value;
      }
      if (den == 0 || num % den) return ref;
      return DimExpr::known(num / den);
    }
    if (x.kind == DimExpr::Known) {
      if (x.value > 0) return x;
      if (x.value == 0 && p->attr_i("allowzero", 0) == 0 && rank_of(p->in(0)) > axis)
        return dim_rec(p->in(0), axis, depth + 1);
      return ref;
    }
    return x.kind == DimExpr::Unknown ? ref : x;
  }
  if (binary_bcast(op)) return bcast_dim({p->in(0), p->in(1)}, axis, r, depth);
  if (op == "Where") return bcast_dim({p->in(0), p->in(1), p->in(2)}, axis, r, depth);
  if (op == "MatMul" || op == "shardrt.Attention") {
    const Value* a = p->in(0);
    const Value* b = p->in(op == "MatMul" ? 1 : 2);
    if (rank_of(a) < 2 || rank_of(b) < 2) return ref;
    if (axis == r - 1) return dim_rec(b, -1, depth + 1);
    if (axis == r - 2) return dim_rec(a, -2, depth + 1);
    if (op == "shardrt.Attention") return dim_rec(a, axis, depth + 1);
    // Batch dims broadcast; compare within the batch ranks.
    int64_t ra = rank_of(a), rb = rank_of(b);
    std::vector<DimExpr> c;
    for (auto [x, rx] : {std::pair{a, ra}, std::pair{b, rb}}) {
      int64_t ax = axis - (r - rx);
      if (ax < 0 || ax >= rx - 2) continue;
      DimExpr dx = dim_rec(x, ax, depth + 1);
      if (!(dx.kind == DimExpr::Known && dx.value == 1)) c.push_back(dx);
    }
    if (c.empty()) return DimExpr::known(1);
    if (c.size() == 2 && !(c[0] == c[1])) return ref;
    return c[0];
  }
  if (op == "Unsqueeze") {
    auto e = p->in(1) ? expr_rec(p->in(1), depth + 1) : std::nullopt;
    if (!e) return ref;
    std::vector<int64_t> axes;
    for (auto& x : *e) {
      if (x.kind != DimExpr::Known) return ref;
      axes.push_back(x.value < 0 ? x.value + r : x.value);
    }
    if (std::count(axes.begin(), axes.end(), axis)) return DimExpr::known(1);
    int64_t before = std::count_if(axes.begin(), axes.end(), [&](int64_t a) { return a < axis; });
    return dim_rec(p->in(0), axis - before, depth + 1);
  }
  if (op == "Expand") {
    auto e = expr_rec(p->in(1), depth + 1);
    int64_t ri = rank_of(p->in(0));
    if (!e || int64_t(e->size()) > r || ri < 0) return ref;
    int64_t at = axis - (r - int64_t(e->size()));
    int64_t ai = axis - (r - ri);
    DimExpr in = ai >= 0 ? dim_rec(p->in(0), ai, depth + 1) : DimExpr::known(1);
    DimExpr tg = at >= 0 ? (*e)[size_t(at)] : DimExpr::known(1);
    if (in.kind == DimExpr::Known && in.value == 1) return tg.kind == DimExpr::Unknown ? ref : tg;
    if (tg.kind == DimExpr::Known && tg.value == 1) return in;
    if (in == tg) return in;
    return ref;
  }
  if (op == "Slice") {
    std::vector<int64_t> axes;
    if (p->in(3)) {
      auto e = expr_rec(p->in(3), depth + 1);
      if (!e) return ref;
      for (auto& x : *e) {
        if (x.kind != DimExpr::Known) return ref;
        axes.push_back(x.value < 0 ? x.value + r : x.value);
      }
    } else {
      auto e = expr_rec(p->in(1), depth + 1);
      if (!e) return ref;
      for (size_t i = 0; i < e->size(); ++i) axes.push_back(int64_t(i));
    }
    if (!std::count(axes.begin(), axes.end(), axis)) return dim_rec(p->in(0), axis, depth + 1);
    return ref;
  }
  return ref;
}

std::optional<std::vector<DimExpr>> expr_rec(const Value* v, int depth) {
  if (!v || depth > kMaxDepth) return std::nullopt;
  if (v->constant) {
    const Tensor& t = *v->constant;
    if (!is_int_type(t.dtype()) || t.rank() > 1) return std::nullopt;
    std::vector<DimExpr> r;
    for (int64_t i = 0; i < t.numel(); ++i) r.push_back(DimExpr::known(t.get_i(i)));
    return r;
  }
  Node* p = producer(v);
  if (!p) return std::nullopt;
  const std::string& op = p->op;
  if (op == "Shape") {
    int64_t r = rank_of(p->in(0));
    if (r < 0) return std::nullopt;
    int64_t s = p->attr_i("start", 0), e = p->attr_i("end", r);
    if (s < 0) s += r;
    if (e < 0) e += r;
    s = std::clamp<int64_t>(s, 0, r);
    e = std::clamp<int64_t>(e, 0, r);
    std::vector<DimExpr> out;
    for (int64_t i = s; i < e; ++i) out.push_back(dim_rec(p->in(0), i, depth + 1));
    return out;
  }
  if (op == "Concat") {
    std::vector<DimExpr> out;
    for (Value* in : p->inputs) {
      auto e = expr_rec(in, depth + 1);
      if (!e) return std::nullopt;
      out.insert(out.end(), e->begin(), e->end());
    }
    return out;
  }
  if (op == "Gather") {
    if (p->attr_i("axis", 0) != 0) return std::nullopt;
    auto d = expr_rec(p->in(0), depth + 1);
    const Value* idx = p->in(1);
    if (!d || !idx || !idx->constant || idx->constant->rank() > 1) return std::nullopt;
    std::vector<DimExpr> out;
    for (int64_t i = 0; i < idx->constant->numel(); ++i) {
      int64_t k = idx->constant->get_i(i);
      if (k < 0) k += int64_t(d->size());
      if (k < 0 || k >= int64_t(d->size())) return std::nullopt;
      out.push_back((*d)[size_t(k)]);
    }
    return out;
  }
  if (op == "Slice") {
    auto d = expr_rec(p->in(0), depth + 1);
    if (!d) return std::nullopt;
    auto one = [&](size_t i) -> std::optional<int64_t> {
      const Value* x = p->in(i);
      if (!x) return std::nullopt;
      if (!x->constant || x->constant->numel() != 1) return std::nullopt;
      return x->constant->get_i(0);
    };
    auto st = one(1), en = one(2);
    if (!st || !en) return std::nullopt;
    if (p->in(3)) { auto ax = one(3); if (!ax || (*ax != 0 && *ax != -1)) return std::nullopt; }
    if (p->in(4)) { auto sp = one(4); if (!sp || *sp != 1) return std::nullopt; }
    int64_t n = int64_t(d->size());
    int64_t s = *st < 0 ? *st + n : *st, e = *en < 0 ? *en + n : *en;
    s = std::clamp<int64_t>(s, 0, n);
    e = std::clamp<int64_t>(e, 0, n);
    std::vector<DimExpr> out;
    for (int64_t i = s; i < e; ++i) out.push_back((*d)[size_t(i)]);
    return out;
  }
  if (op == "Unsqueeze" || op == "Squeeze" || op == "Cast" || op == "Identity" || op == "Reshape") {
    auto d = expr_rec(p->in(0), depth + 1);
    if (d && d->size() == 1) return d;  // scalar <-> [1]
    if (d && (op == "Cast" || op == "Identity" || (op == "Reshape" && rank_of(v) == 1))) return d;
    return std::nullopt;
  }
  if (op == "Where") {
    // Where(Equal(a, -1), ones, a): TorchScript's "-1 means keep" rewrite of Expand targets.
    // Real dims are never -1, so only known -1 elements of `a` take the replacement.
    Node* eq = producer(p->in(0), "Equal");
    if (!eq || eq->in(0) != p->in(2)) return std::nullopt;
    auto a = expr_rec(p->in(2), depth + 1), k = expr_rec(eq->in(1), depth + 1), t = expr_rec(p->in(1), depth + 1);
    if (!a || !k || !t) return std::nullopt;
    std::vector<DimExpr> out = *a;
    for (size_t i = 0; i < out.size(); ++i) {
      const DimExpr& ki = (*k)[k->size() == 1 ? 0 : i];
      if (k->size() != 1 && k->size() != out.size()) return std::nullopt;
      if (ki.kind != DimExpr::Known) return std::nullopt;
      bool is_k = out[i].kind == DimExpr::Known && out[i].value == ki.value;
      if (out[i].kind == DimExpr::Known && !is_k) continue;
      if (out[i].kind != DimExpr::Known && ki.value >= 0) return std::nullopt;  // a dim could equal k
      if (is_k) {
        if (t->size() != out.size() && t->size() != 1) return std::nullopt;
        out[i] = (*t)[t->size() == 1 ? 0 : i];
      }
    }
    return out;
  }
  if (op == "ConstantOfShape") {
    auto s = expr_rec(p->in(0), depth + 1);
    const Tensor* val = p->attr_t("value");
    if (!s || s->size() != 1 || (*s)[0].kind != DimExpr::Known || (*s)[0].value > 64) return std::nullopt;
    int64_t x = val && val->numel() == 1 ? val->get_i(0) : 0;
    return std::vector<DimExpr>(size_t((*s)[0].value), DimExpr::known(x));
  }
  if (op == "Div" || op == "Mul") {
    auto a = expr_rec(p->in(0), depth + 1), b = expr_rec(p->in(1), depth + 1);
    if (a && b && op == "Mul" && b->size() == 1 && (*b)[0].kind == DimExpr::Known) {
      std::vector<DimExpr> out;
      for (auto& x : *a) {
        if (x.kind != DimExpr::Known) return std::nullopt;
        out.push_back(DimExpr::known(x.value * (*b)[0].value));
      }
      return out;
    }
    if (!a || !b || a->size() != 1 || b->size() != 1) return std::nullopt;
    const DimExpr &x = (*a)[0], &y = (*b)[0];
    if (x.kind != DimExpr::Known || y.kind != DimExpr::Known) return std::nullopt;
    if (op == "Mul") return std::vector<DimExpr>{DimExpr::known(x.value * y.value)};
    if (y.value == 0) return std::nullopt;
    return std::vector<DimExpr>{DimExpr::known(x.value / y.value)};
  }
  return std::nullopt;
}

}  // namespace

bool operator==(const DimExpr& a, const DimExpr& b) {
  if (a.kind != b.kind) return false;
  switch (a.kind) {
    case DimExpr::Known: return a.value == b.value;
    case DimExpr::Ref: return a.v == b.v && a.axis == b.axis;
    case DimExpr::Sym: return a.sym == b.sym;
    case DimExpr::Unknown: return false;
  }
  return false;
}

int64_t rank_of(const Value* v) {
  if (!v) return -1;
  if (v->constant) return v->constant->rank();
  return v->shape_inferred ? int64_t(v->shape.size()) : -1;
}

DimExpr dim_of(const Value* v, int64_t axis) { return dim_rec(v, axis, 0); }

std::optional<std::vector<DimExpr>> int_expr(const Value* v) { return expr_rec(v, 0); }

std::optional<int64_t> int_value(const Value* v) {
  auto e = int_expr(v);
  if (!e || e->size() != 1 || (*e)[0].kind != DimExpr::Known) return std::nullopt;
  return (*e)[0].value;
}

bool not_incompatible(const DimExpr& small, const DimExpr& big) {
  if (broadcasts_into(small, big)) return true;
  if (small.kind != DimExpr::Known) return big.kind != DimExpr::Known || big.value != 1;
  return big.kind != DimExpr::Known && small.value >= 0;
}

bool broadcasts_into(const DimExpr& small, const DimExpr& big) {
  if (small.kind == DimExpr::Known && small.value == 1) return true;
  if (small == big) return true;
  // A valid run of the original graph needs small in {1, big}: either way it broadcasts.
  if (big.kind == DimExpr::Known && big.value > 1) return small.kind != DimExpr::Known;
  return false;
}

bool split_operands(Node* n, const std::string& op, Value*& a, Value*& b) {
  if (!n || n->inputs.size() != 2) return false;
  for (int i = 0; i < 2; ++i) {
    if (producer(n->in(size_t(i)), op)) {
      a = n->in(size_t(i));
      b = n->in(size_t(1 - i));
      return true;
    }
  }
  return false;
}

bool reduces_last_axis(const Node* n) {
  if (!n || n->attr_i("keepdims", 1) != 1) return false;
  int64_t r = rank_of(n->in(0));
  if (r < 1) return false;
  std::vector<int64_t> axes;
  if (n->has_attr("axes")) {
    axes = n->attr_ints("axes");
  } else if (n->in(1)) {
    auto e = int_expr(n->in(1));
    if (!e) return false;
    for (auto& x : *e) {
      if (x.kind != DimExpr::Known) return false;
      axes.push_back(x.value);
    }
  } else {
    return r == 1 && n->attr_i("noop_with_empty_axes", 0) == 0;  // all axes = the last one
  }
  return axes.size() == 1 && (axes[0] == -1 || axes[0] == r - 1);
}

void remove_unused(Graph& g, const std::vector<Node*>& nodes) {
  for (bool changed = true; changed;) {
    changed = false;
    for (Node* n : nodes) {
      if (n->dead) continue;
      bool used = false;
      for (Value* o : n->outputs)
        if (o && (!o->users.empty() || g.is_output(o))) used = true;
      if (!used) {
        g.remove_node(n);
        changed = true;
      }
    }
  }
}

}  // namespace shardrt::pattern
