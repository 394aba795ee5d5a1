#include "shardrt/network.h"

#include "ir/graph.h"
#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"
#include "shardrt/engine.h"

namespace shardrt {

Network::Network(std::string name) : g_(std::make_unique<Graph>()) { g_->name = std::move(name); }
Network::~Network() = default;
Network::Network(Network&&) noexcept = default;
Network& Network::operator=(Network&&) noexcept = default;

Graph& Network::graph() { return *g_; }
std::unique_ptr<Graph> Network::release() {
  auto g = std::move(g_);
  g_ = std::make_unique<Graph>();
  return g;
}

ITensor Network::input(const std::string& name, DType t, const Dims& dims, const std::vector<std::string>& dim_names) {
  Shape s;
  for (size_t i = 0; i < dims.size(); ++i)
    s.push_back(dims[i] >= 0 ? Dim(dims[i]) : Dim::symbol(i < dim_names.size() ? dim_names[i] : "d" + std::to_string(i)));
  if (g_->find_value(name)) throw Error("network: a value named '" + name + "' exists already");
  return {g_->add_input(name, t, s)};
}

ITensor Network::weight(const std::string& name, Tensor value) { return {g_->add_constant(name, std::move(value))}; }

void Network::output(ITensor t, const std::string& name) {
  if (!t) throw Error("network: output '" + name + "' is a null tensor");
  Value* v = t.v;
  // A node's output that is not yet an output takes the name; anything else (an input, a
  // weight, a value returned twice) is routed through an Identity.
  bool own = v->producer && !g_->is_output(v);
  if (v->name != name && !(own && g_->rename(v, name))) {
    Node* id = g_->add_node("Identity", name + "/output", {v}, {name});
    infer_node(*g_, *id);
    if (id->outputs[0]->name != name) throw Error("network: output name '" + name + "' is taken by another value");
    v = id->outputs[0];
  }
  g_->outputs.push_back(v);
}

std::vector<ITensor> Network::op(const std::string& op_type, const std::vector<ITensor>& inputs, const Attrs& attrs,
                                 int num_outputs, const std::string& name) {
  std::map<std::string, Attr> a;
  for (auto& [k, v] : attrs.i) a[k] = Attr::of(v);
  for (auto& [k, v] : attrs.f) a[k] = Attr::of(v);
  for (auto& [k, v] : attrs.s) a[k] = Attr::of(v);
  for (auto& [k, v] : attrs.ints) a[k] = Attr::of(v);
  std::vector<Value*> ins;
  for (auto& t : inputs) ins.push_back(t.v);
  std::string base = name.empty() ? op_type : name;
  std::vector<std::string> outs;
  for (int i = 0; i < num_outputs; ++i) outs.push_back(base + (num_outputs > 1 ? "_out" + std::to_string(i) : "_out"));
  if (!find_schema(op_type)) throw Error("network: unknown op type '" + op_type + "'");
  Node* n = g_->add_node(op_type, base, ins, outs, a);
  try {
    infer_node(*g_, *n);
  } catch (const GraphError& e) {
    throw Error(std::string("network: ") + e.what());
  }
  std::vector<ITensor> r;
  for (Value* v : n->outputs) r.push_back({v});
  return r;
}

ITensor Network::constant_i64(const std::vector<int64_t>& v, const std::string& name) {
  return {g_->add_constant(name, Tensor::from_i64(v))};
}

ITensor Network::linear(ITensor x, ITensor w, ITensor bias, Activation act, const std::string& name) {
  static const char* acts[] = {"none", "relu", "gelu", "gelu_tanh", "silu"};
  Attrs a;
  a.i["trans_b"] = 1;
  a.s["activation"] = acts[int(act)];
  std::vector<ITensor> ins = {x, w};
  if (bias) ins.push_back(bias);
  return op("shardrt.Linear", ins, a, 1, name.empty() ? "linear" : name)[0];
}
ITensor Network::matmul(ITensor a, ITensor b, const std::string& n) { return op("MatMul", {a, b}, {}, 1, n)[0]; }
ITensor Network::add(ITensor a, ITensor b, const std::string& n) { return op("Add", {a, b}, {}, 1, n)[0]; }
ITensor Network::sub(ITensor a, ITensor b, const std::string& n) { return op("Sub", {a, b}, {}, 1, n)[0]; }
ITensor Network::mul(ITensor a, ITensor b, const std::string& n) { return op("Mul", {a, b}, {}, 1, n)[0]; }
ITensor Network::div(ITensor a, ITensor b, const std::string& n) { return op("Div", {a, b}, {}, 1, n)[0]; }
ITensor Network::relu(ITensor x, const std::string& n) { return op("Relu", {x}, {}, 1, n)[0]; }
ITensor Network::gelu(ITensor x, bool t, const std::string& n) {
  Attrs a;
  a.s["approximate"] = t ? "tanh" : "none";
  return op("Gelu", {x}, a, 1, n)[0];
}
ITensor Network::silu(ITensor x, const std::string& n) { return op("shardrt.Silu", {x}, {}, 1, n)[0]; }
ITensor Network::sigmoid(ITensor x, const std::string& n) { return op("Sigmoid", {x}, {}, 1, n)[0]; }
ITensor Network::tanh(ITensor x, const std::string& n) { return op("Tanh", {x}, {}, 1, n)[0]; }
ITensor Network::softmax(ITensor x, int64_t axis, const std::string& n) {
  Attrs a;
  a.i["axis"] = axis;
  return op("Softmax", {x}, a, 1, n)[0];
}
ITensor Network::cast(ITensor x, DType to, const std::string& n) {
  Attrs a;
  a.i["to"] = dtype_to_onnx(to);
  return op("Cast", {x}, a, 1, n)[0];
}
ITensor Network::layer_norm(ITensor x, ITensor s, ITensor b, float eps, const std::string& n) {
  Attrs a;
  a.i["axis"] = -1;
  a.f["epsilon"] = eps;
  std::vector<ITensor> ins = {x, s};
  if (b) ins.push_back(b);
  return op("LayerNormalization", ins, a, 1, n)[0];
}
ITensor Network::rms_norm(ITensor x, ITensor w, float eps, const std::string& n) {
  Attrs a;
  a.f["epsilon"] = eps;
  return op("shardrt.RMSNorm", {x, w}, a, 1, n)[0];
}
ITensor Network::group_norm(ITensor x, ITensor s, ITensor b, int64_t groups, float eps, const std::string& n) {
  Attrs a;
  a.i["num_groups"] = groups;
  a.f["epsilon"] = eps;
  return op("GroupNormalization", {x, s, b}, a, 1, n)[0];
}
ITensor Network::attention(ITensor q, ITensor k, ITensor v, ITensor mask, bool causal, float scale, const std::string& n) {
  Attrs a;
  a.i["causal"] = causal ? 1 : 0;
  a.f["scale"] = scale;
  std::vector<ITensor> ins = {q, k, v};
  if (mask) ins.push_back(mask);
  return op("shardrt.Attention", ins, a, 1, n.empty() ? "attention" : n)[0];
}
ITensor Network::rotary(ITensor x, ITensor c, ITensor s, bool inter, const std::string& n) {
  Attrs a;
  a.i["interleaved"] = inter ? 1 : 0;
  return op("shardrt.Rotary", {x, c, s}, a, 1, n.empty() ? "rotary" : n)[0];
}
ITensor Network::cached_attention(ITensor qkv, ITensor past_lens, ITensor inv_freq, int64_t num_heads,
                                  int64_t num_kv_heads, int64_t head_dim, int64_t max_batch, int64_t max_seq, int64_t layer,
                                  float scale, bool rotary_interleaved, const std::string& n) {
  Attrs a;
  a.i["num_heads"] = num_heads;
  a.i["num_kv_heads"] = num_kv_heads;
  a.i["head_dim"] = head_dim;
  a.i["max_batch"] = max_batch;
  a.i["max_seq"] = max_seq;
  a.i["layer"] = layer;
  a.i["rotary_interleaved"] = rotary_interleaved ? 1 : 0;
  a.f["scale"] = scale;
  std::vector<ITensor> ins = {qkv, past_lens};
  if (inv_freq) ins.push_back(inv_freq);
  return op("shardrt.CachedAttention", ins, a, 1, n.empty() ? "cached_attention" : n)[0];
}
ITensor Network::reshape(ITensor x, const Dims& shape, const std::string& n) {
  std::string base = n.empty() ? "reshape" : n;
  return op("Reshape", {x, constant_i64(shape, base + "/shape")}, {}, 1, base)[0];
}
ITensor Network::transpose(ITensor x, const std::vector<int64_t>& perm, const std::string& n) {
  Attrs a;
  a.ints["perm"] = perm;
  return op("Transpose", {x}, a, 1, n)[0];
}
ITensor Network::concat(const std::vector<ITensor>& xs, int64_t axis, const std::string& n) {
  Attrs a;
  a.i["axis"] = axis;
  return op("Concat", xs, a, 1, n)[0];
}
ITensor Network::slice(ITensor x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                       const std::vector<int64_t>& axes, const std::vector<int64_t>& steps, const std::string& n) {
  std::string base = n.empty() ? "slice" : n;
  std::vector<ITensor> ins = {x, constant_i64(starts, base + "/starts"), constant_i64(ends, base + "/ends"),
                              constant_i64(axes, base + "/axes")};
  if (!steps.empty()) ins.push_back(constant_i64(steps, base + "/steps"));
  return op("Slice", ins, {}, 1, base)[0];
}
ITensor Network::gather(ITensor x, ITensor idx, int64_t axis, const std::string& n) {
  Attrs a;
  a.i["axis"] = axis;
  return op("Gather", {x, idx}, a, 1, n)[0];
}
ITensor Network::conv2d(ITensor x, ITensor w, ITensor b, std::vector<int64_t> strides, std::vector<int64_t> pads,
                        std::vector<int64_t> dil, int64_t groups, const std::string& n) {
  Attrs a;
  a.ints["strides"] = strides;
  a.ints["pads"] = pads;
  a.ints["dilations"] = dil;
  a.i["group"] = groups;
  std::vector<ITensor> ins = {x, w};
  if (b) ins.push_back(b);
  return op("Conv", ins, a, 1, n)[0];
}

std::vector<std::string> Network::shape_of(ITensor t) const {
  std::vector<std::string> r;
  for (auto& d : t.v->shape) r.push_back(d.str());
  return r;
}
DType Network::dtype_of(ITensor t) const { return t.v->dtype; }

Engine build_engine(Network& network, const BuildConfig& config) {
  auto g = network.release();
  return build_engine_from_graph(std::move(*g), config);
}

}  // namespace shardrt
