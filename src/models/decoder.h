// Decoder-only language models (GPT-2 and Llama families) built straight from a Hugging Face
// checkpoint directory (config.json + model.safetensors, or shards listed by
// model.safetensors.index.json) into the network of one tensor-parallel rank: that rank
// reads only its slices of the weights (the files are memory-mapped; a slice is copied out).
//
// The network is a stateful decoder: its attention layers are shardrt.CachedAttention
// nodes whose K/V cache lives in the execution context (docs/generate.md), so one engine
// serves both the prompt (prefill: S tokens per row) and every decode step (S = 1).
//
// Bindings (names below):
//   input_ids  [B, S] int64   tokens; rows may be right-padded (what follows a row's real
//                             tokens is ignored by the rows' later steps)
//   past_lens  [B]    int64   tokens already in row b's cache (row b uses cache slot b);
//                             token s of row b sits at position past_lens[b] + s
//   last_index [B]    int64   which of the S tokens of row b the logits are for
//   logits     [B, V] fp32    next-token logits (the whole vocabulary on every rank)
//   next_token [B]    int64   the greedy choice: ArgMax of logits (the first maximum on
//                             ties, as torch.argmax), so that greedy decoding copies B ids
//                             to the host instead of B × V floats (engines built before it
//                             existed lack it; the session then takes the argmax itself)
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shardrt/engine.h"
#include "shardrt/network.h"

namespace shardrt::models {

inline constexpr const char* kInputIds = "input_ids";
inline constexpr const char* kPastLens = "past_lens";
inline constexpr const char* kLastIndex = "last_index";
inline constexpr const char* kLogits = "logits";
inline constexpr const char* kNextToken = "next_token";

// What config.json says (the fields shardrt uses); errors name the file and the field.
struct DecoderConfig {
  std::string family;  // "gpt2" | "llama" (from model_type; mistral/qwen2-style Llamas too if added)
  int64_t layers = 0, hidden = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t inner = 0;          // MLP width (GPT-2: n_inner or 4 × hidden; Llama: intermediate_size)
  int64_t vocab = 0;
  int64_t max_positions = 0;  // n_positions / max_position_embeddings
  float norm_eps = 1e-5f;     // layer_norm_epsilon / rms_norm_eps
  std::string activation;     // GPT-2: activation_function ("gelu_new" → tanh GELU, "gelu"); Llama: hidden_act
  bool tie_word_embeddings = false;
  std::vector<float> inv_freq;  // Llama: rotary inverse frequencies [head_dim/2] (rope_theta, rope_scaling)
  std::vector<int64_t> eos_token_ids;  // eos_token_id (int or list); generation_config.json's too
  int64_t bos_token_id = -1;
  DType dtype = DType::F32;  // torch_dtype / dtype of the checkpoint (fp32 when absent)

  // Added by the loaders (all have transformers' defaults when config.json leaves them out):
  std::string model_type;          // config.json's model_type as written ("gpt2", "llama", "mistral", "qwen2")
  bool qkv_bias = false;           // q/k/v projections have biases (GPT-2, qwen2; Llama with attention_bias)
  bool o_bias = false;             // the attention output projection has a bias (GPT-2; Llama attention_bias)
  bool mlp_bias = false;           // the MLP projections have biases (GPT-2; Llama mlp_bias)
  int64_t sliding_window = 0;      // mistral / qwen2 sliding-window attention width (0: none); the
                                   // KV cache must then fit in the window (max_seq <= sliding_window)
  float attn_scale = 0.f;          // softmax scale (0: 1/sqrt(head_dim)); GPT-2 scale_attn_weights false: 1
  bool scale_by_inverse_layer = false;  // GPT-2 scale_attn_by_inverse_layer_idx: layer l's scale / (l + 1)
};

DecoderConfig read_decoder_config(const std::string& model_dir);

struct DecoderBuildOptions {
  int tp_rank = 0, tp_size = 1;
  int64_t max_batch = 8;   // rows of the KV cache (B ≤ max_batch)
  int64_t max_seq = 0;     // positions of the KV cache; 0: min(max_positions, 4096)
  std::optional<DType> dtype;  // weights and activations; default: the checkpoint's
};

// The network of rank `o.tp_rank` of `o.tp_size` (attention heads, KV heads, MLP width and
// vocabulary split as torch.chunk splits them; row-parallel layers end in shardrt.AllReduce,
// the LM head's vocabulary slices in shardrt.AllGather). Throws Error when a size does not
// split (heads or KV heads not divisible by tp_size), naming it.
Network build_decoder_network(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o);

// The KV cache positions a build with `o` gets: o.max_seq, or min(max_positions, 4096) when 0.
int64_t decoder_max_seq(const DecoderConfig& cfg, const DecoderBuildOptions& o);

// Input profiles for BuildConfig::shapes: B in [1, max_batch], S in [1, max_seq].
std::map<std::string, ShapeProfile> decoder_profiles(const DecoderBuildOptions& o, int64_t max_seq);

// The KV cache bytes an engine's CachedAttention nodes hold per execution context.
size_t kv_cache_bytes(const Graph& g);

}  // namespace shardrt::models
