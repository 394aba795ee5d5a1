// src/models (config.json reading, per-rank slicing helpers) and serve::DecoderSession
// (length checks, prefill/decode bookkeeping). The end-to-end comparison with transformers,
// single rank and tensor parallel, is tests/python/test_decoder_models.py.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <unistd.h>
#include <string>

#include "error_util.h"
#include "models/decoder.h"
#include "models/decoder_common.h"
#include "serve/decoder_session.h"
#include "shardrt/engine.h"

using namespace shardrt;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("shardrt_decoder_test_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string str() const { return path.string(); }
  void write(const std::string& name, const std::string& text) const { std::ofstream(path / name) << text; }
};

// A safetensors file of fp32 tensors (format: 8-byte little-endian header size, JSON header,
// data), written here so that these tests need no Python.
void write_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  nlohmann::json h = nlohmann::json::object();
  size_t at = 0;
  for (auto& [name, t] : tensors) {
    h[name] = {{"dtype", "F32"}, {"shape", t.dims()}, {"data_offsets", {at, at + t.nbytes()}}};
    at += t.nbytes();
  }
  std::string header = h.dump();
  uint64_t n = header.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), std::streamsize(header.size()));
  for (auto& [name, t] : tensors) out.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
}

Tensor random(Dims d, std::mt19937& rng, float sd, float mean = 0.f) {
  std::normal_distribution<float> nd(mean, sd);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// A one-layer GPT-2 (n_embd 8, 2 heads, vocabulary 16, 16 positions) with random weights.
void write_tiny_gpt2(const TempDir& dir) {
  dir.write("config.json", R"({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2, "vocab_size": 16,
                               "n_positions": 16, "n_inner": null, "eos_token_id": 3})");
  const int64_t E = 8, V = 16, P = 16;
  std::mt19937 rng(7);
  write_safetensors(dir.str() + "/model.safetensors",
                    {{"wte.weight", random({V, E}, rng, 0.5f)},
                     {"wpe.weight", random({P, E}, rng, 0.5f)},
                     {"h.0.ln_1.weight", random({E}, rng, 0.1f, 1.f)},
                     {"h.0.ln_1.bias", random({E}, rng, 0.1f)},
                     {"h.0.attn.c_attn.weight", random({E, 3 * E}, rng, 0.5f)},
                     {"h.0.attn.c_attn.bias", random({3 * E}, rng, 0.1f)},
                     {"h.0.attn.c_proj.weight", random({E, E}, rng, 0.5f)},
                     {"h.0.attn.c_proj.bias", random({E}, rng, 0.1f)},
                     {"h.0.ln_2.weight", random({E}, rng, 0.1f, 1.f)},
                     {"h.0.ln_2.bias", random({E}, rng, 0.1f)},
                     {"h.0.mlp.c_fc.weight", random({E, 4 * E}, rng, 0.5f)},
                     {"h.0.mlp.c_fc.bias", random({4 * E}, rng, 0.1f)},
                     {"h.0.mlp.c_proj.weight", random({4 * E, E}, rng, 0.3f)},
                     {"h.0.mlp.c_proj.bias", random({E}, rng, 0.1f)},
                     {"ln_f.weight", random({E}, rng, 0.1f, 1.f)},
                     {"ln_f.bias", random({E}, rng, 0.1f)}});
}

Engine build_tiny(const TempDir& dir, int64_t max_batch, int64_t max_seq) {
  models::DecoderConfig cfg = models::read_decoder_config(dir.str());
  models::DecoderBuildOptions o;
  o.max_batch = max_batch;
  o.max_seq = max_seq;
  Network net = models::build_decoder_network(dir.str(), cfg, o);
  BuildConfig bc;
  bc.shapes = models::decoder_profiles(o, models::decoder_max_seq(cfg, o));
  return build_engine(net, bc);
}

}  // namespace

TEST(DecoderConfig, Gpt2DefaultsAndGenerationConfigEos) {
  TempDir d;
  d.write("config.json", R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100,
                             "n_positions": 32, "n_inner": null, "eos_token_id": 7})");
  d.write("generation_config.json", R"({"eos_token_id": [7, 9], "bos_token_id": 1})");
  models::DecoderConfig c = models::read_decoder_config(d.str());
  EXPECT_EQ(c.family, "gpt2");
  EXPECT_EQ(c.inner, 256);  // n_inner null → 4 · n_embd
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.kv_heads, 4);
  EXPECT_EQ(c.activation, "gelu_new");
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_FLOAT_EQ(c.norm_eps, 1e-5f);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{7, 9}));  // config's first, then the new one
  EXPECT_EQ(c.bos_token_id, 50256);                          // GPT2Config's default (config.json wins)
  EXPECT_EQ(c.dtype, DType::F32);
  EXPECT_TRUE(c.inv_freq.empty());
}

TEST(DecoderConfig, LlamaDefaults) {
  TempDir d;
  d.write("config.json", R"({"model_type": "llama", "num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 8,
                             "intermediate_size": 96, "vocab_size": 100, "torch_dtype": "bfloat16",
                             "eos_token_id": [2, 3]})");
  models::DecoderConfig c = models::read_decoder_config(d.str());
  EXPECT_EQ(c.family, "llama");
  EXPECT_EQ(c.kv_heads, 8);  // num_key_value_heads defaults to num_attention_heads
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_EQ(c.max_positions, 2048);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.dtype, DType::BF16);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{2, 3}));
  // rope_theta 10000 over head_dim 8: 1 / 10000^(i/8), i = 0, 2, 4, 6.
  ASSERT_EQ(c.inv_freq.size(), 4u);
  const float want[] = {1.f, 0.1f, 0.01f, 0.001f};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(c.inv_freq[size_t(i)], want[i], want[i] * 1e-6f) << i;
}

TEST(DecoderConfig, Llama3RopeMatchesTransformers) {
  // transformers 5's _compute_llama3_parameters for this config, printed with %.9e: indices
  // 0-1 are kept (wavelength < 256/4), 2 is smoothed, 3.. divided by the factor.
  TempDir d;
  d.write("config.json", R"({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 4,
                             "head_dim": 16, "intermediate_size": 96, "vocab_size": 100, "max_position_embeddings": 1024,
                             "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                               "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 256}})");
  models::DecoderConfig c = models::read_decoder_config(d.str());
  const float want[] = {1.000000000e+00f, 1.939227581e-01f, 1.053823065e-02f, 9.115831344e-04f,
                        1.767766807e-04f, 3.428102355e-05f, 6.647869668e-06f, 1.289173156e-06f};
  ASSERT_EQ(c.inv_freq.size(), 8u);
  // 2 ulp: powf implementations (glibc here, torch's vectorised one there) may differ by one.
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(c.inv_freq[size_t(i)], want[i], want[i] * 2.5e-7f) << i;
}

TEST(DecoderConfig, LinearRopeTransformers4Layout) {
  // The transformers 4 layout: rope_theta beside rope_scaling {"type": ...}.
  TempDir d;
  d.write("config.json", R"({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 4,
                             "head_dim": 16, "intermediate_size": 96, "vocab_size": 100, "rope_theta": 10000.0,
                             "rope_scaling": {"type": "linear", "factor": 2.0}})");
  models::DecoderConfig c = models::read_decoder_config(d.str());
  // transformers' _compute_linear_scaling_rope_parameters for this config.
  const float want[] = {0.5f, 0.15811388194561005f, 0.05000000074505806f, 0.015811389312148094f,
                        0.004999999888241291f, 0.0015811389312148094f, 0.0005000000237487257f, 0.00015811389312148094f};
  ASSERT_EQ(c.inv_freq.size(), 8u);
  for (int i = 0; i < 8; ++i) EXPECT_NEAR(c.inv_freq[size_t(i)], want[i], want[i] * 2.5e-7f) << i;  // as above
}

TEST(DecoderConfig, ErrorsNameFileAndField) {
  TempDir d;
  d.write("config.json", R"({"model_type": "falcon"})");
  std::string e = any_error_of([&] { models::read_decoder_config(d.str()); });
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("'model_type'"), std::string::npos) << e;
  EXPECT_NE(e.find("gpt2, llama, mistral, qwen2"), std::string::npos) << e;

  d.write("config.json", R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "vocab_size": 100, "n_positions": 8})");
  e = any_error_of([&] { models::read_decoder_config(d.str()); });
  EXPECT_NE(e.find("'n_head'"), std::string::npos) << e;

  d.write("config.json", R"({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 4,
                             "intermediate_size": 96, "vocab_size": 100, "rope_scaling": {"rope_type": "yarn", "factor": 4}})");
  e = any_error_of([&] { models::read_decoder_config(d.str()); });
  EXPECT_NE(e.find("rope_scaling.rope_type"), std::string::npos) << e;
  EXPECT_NE(e.find("'yarn'"), std::string::npos) << e;

  d.write("config.json", R"({"model_type": "llama", "num_hidden_layers": 1, "hidden_size": 64, "num_attention_heads": 4,
                             "intermediate_size": 96, "vocab_size": 100, "hidden_act": "gelu"})");
  e = any_error_of([&] { models::read_decoder_config(d.str()); });
  EXPECT_NE(e.find("'hidden_act'"), std::string::npos) << e;

  d.write("config.json", "{not json");
  e = any_error_of([&] { models::read_decoder_config(d.str()); });
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
}

TEST(DecoderModels, ChunksAsTorchChunk) {
  // torch.chunk(range(10), 4) → sizes 3, 3, 3, 1.
  EXPECT_EQ(models::chunk_of(10, 4, 0, "x"), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(models::chunk_of(10, 4, 3, "x"), (std::pair<int64_t, int64_t>{9, 1}));
  // torch.chunk(range(5), 4) → 2, 2, 1: the fourth rank would get nothing.
  std::string e = any_error_of([] { models::chunk_of(5, 4, 3, "the vocabulary"); });
  EXPECT_NE(e.find("the vocabulary (5)"), std::string::npos) << e;
}

TEST(DecoderModels, WeightReaderSlicesAndConverts) {
  TempDir d;
  Tensor t(DType::F32, {3, 4});
  for (int i = 0; i < 12; ++i) t.data<float>()[i] = float(i);
  write_safetensors(d.str() + "/model.safetensors", {{"transformer.w", t}});
  models::WeightReader r(d.str(), {"transformer.", ""}, DType::BF16);
  Tensor rows = r.rows("w", {3, 4}, 1, 2);  // rows 1..2
  ASSERT_EQ(rows.dims(), (Dims{2, 4}));
  EXPECT_EQ(rows.dtype(), DType::BF16);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(rows.get_f(i), 4 + i);
  Tensor cols = r.columns("w", {3, 4}, {{3, 1}, {0, 2}});  // column 3, then columns 0..1
  ASSERT_EQ(cols.dims(), (Dims{3, 3}));
  const float want[] = {3, 0, 1, 7, 4, 5, 11, 8, 9};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(cols.get_f(i), want[i]);
  std::string e = any_error_of([&] { r.full("w", {4, 3}); });
  EXPECT_NE(e.find("'transformer.w' is [3,4]"), std::string::npos) << e;
  e = any_error_of([&] { r.full("missing", {1}); });
  EXPECT_NE(e.find("'transformer.missing', 'missing'"), std::string::npos) << e;
}

TEST(DecoderSession, DecodeStepsEqualPrefillOfTheWholeSequence) {
  // The KV cache's bookkeeping: logits after prefill(a b) + decode(c) + decode(d) are the
  // logits of prefill(a b c d); rows of different lengths in one batch equal their own runs.
  TempDir d;
  write_tiny_gpt2(d);
  Engine engine = build_tiny(d, 3, 12);
  serve::DecoderSession s(engine, {});
  EXPECT_EQ(s.max_batch(), 3);
  EXPECT_EQ(s.max_seq(), 12);
  EXPECT_EQ(s.vocab(), 16);

  const std::vector<int64_t> full = {5, 1, 9, 14, 2, 7};
  Tensor ref = s.prefill({full});
  s.prefill({{5, 1}, {3}, {8, 8, 8, 8}});
  EXPECT_EQ(s.lengths(), (std::vector<int64_t>{2, 1, 4}));
  Tensor last;
  for (size_t i = 2; i < full.size(); ++i) last = s.decode({full[i], 4, 6});
  EXPECT_EQ(s.lengths(), (std::vector<int64_t>{6, 5, 8}));
  ASSERT_EQ(last.dims(), (Dims{3, 16}));
  // fp32 both ways; the sums over positions run in the same order, only the GEMM shapes differ.
  for (int v = 0; v < 16; ++v) EXPECT_NEAR(last.data<float>()[v], ref.data<float>()[v], 1e-4f) << v;

  // Row 1 alone: {3} then 4, 4, 4, 4.
  serve::DecoderSession s2(engine, {});
  Tensor row1 = s2.prefill({{3, 4, 4, 4, 4}});
  for (int v = 0; v < 16; ++v) EXPECT_NEAR(last.data<float>()[16 + v], row1.data<float>()[v], 1e-4f) << v;
}

TEST(DecoderSession, LengthChecks) {
  TempDir d;
  write_tiny_gpt2(d);
  Engine engine = build_tiny(d, 2, 6);
  serve::DecoderSession s(engine, {});
  auto err = [&](const std::function<void()>& f) { return any_error_of(f); };
  EXPECT_NE(err([&] { s.decode({1}); }).find("decode before any prefill"), std::string::npos);
  EXPECT_NE(err([&] { s.prefill({}); }).find("max_batch"), std::string::npos);
  EXPECT_NE(err([&] { s.prefill({{1}, {2}, {3}}); }).find("prefill of 3 rows"), std::string::npos);
  EXPECT_NE(err([&] { s.prefill({{1}, {}}); }).find("row 1 has 0 tokens"), std::string::npos);
  EXPECT_NE(err([&] { s.prefill({{1, 2, 3, 4, 5, 6, 7}}); }).find("max_seq"), std::string::npos);
  EXPECT_NE(err([&] { s.prefill({{1, 16}}); }).find("token 16 of row 0 is outside the vocabulary"), std::string::npos);
  s.prefill({{1, 2, 3, 4, 5}, {1}});
  EXPECT_NE(err([&] { s.decode({1}); }).find("1 tokens for the 2 rows"), std::string::npos);
  s.decode({1, 1});  // row 0 now holds 6 = max_seq
  EXPECT_EQ(s.lengths(), (std::vector<int64_t>{6, 2}));
  std::string e = err([&] { s.decode({1, 1}); });
  EXPECT_NE(e.find("row 0 holds 6 tokens"), std::string::npos) << e;
  EXPECT_EQ(s.lengths(), (std::vector<int64_t>{6, 2}));  // a refused step changes nothing
}

TEST(DecoderModels, BuildRefusals) {
  TempDir d;
  write_tiny_gpt2(d);
  models::DecoderConfig cfg = models::read_decoder_config(d.str());
  models::DecoderBuildOptions o;
  o.max_seq = 17;  // n_positions is 16
  EXPECT_NE(any_error_of([&] { models::build_decoder_network(d.str(), cfg, o); }).find("n_positions"), std::string::npos);
  o.max_seq = 8;
  o.tp_size = 4;  // 2 heads
  o.tp_rank = 1;
  EXPECT_NE(any_error_of([&] { models::build_decoder_network(d.str(), cfg, o); }).find("attention heads (2)"), std::string::npos);
  // KV cache: 1 layer × 2 × [2, 2, 8, 4] fp32.
  o.tp_size = 1;
  o.tp_rank = 0;
  o.max_batch = 2;
  Network net = models::build_decoder_network(d.str(), cfg, o);
  EXPECT_EQ(models::kv_cache_bytes(net.graph()), size_t(2 * 2 * 2 * 8 * 4 * 4));
}

TEST(DecoderSession, RefusesAnEngineWithoutCache) {
  Network net;
  ITensor x = net.input("x", DType::F32, {2});
  net.output(net.relu(x), "y");
  Engine e = build_engine(net, {});
  std::string msg = any_error_of([&] { serve::DecoderSession s(e, {}); });
  EXPECT_NE(msg.find("no shardrt.CachedAttention"), std::string::npos) << msg;
}
