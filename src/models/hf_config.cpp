// config.json (and generation_config.json) of a Hugging Face decoder checkpoint → DecoderConfig.
// Field names and defaults are transformers' (GPT2Config, LlamaConfig, MistralConfig,
// Qwen2Config), for both the transformers 4 layout (rope_theta, rope_scaling) and the 5 one
// (rope_parameters). Every error names the file and the field.
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>

#include "models/decoder.h"

namespace shardrt::models {

namespace {

using json = nlohmann::json;

const char* kSupported = "gpt2, llama, mistral, qwen2";

bool exists(const std::string& path) {
  std::ifstream in(path);
  return bool(in);
}

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open");
  try {
    json j = json::parse(in);
    if (!j.is_object()) throw Error(path + ": not a JSON object");
    return j;
  } catch (const json::exception& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
}

// Typed field access; `path` names the file in errors.
struct Fields {
  const json& j;
  std::string path;

  bool has(const char* k) const { return j.contains(k) && !j[k].is_null(); }
  [[noreturn]] void bad(const std::string& k, const std::string& what) const {
    throw Error(path + ": field '" + k + "' " + what);
  }
  int64_t positive(const char* k) const {
    if (!has(k)) bad(k, "is missing (a positive integer is required)");
    return positive_value(k, j[k]);
  }
  int64_t positive_or(const char* k, int64_t dflt) const { return has(k) ? positive_value(k, j[k]) : dflt; }
  int64_t positive_value(const std::string& k, const json& v) const {
    if (!v.is_number_integer() || v.get<int64_t>() < 1) bad(k, "must be a positive integer, got " + v.dump());
    return v.get<int64_t>();
  }
  double number_or(const char* k, double dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_number()) bad(k, "must be a number, got " + j[k].dump());
    return j[k].get<double>();
  }
  bool bool_or(const char* k, bool dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_boolean()) bad(k, "must be true or false, got " + j[k].dump());
    return j[k].get<bool>();
  }
  std::string string_or(const char* k, const std::string& dflt) const {
    if (!has(k)) return dflt;
    if (!j[k].is_string()) bad(k, "must be a string, got " + j[k].dump());
    return j[k].get<std::string>();
  }
  // An int or a list of ints (eos_token_id); appended to `out` without repeats.
  void token_ids(const char* k, std::vector<int64_t>& out) const {
    if (!has(k)) return;
    auto add = [&](const json& v) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0) bad(k, "must be a token id or a list of them, got " + j[k].dump());
      int64_t id = v.get<int64_t>();
      for (int64_t x : out)
        if (x == id) return;
      out.push_back(id);
    };
    if (j[k].is_array())
      for (const json& v : j[k]) add(v);
    else
      add(j[k]);
  }
};

DType checkpoint_dtype(const Fields& f) {
  // transformers 5 writes "dtype", 4 "torch_dtype".
  const char* key = f.has("dtype") ? "dtype" : f.has("torch_dtype") ? "torch_dtype" : nullptr;
  if (!key) return DType::F32;
  std::string s = f.string_or(key, "float32");
  if (s == "float32") return DType::F32;
  if (s == "float16") return DType::F16;
  if (s == "bfloat16") return DType::BF16;
  f.bad(key, "is '" + s + "'; supported: float32, float16, bfloat16");
}

// GPT2Config.
void read_gpt2(const Fields& f, DecoderConfig& c) {
  c.family = "gpt2";
  c.layers = f.positive("n_layer");
  c.hidden = f.positive("n_embd");
  c.heads = f.positive("n_head");
  c.kv_heads = c.heads;
  if (c.hidden % c.heads != 0)
    f.bad("n_head", "(" + std::to_string(c.heads) + ") does not divide n_embd (" + std::to_string(c.hidden) + ")");
  c.head_dim = c.hidden / c.heads;
  c.inner = f.positive_or("n_inner", 4 * c.hidden);  // null → 4 · n_embd
  c.vocab = f.positive("vocab_size");
  c.max_positions = f.positive("n_positions");
  c.norm_eps = float(f.number_or("layer_norm_epsilon", 1e-5));
  c.activation = f.string_or("activation_function", "gelu_new");
  static const std::set<std::string> acts = {"gelu_new", "gelu_pytorch_tanh", "gelu", "relu", "silu", "swish"};
  if (!acts.count(c.activation))
    f.bad("activation_function", "is '" + c.activation + "'; supported: gelu_new, gelu_pytorch_tanh, gelu, relu, silu, swish");
  c.tie_word_embeddings = f.bool_or("tie_word_embeddings", true);
  c.qkv_bias = c.o_bias = c.mlp_bias = true;
  c.attn_scale = f.bool_or("scale_attn_weights", true) ? 0.f : 1.f;
  c.scale_by_inverse_layer = f.bool_or("scale_attn_by_inverse_layer_idx", false);
  // reorder_and_upcast_attn only changes where GPT-2 upcasts to fp32; CachedAttention keeps
  // its scores and softmax in fp32 anyway, so both settings read the same.
  f.bool_or("reorder_and_upcast_attn", false);
  if (f.bool_or("add_cross_attention", false))
    f.bad("add_cross_attention", "is true: cross-attention (an encoder-decoder GPT-2) is not supported");
  // GPT2Config's defaults (an explicit null clears them).
  if (!f.j.contains("bos_token_id")) c.bos_token_id = 50256;
  if (!f.j.contains("eos_token_id")) c.eos_token_ids = {50256};
}

// The rotary inverse frequencies of a Llama-family config, as transformers computes them
// (modeling_rope_utils: default, "linear" and "llama3"), in fp32 as torch does.
std::vector<float> rope_inv_freq(const Fields& f, const DecoderConfig& c) {
  // transformers 5: rope_parameters {rope_type, rope_theta, ...}; 4: rope_theta beside
  // rope_scaling {type | rope_type, factor, ...} (or null).
  const char* pkey = f.has("rope_parameters") ? "rope_parameters" : f.has("rope_scaling") ? "rope_scaling" : nullptr;
  json empty = json::object();
  const json& p = pkey ? f.j[pkey] : empty;
  if (!p.is_object()) f.bad(pkey, "must be an object or null, got " + p.dump());
  const std::string pname = pkey ? pkey : "rope_parameters";
  Fields pf{p, f.path};
  auto pfield = [&](const char* k) { return pname + "." + k; };

  std::string type = "default";
  for (const char* k : {"rope_type", "type"})
    if (pf.has(k)) {
      if (!p[k].is_string()) f.bad(pfield(k), "must be a string, got " + p[k].dump());
      type = p[k].get<std::string>();
      break;
    }
  if (type != "default" && type != "linear" && type != "llama3")
    f.bad(pfield("rope_type"), "is '" + type + "'; supported: default (no scaling), linear, llama3");

  auto pnumber = [&](const char* k, std::optional<double> dflt) -> double {
    if (pf.has(k)) {
      if (!p[k].is_number()) f.bad(pfield(k), "must be a number, got " + p[k].dump());
      return p[k].get<double>();
    }
    if (!dflt) f.bad(pfield(k), "is missing (rope_type '" + type + "' needs it)");
    return *dflt;
  };
  const double theta = pnumber("rope_theta", f.number_or("rope_theta", 10000.0));
  if (!(theta > 0)) f.bad(pf.has("rope_theta") ? pfield("rope_theta") : "rope_theta", "must be > 0");
  const double partial = pnumber("partial_rotary_factor", f.number_or("partial_rotary_factor", 1.0));
  if (!(partial > 0 && partial <= 1)) f.bad("partial_rotary_factor", "must be in (0, 1]");

  // dim = int(head_dim · partial_rotary_factor); inv_freq[i] = 1 / theta^(2i / dim), fp32.
  const int64_t dim = int64_t(double(c.head_dim) * partial);
  if (dim < 2) f.bad("partial_rotary_factor", "leaves a rotary width below 2");
  std::vector<float> inv;
  for (int64_t i = 0; i < dim; i += 2) inv.push_back(1.0f / std::pow(float(theta), float(i) / float(dim)));

  if (type == "linear") {
    const float factor = float(pnumber("factor", std::nullopt));
    if (!(factor > 0)) f.bad(pfield("factor"), "must be > 0");
    for (float& x : inv) x /= factor;
  } else if (type == "llama3") {
    // _compute_llama3_parameters: wavelengths longer than the original context divided by
    // `factor`, shorter than context / high_freq_factor kept, smooth in between.
    // Python scalars are doubles; where torch combines one with an fp32 tensor the scalar is
    // rounded to fp32 first, which the casts below mirror.
    const double factor_d = pnumber("factor", std::nullopt);
    const double low_d = pnumber("low_freq_factor", std::nullopt);
    const double high_d = pnumber("high_freq_factor", std::nullopt);
    const double old_ctx_d = pnumber("original_max_position_embeddings",
                                     f.number_or("original_max_position_embeddings", double(c.max_positions)));
    if (!(factor_d > 0)) f.bad(pfield("factor"), "must be > 0");
    if (!(high_d != low_d)) f.bad(pfield("high_freq_factor"), "must differ from low_freq_factor");
    const float factor = float(factor_d), low = float(low_d), old_ctx = float(old_ctx_d);
    const float low_wavelen = float(old_ctx_d / low_d), high_wavelen = float(old_ctx_d / high_d);
    const float span = float(high_d - low_d);
    for (float& x : inv) {
      const float wavelen = float(2 * 3.14159265358979323846) / x;  // 2 · math.pi / inv_freq
      float scaled = wavelen > low_wavelen ? x / factor : x;
      const float smooth = (old_ctx / wavelen - low) / span;
      const float smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      const bool medium = !(wavelen < high_wavelen) && !(wavelen > low_wavelen);
      x = medium ? smoothed : scaled;
    }
  }
  return inv;
}

// LlamaConfig, and MistralConfig / Qwen2Config (the same network with their own defaults).
void read_llama(const Fields& f, DecoderConfig& c) {
  c.family = "llama";
  const std::string& mt = c.model_type;
  c.layers = f.positive("num_hidden_layers");
  c.hidden = f.positive("hidden_size");
  c.heads = f.positive("num_attention_heads");
  c.kv_heads = f.positive_or("num_key_value_heads", c.heads);  // null → num_attention_heads
  if (c.heads % c.kv_heads != 0)
    f.bad("num_key_value_heads", "(" + std::to_string(c.kv_heads) + ") does not divide num_attention_heads (" +
                                     std::to_string(c.heads) + ")");
  if (!f.has("head_dim") && c.hidden % c.heads != 0)
    f.bad("num_attention_heads", "(" + std::to_string(c.heads) + ") does not divide hidden_size (" +
                                     std::to_string(c.hidden) + ") and there is no head_dim");
  c.head_dim = f.positive_or("head_dim", c.hidden / c.heads);
  c.inner = f.positive("intermediate_size");
  c.vocab = f.positive("vocab_size");
  const int64_t default_positions = mt == "mistral" ? 4096 * 32 : mt == "qwen2" ? 32768 : 2048;
  c.max_positions = f.positive_or("max_position_embeddings", default_positions);
  c.norm_eps = float(f.number_or("rms_norm_eps", 1e-6));
  c.activation = f.string_or("hidden_act", "silu");
  if (c.activation != "silu" && c.activation != "swish")
    f.bad("hidden_act", "is '" + c.activation + "'; supported: silu (the SwiGLU MLP)");
  c.tie_word_embeddings = f.bool_or("tie_word_embeddings", false);
  if (mt == "qwen2") {
    c.qkv_bias = true;  // Qwen2Attention: q/k/v with bias, o_proj without
  } else if (mt == "llama") {
    c.qkv_bias = c.o_bias = f.bool_or("attention_bias", false);
    c.mlp_bias = f.bool_or("mlp_bias", false);
  }
  // Sliding-window attention: mistral's sliding_window; qwen2's when use_sliding_window.
  if (mt == "mistral" || (mt == "qwen2" && f.bool_or("use_sliding_window", false)))
    c.sliding_window = f.positive_or("sliding_window", 0);
  if (f.has("layer_types")) {
    const json& lt = f.j["layer_types"];
    if (!lt.is_array()) f.bad("layer_types", "must be a list");
    for (const json& t : lt)
      if (!(t.is_string() && (t == "full_attention" || (t == "sliding_attention" && c.sliding_window > 0))))
        f.bad("layer_types", "has " + t.dump() + "; supported: full_attention (sliding_attention with a sliding_window)");
  }
  c.inv_freq = rope_inv_freq(f, c);
}

}  // namespace

DecoderConfig read_decoder_config(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  json j = read_json(path);
  Fields f{j, path};
  DecoderConfig c;
  if (!f.has("model_type")) f.bad("model_type", std::string("is missing; supported: ") + kSupported);
  c.model_type = f.string_or("model_type", "");
  if (c.model_type == "gpt2")
    read_gpt2(f, c);
  else if (c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2")
    read_llama(f, c);
  else
    f.bad("model_type", "is '" + c.model_type + "'; supported: " + kSupported);
  c.dtype = checkpoint_dtype(f);
  if (f.has("bos_token_id")) {
    const json& b = j["bos_token_id"];
    if (!b.is_number_integer() || b.get<int64_t>() < 0) f.bad("bos_token_id", "must be a token id, got " + b.dump());
    c.bos_token_id = b.get<int64_t>();
  }
  f.token_ids("eos_token_id", c.eos_token_ids);
  // generation_config.json (save_pretrained writes it beside config.json) may add ids.
  const std::string gpath = model_dir + "/generation_config.json";
  if (exists(gpath)) {
    json g = read_json(gpath);
    Fields gf{g, gpath};
    gf.token_ids("eos_token_id", c.eos_token_ids);
    if (c.bos_token_id < 0 && gf.has("bos_token_id")) {
      const json& b = g["bos_token_id"];
      if (!b.is_number_integer() || b.get<int64_t>() < 0) gf.bad("bos_token_id", "must be a token id, got " + b.dump());
      c.bos_token_id = b.get<int64_t>();
    }
  }
  return c;
}

}  // namespace shardrt::models
