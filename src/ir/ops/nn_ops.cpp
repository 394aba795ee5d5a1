// Neural-network op schemas: MatMul, Gemm and Einsum here; convolutions and pools in
// nn_ops_conv.cpp, normalizations in nn_ops_norm.cpp, Resize in nn_ops_resize.cpp.
#include <map>

#include "ir/op_schema.h"
#include "ir/ops/nn_ops_einsum.h"
#include "ir/ops/ops.h"

namespace shardrt {

void register_nn_conv_schemas();
void register_nn_norm_schemas();
void register_nn_resize_schemas();

namespace {

bool gemm_type_ok(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64 ||
         t == DType::I32 || t == DType::I64;
}

void infer_matmul(InferCtx& c) {
  const Shape& a = c.in_shapes[0];
  const Shape& b = c.in_shapes[1];
  if (c.in_types[0] != c.in_types[1]) c.fail("operands differ in dtype");
  if (!gemm_type_ok(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
  if (a.empty() || b.empty()) c.fail("operands must have rank >= 1");
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  const Dim ka = a.back(), kb = b1 ? b[0] : b[b.size() - 2];
  if (ka.known() && kb.known() && ka.value != kb.value)
    c.fail("inner dimensions differ: " + shape_str(a) + " x " + shape_str(b));
  Shape ab(a.begin(), a.end() - (a1 ? 1 : 2)), bb(b.begin(), b.end() - (b1 ? 1 : 2));
  Shape out = broadcast_shapes(c, ab, bb);
  if (!a1) out.push_back(a[a.size() - 2]);
  if (!b1) out.push_back(b.back());
  c.set(0, c.in_types[0], out);
}

void infer_gemm(InferCtx& c) {
  const Shape& a = c.in_shapes[0];
  const Shape& b = c.in_shapes[1];
  if (a.size() != 2 || b.size() != 2) c.fail("A and B must be 2-D, got " + shape_str(a) + " and " + shape_str(b));
  if (c.in_types[0] != c.in_types[1] || (c.has(2) && c.in_types[2] != c.in_types[0]))
    c.fail("operands differ in dtype");
  if (!gemm_type_ok(c.in_types[0])) c.fail(std::string("unsupported dtype ") + dtype_name(c.in_types[0]));
  const bool ta = c.node.attr_i("transA", 0) != 0, tb = c.node.attr_i("transB", 0) != 0;
  const Dim M = ta ? a[1] : a[0], Ka = ta ? a[0] : a[1];
  const Dim Kb = tb ? b[1] : b[0], N = tb ? b[0] : b[1];
  if (Ka.known() && Kb.known() && Ka.value != Kb.value)
    c.fail("inner dimensions differ: " + shape_str(a) + " x " + shape_str(b));
  Shape out{M, N};
  if (c.has(2)) {
    const Shape& cs = c.in_shapes[2];
    if (cs.size() > 2) c.fail("C must have rank <= 2");
    Shape bc = broadcast_shapes(c, out, cs);
    (void)bc;  // C must broadcast to [M, N] (unidirectionally)
    for (size_t i = 0; i < cs.size(); ++i) {
      const Dim& d = cs[i];
      const Dim& o = out[out.size() - cs.size() + i];
      if (d.known() && o.known() && d.value != 1 && d.value != o.value)
        c.fail("C " + shape_str(cs) + " does not broadcast to " + shape_str(out));
    }
  }
  c.set(0, c.in_types[0], out);
}

void infer_einsum(InferCtx& c) {
  std::string err;
  EinsumSpec spec;
  std::vector<size_t> ranks;
  for (size_t i = 0; i < c.num_inputs(); ++i) ranks.push_back(c.in_shapes[i].size());
  if (!parse_einsum(c.node.attr_s("equation", ""), ranks, spec, &err)) c.fail(err);
  for (size_t i = 1; i < c.num_inputs(); ++i)
    if (c.in_types[i] != c.in_types[0]) c.fail("inputs differ in dtype");
  // Size of each label (and of each ellipsis dim, broadcast across inputs).
  std::map<char, Dim> size;
  Shape ell;
  for (size_t i = 0; i < c.num_inputs(); ++i) {
    const auto& labels = spec.inputs[i];
    const Shape& s = c.in_shapes[i];
    Shape my_ell;
    size_t k = 0;
    for (char l : labels) {
      if (l == '.') {
        for (size_t e = 0; e < spec.ellipsis_rank[i]; ++e) my_ell.push_back(s[k++]);
        continue;
      }
      const Dim& d = s[k++];
      auto it = size.find(l);
      if (it == size.end()) size[l] = d;
      else if (it->second.known() && d.known() && it->second.value != d.value) {
        if (it->second.value == 1) it->second = d;
        else if (d.value != 1) c.fail(std::string("label '") + l + "' has sizes " + it->second.str() + " and " + d.str());
      } else if (!it->second.known() && d.known() && d.value != 1) it->second = d;
    }
    ell = broadcast_shapes(c, ell, my_ell);
  }
  Shape out;
  for (char l : spec.output) {
    if (l == '.') out.insert(out.end(), ell.begin(), ell.end());
    else out.push_back(size.at(l));
  }
  c.set(0, c.in_types[0], out);
}

}  // namespace

void register_nn_schemas() {
  register_schema({"MatMul", 2, 2, 1, 1, {}, infer_matmul, nullptr});
  register_schema({"Gemm", 2, 3, 1, 1, {"alpha", "beta", "transA", "transB"}, infer_gemm, nullptr});
  register_schema({"Einsum", 1, 64, 1, 1, {"equation"}, infer_einsum, [](const Node& n) -> std::string {
    if (!n.has_attr("equation")) return "Einsum needs an equation";
    std::vector<size_t> ranks;  // syntax only: ranks are not known here
    std::string err;
    return einsum_syntax_ok(n.attr_s("equation", ""), n.inputs.size(), &err) ? "" : err;
  }});
  register_nn_conv_schemas();
  register_nn_norm_schemas();
  register_nn_resize_schemas();
}

}  // namespace shardrt
