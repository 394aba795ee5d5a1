#include "models/decoder_common.h"

#include <algorithm>
#include <cstring>

#include "dist/collective_exec.h"
#include "ir/graph.h"
#include "ir/ops/ops.h"

namespace shardrt::models {

std::pair<int64_t, int64_t> chunk_of(int64_t total, int parts, int index, const std::string& what) {
  std::vector<int64_t> sizes = dist::chunk_sizes(total, parts);
  int64_t begin = 0;
  for (int i = 0; i < index; ++i) begin += sizes[size_t(i)];
  const int64_t n = sizes[size_t(index)];
  if (n <= 0)
    throw Error(what + " (" + std::to_string(total) + ") is too small to split between " + std::to_string(parts) +
                " tensor-parallel ranks: torch.chunk leaves rank " + std::to_string(index) + " nothing");
  return {begin, n};
}

namespace {

float load(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::F32: return static_cast<const float*>(p)[i];
    case DType::F16: return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::BF16: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::F64: return float(static_cast<const double*>(p)[i]);
    default: throw Error(std::string("cannot convert a ") + dtype_name(t) + " weight");
  }
}

void store(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::F32: static_cast<float*>(p)[i] = v; return;
    case DType::F16: static_cast<uint16_t*>(p)[i] = float_to_half(v); return;
    case DType::BF16: static_cast<uint16_t*>(p)[i] = float_to_bf16(v); return;
    default: throw Error(std::string("cannot convert a weight to ") + dtype_name(t));
  }
}

}  // namespace

void convert_elements(const void* src, DType sd, void* dst, DType dd, int64_t n) {
  if (sd == dd) {
    std::memcpy(dst, src, size_t(n) * dtype_size(sd));
    return;
  }
  for (int64_t i = 0; i < n; ++i) store(dst, dd, i, load(src, sd, i));
}

WeightReader::WeightReader(const std::string& dir, std::vector<std::string> prefixes, DType dtype)
    : st_(dir), dir_(dir), prefixes_(std::move(prefixes)), dtype_(dtype) {}

bool WeightReader::contains(const std::string& name) const {
  for (const std::string& p : prefixes_)
    if (st_.contains(p + name)) return true;
  return false;
}

const Tensor& WeightReader::source(const std::string& name, const Dims& dims) const {
  for (const std::string& p : prefixes_) {
    if (!st_.contains(p + name)) continue;
    const Tensor& t = st_.get(p + name);
    if (t.dims() != dims)
      throw Error(dir_ + ": tensor '" + p + name + "' is " + dims_str(t.dims()) + ", config.json implies " + dims_str(dims));
    if (t.dtype() != DType::F32 && t.dtype() != DType::F16 && t.dtype() != DType::BF16 && t.dtype() != DType::F64)
      throw Error(dir_ + ": tensor '" + p + name + "' is " + dtype_name(t.dtype()) + ", not fp32/fp16/bf16");
    return t;
  }
  std::string tried;
  for (const std::string& p : prefixes_) tried += (tried.empty() ? "'" : ", '") + p + name + "'";
  throw Error(dir_ + ": the checkpoint has no tensor " + tried);
}

Tensor WeightReader::full(const std::string& name, const Dims& dims, std::optional<DType> to) const {
  const Tensor& t = source(name, dims);
  // A copy in any case: the engine owns its weights; the mapping goes when the build ends.
  Tensor out(to.value_or(dtype_), dims);
  convert_elements(t.raw(), t.dtype(), out.raw(), out.dtype(), t.numel());
  return out;
}

Tensor WeightReader::rows(const std::vector<RowSlice>& parts) const {
  int64_t total = 0;
  Dims inner;
  for (const RowSlice& p : parts) {
    const Tensor& t = source(p.name, p.dims);
    Dims rest(t.dims().begin() + 1, t.dims().end());
    if (&p != &parts[0] && rest != inner)
      throw Error(dir_ + ": tensor '" + p.name + "' does not stack with '" + parts[0].name + "'");
    inner = rest;
    if (p.r0 < 0 || p.n < 0 || p.r0 + p.n > t.dim(0))
      throw Error(dir_ + ": rows [" + std::to_string(p.r0) + ", " + std::to_string(p.r0 + p.n) + ") of tensor '" +
                  p.name + "' are out of range");
    total += p.n;
  }
  Dims d = inner;
  d.insert(d.begin(), total);
  Tensor out(dtype_, d);
  const int64_t row = numel(inner);
  int64_t at = 0;
  for (const RowSlice& p : parts) {
    const Tensor& t = source(p.name, p.dims);
    const char* src = static_cast<const char*>(t.raw()) + size_t(p.r0 * row) * dtype_size(t.dtype());
    char* dst = static_cast<char*>(out.raw()) + size_t(at * row) * dtype_size(dtype_);
    convert_elements(src, t.dtype(), dst, dtype_, p.n * row);
    at += p.n;
  }
  return out;
}

Tensor WeightReader::columns(const std::string& name, const Dims& dims,
                             const std::vector<std::pair<int64_t, int64_t>>& ranges) const {
  const Tensor& t = source(name, dims);
  if (t.rank() != 1 && t.rank() != 2) throw Error(dir_ + ": tensor '" + name + "' is not 1-D or 2-D");
  const int64_t R = t.rank() == 1 ? 1 : t.dim(0), C = t.dim(-1);
  int64_t width = 0;
  for (auto [c0, n] : ranges) {
    if (c0 < 0 || n < 0 || c0 + n > C)
      throw Error(dir_ + ": columns [" + std::to_string(c0) + ", " + std::to_string(c0 + n) + ") of tensor '" + name +
                  "' are out of range");
    width += n;
  }
  Tensor out(dtype_, t.rank() == 1 ? Dims{width} : Dims{R, width});
  const size_t ss = dtype_size(t.dtype()), ds = dtype_size(dtype_);
  for (int64_t r = 0; r < R; ++r) {
    int64_t at = 0;
    for (auto [c0, n] : ranges) {
      convert_elements(static_cast<const char*>(t.raw()) + size_t(r * C + c0) * ss, t.dtype(),
                       static_cast<char*>(out.raw()) + size_t(r * width + at) * ds, dtype_, n);
      at += n;
    }
  }
  return out;
}

DecoderInputs decoder_inputs(Network& net) {
  DecoderInputs in;
  in.input_ids = net.input(kInputIds, DType::I64, {-1, -1}, {"batch", "seq"});
  in.past_lens = net.input(kPastLens, DType::I64, {-1}, {"batch"});
  in.last_index = net.input(kLastIndex, DType::I64, {-1}, {"batch"});
  return in;
}

ITensor linear_op(Network& net, ITensor x, ITensor w, ITensor bias, bool trans_b, const std::string& activation,
                  const std::string& name) {
  Network::Attrs a;
  a.i["trans_b"] = trans_b ? 1 : 0;
  a.s["activation"] = activation;
  std::vector<ITensor> ins = {x, w};
  if (bias) ins.push_back(bias);
  return net.op("shardrt.Linear", ins, a, 1, name)[0];
}

ITensor all_reduce(Network& net, ITensor x, const std::string& name) {
  Network::Attrs a;
  a.s["reduce"] = "sum";
  a.s["group"] = "tp";
  return net.op("shardrt.AllReduce", {x}, a, 1, name)[0];
}

ITensor cached_attention(Network& net, ITensor qkv, ITensor past_lens, ITensor inv_freq, const CachedAttentionSpec& s,
                         const std::string& name) {
  return net.cached_attention(qkv, past_lens, inv_freq, s.num_heads, s.num_kv_heads, s.head_dim, s.max_batch,
                              s.max_seq, s.layer, s.scale, /*rotary_interleaved=*/false, name);
}

ITensor last_token(Network& net, ITensor hidden, ITensor last_index) {
  // GatherND with batch_dims 1 picks hidden[b, last_index[b], :] for every row b: indices
  // [B, 1], output [B, H] (one kernel; a view makes the indices).
  ITensor idx = net.op("Unsqueeze", {last_index, net.weight("last_token/axes", Tensor::from_i64({1}))}, {}, 1,
                       "last_token/index")[0];
  Network::Attrs a;
  a.i["batch_dims"] = 1;
  return net.op("GatherND", {hidden, idx}, a, 1, "last_token")[0];
}

void logits_head(Network& net, ITensor h, ITensor lm_head, int64_t vocab, int tp_size) {
  ITensor logits = linear_op(net, h, lm_head, {}, /*trans_b=*/true, "none", "lm_head");
  if (tp_size > 1) {
    Network::Attrs a;
    a.i["axis"] = -1;
    a.i["gathered_size"] = vocab;
    a.s["group"] = "tp";
    logits = net.op("shardrt.AllGather", {logits}, a, 1, "lm_head/all_gather")[0];
  }
  if (net.dtype_of(logits) != DType::F32) logits = net.cast(logits, DType::F32, "lm_head/fp32");
  net.output(logits, kLogits);
  // Greedy selection on the device: select_last_index 0 keeps the first maximum, as
  // torch.argmax and the host sampler (serve/sampler.h) do.
  Network::Attrs a;
  a.i["axis"] = -1;
  a.i["keepdims"] = 0;
  a.i["select_last_index"] = 0;
  net.output(net.op("ArgMax", {logits}, a, 1, "lm_head/argmax")[0], kNextToken);
}

int64_t check_build(const DecoderConfig& cfg, const DecoderBuildOptions& o) {
  if (o.tp_size < 1 || o.tp_rank < 0 || o.tp_rank >= o.tp_size)
    throw Error("tensor-parallel rank " + std::to_string(o.tp_rank) + " of " + std::to_string(o.tp_size) +
                " is not a valid rank");
  if (o.max_batch < 1) throw Error("max_batch must be >= 1, got " + std::to_string(o.max_batch));
  if (o.max_seq < 0) throw Error("max_seq must be >= 0 (0: the default), got " + std::to_string(o.max_seq));
  if (o.dtype && *o.dtype != DType::F32 && *o.dtype != DType::F16 && *o.dtype != DType::BF16)
    throw Error(std::string("decoder dtype ") + dtype_name(*o.dtype) + " is not supported (fp32, fp16, bf16)");
  const int64_t max_seq = decoder_max_seq(cfg, o);
  if (cfg.family == "gpt2" && max_seq > cfg.max_positions)
    throw Error("max_seq " + std::to_string(max_seq) + " exceeds GPT-2's n_positions (" +
                std::to_string(cfg.max_positions) + "): its position embedding has no more rows");
  if (cfg.sliding_window > 0 && max_seq > cfg.sliding_window)
    throw Error(cfg.model_type + " attends over a sliding window of " + std::to_string(cfg.sliding_window) +
                " tokens, which the KV cache does not implement: build with max_seq <= " +
                std::to_string(cfg.sliding_window) + " (asked for " + std::to_string(max_seq) + ")");
  if (cfg.heads % o.tp_size != 0)
    throw Error("the attention heads (" + std::to_string(cfg.heads) + ") do not split between " +
                std::to_string(o.tp_size) + " tensor-parallel ranks");
  if (cfg.kv_heads % o.tp_size != 0)
    throw Error("the key/value heads (num_key_value_heads " + std::to_string(cfg.kv_heads) + ") do not split between " +
                std::to_string(o.tp_size) + " tensor-parallel ranks");
  return max_seq;
}

int64_t decoder_max_seq(const DecoderConfig& cfg, const DecoderBuildOptions& o) {
  return o.max_seq > 0 ? o.max_seq : std::min<int64_t>(cfg.max_positions, 4096);
}

std::map<std::string, ShapeProfile> decoder_profiles(const DecoderBuildOptions& o, int64_t max_seq) {
  // Decode steps (S = 1, every row) are what runs most: the opt shapes.
  std::map<std::string, ShapeProfile> p;
  p[kInputIds] = {{1, 1}, {o.max_batch, 1}, {o.max_batch, max_seq}};
  p[kPastLens] = {{1}, {o.max_batch}, {o.max_batch}};
  p[kLastIndex] = {{1}, {o.max_batch}, {o.max_batch}};
  return p;
}

size_t kv_cache_bytes(const Graph& g) { return cached_attention_state_bytes(g); }

}  // namespace shardrt::models
