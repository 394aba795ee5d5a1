// GPT-2 (GPT2LMHeadModel) → one tensor-parallel rank's decoder network.
//
// GPT-2's dense layers are Conv1D: weights [in, out], y = x·W + b; a rank's column-parallel
// slice is a strided column copy. Each weight is then stored transposed, [out, in], and feeds
// shardrt.Linear with trans_b 1: a decode step's GEMV streams whole weight rows that way. c_attn's 3·E
// output columns are Q | K | V, each E = heads · D wide; a rank takes its heads' columns of
// each block, packed as CachedAttention reads them (its q heads, then k, then v).
#include <cmath>
#include <cstring>

#include "models/decoder_common.h"

namespace shardrt::models {

namespace {

std::string mlp_activation(const std::string& act) {
  if (act == "gelu_new" || act == "gelu_pytorch_tanh") return "gelu_tanh";  // tanh-approximated GELU
  if (act == "gelu") return "gelu";
  if (act == "relu") return "relu";
  if (act == "silu" || act == "swish") return "silu";
  throw Error("GPT-2 activation_function '" + act + "' is not supported");
}

// [R, C] → [C, R] (any element size): a Conv1D weight as torch.nn.Linear stores it.
Tensor transposed(const Tensor& t) {
  const int64_t R = t.dims()[0], C = t.dims()[1];
  const size_t es = dtype_size(t.dtype());
  Tensor r(t.dtype(), {C, R});
  const char* src = static_cast<const char*>(t.raw());
  char* dst = static_cast<char*>(r.raw());
  for (int64_t i = 0; i < R; ++i)
    for (int64_t j = 0; j < C; ++j) std::memcpy(dst + size_t(j * R + i) * es, src + size_t(i * C + j) * es, es);
  return r;
}

}  // namespace

Network build_gpt2(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o) {
  const int64_t max_seq = decoder_max_seq(cfg, o);
  const DType dt = o.dtype.value_or(cfg.dtype);
  const int64_t E = cfg.hidden, D = cfg.head_dim, F = cfg.inner, V = cfg.vocab, P = cfg.max_positions;
  const int tp = o.tp_size, r = o.tp_rank;
  const int64_t heads = cfg.heads / tp, h0 = r * heads;
  const int64_t q0 = h0 * D, qn = heads * D;  // this rank's columns within each of Q, K, V
  const auto [f0, fn] = chunk_of(F, tp, r, "the MLP width (n_inner)");
  const auto [v0, vn] = chunk_of(V, tp, r, "the vocabulary (vocab_size)");
  const std::string act = mlp_activation(cfg.activation);

  WeightReader w(model_dir, {"transformer.", ""}, dt);
  Network net("gpt2");
  DecoderInputs in = decoder_inputs(net);

  auto layer_norm = [&](ITensor x, const std::string& n) {
    return net.layer_norm(x, net.weight(n + ".weight", w.full(n + ".weight", {E})),
                          net.weight(n + ".bias", w.full(n + ".bias", {E})), cfg.norm_eps, n);
  };
  // A row-parallel layer's output: partial sums all-reduced, then the (replicated) bias
  // added once. With one rank the bias goes into the Linear.
  auto row_parallel = [&](ITensor x, const std::string& n, int64_t in_dim, int64_t r0, int64_t rn) {
    ITensor wt = net.weight(n + ".weight", transposed(w.rows(n + ".weight", {in_dim, E}, r0, rn)));
    ITensor b = net.weight(n + ".bias", w.full(n + ".bias", {E}));
    if (tp == 1) return linear_op(net, x, wt, b, /*trans_b=*/true, "none", n);
    ITensor y = all_reduce(net, linear_op(net, x, wt, {}, true, "none", n), n + "/all_reduce");
    return net.add(y, b, n + "/bias");
  };

  ITensor wte = net.weight("wte.weight", w.full("wte.weight", {V, E}));
  ITensor wpe = net.weight("wpe.weight", w.full("wpe.weight", {P, E}));
  // wte[input_ids] + wpe[past_lens + s] in one op (one kernel instead of a position add, two
  // gathers and their sum).
  ITensor x = net.op("shardrt.PositionalEmbedding", {in.input_ids, in.past_lens, wte, wpe}, {}, 1, "embed")[0];

  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    ITensor a = layer_norm(x, p + "ln_1");
    const std::vector<std::pair<int64_t, int64_t>> qkv_cols = {{q0, qn}, {E + q0, qn}, {2 * E + q0, qn}};
    ITensor qkv_w =
        net.weight(p + "attn.qkv.weight", transposed(w.columns(p + "attn.c_attn.weight", {E, 3 * E}, qkv_cols)));
    ITensor qkv_b = net.weight(p + "attn.qkv.bias", w.columns(p + "attn.c_attn.bias", {3 * E}, qkv_cols));
    ITensor qkv = linear_op(net, a, qkv_w, qkv_b, /*trans_b=*/true, "none", p + "attn.qkv");
    CachedAttentionSpec s;
    s.num_heads = s.num_kv_heads = heads;
    s.head_dim = D;
    s.max_batch = o.max_batch;
    s.max_seq = max_seq;
    s.layer = l;
    s.scale = cfg.attn_scale;
    if (cfg.scale_by_inverse_layer) {
      // scale_attn_by_inverse_layer_idx: scores / sqrt(D) / (l + 1).
      const float base = cfg.attn_scale != 0.f ? cfg.attn_scale : 1.0f / std::sqrt(float(D));
      s.scale = base / float(l + 1);
    }
    ITensor att = cached_attention(net, qkv, in.past_lens, {}, s, p + "attn");
    x = net.add(x, row_parallel(att, p + "attn.c_proj", E, q0, qn), p + "attn/residual");

    ITensor m = layer_norm(x, p + "ln_2");
    ITensor fc_w = net.weight(p + "mlp.c_fc.weight", transposed(w.columns(p + "mlp.c_fc.weight", {E, F}, {{f0, fn}})));
    ITensor fc_b = net.weight(p + "mlp.c_fc.bias", w.columns(p + "mlp.c_fc.bias", {F}, {{f0, fn}}));
    m = linear_op(net, m, fc_w, fc_b, /*trans_b=*/true, act, p + "mlp.c_fc");
    x = net.add(x, row_parallel(m, p + "mlp.c_proj", F, f0, fn), p + "mlp/residual");
  }

  ITensor h = layer_norm(last_token(net, x, in.last_index), "ln_f");
  ITensor head;
  if (cfg.tie_word_embeddings)
    head = tp == 1 ? wte : net.weight("lm_head.weight", w.rows("wte.weight", {V, E}, v0, vn));
  else
    head = net.weight("lm_head.weight", w.rows("lm_head.weight", {V, E}, v0, vn));
  logits_head(net, h, head, V, tp);
  return net;
}

}  // namespace shardrt::models
