// Shape rules of the ops that rearrange a tensor without selecting from it: Reshape,
// Transpose, Squeeze, Unsqueeze, Flatten, Identity, Expand, Tile.
#include <algorithm>
#include <map>

#include "ir/ops/shape_ops_common.h"

namespace shardrt::shape_ops {

namespace {

// A product of dims as a known factor times a multiset of symbolic factors; "batch*seq"
// counts as the two factors batch and seq so that Reshape can cancel them.
struct Product {
  int64_t known = 1;
  std::map<std::string, int> syms;
  int anonymous = 0;  // "?" factors: never cancel
  void add(const Dim& d) {
    if (d.known()) { known *= d.value; return; }
    std::string s = d.str();
    size_t b = 0;
    while (b <= s.size()) {
      size_t e = s.find('*', b);
      if (e == std::string::npos) e = s.size();
      std::string f = s.substr(b, e - b);
      if (!f.empty() && std::all_of(f.begin(), f.end(), ::isdigit)) known *= std::stoll(f);
      else if (f == "?" || f.empty()) ++anonymous;
      else ++syms[f];
      b = e + 1;
    }
  }
};

// The dim a Reshape's -1 stands for: input product / product of the other target dims.
Dim infer_minus_one(const InferCtx& c, const Shape& in, const Shape& others) {
  Product pi, po;
  for (auto& d : in) pi.add(d);
  for (auto& d : others) po.add(d);
  for (auto it = po.syms.begin(); it != po.syms.end();) {
    auto f = pi.syms.find(it->first);
    int k = f == pi.syms.end() ? 0 : std::min(f->second, it->second);
    if (k) {
      f->second -= k;
      if (f->second == 0) pi.syms.erase(f);
      it->second -= k;
    }
    it = it->second == 0 ? po.syms.erase(it) : std::next(it);
  }
  if (pi.anonymous || po.anonymous || !po.syms.empty()) return dim_unknown();
  if (po.known == 0) {
    if (pi.known == 0 && pi.syms.empty()) c.fail("cannot infer -1 when the other dims have size 0");
    return dim_unknown();
  }
  if (pi.known % po.known != 0) {
    if (pi.syms.empty()) c.fail("cannot reshape " + shape_str(in) + ": element count not divisible by " + std::to_string(po.known));
    return dim_unknown();
  }
  Dim r(pi.known / po.known);
  for (auto& [s, n] : pi.syms)
    for (int k = 0; k < n; ++k) r = dim_mul(r, Dim::symbol(s));
  return r;
}

void infer_reshape(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  bool allowzero = c.node.attr_i("allowzero", 0) != 0;
  auto target = sym_of(c, 1);
  if (c.rank(1) != 1) c.fail("shape input must be 1-D");
  if (!target) {
    const Dim& n = c.in_shapes[1][0];
    if (!n.known()) c.fail("the length of the shape input is unknown, so is the output's rank");
    c.set(0, c.in_types[0], Shape(rank_from_length(c, n.value), dim_unknown()));
    return;
  }
  Shape out;
  int neg = -1;
  bool zero = false;
  for (size_t i = 0; i < target->size(); ++i) {
    const SymInt& t = (*target)[i];
    if (!t.known()) {
      out.push_back(Dim::symbol(t.sym));
    } else if (t.v == 0 && !allowzero) {
      if (i >= in.size()) c.fail("shape entry " + std::to_string(i) + " is 0 (copy) but the input has rank " + std::to_string(in.size()));
      out.push_back(in[i]);
    } else if (t.v == -1) {
      if (neg >= 0) c.fail("shape has more than one -1");
      neg = int(i);
      out.push_back(Dim(1));
    } else if (t.v < 0) {
      c.fail("invalid shape entry " + std::to_string(t.v));
    } else {
      zero |= t.v == 0;
      out.push_back(Dim(t.v));
    }
  }
  if (neg >= 0) {
    if (allowzero && zero) c.fail("allowzero=1 shape has both 0 and -1");
    Shape others = out;
    others.erase(others.begin() + neg);
    out[size_t(neg)] = infer_minus_one(c, in, others);
  } else if (shape_known(in) && shape_known(out) && numel(shape_dims(in)) != numel(shape_dims(out))) {
    c.fail("cannot reshape " + shape_str(in) + " to " + shape_str(out));
  }
  c.set(0, c.in_types[0], out);
}

std::vector<int64_t> transpose_perm(const InferCtx& c) {
  int64_t r = c.rank(0);
  std::vector<int64_t> perm = c.node.attr_ints("perm");
  if (!c.node.has_attr("perm"))
    for (int64_t i = r - 1; i >= 0; --i) perm.push_back(i);
  if (int64_t(perm.size()) != r) c.fail("perm has " + std::to_string(perm.size()) + " entries for rank " + std::to_string(r));
  std::vector<bool> seen(size_t(r), false);
  for (auto& p : perm) {
    p = c.axis(p, r);
    if (seen[size_t(p)]) c.fail("perm is not a permutation");
    seen[size_t(p)] = true;
  }
  return perm;
}

void infer_transpose(InferCtx& c) {
  auto perm = transpose_perm(c);
  Shape out;
  for (int64_t p : perm) out.push_back(c.in_shapes[0][size_t(p)]);
  c.set(0, c.in_types[0], out);
}

// Normalised, sorted axes; duplicates fail.
std::vector<int64_t> norm_axes(const InferCtx& c, std::vector<int64_t> axes, int64_t r) {
  for (auto& a : axes) a = c.axis(a, r);
  std::sort(axes.begin(), axes.end());
  if (std::adjacent_find(axes.begin(), axes.end()) != axes.end()) c.fail("axes repeat");
  return axes;
}

void infer_squeeze(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  int64_t r = c.rank(0);
  Shape out;
  if (!c.has(1)) {
    // No axes: drop every dim of size 1. A symbolic dim is assumed not to be 1 at build
    // time; at run time all dims are known.
    for (auto& d : in)
      if (!(d.known() && d.value == 1)) out.push_back(d);
  } else {
    auto axes = ints_of(c, 1);
    if (!axes) {
      if (c.rank(1) != 1 || !c.in_shapes[1][0].known()) c.fail("axes are unknown and so is the output's rank");
      c.set(0, c.in_types[0], Shape(rank_from_length(c, r - c.in_shapes[1][0].value), dim_unknown()));
      return;
    }
    auto ax = norm_axes(c, *axes, r);
    for (int64_t i = 0; i < r; ++i) {
      if (std::binary_search(ax.begin(), ax.end(), i)) {
        if (in[size_t(i)].known() && in[size_t(i)].value != 1)
          c.fail("cannot squeeze axis " + std::to_string(i) + " of size " + in[size_t(i)].str());
        continue;
      }
      out.push_back(in[size_t(i)]);
    }
  }
  c.set(0, c.in_types[0], out);
}

void infer_unsqueeze(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  auto axes = ints_of(c, 1);
  if (!axes) {
    if (c.rank(1) > 1 || (c.rank(1) == 1 && !c.in_shapes[1][0].known())) c.fail("axes are unknown and so is the output's rank");
    int64_t n = c.rank(1) == 0 ? 1 : c.in_shapes[1][0].value;
    c.set(0, c.in_types[0], Shape(size_t(c.rank(0)) + rank_from_length(c, n), dim_unknown()));
    return;
  }
  int64_t r = c.rank(0) + int64_t(axes->size());
  auto ax = norm_axes(c, *axes, r);
  Shape out;
  size_t k = 0;
  for (int64_t i = 0; i < r; ++i) {
    if (std::binary_search(ax.begin(), ax.end(), i)) out.push_back(Dim(1));
    else out.push_back(in[k++]);
  }
  c.set(0, c.in_types[0], out);
}

void infer_flatten(InferCtx& c) {
  int64_t r = c.rank(0);
  int64_t a = c.node.attr_i("axis", 1);
  if (a < -r || a > r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
  if (a < 0) a += r;
  Dim outer(1), inner(1);
  for (int64_t i = 0; i < r; ++i) {
    if (i < a) outer = dim_mul(outer, c.in_shapes[0][size_t(i)]);
    else inner = dim_mul(inner, c.in_shapes[0][size_t(i)]);
  }
  c.set(0, c.in_types[0], {outer, inner});
}

void infer_expand(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  if (c.rank(1) != 1) c.fail("shape input must be 1-D");
  auto target = sym_of(c, 1);
  SymVec t;
  if (target) {
    t = *target;
  } else {
    if (!c.in_shapes[1][0].known()) c.fail("the length of the shape input is unknown, so is the output's rank");
    t.assign(rank_from_length(c, c.in_shapes[1][0].value), SymInt{0, "?"});
  }
  size_t r = std::max(in.size(), t.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim* a = i + in.size() >= r ? &in[i + in.size() - r] : nullptr;
    const SymInt* s = i + t.size() >= r ? &t[i + t.size() - r] : nullptr;
    if (!s) { out[i] = *a; continue; }
    if (s->known()) {
      if (s->v < 0) c.fail("negative entry " + std::to_string(s->v) + " in the shape input");
      if (!a) out[i] = Dim(s->v);
      else if (s->v == 1) out[i] = *a;
      else if (a->known() && a->value != 1 && a->value != s->v)
        c.fail("cannot expand " + shape_str(in) + " to shape entry " + std::to_string(s->v) + " at axis " + std::to_string(i));
      else out[i] = Dim(s->v);
    } else {
      // A named target entry wins (the input dim is then equal or 1); an anonymous one
      // over a symbolic input dim stays unknown.
      if (a && a->known() && a->value != 1) out[i] = *a;
      else if (s->sym != "?") out[i] = Dim::symbol(s->sym);
      else out[i] = dim_unknown();
    }
  }
  c.set(0, c.in_types[0], out);
}

void infer_tile(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  auto reps = sym_of(c, 1);
  if (reps && reps->size() != in.size())
    c.fail("repeats has " + std::to_string(reps->size()) + " entries for rank " + std::to_string(in.size()));
  Shape out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (!reps) { out.push_back(dim_unknown()); continue; }
    const SymInt& s = (*reps)[i];
    if (s.known() && s.v < 0) c.fail("negative repeat");
    out.push_back(dim_mul(in[i], to_dim(c, s)));
  }
  c.set(0, c.in_types[0], out);
}

}  // namespace

void register_shape_reshape_schemas() {
  add_schema("Reshape", 2, 2, 1, 1, {"allowzero"}, infer_reshape, true);
  add_schema("Transpose", 1, 1, 1, 1, {"perm"}, infer_transpose);
  add_schema("Squeeze", 1, 2, 1, 1, {}, infer_squeeze, true);
  add_schema("Unsqueeze", 2, 2, 1, 1, {}, infer_unsqueeze, true);
  add_schema("Flatten", 1, 1, 1, 1, {"axis"}, infer_flatten);
  add_schema("Identity", 1, 1, 1, 1, {}, [](InferCtx& c) { c.set(0, c.in_types[0], c.in_shapes[0]); });
  add_schema("Expand", 2, 2, 1, 1, {}, infer_expand, true);
  add_schema("Tile", 2, 2, 1, 1, {}, infer_tile, true);
}

}  // namespace shardrt::shape_ops
