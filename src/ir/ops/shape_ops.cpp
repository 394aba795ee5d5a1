// The shape/data-movement family: registration, and the symbolic evaluator that lets
// shape rules see through Shape -> Gather -> Concat -> Reshape chains at build time.
#include <algorithm>
#include <limits>

#include "ir/ops/ops.h"
#include "ir/ops/shape_ops_common.h"

namespace shardrt {
namespace shape_ops {

namespace {

bool int_type(DType t) {
  return t == DType::I64 || t == DType::I32 || t == DType::I8 || t == DType::U8 || t == DType::Bool;
}

SymVec from_tensor(const Tensor& t) {
  SymVec r;
  r.reserve(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) r.push_back(SymInt::of(t.get_i(i)));
  return r;
}

// One evaluation's budget: each producer may be reached along many paths (Concat(v, v),
// Add(v, v), ... repeated), so the walk counts its steps and the sizes it builds rather
// than trusting the depth limit alone (2^32 paths fit in 32 levels).
struct Walk {
  int steps = 0;
};
constexpr int kMaxWalkSteps = 4096;
constexpr size_t kMaxSymElements = 4096;

std::optional<SymVec> sym_value(const Value* v, int depth, Walk& w);

std::optional<std::vector<int64_t>> known_value(const Value* v, int depth, Walk& w) {
  return all_known(sym_value(v, depth, w));
}

// Elementwise arithmetic on symbolic integers; only what keeps a dim nameable.
SymInt sym_arith(const std::string& op, const SymInt& a, const SymInt& b) {
  if (a.known() && b.known()) {
    // Values that overflow (the model's constants can be anything) are unknown, not wrapped.
    int64_t r;
    bool overflow = false;
    if (op == "Add") overflow = __builtin_add_overflow(a.v, b.v, &r);
    else if (op == "Sub") overflow = __builtin_sub_overflow(a.v, b.v, &r);
    else if (op == "Mul") overflow = __builtin_mul_overflow(a.v, b.v, &r);
    else if (b.v == 0 || (b.v == -1 && a.v == std::numeric_limits<int64_t>::min())) overflow = true;
    else r = a.v / b.v;  // integer Div truncates, as ONNX Runtime does
    return overflow ? SymInt{0, "?"} : SymInt::of(r);
  }
  if (op == "Mul") {
    if (a.known() && a.v == 1) return b;
    if (b.known() && b.v == 1) return a;
    if ((a.known() && a.v == 0) || (b.known() && b.v == 0)) return SymInt::of(0);
    if (a.sym == "?" || b.sym == "?") return SymInt{0, "?"};
    return SymInt{0, (a.known() ? std::to_string(a.v) : a.sym) + "*" + (b.known() ? std::to_string(b.v) : b.sym)};
  }
  if ((op == "Add" || op == "Sub") && b.known() && b.v == 0) return a;
  if (op == "Add" && a.known() && a.v == 0) return b;
  if (op == "Div" && b.known() && b.v == 1) return a;
  return SymInt{0, "?"};
}

std::optional<SymVec> sym_value(const Value* v, int depth, Walk& w) {
  if (!v || depth > 32 || ++w.steps > kMaxWalkSteps) return std::nullopt;
  if (v->constant) {
    if (!int_type(v->constant->dtype()) || v->constant->numel() > 4096) return std::nullopt;
    return from_tensor(*v->constant);
  }
  const Node* p = v->producer;
  if (!p || p->dead || !int_type(v->dtype)) return std::nullopt;
  const std::string& op = p->op;
  if (op == "Shape") {
    const Value* x = p->in(0);
    if (!x || !x->shape_inferred) return std::nullopt;
    int64_t r = int64_t(x->shape.size());
    auto norm = [r](int64_t a) { return std::clamp<int64_t>(a < 0 ? a + r : a, 0, r); };
    int64_t s = norm(p->attr_i("start", 0)), e = norm(p->attr_i("end", r));
    SymVec out;
    for (int64_t i = s; i < e; ++i) out.push_back(SymInt::of(x->shape[size_t(i)]));
    return out;
  }
  if (op == "Size") {
    const Value* x = p->in(0);
    if (!x || !x->shape_inferred) return std::nullopt;
    Dim n(1);
    for (auto& d : x->shape) n = dim_mul(n, d);
    return SymVec{SymInt::of(n)};
  }
  if (op == "Gather") {
    auto data = sym_value(p->in(0), depth + 1, w);
    auto idx = known_value(p->in(1), depth + 1, w);
    if (!data || !idx || p->in(0)->shape.size() != 1) return std::nullopt;
    int64_t n = int64_t(data->size());
    SymVec out;
    for (int64_t i : *idx) {
      if (i < 0) i += n;
      if (i < 0 || i >= n) return std::nullopt;
      out.push_back((*data)[size_t(i)]);
    }
    return out;
  }
  if (op == "Concat") {
    SymVec out;
    for (const Value* in : p->inputs) {
      auto part = sym_value(in, depth + 1, w);
      if (!part) return std::nullopt;
      out.insert(out.end(), part->begin(), part->end());
      if (out.size() > kMaxSymElements) return std::nullopt;
    }
    return out;
  }
  if (op == "Unsqueeze" || op == "Squeeze" || op == "Reshape" || op == "Identity" || op == "Flatten" ||
      op == "Cast") {
    const Value* x = p->in(0);
    if (!x || !int_type(x->dtype)) return std::nullopt;
    return sym_value(x, depth + 1, w);
  }
  if (op == "Slice") {
    auto data = sym_value(p->in(0), depth + 1, w);
    auto st = known_value(p->in(1), depth + 1, w), en = known_value(p->in(2), depth + 1, w);
    if (!data || !st || !en || st->size() != 1 || en->size() != 1) return std::nullopt;
    int64_t step = 1;
    if (p->in(4)) {
      auto sp = known_value(p->in(4), depth + 1, w);
      if (!sp || sp->size() != 1 || (*sp)[0] == 0) return std::nullopt;
      step = (*sp)[0];
    }
    SliceAxis a = slice_axis(int64_t(data->size()), (*st)[0], (*en)[0], step);
    SymVec out;
    for (int64_t k = 0; k < a.count; ++k) out.push_back((*data)[size_t(a.start + k * a.step)]);
    return out;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") {
    auto a = sym_value(p->in(0), depth + 1, w), b = sym_value(p->in(1), depth + 1, w);
    if (!a || !b) return std::nullopt;
    size_t n = std::max(a->size(), b->size());
    if ((a->size() != n && a->size() != 1) || (b->size() != n && b->size() != 1)) return std::nullopt;
    SymVec out;
    for (size_t i = 0; i < n; ++i)
      out.push_back(sym_arith(op, (*a)[a->size() == 1 ? 0 : i], (*b)[b->size() == 1 ? 0 : i]));
    return out;
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::vector<int64_t>> ints_of(const InferCtx& c, size_t i) {
  const Tensor* t = c.value(i);
  if (!t) {
    Walk w;
    if (c.has(i) && i < c.node.inputs.size()) return known_value(c.node.inputs[i], 0, w);
    return std::nullopt;
  }
  return t->to_i64_vector();
}

std::optional<SymVec> sym_of(const InferCtx& c, size_t i) {
  if (const Tensor* t = c.value(i)) return from_tensor(*t);
  if (!c.has(i) || i >= c.node.inputs.size()) return std::nullopt;
  Walk w;
  return sym_value(c.node.inputs[i], 0, w);
}

std::optional<std::vector<int64_t>> all_known(const std::optional<SymVec>& v) {
  if (!v) return std::nullopt;
  std::vector<int64_t> r;
  for (auto& s : *v) {
    if (!s.known()) return std::nullopt;
    r.push_back(s.v);
  }
  return r;
}

Dim to_dim(const InferCtx& c, const SymInt& s) {
  if (!s.known()) return Dim::symbol(s.sym);
  if (s.v < 0) c.fail("negative dimension " + std::to_string(s.v));
  return Dim(s.v);
}

size_t rank_from_length(const InferCtx& c, int64_t n) {
  if (n < 0 || n > kMaxRank)
    c.fail("the output would have rank " + std::to_string(n) + " (shardrt handles ranks 0 to " +
           std::to_string(kMaxRank) + ")");
  return size_t(n);
}

Dim dim_add(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) {
    int64_t r;
    if (__builtin_add_overflow(a.value, b.value, &r))
      throw GraphError("dimension sum " + a.str() + " + " + b.str() + " overflows 64 bits");
    return Dim(r);
  }
  if (a.known() && a.value == 0) return b;
  if (b.known() && b.value == 0) return a;
  if (a.str() == "?" || b.str() == "?") return dim_unknown();
  return Dim::symbol(a.str() + "+" + b.str());
}

SliceAxis slice_axis(int64_t d, int64_t s, int64_t e, int64_t step) {
  SliceAxis a;
  a.step = step;
  if (d <= 0) return a;
  if (step > 0) {
    if (s < 0) s += d;
    if (e < 0) e += d;
    s = std::clamp<int64_t>(s, 0, d);
    e = std::clamp<int64_t>(e, 0, d);
    a.start = s;
    a.count = e > s ? (e - s + step - 1) / step : 0;
  } else {
    if (s < 0) s += d;
    if (e < 0) e += d;
    s = std::clamp<int64_t>(s, 0, d - 1);
    e = std::clamp<int64_t>(e, -1, d - 1);
    a.start = s;
    a.count = s > e ? (s - e + (-step) - 1) / (-step) : 0;
  }
  if (a.count == 0) a.start = 0;
  return a;
}

std::string slice_geometry(const Dims& dims, const std::vector<int64_t>& starts,
                           const std::vector<int64_t>& ends, const std::vector<int64_t>& axes_in,
                           const std::vector<int64_t>& steps_in, std::vector<SliceAxis>& out) {
  int64_t r = int64_t(dims.size());
  size_t n = starts.size();
  if (ends.size() != n) return "starts and ends differ in length";
  std::vector<int64_t> axes = axes_in, steps = steps_in;
  if (axes.empty())
    for (size_t i = 0; i < n; ++i) axes.push_back(int64_t(i));
  if (steps.empty()) steps.assign(n, 1);
  if (axes.size() != n || steps.size() != n) return "starts, ends, axes and steps differ in length";
  out.assign(size_t(r), SliceAxis{});
  for (int64_t i = 0; i < r; ++i) out[size_t(i)] = SliceAxis{0, 1, dims[size_t(i)]};
  std::vector<bool> seen(size_t(r), false);
  for (size_t i = 0; i < n; ++i) {
    int64_t a = axes[i] < 0 ? axes[i] + r : axes[i];
    if (a < 0 || a >= r) return "axis " + std::to_string(axes[i]) + " is out of range";
    if (seen[size_t(a)]) return "axis " + std::to_string(axes[i]) + " repeats";
    seen[size_t(a)] = true;
    if (steps[i] == 0) return "step 0";
    out[size_t(a)] = slice_axis(dims[size_t(a)], starts[i], ends[i], steps[i]);
  }
  return "";
}

std::vector<int64_t> equal_split(int64_t dim, int64_t n) {
  if (n <= 0) return {};
  int64_t chunk = (dim + n - 1) / n;
  std::vector<int64_t> r(size_t(n), chunk);
  int64_t last = dim - chunk * (n - 1);
  if (last < 0) return {};
  r.back() = last;
  return r;
}

void add_schema(const std::string& name, int min_in, int max_in, int min_out, int max_out,
                std::vector<std::string> attrs, std::function<void(InferCtx&)> infer, bool data_dependent,
                std::function<std::string(const Node&)> validate) {
  OpSchema s;
  s.name = name;
  s.min_inputs = min_in;
  s.max_inputs = max_in;
  s.min_outputs = min_out;
  s.max_outputs = max_out;
  s.attrs = std::move(attrs);
  s.infer = std::move(infer);
  s.data_dependent_shape = data_dependent;
  s.validate = std::move(validate);
  register_schema(std::move(s));
}

}  // namespace shape_ops

void register_shape_schemas() {
  shape_ops::register_shape_reshape_schemas();
  shape_ops::register_shape_index_schemas();
  shape_ops::register_shape_create_schemas();
}

}  // namespace shardrt
