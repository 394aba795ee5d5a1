// Scaled dot-product attention → shardrt.Attention(Q, K, V, [Mask]) {scale, causal}:
//   S = MatMul([Mul](Q, a), [Mul](K^T, b))  [Mul/Div by c]  [Add mask]  [Where(bool, S, -big)]
//   P = Softmax(S, -1)  [Cast to the same type]  [Where(IsNaN(P), 0, P) or Where(Not(IsNaN(P)), P, 0)]
//   Y = MatMul(P, V)
// K^T is Transpose(K, 0,1,3,2), TorchScript's Transpose(x, 0,2,3,1) of [B,S,H,D], the
// dynamo exporter's Reshape/Transpose(0,2,1)/Reshape, or any other rank-4 value (then K is
// its transpose). GQA's repeat_kv (Unsqueeze(·,2)/Expand/Reshape) on K and V is dropped so
// the fused op reads Hkv heads. A constant causal mask becomes causal=1; an input-dependent
// one is passed through as Mask. Whatever cannot be proven equal is left as it was.
#include <cmath>
#include <limits>

#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "passes/pattern.h"

namespace shardrt {

namespace {

using namespace pattern;

bool attn_type(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

// The fill of a masking Where: -inf or at most -1e30 (torch.finfo(float).min and friends).
bool very_negative(const Value* v) {
  double x;
  return const_scalar(v, x) && (x <= -1e30 || (std::isinf(x) && x < 0));
}

// The fill of the exporters' NaN guard Where(IsNaN(P), 0, P) (torch's SDPA decomposition
// zeroes the NaN rows a fully masked softmax gives; shardrt.Attention gives zeros there
// itself): a constant of exact zeros that does not broadcast P to a larger shape, so that
// the guarded value has P's shape and dropping the Where changes nothing.
bool zero_fill_for(const Value* z, const Value* p) {
  if (!z || !z->constant || z->dtype != p->dtype) return false;
  const Tensor& t = *z->constant;
  const int64_t rp = rank_of(p);
  if (rp < 0 || int64_t(t.rank()) > rp) return false;
  for (int64_t i = 1; i <= int64_t(t.rank()); ++i) {
    int64_t d = t.dim(-i);
    DimExpr pd = dim_of(p, -i);
    if (d != 1 && !(pd.kind == DimExpr::Known && pd.value == d)) return false;
  }
  for (int64_t i = 0; i < t.numel(); ++i)
    if (t.get_f(i) != 0.0) return false;  // NaN compares unequal too: refused
  return true;
}

struct Match {
  double scale = 1.0;
  Value* fmask = nullptr;  // additive float mask
  Value* bmask = nullptr;  // bool mask, true = attend
  Node* mm = nullptr;      // MatMul(Q', K^T')
  std::vector<Node*> body;
};

// Walks up from the softmax input through scale/mask nodes to the score MatMul.
bool parse_scores(const Graph& g, Value* s, Match& m, int depth = 0) {
  if (depth > 8 || !single_use(g, s)) return false;
  Node* p = producer(s);
  if (!p) return false;
  double c;
  if (p->op == "MatMul") {
    m.mm = p;
    m.body.push_back(p);
    return true;
  }
  if (p->op == "Mul" || p->op == "Div") {
    int ci = const_scalar(p->in(1), c) ? 1 : (p->op == "Mul" && const_scalar(p->in(0), c) ? 0 : -1);
    if (ci < 0 || c == 0) return false;
    m.scale *= p->op == "Mul" ? c : 1.0 / c;
    m.body.push_back(p);
    return parse_scores(g, p->in(size_t(1 - ci)), m, depth + 1);
  }
  if (p->op == "Add" && !m.fmask) {
    for (int i = 0; i < 2; ++i) {
      Match t = m;
      t.fmask = p->in(size_t(1 - i));
      t.body.push_back(p);
      if (parse_scores(g, p->in(size_t(i)), t, depth + 1)) {
        m = t;
        return true;
      }
    }
    return false;
  }
  if (p->op == "Where" && !m.bmask && very_negative(p->in(2)) && p->in(0)->dtype == DType::Bool) {
    m.bmask = p->in(0);
    m.body.push_back(p);
    return parse_scores(g, p->in(1), m, depth + 1);
  }
  return false;
}

// Peels constant scalar Mul/Div factors off an operand of the score MatMul.
Value* peel_scale(const Graph& g, Value* v, Match& m) {
  for (int k = 0; k < 4; ++k) {
    Node* p = producer(v);
    double c;
    if (!p || !single_use(g, v)) break;
    if ((p->op == "Mul" || p->op == "Div") && const_scalar(p->in(1), c) && c != 0) {
      m.scale *= p->op == "Mul" ? c : 1.0 / c;
      v = p->in(0);
    } else if (p->op == "Mul" && const_scalar(p->in(0), c)) {
      m.scale *= c;
      v = p->in(1);
    } else {
      break;
    }
    m.body.push_back(p);
  }
  return v;
}

bool same_dims(const Value* a, int64_t ia, const Value* b, int64_t ib) {
  return dim_of(a, ia) == dim_of(b, ib);
}

// GQA's repeat_kv: Reshape(Expand(Unsqueeze(base, [2]), [B, Hkv, rep, S, D]), [B, Hkv*rep, S, D]).
// Returns base and sets rep, or returns x (rep = 1) when x is not such a chain.
Value* peel_repeat(const Graph& g, Value* x, int64_t& rep, std::vector<Node*>& body) {
  rep = 1;
  Node* rs = producer(x, "Reshape");
  if (!rs || rank_of(x) != 4) return x;
  Node* ex = producer(rs->in(0), "Expand");
  if (!ex || rank_of(ex->out(0)) != 5 || !single_use(g, ex->out(0))) return x;
  Node* un = producer(ex->in(0), "Unsqueeze");
  if (!un || !single_use(g, un->out(0))) return x;
  Value* base = un->in(0);
  if (rank_of(base) != 4 || rank_of(un->out(0)) != 5) return x;
  auto axes = int_expr(un->in(1));
  if (!axes || axes->size() != 1 || (*axes)[0].kind != DimExpr::Known || ((*axes)[0].value != 2 && (*axes)[0].value != -3))
    return x;
  Value* e = ex->out(0);
  DimExpr r = dim_of(e, 2);
  if (r.kind != DimExpr::Known || r.value < 1) return x;
  // A pure repeat along the new axis: every other dim unchanged by the Expand ...
  if (!same_dims(e, 0, base, 0) || !same_dims(e, 1, base, 1) || !same_dims(e, 3, base, 2) || !same_dims(e, 4, base, 3))
    return x;
  // ... and the Reshape merges exactly (Hkv, rep).
  if (!same_dims(x, 0, base, 0) || !same_dims(x, 2, base, 2) || !same_dims(x, 3, base, 3)) return x;
  DimExpr hkv = dim_of(base, 1), hq = dim_of(x, 1);
  auto tgt = int_expr(rs->in(1));
  bool heads_ok = (hkv.kind == DimExpr::Known && hq.kind == DimExpr::Known && hq.value == hkv.value * r.value) ||
                  (tgt && tgt->size() == 4 && (*tgt)[1].kind == DimExpr::Known && (*tgt)[1].value == -1);
  if (!heads_ok) return x;
  rep = r.value;
  body.insert(body.end(), {rs, ex, un});
  return base;
}

class FuseAttentionPass : public Pass {
 public:
  std::string name() const override { return "fuse_attention"; }
  std::vector<std::string> target_ops() const override { return {"Softmax"}; }

  bool run(Graph& g) override {
    return pass_util::rewrite_each(g, "Softmax", [&](Node* n) { return try_fuse(g, n); });
  }

 private:
  // K from K^T (rank 4); may add a Transpose node.
  Value* untranspose(Graph& g, Value* kt, std::vector<Node*>& body) {
    if (Node* t = producer(kt, "Transpose")) {
      auto perm = t->attr_ints("perm");
      if (perm == std::vector<int64_t>{0, 1, 3, 2} && single_use(g, kt)) {
        body.push_back(t);
        return t->in(0);
      }
      if (perm == std::vector<int64_t>{0, 2, 3, 1} && rank_of(t->in(0)) == 4 && single_use(g, kt)) {
        // kt = x.permute(0,2,3,1) with x [B,S,H,D]: K = x.permute(0,2,1,3); reuse one if there.
        body.push_back(t);
        for (Node* u : t->in(0)->users)
          if (u->op == "Transpose" && u->attr_ints("perm") == std::vector<int64_t>{0, 2, 1, 3}) return u->out(0);
        return add_transpose(g, t->in(0), {0, 2, 1, 3}, t->name);
      }
    }
    if (Node* r2 = producer(kt, "Reshape"); r2 && single_use(g, kt)) {
      Node* tr = producer(r2->in(0), "Transpose");
      Node* r1 = tr ? producer(tr->in(0), "Reshape") : nullptr;
      if (r1 && tr->attr_ints("perm") == std::vector<int64_t>{0, 2, 1} && single_use(g, r2->in(0)) &&
          single_use(g, tr->in(0))) {
        Value* k = r1->in(0);
        Value* r = r1->out(0);
        if (rank_of(k) == 4 && rank_of(r) == 3 && same_dims(r, 1, k, 2) && same_dims(r, 2, k, 3) &&
            same_dims(kt, 0, k, 0) && same_dims(kt, 1, k, 1) && same_dims(kt, 2, k, 3) && same_dims(kt, 3, k, 2)) {
          body.insert(body.end(), {r2, tr, r1});
          return k;
        }
      }
    }
    return add_transpose(g, kt, {0, 1, 3, 2}, "kt");
  }

  Value* add_transpose(Graph& g, Value* x, std::vector<int64_t> perm, const std::string& base) {
    Node* t = g.add_node("Transpose", base + "_attn_k", {x}, {x->name + "_k"}, {{"perm", Attr::of(std::move(perm))}});
    infer_node(g, *t);
    return t->out(0);
  }

  // Whether a constant mask is exactly the causal pattern j <= i + (Skv - Sq).
  static bool causal_constant(const Value* mk, bool is_bool) {
    if (!mk || !mk->constant) return false;
    const Tensor& t = *mk->constant;
    if (t.rank() < 2) return false;
    const int64_t sq = t.dim(-2), skv = t.dim(-1);
    if (sq < 2 || skv < 2) return false;
    const int64_t n = t.numel();
    for (int64_t k = 0; k < n; ++k) {
      int64_t j = k % skv, i = (k / skv) % sq;
      bool allowed = j <= i + (skv - sq);
      double v = t.get_f(k);
      if (is_bool) {
        if ((v != 0) != allowed) return false;
      } else if (allowed ? v != 0 : !(v <= -1e30)) {
        return false;
      }
    }
    return true;
  }

  bool try_fuse(Graph& g, Node* sm) {
    Value* s = sm->in(0);
    if (rank_of(s) != 4 || !attn_type(s->dtype)) return false;
    int64_t axis = sm->attr_i("axis", sm->opset > 0 && sm->opset < 13 ? 1 : -1);
    if (axis != -1 && axis != 3) return false;
    Match m;
    m.body.push_back(sm);
    // Down: [Cast to same type] [Where(IsNaN(P), 0, P)] → MatMul(P, V).
    Value* p = sm->out(0);
    for (int k = 0; k < 3; ++k) {
      if (g.is_output(p)) return false;
      if (p->users.size() == 1 && p->users[0]->op == "Cast" && p->users[0]->out(0)->dtype == p->dtype) {
        m.body.push_back(p->users[0]);
        p = p->users[0]->out(0);
        continue;
      }
      if (p->users.size() == 2) {
        Node *isn = nullptr, *wh = nullptr;
        for (Node* u : p->users) {
          if (u->op == "IsNaN") isn = u;
          else if (u->op == "Where") wh = u;
        }
        if (isn && wh && wh->in(0) == isn->out(0) && wh->in(2) == p && zero_fill_for(wh->in(1), p) &&
            single_use(g, isn->out(0))) {
          m.body.insert(m.body.end(), {isn, wh});
          p = wh->out(0);
          continue;
        }
      }
      // The same guard with the condition negated: Where(Not(IsNaN(P)), P, 0).
      if (p->users.size() == 2) {
        Node *isn = nullptr, *wh = nullptr;
        for (Node* u : p->users) {
          if (u->op == "IsNaN") isn = u;
          else if (u->op == "Where") wh = u;
        }
        Node* nt = isn && single_use(g, isn->out(0)) ? isn->out(0)->users[0] : nullptr;
        if (nt && nt->op == "Not" && wh && wh->in(0) == nt->out(0) && wh->in(1) == p && zero_fill_for(wh->in(2), p) &&
            single_use(g, nt->out(0))) {
          m.body.insert(m.body.end(), {isn, nt, wh});
          p = wh->out(0);
          continue;
        }
      }
      break;
    }
    if (!single_use(g, p)) return false;
    Node* pv = p->users[0];
    if (pv->op != "MatMul" || pv->in(0) != p) return false;
    if (!parse_scores(g, s, m)) return false;
    Node* mm = m.mm;
    Value* q = peel_scale(g, mm->in(0), m);
    Value* kt = peel_scale(g, mm->in(1), m);
    Value* v4 = pv->in(1);
    if (rank_of(q) != 4 || rank_of(kt) != 4 || rank_of(v4) != 4) return false;
    if (q->dtype != kt->dtype || q->dtype != v4->dtype || !attn_type(q->dtype)) return false;
    if (!(m.scale > 0) || !std::isfinite(m.scale)) return false;

    // Masks: a constant causal one becomes the attribute; at most one mask remains.
    int64_t causal = 0;
    if (m.bmask && causal_constant(m.bmask, true)) { causal = 1; m.bmask = nullptr; }
    else if (m.fmask && causal_constant(m.fmask, false)) { causal = 1; m.fmask = nullptr; }
    if (m.bmask && m.fmask) return false;
    Value* mask = m.bmask ? m.bmask : m.fmask;
    Value* scores = mm->out(0);
    if (mask) {
      if (m.fmask && m.fmask->dtype != q->dtype) return false;
      int64_t rm = rank_of(mask);
      if (rm < 0 || rm > 4) return false;
      for (int64_t i = 0; i < rm; ++i)
        if (!not_incompatible(dim_of(mask, rm - 1 - i), dim_of(scores, 3 - i))) return false;
    }

    // Everything checked that does not touch the graph; now K/V (may add a Transpose).
    size_t body_before = m.body.size();
    Value* k4 = untranspose(g, kt, m.body);
    int64_t rep_k = 1, rep_v = 1;
    Value* k = peel_repeat(g, k4, rep_k, m.body);
    Value* v = peel_repeat(g, v4, rep_v, m.body);
    bool ok = rep_k == rep_v && rank_of(k4) == 4 && same_dims(q, 0, k4, 0) && same_dims(q, 1, k4, 1) &&
              same_dims(q, 0, v4, 0) && same_dims(q, 1, v4, 1) && same_dims(k4, 2, v4, 2);
    if (!ok) {
      m.body.resize(body_before);
      // A Transpose this attempt added is unused now; drop it.
      if (Node* t = producer(k4); t && t->name.find("_attn_k") != std::string::npos && k4->users.empty())
        g.remove_node(t);
      return false;
    }
    std::vector<Value*> ins = {q, k, v};
    if (mask) ins.push_back(mask);
    Node* at = g.add_node("shardrt.Attention", sm->name + "_attention", ins, {pv->out(0)->name + "_attn"},
                          {{"scale", Attr::of(float(m.scale))}, {"causal", Attr::of(causal)}});
    at->fused_from = "MatMul/Scale/Mask/Softmax/MatMul" + std::string(rep_k > 1 ? "/repeat_kv" : "");
    infer_node(g, *at);
    g.replace_all_uses(pv->out(0), at->out(0));
    m.body.push_back(pv);
    remove_unused(g, m.body);
    note("fused attention around Softmax '" + sm->name + "' into shardrt.Attention '" + at->name + "'" +
         (causal ? " (causal)" : "") + (rep_k > 1 ? " (GQA x" + std::to_string(rep_k) + ")" : ""));
    return true;
  }
};

}  // namespace

PassPtr make_fuse_attention_pass() { return std::make_unique<FuseAttentionPass>(); }

}  // namespace shardrt
