// The network definition API: build a model in code (as TensorRT's INetworkDefinition),
// then hand it to build_engine(). Every call adds one node (ONNX semantics, or shardrt's
// fused ops) and returns a handle to its output; shapes are inferred as you go, and a bad
// call throws shardrt::Error naming the layer.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shardrt/tensor.h"

namespace shardrt {

struct Graph;
struct Value;

// A handle to a value of the network being built.
struct ITensor {
  Value* v = nullptr;
  explicit operator bool() const { return v != nullptr; }
};

enum class Activation { None, Relu, Gelu, GeluTanh, Silu };

class Network {
 public:
  explicit Network(std::string name = "network");
  ~Network();
  Network(Network&&) noexcept;
  Network& operator=(Network&&) noexcept;

  // Inputs: dims of -1 are dynamic and take the name from `dim_names` (or "d<i>").
  ITensor input(const std::string& name, DType t, const Dims& dims, const std::vector<std::string>& dim_names = {});
  ITensor weight(const std::string& name, Tensor value);
  void output(ITensor t, const std::string& name);

  // Dense layers. `w` is [out, in] as in torch.nn.Linear.
  ITensor linear(ITensor x, ITensor w, ITensor bias = {}, Activation act = Activation::None, const std::string& name = "");
  ITensor matmul(ITensor a, ITensor b, const std::string& name = "");
  // Elementwise (numpy broadcasting).
  ITensor add(ITensor a, ITensor b, const std::string& name = "");
  ITensor sub(ITensor a, ITensor b, const std::string& name = "");
  ITensor mul(ITensor a, ITensor b, const std::string& name = "");
  ITensor div(ITensor a, ITensor b, const std::string& name = "");
  ITensor relu(ITensor x, const std::string& name = "");
  ITensor gelu(ITensor x, bool tanh_approx = false, const std::string& name = "");
  ITensor silu(ITensor x, const std::string& name = "");
  ITensor sigmoid(ITensor x, const std::string& name = "");
  ITensor tanh(ITensor x, const std::string& name = "");
  ITensor softmax(ITensor x, int64_t axis = -1, const std::string& name = "");
  ITensor cast(ITensor x, DType to, const std::string& name = "");
  // Norms over the last axis.
  ITensor layer_norm(ITensor x, ITensor scale, ITensor bias, float eps = 1e-5f, const std::string& name = "");
  ITensor rms_norm(ITensor x, ITensor weight, float eps = 1e-6f, const std::string& name = "");
  ITensor group_norm(ITensor x, ITensor scale, ITensor bias, int64_t groups, float eps = 1e-5f, const std::string& name = "");
  // Attention over [B, H, S, D] (K/V may have fewer heads: grouped-query attention).
  ITensor attention(ITensor q, ITensor k, ITensor v, ITensor mask = {}, bool causal = false, float scale = 0.f,
                    const std::string& name = "");
  ITensor rotary(ITensor x, ITensor cos, ITensor sin, bool interleaved = false, const std::string& name = "");
  // Decoder attention over a KV cache kept per execution context (shardrt.CachedAttention):
  // qkv [B, S, (num_heads + 2·num_kv_heads)·head_dim] packed q|k|v heads, past_lens [B] int64
  // (tokens already in each row's cache), inv_freq [R/2] fp32 for rotary on q and k (may be
  // null: no rotary). Caches of [max_batch, num_kv_heads, max_seq, head_dim]; `layer` names
  // the layer in messages and inspect. scale 0 means 1/sqrt(head_dim). Output [B, S, num_heads·head_dim].
  ITensor cached_attention(ITensor qkv, ITensor past_lens, ITensor inv_freq, int64_t num_heads, int64_t num_kv_heads,
                           int64_t head_dim, int64_t max_batch, int64_t max_seq, int64_t layer, float scale = 0.f,
                           bool rotary_interleaved = false, const std::string& name = "");
  // Data movement.
  ITensor reshape(ITensor x, const Dims& shape, const std::string& name = "");  // 0 copies, -1 infers
  ITensor transpose(ITensor x, const std::vector<int64_t>& perm, const std::string& name = "");
  ITensor concat(const std::vector<ITensor>& xs, int64_t axis, const std::string& name = "");
  ITensor slice(ITensor x, const std::vector<int64_t>& starts, const std::vector<int64_t>& ends,
                const std::vector<int64_t>& axes, const std::vector<int64_t>& steps = {}, const std::string& name = "");
  ITensor gather(ITensor x, ITensor indices, int64_t axis = 0, const std::string& name = "");
  // Convolution (NCHW, weights [out, in/groups, kh, kw]).
  ITensor conv2d(ITensor x, ITensor w, ITensor bias = {}, std::vector<int64_t> strides = {1, 1},
                 std::vector<int64_t> pads = {0, 0, 0, 0}, std::vector<int64_t> dilations = {1, 1}, int64_t groups = 1,
                 const std::string& name = "");
  // Any op of the IR by type, with attributes given as ints/floats/strings.
  struct Attrs {
    std::map<std::string, int64_t> i;
    std::map<std::string, float> f;
    std::map<std::string, std::string> s;
    std::map<std::string, std::vector<int64_t>> ints;
  };
  std::vector<ITensor> op(const std::string& op_type, const std::vector<ITensor>& inputs, const Attrs& attrs = {},
                          int num_outputs = 1, const std::string& name = "");

  // Shape and dtype of a value as inferred so far ("?" or a name for dynamic dims).
  std::vector<std::string> shape_of(ITensor t) const;
  DType dtype_of(ITensor t) const;

  Graph& graph();
  // Hands the graph over (the network is empty afterwards).
  std::unique_ptr<Graph> release();

 private:
  ITensor constant_i64(const std::vector<int64_t>& v, const std::string& name);
  std::unique_ptr<Graph> g_;
};

}  // namespace shardrt
