// Llama (LlamaForCausalLM; also Mistral and Qwen2, which differ only in defaults and biases)
// → one tensor-parallel rank's decoder network.
//
// torch.nn.Linear weights are [out, in] (shardrt.Linear trans_b 1): a column-parallel slice
// (q/k/v, gate/up, the LM head) is a block of rows (q/k/v and gate/up each packed into one
// Linear), a row-parallel one (o_proj, down_proj) a strided block of columns. A rank's q
// heads h0 .. h0 + Hq/tp use kv heads g0 .. g0 + Hkv/tp, the groups grouped-query attention
// pairs them with, so the split keeps GQA intact.
#include "models/decoder_common.h"

namespace shardrt::models {

Network build_llama(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o) {
  const int64_t max_seq = decoder_max_seq(cfg, o);
  const DType dt = o.dtype.value_or(cfg.dtype);
  const int64_t H = cfg.hidden, D = cfg.head_dim, F = cfg.inner, V = cfg.vocab;
  const int64_t Hq = cfg.heads, Hkv = cfg.kv_heads;
  const int tp = o.tp_size, r = o.tp_rank;
  const int64_t hq = Hq / tp, hkv = Hkv / tp, q0 = r * hq * D, k0 = r * hkv * D;
  const auto [f0, fn] = chunk_of(F, tp, r, "the MLP width (intermediate_size)");
  const auto [v0, vn] = chunk_of(V, tp, r, "the vocabulary (vocab_size)");
  if (cfg.inv_freq.empty() || int64_t(cfg.inv_freq.size()) * 2 > D)
    throw Error("llama: the rotary frequencies (" + std::to_string(cfg.inv_freq.size()) + ") do not fit head_dim " +
                std::to_string(D));

  WeightReader w(model_dir, {"model.", ""}, dt);
  Network net(cfg.model_type.empty() ? "llama" : cfg.model_type);
  DecoderInputs in = decoder_inputs(net);

  auto rms_norm = [&](ITensor x, const std::string& n) {
    return net.rms_norm(x, net.weight(n + ".weight", w.full(n + ".weight", {H})), cfg.norm_eps, n);
  };
  // Row-parallel: this rank's input columns; partial sums all-reduced, the bias (if any) added once.
  auto row_parallel = [&](ITensor x, const std::string& n, int64_t in_dim, int64_t c0, int64_t cn, bool bias) {
    ITensor wt = net.weight(n + ".weight", w.columns(n + ".weight", {H, in_dim}, {{c0, cn}}));
    ITensor b = bias ? net.weight(n + ".bias", w.full(n + ".bias", {H})) : ITensor{};
    if (tp == 1) return linear_op(net, x, wt, b, /*trans_b=*/true, "none", n);
    ITensor y = all_reduce(net, linear_op(net, x, wt, {}, true, "none", n), n + "/all_reduce");
    return b ? net.add(y, b, n + "/bias") : y;
  };

  ITensor embed = net.weight("embed_tokens.weight", w.full("embed_tokens.weight", {V, H}));
  ITensor x = net.gather(embed, in.input_ids, 0, "embed_tokens");
  // Rotary frequencies, shared by every layer, fp32 as CachedAttention takes them.
  ITensor inv_freq = net.weight("rotary.inv_freq", Tensor::from_f32({int64_t(cfg.inv_freq.size())}, cfg.inv_freq));

  for (int64_t l = 0; l < cfg.layers; ++l) {
    const std::string p = "layers." + std::to_string(l) + ".";
    const std::string a = p + "self_attn.";
    ITensor hsn = rms_norm(x, p + "input_layernorm");
    // One packed projection: this rank's rows of q_proj, then k_proj, then v_proj.
    ITensor qkv_w = net.weight(a + "qkv.weight", w.rows({{a + "q_proj.weight", {Hq * D, H}, q0, hq * D},
                                                           {a + "k_proj.weight", {Hkv * D, H}, k0, hkv * D},
                                                           {a + "v_proj.weight", {Hkv * D, H}, k0, hkv * D}}));
    ITensor qkv_b;
    if (cfg.qkv_bias)
      qkv_b = net.weight(a + "qkv.bias", w.rows({{a + "q_proj.bias", {Hq * D}, q0, hq * D},
                                                  {a + "k_proj.bias", {Hkv * D}, k0, hkv * D},
                                                  {a + "v_proj.bias", {Hkv * D}, k0, hkv * D}}));
    ITensor qkv = linear_op(net, hsn, qkv_w, qkv_b, /*trans_b=*/true, "none", a + "qkv");
    CachedAttentionSpec s;
    s.num_heads = hq;
    s.num_kv_heads = hkv;
    s.head_dim = D;
    s.max_batch = o.max_batch;
    s.max_seq = max_seq;
    s.layer = l;
    s.scale = cfg.attn_scale;  // 0: 1/sqrt(head_dim), Llama's scaling
    ITensor att = cached_attention(net, qkv, in.past_lens, inv_freq, s, a + "attn");
    x = net.add(x, row_parallel(att, a + "o_proj", Hq * D, q0, hq * D, cfg.o_bias), p + "attn/residual");

    ITensor m = rms_norm(x, p + "post_attention_layernorm");
    // One packed gate/up projection with the SwiGLU as its activation: this rank's rows of
    // gate_proj, then the same rows of up_proj (the slices two column-parallel Linears would
    // take), so a decode step streams both weights in one GEMV and writes silu(g)·u once.
    const std::string mlp = p + "mlp.";
    ITensor gu_w = net.weight(mlp + "gate_up.weight", w.rows({{mlp + "gate_proj.weight", {F, H}, f0, fn},
                                                              {mlp + "up_proj.weight", {F, H}, f0, fn}}));
    ITensor gu_b;
    if (cfg.mlp_bias)
      gu_b = net.weight(mlp + "gate_up.bias", w.rows({{mlp + "gate_proj.bias", {F}, f0, fn},
                                                       {mlp + "up_proj.bias", {F}, f0, fn}}));
    m = linear_op(net, m, gu_w, gu_b, /*trans_b=*/true, "swiglu", mlp + "gate_up");
    x = net.add(x, row_parallel(m, p + "mlp.down_proj", F, f0, fn, cfg.mlp_bias), p + "mlp/residual");
  }

  ITensor h = rms_norm(last_token(net, x, in.last_index), "norm");
  ITensor head;
  if (cfg.tie_word_embeddings)
    head = tp == 1 ? embed : net.weight("lm_head.weight", w.rows("embed_tokens.weight", {V, H}, v0, vn));
  else
    head = net.weight("lm_head.weight", w.rows("lm_head.weight", {V, H}, v0, vn));
  logits_head(net, h, head, V, tp);
  return net;
}

}  // namespace shardrt::models
