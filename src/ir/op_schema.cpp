#include "ir/op_schema.h"

#include <map>
#include <mutex>

#include "ir/ops/ops.h"

namespace shardrt {

namespace {
std::map<std::string, OpSchema>& table() {
  static std::map<std::string, OpSchema> t;
  return t;
}
void ensure_registered() {
  // Registration functions may look things up (e.g. a family reusing another's rule):
  // a lookup from inside registration must not wait on the once_flag it is running under.
  static thread_local bool registering = false;
  if (registering) return;
  static std::once_flag once;
  std::call_once(once, [] {
    registering = true;
    register_all_op_schemas();
    registering = false;
  });
}
}  // namespace

void register_schema(OpSchema s) { table()[s.name] = std::move(s); }

const OpSchema* find_schema(const std::string& op) {
  ensure_registered();
  auto it = table().find(op);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<std::string> all_schema_names() {
  ensure_registered();
  std::vector<std::string> r;
  for (auto& [k, v] : table()) r.push_back(k);
  return r;
}

void InferCtx::fail(const std::string& msg) const { throw GraphError(node.describe() + ": " + msg); }

int64_t InferCtx::axis(int64_t a, int64_t r) const {
  if (a < -r || a >= (r == 0 ? 1 : r))
    fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
  return a < 0 ? a + r : a;
}

Dim dim_unknown(const std::string& hint) { return Dim::symbol(hint); }

Dim dim_mul(const Dim& a, const Dim& b) {
  if (a.known() && b.known()) {
    int64_t r;
    // Dims come from model files: a product that wraps would be a small, wrong size.
    if (__builtin_mul_overflow(a.value, b.value, &r))
      throw GraphError("dimension product " + a.str() + " * " + b.str() + " overflows 64 bits");
    return Dim(r);
  }
  if (a.known() && a.value == 1) return b;
  if (b.known() && b.value == 1) return a;
  if (a.known() && a.value == 0) return Dim(0);
  if (b.known() && b.value == 0) return Dim(0);
  return Dim::symbol(a.str() + "*" + b.str());
}

Shape broadcast_shapes(const InferCtx& c, const Shape& a, const Shape& b) {
  size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const Dim* x = i + a.size() >= r ? &a[i + a.size() - r] : nullptr;
    const Dim* y = i + b.size() >= r ? &b[i + b.size() - r] : nullptr;
    if (!x) { out[i] = *y; continue; }
    if (!y) { out[i] = *x; continue; }
    if (x->known() && y->known()) {
      if (x->value == y->value || y->value == 1) out[i] = *x;
      else if (x->value == 1) out[i] = *y;
      else c.fail("cannot broadcast " + shape_str(a) + " with " + shape_str(b));
    } else if (x->known()) {
      out[i] = x->value == 1 ? *y : *x;
    } else if (y->known()) {
      out[i] = y->value == 1 ? *x : *y;
    } else {
      out[i] = x->sym == y->sym ? *x : dim_unknown();
    }
  }
  return out;
}

void infer_node(Graph& g, Node& n) {
  (void)g;
  const OpSchema* s = find_schema(n.op);
  if (!s) throw GraphError(n.describe() + ": no schema for op '" + n.op + "'");
  InferCtx c(n);
  for (Value* v : n.inputs) {
    c.in_types.push_back(v ? v->dtype : DType::Undefined);
    c.in_shapes.push_back(v ? v->shape : Shape{});
    c.in_values.push_back(v && v->constant ? v->constant.get() : nullptr);
    if (v && !v->shape_inferred)
      throw GraphError(n.describe() + ": input '" + v->name + "' has no known type");
  }
  s->infer(c);
  if (c.out_types.size() < n.outputs.size())
    throw GraphError(n.describe() + ": shape rule produced " + std::to_string(c.out_types.size()) +
                     " outputs, node has " + std::to_string(n.outputs.size()));
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    Value* o = n.outputs[i];
    if (!o) continue;
    o->dtype = c.out_types[i];
    o->shape = c.out_shapes[i];
    o->shape_inferred = true;
  }
}

void infer_graph(Graph& g) {
  for (auto& n : g.nodes)
    if (!n->dead) infer_node(g, *n);
}

}  // namespace shardrt
