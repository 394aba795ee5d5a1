// Shape rules of the ops that select, join or scatter along axes: Concat, Split, Slice,
// Gather, GatherND, GatherElements, ScatterND, ScatterElements (and the old Scatter),
// Compress, NonZero, OneHot, ReverseSequence; and shardrt.PositionalEmbedding (two row
// gathers and their sum).
#include <algorithm>
#include <limits>

#include "ir/ops/ops.h"
#include "ir/ops/shape_ops_common.h"

namespace shardrt::shape_ops {

namespace {

bool is_index_type(DType t) { return t == DType::I64 || t == DType::I32; }

void check_index(const InferCtx& c, size_t i, const char* what) {
  if (!is_index_type(c.in_types[i]))
    c.fail(std::string(what) + " must be int64 or int32, got " + dtype_name(c.in_types[i]));
}

// Two dims that must agree; the known one wins.
Dim merge(const InferCtx& c, const Dim& a, const Dim& b, const std::string& what) {
  if (a.known() && b.known() && a.value != b.value) c.fail(what + ": " + a.str() + " vs " + b.str());
  return a.known() ? a : b;
}

void infer_concat(InferCtx& c) {
  if (!c.node.has_attr("axis")) c.fail("attribute 'axis' is required");
  int64_t r = -1;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    if (!c.has(i)) c.fail("inputs cannot be omitted");
    if (c.in_types[i] != c.in_types[0]) c.fail("inputs differ in type");
    if (r < 0) r = c.rank(i);
    else if (c.rank(i) != r) c.fail("inputs differ in rank");
  }
  if (r == 0) c.fail("cannot concatenate scalars");
  int64_t ax = c.axis(c.node.attr_i("axis"), r);
  Shape out = c.in_shapes[0];
  for (size_t i = 1; i < c.num_inputs(); ++i)
    for (int64_t d = 0; d < r; ++d) {
      const Dim& x = c.in_shapes[i][size_t(d)];
      if (d == ax) out[size_t(d)] = dim_add(out[size_t(d)], x);
      else out[size_t(d)] = merge(c, out[size_t(d)], x, "inputs differ at axis " + std::to_string(d));
    }
  c.set(0, c.in_types[0], out);
}

void infer_split(InferCtx& c) {
  int64_t r = c.rank(0);
  if (r == 0) c.fail("cannot split a scalar");
  int64_t ax = c.axis(c.node.attr_i("axis", 0), r);
  int64_t n = int64_t(c.node.outputs.size());
  if (c.node.has_attr("num_outputs") && c.node.attr_i("num_outputs") != n)
    c.fail("num_outputs is " + std::to_string(c.node.attr_i("num_outputs")) + " but the node has " + std::to_string(n) + " outputs");
  const Dim& d = c.in_shapes[0][size_t(ax)];
  std::vector<Dim> sizes;
  if (c.has(1)) {
    if (c.node.has_attr("num_outputs")) c.fail("split input and num_outputs are both given");
    auto split = ints_of(c, 1);
    if (split) {
      if (int64_t(split->size()) != n) c.fail("split has " + std::to_string(split->size()) + " entries for " + std::to_string(n) + " outputs");
      int64_t sum = 0;
      for (int64_t s : *split) {
        if (s < 0) c.fail("negative split size");
        if (__builtin_add_overflow(sum, s, &sum)) c.fail("split sizes overflow 64 bits");
        sizes.push_back(Dim(s));
      }
      if (d.known() && sum != d.value) c.fail("split sizes sum to " + std::to_string(sum) + ", axis has " + d.str());
    } else {
      sizes.assign(size_t(n), dim_unknown());
    }
  } else if (d.known()) {
    auto eq = equal_split(d.value, n);
    if (eq.empty()) c.fail("cannot split an axis of " + d.str() + " into " + std::to_string(n) + " parts");
    for (int64_t s : eq) sizes.push_back(Dim(s));
  } else {
    sizes.assign(size_t(n), n == 1 ? d : dim_unknown());
  }
  for (int64_t i = 0; i < n; ++i) {
    Shape o = c.in_shapes[0];
    o[size_t(ax)] = sizes[size_t(i)];
    c.set(size_t(i), c.in_types[0], o);
  }
}

// A slice bound so large it means "to the end" whatever the dim.
constexpr int64_t kHuge = int64_t(1) << 31;

void infer_slice(InferCtx& c) {
  const Shape& in = c.in_shapes[0];
  int64_t r = c.rank(0);
  for (size_t i = 1; i < 5; ++i)
    if (c.has(i)) check_index(c, i, "slice parameters");
  auto starts = ints_of(c, 1), ends = ints_of(c, 2);
  std::optional<std::vector<int64_t>> axes, steps;
  if (c.has(3)) axes = ints_of(c, 3);
  if (c.has(4)) steps = ints_of(c, 4);
  bool axes_known = !c.has(3) || axes;
  if (!starts || !ends || (c.has(4) && !steps) || !axes_known) {
    // Unknown parameters: the sliced axes get unknown sizes (all of them when the axes
    // themselves are unknown).
    Shape out = in;
    for (int64_t a = 0; a < r; ++a) {
      bool sliced = true;
      if (axes_known) {
        std::vector<int64_t> ax = axes ? *axes : std::vector<int64_t>{};
        if (!axes) {
          int64_t n = c.in_shapes[1].empty() || !c.in_shapes[1][0].known() ? r : c.in_shapes[1][0].value;
          for (int64_t k = 0; k < n; ++k) ax.push_back(k);
        }
        sliced = std::any_of(ax.begin(), ax.end(), [&](int64_t x) { return x == a || x + r == a; });
      }
      if (sliced) out[size_t(a)] = dim_unknown();
    }
    c.set(0, c.in_types[0], out);
    return;
  }
  // Geometry on known dims; a symbolic dim stays symbolic only when the slice keeps it
  // whole (start 0, end "infinity", step 1; or its reverse with step -1).
  Dims probe;
  for (auto& d : in) probe.push_back(d.known() ? d.value : 1);
  std::vector<SliceAxis> geo;
  std::string err = slice_geometry(probe, *starts, *ends, axes ? *axes : std::vector<int64_t>{},
                                   steps ? *steps : std::vector<int64_t>{}, geo);
  if (!err.empty()) c.fail(err);
  Shape out = in;
  for (int64_t a = 0; a < r; ++a) out[size_t(a)] = in[size_t(a)].known() ? Dim(geo[size_t(a)].count) : in[size_t(a)];
  for (size_t i = 0; i < starts->size(); ++i) {
    int64_t a = axes ? (*axes)[i] : int64_t(i);
    if (a < 0) a += r;
    if (in[size_t(a)].known()) continue;
    int64_t s = (*starts)[i], e = (*ends)[i], st = steps ? (*steps)[i] : 1;
    bool whole = (st == 1 && (s == 0 || s <= -kHuge) && e >= kHuge) ||
                 (st == -1 && (s == -1 || s >= kHuge) && e <= -kHuge);
    if (!whole) out[size_t(a)] = dim_unknown();
  }
  c.set(0, c.in_types[0], out);
}

void infer_gather(InferCtx& c) {
  check_index(c, 1, "indices");
  int64_t r = c.rank(0);
  if (r == 0) c.fail("data must have rank >= 1");
  int64_t ax = c.axis(c.node.attr_i("axis", 0), r);
  Shape out(c.in_shapes[0].begin(), c.in_shapes[0].begin() + ax);
  out.insert(out.end(), c.in_shapes[1].begin(), c.in_shapes[1].end());
  out.insert(out.end(), c.in_shapes[0].begin() + ax + 1, c.in_shapes[0].end());
  c.set(0, c.in_types[0], out);
}

void infer_gather_elements(InferCtx& c) {
  check_index(c, 1, "indices");
  if (c.rank(0) != c.rank(1)) c.fail("data and indices differ in rank");
  if (c.rank(0) == 0) c.fail("data must have rank >= 1");
  c.axis(c.node.attr_i("axis", 0), c.rank(0));
  c.set(0, c.in_types[0], c.in_shapes[1]);
}

void infer_gather_nd(InferCtx& c) {
  if (c.in_types[1] != DType::I64) c.fail("indices must be int64");
  int64_t r = c.rank(0), q = c.rank(1), b = c.node.attr_i("batch_dims", 0);
  if (q < 1 || r < 1) c.fail("data and indices must have rank >= 1");
  if (b < 0 || b >= std::min(q, r)) c.fail("batch_dims " + std::to_string(b) + " is out of range");
  const Dim& last = c.in_shapes[1].back();
  if (!last.known()) c.fail("the last dim of indices must be known");
  if (last.value > r - b) c.fail("indices index " + std::to_string(last.value) + " dims of data past batch_dims");
  for (int64_t i = 0; i < b; ++i) merge(c, c.in_shapes[0][size_t(i)], c.in_shapes[1][size_t(i)], "batch dims differ");
  Shape out(c.in_shapes[1].begin(), c.in_shapes[1].end() - 1);
  out.insert(out.end(), c.in_shapes[0].begin() + b + last.value, c.in_shapes[0].end());
  c.set(0, c.in_types[0], out);
}

std::string validate_reduction(const Node& n) {
  std::string red = n.attr_s("reduction", "none");
  if (red != "none" && red != "add" && red != "mul" && red != "max" && red != "min")
    return "reduction '" + red + "' is not supported (none|add|mul|max|min)";
  return "";
}

void infer_scatter_nd(InferCtx& c) {
  if (c.in_types[1] != DType::I64) c.fail("indices must be int64");
  if (c.in_types[2] != c.in_types[0]) c.fail("updates and data differ in type");
  int64_t r = c.rank(0), q = c.rank(1);
  if (q < 1) c.fail("indices must have rank >= 1");
  const Dim& k = c.in_shapes[1].back();
  if (k.known()) {
    if (k.value > r) c.fail("indices index more dims than data has");
    if (c.rank(2) != q - 1 + r - k.value) c.fail("updates have rank " + std::to_string(c.rank(2)) + ", expected " + std::to_string(q - 1 + r - k.value));
  }
  c.set(0, c.in_types[0], c.in_shapes[0]);
}

void infer_scatter_elements(InferCtx& c) {
  check_index(c, 1, "indices");
  if (c.in_types[2] != c.in_types[0]) c.fail("updates and data differ in type");
  if (c.rank(1) != c.rank(0) || c.rank(2) != c.rank(0)) c.fail("data, indices and updates must have the same rank");
  if (c.rank(0) == 0) c.fail("data must have rank >= 1");
  c.axis(c.node.attr_i("axis", 0), c.rank(0));
  for (int64_t i = 0; i < c.rank(1); ++i)
    merge(c, c.in_shapes[1][size_t(i)], c.in_shapes[2][size_t(i)], "indices and updates differ in shape");
  c.set(0, c.in_types[0], c.in_shapes[0]);
}

int64_t count_true(const Tensor& t, int64_t limit) {
  int64_t n = 0;
  for (int64_t i = 0; i < std::min(limit, t.numel()); ++i) n += t.get_f(i) != 0;
  return n;
}

void infer_compress(InferCtx& c) {
  if (c.in_types[1] != DType::Bool) c.fail("condition must be bool");
  if (c.rank(1) != 1) c.fail("condition must be 1-D");
  const Shape& in = c.in_shapes[0];
  const Tensor* cond = c.value(1);
  Dim total(1);
  for (auto& d : in) total = dim_mul(total, d);
  bool has_axis = c.node.has_attr("axis");
  if (has_axis && c.rank(0) == 0) c.fail("cannot compress a scalar along an axis");
  int64_t ax = has_axis ? c.axis(c.node.attr_i("axis"), c.rank(0)) : -1;
  const Dim& len = has_axis ? in[size_t(ax)] : total;
  if (cond && len.known() && cond->numel() > len.value)
    c.fail("condition has " + std::to_string(cond->numel()) + " entries for " + len.str() + " slices");
  Dim n = cond ? Dim(count_true(*cond, len.known() ? len.value : cond->numel())) : dim_unknown();
  if (!has_axis) { c.set(0, c.in_types[0], {n}); return; }
  Shape out = in;
  out[size_t(ax)] = n;
  c.set(0, c.in_types[0], out);
}

void infer_nonzero(InferCtx& c) {
  const Tensor* x = c.value(0);
  c.set(0, DType::I64, {Dim(c.rank(0)), x ? Dim(count_true(*x, x->numel())) : dim_unknown()});
}

void infer_onehot(InferCtx& c) {
  if (c.rank(2) != 1 || (c.in_shapes[2][0].known() && c.in_shapes[2][0].value != 2))
    c.fail("values must be a 1-D tensor of 2 elements");
  if (c.in_types[0] == DType::Bool || c.in_types[1] == DType::Bool) c.fail("indices and depth must be numeric");
  int64_t r = c.rank(0) + 1;
  int64_t ax = c.axis(c.node.attr_i("axis", -1), r);
  Dim depth = dim_unknown();
  if (const Tensor* d = c.value(1)) {
    if (d->numel() != 1) c.fail("depth must hold one value");
    double v = d->get_f(0);
    if (v < 1) c.fail("depth must be positive");
    depth = Dim(int64_t(v));
  } else if (auto s = sym_of(c, 1); s && s->size() == 1) {
    depth = to_dim(c, (*s)[0]);
  }
  Shape out = c.in_shapes[0];
  out.insert(out.begin() + ax, depth);
  c.set(0, c.in_types[2], out);
}

void infer_reverse_sequence(InferCtx& c) {
  check_index(c, 1, "sequence_lens");
  if (c.rank(0) < 2) c.fail("input must have rank >= 2");
  int64_t b = c.node.attr_i("batch_axis", 1), t = c.node.attr_i("time_axis", 0);
  if (!((b == 0 && t == 1) || (b == 1 && t == 0))) c.fail("batch_axis and time_axis must be 0 and 1 in some order");
  if (c.rank(1) != 1) c.fail("sequence_lens must be 1-D");
  merge(c, c.in_shapes[0][size_t(b)], c.in_shapes[1][0], "sequence_lens length differs from the batch");
  c.set(0, c.in_types[0], c.in_shapes[0]);
}

// shardrt.PositionalEmbedding(Ids, PastLens, Tokens, Positions) -> Y: a decoder's input
// embedding with learned absolute positions (GPT-2's wte + wpe) in one op,
//   Y[b, s, :] = Tokens[Ids[b, s], :] + Positions[PastLens[b] + s, :]
// rounded once to the tables' dtype (what Gather, Gather and Add store). Ids [B, S] int64 or
// int32, PastLens [B] int64, Tokens [V, E] and Positions [P, E] of one float dtype; Y [B, S, E].
void infer_positional_embedding(InferCtx& c) {
  check_index(c, 0, "Ids");
  if (c.in_types[1] != DType::I64) c.fail(std::string("PastLens must be int64, got ") + dtype_name(c.in_types[1]));
  const DType t = c.in_types[2];
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16)
    c.fail(std::string("Tokens must be fp32, fp16 or bf16, got ") + dtype_name(t));
  if (c.in_types[3] != t) c.fail("Tokens and Positions must have the same dtype");
  if (c.rank(0) != 2) c.fail("Ids must be [B, S], got " + shape_str(c.in_shapes[0]));
  if (c.rank(1) != 1) c.fail("PastLens must be [B], got " + shape_str(c.in_shapes[1]));
  if (c.rank(2) != 2 || c.rank(3) != 2) c.fail("Tokens and Positions must be [rows, E]");
  const Dim b = merge(c, c.in_shapes[0][0], c.in_shapes[1][0], "Ids' B and PastLens' B differ");
  const Dim e = merge(c, c.in_shapes[2][1], c.in_shapes[3][1], "Tokens' and Positions' widths differ");
  c.set(0, t, {b, c.in_shapes[0][1], e});
}

}  // namespace

void register_shape_index_schemas() {
  add_schema("Concat", 1, 1 << 20, 1, 1, {"axis"}, infer_concat);
  add_schema("Split", 1, 2, 1, 1 << 20, {"axis", "num_outputs"}, infer_split, true);
  add_schema("Slice", 3, 5, 1, 1, {}, infer_slice, true);
  add_schema("Gather", 2, 2, 1, 1, {"axis"}, infer_gather);
  add_schema("GatherElements", 2, 2, 1, 1, {"axis"}, infer_gather_elements);
  add_schema("GatherND", 2, 2, 1, 1, {"batch_dims"}, infer_gather_nd);
  add_schema("ScatterND", 3, 3, 1, 1, {"reduction"}, infer_scatter_nd, false, validate_reduction);
  add_schema("ScatterElements", 3, 3, 1, 1, {"axis", "reduction"}, infer_scatter_elements, false, validate_reduction);
  // Opsets 9-10's name for ScatterElements without reduction.
  add_schema("Scatter", 3, 3, 1, 1, {"axis"}, infer_scatter_elements);
  add_schema("Compress", 2, 2, 1, 1, {"axis"}, infer_compress, true);
  add_schema("NonZero", 1, 1, 1, 1, {}, infer_nonzero, true);
  add_schema("OneHot", 3, 3, 1, 1, {"axis"}, infer_onehot, true);
  add_schema("ReverseSequence", 2, 2, 1, 1, {"batch_axis", "time_axis"}, infer_reverse_sequence);
  add_schema("shardrt.PositionalEmbedding", 4, 4, 1, 1, {}, infer_positional_embedding);
}

}  // namespace shardrt::shape_ops

namespace shardrt {

std::string positional_embedding_row_error(int64_t b, int64_t s, int64_t id, int64_t p, int64_t V, int64_t P) {
  const std::string at = " at [" + std::to_string(b) + ", " + std::to_string(s) + "]";
  if (id < 0 || id >= V) return "token id " + std::to_string(id) + at + " is outside the " + std::to_string(V) + " rows of Tokens";
  if (p < 0 || p >= P)
    return "position " + std::to_string(p) + at + " (PastLens[b] + s) is outside the " + std::to_string(P) + " rows of Positions";
  return "";
}

}  // namespace shardrt
