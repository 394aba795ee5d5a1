// Constant folding during import. Exporters (and ONNX's function expansions) compute shapes
// with small subgraphs of constants: Neg(axis) → ConstantOfShape → Concat → Reshape. The
// IR needs every value's rank at build time, which a Reshape only knows when its shape
// input's value is known; so nodes whose inputs are all constants (and Shape/Size of a
// value whose shape is fully known) are evaluated here and become constants.
#include <set>

#include "backends/cpu/cpu_kernels.h"
#include "onnx/import_internal.h"

namespace shardrt::onnx_detail {

namespace {

// Folding keeps the model small: a folded value is stored in the engine like a weight.
constexpr int64_t kMaxFoldElements = 1 << 16;

bool is_random(const std::string& op) {
  static const std::set<std::string> ops = {"RandomNormal", "RandomUniform", "RandomNormalLike",
                                            "RandomUniformLike", "Bernoulli", "Multinomial", "Dropout"};
  return ops.count(op) != 0;
}

// Shape (with its start/end attributes) and Size of a value whose dims are all known.
bool fold_shape_of_known(Node& n, std::vector<Tensor>& outs) {
  Value* x = n.in(0);
  if (!x || !x->shape_inferred || !shape_known(x->shape)) return false;
  Dims d = shape_dims(x->shape);
  int64_t r = int64_t(d.size());
  if (n.op == "Size") {
    outs.push_back(Tensor::scalar_i64(numel(d)));
    return true;
  }
  auto clamp = [&](int64_t a) {
    if (a < 0) a += r;
    return std::min(std::max(a, int64_t(0)), r);
  };
  int64_t s = clamp(n.attr_i("start", 0)), e = clamp(n.attr_i("end", r));
  std::vector<int64_t> v;
  for (int64_t i = s; i < e; ++i) v.push_back(d[size_t(i)]);
  outs.push_back(Tensor::from_i64(v));
  return true;
}

}  // namespace

bool fold_if_constant(Graph& g, Node& n) {
  if (n.inputs.empty() || is_random(n.op)) return false;
  for (Value* o : n.outputs)
    if (o && (!o->shape_inferred || !shape_known(o->shape) || numel(shape_dims(o->shape)) > kMaxFoldElements))
      return false;
  std::vector<Tensor> outs;
  if ((n.op == "Shape" || n.op == "Size") && !(n.in(0) && n.in(0)->is_constant())) {
    if (!fold_shape_of_known(n, outs)) return false;
  } else {
    std::vector<const Tensor*> ins;
    for (Value* v : n.inputs) {
      if (v && !v->is_constant()) return false;
      ins.push_back(v ? v->constant.get() : nullptr);
    }
    try {
      outs = cpu::eval_node(n, ins);
    } catch (const std::exception&) {
      return false;  // no kernel (yet) or it refuses these values: keep the node
    }
  }
  if (outs.size() < n.outputs.size()) return false;
  for (size_t i = 0; i < n.outputs.size(); ++i) {
    Value* o = n.outputs[i];
    if (!o) continue;
    if (outs[i].dtype() != o->dtype || dims_shape(outs[i].dims()) != o->shape) return false;
  }
  std::vector<Value*> results = n.outputs;
  g.remove_node(&n);
  for (size_t i = 0; i < results.size(); ++i)
    if (results[i]) results[i]->constant = std::make_shared<Tensor>(std::move(outs[i]));
  return true;
}

}  // namespace shardrt::onnx_detail
