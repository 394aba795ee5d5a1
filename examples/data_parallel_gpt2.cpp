// Data parallelism on a GPT-2: every rank builds the same GPT-2 (124M shape by default: 12
// layers, 768 wide, 12 heads, vocabulary 50257, 1024 positions; deterministic weights from a
// seeded generator) with the Network API — embedding Gathers,
// LayerNorms, shardrt.Linear, causal shardrt.Attention, tanh Gelu, residual Adds and an LM head
// tied to the token embedding — and serves a list of prompts (token ids) with greedy generation.
// Rank 0 broadcasts the prompts; each rank takes a contiguous slice of them (the first ranks
// take one more when the count does not divide; a rank with no prompt still takes part in the
// gather), generates --new-tokens tokens for each, and the tokens are all-gathered in the
// original prompt order. Rank 0 prints them and checks them, token for token, against a
// single-rank run of the same engine over all prompts.
//
// This example keeps no KV cache: every new token re-runs the engine on the whole sequence so far
// (the engine's sequence dim is dynamic), so a step costs O(sequence) rather than O(1) layers
// of work. (src/models builds a KV-cached decoder from the same checkpoints, which
// `shardrt generate` serves: docs/generate.md.)
//
// --checkpoint DIR loads a Hugging Face GPT-2 instead (GPT2LMHeadModel saved with
// save_pretrained: config.json and model.safetensors, or sharded model-0000x-of-0000y.safetensors
// with model.safetensors.index.json; fp32, fp16 or bf16 weights, computed in fp32). The shape
// comes from config.json (n_layer, n_embd, n_head, vocab_size, n_positions,
// layer_norm_epsilon), so the shape options are refused with it. GPT-2's Conv1D weights are
// [in, out] (y = x·W + b) and feed shardrt.Linear with trans_b 0; c_attn's 3·n_embd columns
// split into Q, K and V. Each rank memory-maps the files.
//
//   mpirun -n 2 data_parallel_gpt2                          (124M shape, built-in prompts)
//   mpirun -n 3 data_parallel_gpt2 --layers 2 --hidden 64 --heads 4 --vocab 1000 --positions 64
//   mpirun -n 2 data_parallel_gpt2 --checkpoint gpt2-dir --prompt 464,2068,7586 --new-tokens 16
//   options: --layers N --hidden N --heads N --vocab N --positions N --new-tokens N (default 8)
//            --seed N --prompt 1,2,3 (repeat for more prompts; default: 5 built-in prompts)
//            --checkpoint DIR (Hugging Face GPT-2; replaces the shape options and --seed)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dist/bootstrap.h"
#include "models/decoder_common.h"
#include "ir/graph.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

struct Config {
  int64_t layers = 12, hidden = 768, heads = 12, vocab = 50257, positions = 1024;
  int64_t new_tokens = 8;
  uint32_t seed = 1234;
  int64_t inner = 0;  // MLP width; 0: 4 × hidden
  float layer_norm_eps = 1e-5f;
  std::string checkpoint;  // Hugging Face GPT-2 directory; empty: seeded weights
};

using Prompt = std::vector<int64_t>;

// Built-in prompts of different lengths (GPT-2 token ids; taken modulo a smaller vocabulary).
const std::vector<Prompt> kDefaultPrompts = {
    {15496, 11, 616, 3290, 318, 13779},
    {464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290},
    {40},
    {1212, 318, 257, 1332},
    {2061, 318, 262, 3139, 286, 1204, 11, 262, 6881, 11, 290, 2279, 30},
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Normal(0, stddev) weights from their own seed, so every rank (and every run) gets the same.
Tensor normal_tensor(Dims d, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, stddev);
  Tensor t(DType::F32, d);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = nd(rng);
  return t;
}

Tensor filled_tensor(Dims d, float v) {
  Tensor t(DType::F32, d);
  std::fill(t.data<float>(), t.data<float>() + t.numel(), v);
  return t;
}

// A Hugging Face GPT-2 checkpoint's tensors, as fp32 with their shapes checked (the
// library's reader, src/models). Names may carry GPT2LMHeadModel's "transformer." prefix or
// not (GPT2Model saves them without).
class Gpt2Checkpoint {
 public:
  explicit Gpt2Checkpoint(const std::string& dir) : w_(dir, {"transformer.", ""}, DType::F32) {}
  // A copy in any case: the engine owns its weights, the mapping goes when the build ends.
  Tensor get(const std::string& name, const Dims& dims) const { return w_.full(name, dims); }

 private:
  models::WeightReader w_;
};

// Columns [c0, c0 + n) of a [rows, cols] (or [cols] when rows is 0) fp32 tensor.
Tensor columns(const Tensor& t, int64_t c0, int64_t n) {
  const int64_t rows = t.rank() == 1 ? 1 : t.dim(0), cols = t.dim(-1);
  Tensor out(DType::F32, t.rank() == 1 ? Dims{n} : Dims{rows, n});
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(out.data<float>() + r * n, t.data<float>() + r * cols + c0, size_t(n) * sizeof(float));
  return out;
}

// GPT-2 with batch 1 and a dynamic sequence: inputs input_ids and position_ids [1, seq]
// (int64), output `logits` [1, 1, vocab] of the last position. Weights from `ckpt` when
// given, else seeded.
Graph make_gpt2(const Config& c, const Gpt2Checkpoint* ckpt) {
  Network net("data_parallel_gpt2");
  const int64_t E = c.hidden, H = c.heads, D = c.hidden / c.heads, F = c.inner > 0 ? c.inner : 4 * E;
  uint32_t seed = c.seed;
  // Embeddings as GPT-2 initialises them (N(0, 0.02) tokens, N(0, 0.01) positions), zero
  // biases, LayerNorm scale 1 and shift 0. The layers' matrices are N(0, 1/in) rather than
  // GPT-2's N(0, 0.02): with those, an untrained model's residual stream stays close to the
  // token embedding and the tied head just repeats the last token, which makes a poor check.
  auto vec = [&](const std::string& n, int64_t k, float fill) {
    return net.weight(n, ckpt ? ckpt->get(n, {k}) : filled_tensor({k}, fill));
  };
  auto zeros = [&](const std::string& n, int64_t k) { return vec(n, k, 0.f); };
  auto ones = [&](const std::string& n, int64_t k) { return vec(n, k, 1.f); };
  auto matrix = [&](const std::string& n, int64_t out, int64_t in, float sd = 0.f) {
    return net.weight(n, normal_tensor({out, in}, seed++, sd > 0.f ? sd : 1.f / std::sqrt(float(in))));
  };
  // A dense layer in -> out: seeded weights are [out, in] (Linear's trans_b 1); a
  // checkpoint's Conv1D weights are [in, out] and go in as they are, with trans_b 0.
  auto conv1d = [&](ITensor x, Tensor w, Tensor b, const std::string& n) {
    Network::Attrs a;
    a.i["trans_b"] = 0;
    a.s["activation"] = "none";
    return net.op("shardrt.Linear", {x, net.weight(n + ".weight", std::move(w)), net.weight(n + ".bias", std::move(b))},
                  a, 1, n)[0];
  };
  auto dense = [&](ITensor x, const std::string& n, int64_t in, int64_t out) {
    if (ckpt) return conv1d(x, ckpt->get(n + ".weight", {in, out}), ckpt->get(n + ".bias", {out}), n);
    return net.linear(x, matrix(n + ".weight", out, in), zeros(n + ".bias", out), Activation::None, n);
  };
  auto layer_norm = [&](ITensor x, const std::string& n) {
    return net.layer_norm(x, ones(n + ".weight", E), zeros(n + ".bias", E), c.layer_norm_eps, n);
  };

  ITensor ids = net.input("input_ids", DType::I64, {1, -1}, {"batch", "seq"});
  ITensor pos = net.input("position_ids", DType::I64, {1, -1}, {"batch", "seq"});
  ITensor wte = ckpt ? net.weight("wte.weight", ckpt->get("wte.weight", {c.vocab, E})) : matrix("wte.weight", c.vocab, E, 0.02f);
  ITensor wpe = ckpt ? net.weight("wpe.weight", ckpt->get("wpe.weight", {c.positions, E}))
                     : matrix("wpe.weight", c.positions, E, 0.01f);
  ITensor x = net.add(net.gather(wte, ids, 0, "wte"), net.gather(wpe, pos, 0, "wpe"), "embed");

  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = "h." + std::to_string(l) + ".";
    // Attention: [1, S, E] → heads [1, H, S, D] → causal attention → merged → projection.
    ITensor a = layer_norm(x, p + "ln_1");
    auto to_heads = [&](ITensor y, const std::string& n) {
      return net.transpose(net.reshape(y, {0, -1, H, D}, p + n + "/heads"), {0, 2, 1, 3}, p + n + "/bhsd");
    };
    ITensor q, k, v;
    if (ckpt) {
      // c_attn: [E, 3E] Conv1D whose output columns are Q | K | V.
      Tensor w = ckpt->get(p + "attn.c_attn.weight", {E, 3 * E}), b = ckpt->get(p + "attn.c_attn.bias", {3 * E});
      q = to_heads(conv1d(a, columns(w, 0, E), columns(b, 0, E), p + "attn.q_proj"), "attn.q_proj");
      k = to_heads(conv1d(a, columns(w, E, E), columns(b, E, E), p + "attn.k_proj"), "attn.k_proj");
      v = to_heads(conv1d(a, columns(w, 2 * E, E), columns(b, 2 * E, E), p + "attn.v_proj"), "attn.v_proj");
    } else {
      q = to_heads(dense(a, p + "attn.q_proj", E, E), "attn.q_proj");
      k = to_heads(dense(a, p + "attn.k_proj", E, E), "attn.k_proj");
      v = to_heads(dense(a, p + "attn.v_proj", E, E), "attn.v_proj");
    }
    ITensor o = net.attention(q, k, v, {}, /*causal=*/true, 0.f, p + "attn");
    o = net.reshape(net.transpose(o, {0, 2, 1, 3}, p + "attn/bshd"), {0, -1, E}, p + "attn/merge");
    o = dense(o, p + "attn.c_proj", E, E);
    x = net.add(x, o, p + "attn/residual");
    // MLP: E → F (4E unless the config says n_inner; tanh Gelu, GPT-2's "gelu_new") → E.
    ITensor m = layer_norm(x, p + "ln_2");
    m = dense(m, p + "mlp.c_fc", E, F);
    m = net.gelu(m, /*tanh_approx=*/true, p + "mlp.gelu");
    m = dense(m, p + "mlp.c_proj", F, E);
    x = net.add(x, m, p + "mlp/residual");
  }
  // Greedy decoding needs only the last position's logits: slice before the (vocab-wide)
  // head. The head is tied: the same wte weight as the embedding, [vocab, E] as Linear takes.
  x = net.slice(x, {-1}, {INT64_MAX}, {1}, {}, "last_position");
  x = layer_norm(x, "ln_f");
  net.output(net.linear(x, wte, {}, Activation::None, "lm_head"), "logits");
  return std::move(*net.release());
}

int64_t argmax(const Tensor& logits) {
  const float* p = logits.data<float>();
  return int64_t(std::max_element(p, p + logits.numel()) - p);
}

// Greedy generation of `n` tokens: re-runs the whole sequence each step (no KV cache).
std::vector<int64_t> generate(ExecutionContext& ctx, const Prompt& prompt, int64_t n) {
  std::vector<int64_t> seq = prompt, out;
  for (int64_t step = 0; step < n; ++step) {
    const int64_t S = int64_t(seq.size());
    Tensor ids(DType::I64, {1, S}), pos(DType::I64, {1, S});
    for (int64_t i = 0; i < S; ++i) {
      ids.data<int64_t>()[i] = seq[size_t(i)];
      pos.data<int64_t>()[i] = i;
    }
    int64_t next = argmax(ctx.run({{"input_ids", ids}, {"position_ids", pos}}).at("logits"));
    seq.push_back(next);
    out.push_back(next);
  }
  return out;
}

Prompt parse_prompt(const std::string& s) {
  Prompt p;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    char* end = nullptr;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v < 0) throw Error("--prompt: '" + s + "' is not a comma-separated list of token ids");
    p.push_back(v);
  }
  if (p.empty()) throw Error("--prompt: empty prompt");
  return p;
}

int64_t parse_int(const std::string& opt, const char* s, int64_t min) {
  char* end = nullptr;
  long long v = std::strtoll(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < min)
    throw Error(opt + ": expected an integer >= " + std::to_string(min) + ", got '" + s + "'");
  return v;
}

// The shape of a Hugging Face GPT-2 from its config.json (GPT2Config), as the library reads
// it (src/models/hf_config.cpp), with what this example's graph does not do refused.
void read_hf_config(Config& c) {
  const std::string path = c.checkpoint + "/config.json";
  models::DecoderConfig d = models::read_decoder_config(c.checkpoint);
  if (d.family != "gpt2") throw Error(path + ": model_type '" + d.model_type + "' is not GPT-2");
  c.layers = d.layers;
  c.hidden = d.hidden;
  c.heads = d.heads;
  c.vocab = d.vocab;
  c.positions = d.max_positions;
  c.inner = d.inner;
  c.layer_norm_eps = d.norm_eps;
  if (!d.tie_word_embeddings)
    throw Error(path + ": tie_word_embeddings false is not supported (the LM head is the token embedding)");
  // The graph's MLP uses the tanh GELU, which is what GPT-2's "gelu_new" is.
  if (d.activation != "gelu_new" && d.activation != "gelu_pytorch_tanh")
    throw Error(path + ": activation_function '" + d.activation + "' is not supported (only gelu_new, the tanh GELU)");
  if (d.scale_by_inverse_layer) throw Error(path + ": scale_attn_by_inverse_layer_idx is not supported");
  if (d.attn_scale != 0.f) throw Error(path + ": scale_attn_weights false is not supported");
}

Config parse_args(int argc, char** argv, std::vector<Prompt>& prompts) {
  Config c;
  std::vector<std::string> shape_options;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      std::printf("usage: data_parallel_gpt2 [--layers N] [--hidden N] [--heads N] [--vocab N] [--positions N]\n"
                  "                          [--new-tokens N] [--seed N] [--prompt ID,ID,... ...]\n"
                  "       data_parallel_gpt2 --checkpoint DIR [--new-tokens N] [--prompt ID,ID,... ...]\n");
      std::exit(0);
    }
    if (i + 1 >= argc) throw Error("unknown option or missing value: '" + a + "' (see --help)");
    const char* v = argv[++i];
    if (a == "--layers" || a == "--hidden" || a == "--heads" || a == "--vocab" || a == "--positions" || a == "--seed")
      shape_options.push_back(a);
    if (a == "--layers") c.layers = parse_int(a, v, 1);
    else if (a == "--hidden") c.hidden = parse_int(a, v, 1);
    else if (a == "--heads") c.heads = parse_int(a, v, 1);
    else if (a == "--vocab") c.vocab = parse_int(a, v, 1);
    else if (a == "--positions") c.positions = parse_int(a, v, 1);
    else if (a == "--new-tokens") c.new_tokens = parse_int(a, v, 1);
    else if (a == "--seed") c.seed = uint32_t(parse_int(a, v, 0));
    else if (a == "--prompt") prompts.push_back(parse_prompt(v));
    else if (a == "--checkpoint") c.checkpoint = v;
    else throw Error("unknown option '" + a + "' (see --help)");
  }
  if (!c.checkpoint.empty()) {
    if (!shape_options.empty())
      throw Error(shape_options[0] + " cannot be given with --checkpoint (the checkpoint's config.json sets the shape)");
    read_hf_config(c);
  }
  if (c.hidden % c.heads != 0)
    throw Error("--hidden " + std::to_string(c.hidden) + " is not divisible by --heads " + std::to_string(c.heads));
  if (prompts.empty())
    for (Prompt p : kDefaultPrompts) {
      for (int64_t& t : p) t %= c.vocab;
      prompts.push_back(p);
    }
  for (const Prompt& p : prompts) {
    for (int64_t t : p)
      if (t >= c.vocab) throw Error("prompt token " + std::to_string(t) + " is outside the vocabulary of " + std::to_string(c.vocab));
    if (int64_t(p.size()) + c.new_tokens - 1 > c.positions)
      throw Error("a prompt of " + std::to_string(p.size()) + " tokens plus " + std::to_string(c.new_tokens) +
                  " new tokens exceeds the " + std::to_string(c.positions) + " positions");
  }
  return c;
}

// Rank 0's prompts to every rank: the count, the lengths, then the tokens.
std::vector<Prompt> broadcast_prompts(dist::Communicator& comm, const std::vector<Prompt>& given) {
  int64_t n = int64_t(given.size());
  comm.broadcast(&n, 1, DType::I64, 0, {"", "Broadcast"});
  std::vector<int64_t> lengths(static_cast<size_t>(n));
  for (int64_t i = 0; comm.rank() == 0 && i < n; ++i) lengths[size_t(i)] = int64_t(given[size_t(i)].size());
  comm.broadcast(lengths.data(), n, DType::I64, 0, {"", "Broadcast"});
  int64_t total = 0;
  for (int64_t l : lengths) total += l;
  std::vector<int64_t> flat;
  for (const Prompt& p : given) flat.insert(flat.end(), p.begin(), p.end());
  flat.resize(size_t(total));
  comm.broadcast(flat.data(), total, DType::I64, 0, {"", "Broadcast"});
  std::vector<Prompt> prompts;
  for (int64_t i = 0, at = 0; i < n; at += lengths[size_t(i)], ++i)
    prompts.emplace_back(flat.begin() + at, flat.begin() + at + lengths[size_t(i)]);
  return prompts;
}

}  // namespace

int main(int argc, char** argv) {
  auto t_start = std::chrono::steady_clock::now();
  try {
    auto world = dist::communicator_from_env();
    const int ranks = world->size(), rank = world->rank();
    std::vector<Prompt> given;
    Config c = parse_args(argc, argv, given);  // every rank checks the options (same command line)

    // Rank 0's prompt list goes to every rank.
    const std::vector<Prompt> prompts = broadcast_prompts(*world, given);
    const int64_t n_prompts = int64_t(prompts.size());

    // Contiguous slices: rank r takes prompts [first[r], first[r] + count[r]); the first
    // n_prompts % ranks ranks take one more.
    std::vector<int64_t> count(static_cast<size_t>(ranks)), first(static_cast<size_t>(ranks));
    for (int r = 0, at = 0; r < ranks; ++r) {
      count[size_t(r)] = n_prompts / ranks + (r < n_prompts % ranks ? 1 : 0);
      first[size_t(r)] = at;
      at += int(count[size_t(r)]);
    }

    auto t0 = std::chrono::steady_clock::now();
    BuildConfig bc;
    const Dims lo{1, 1}, opt{1, std::min<int64_t>(16, c.positions)}, hi{1, c.positions};
    bc.shapes["input_ids"] = {lo, opt, hi};
    bc.shapes["position_ids"] = {lo, opt, hi};
    Engine engine = [&] {
      if (c.checkpoint.empty()) return build_engine_from_graph(make_gpt2(c, nullptr), bc);
      Gpt2Checkpoint ckpt(c.checkpoint);  // mapped only while the graph is made
      return build_engine_from_graph(make_gpt2(c, &ckpt), bc);
    }();
    const double build_s = seconds_since(t0);
    if (rank == 0)
      std::printf("GPT-2%s%s (%lld layers, hidden %lld, %lld heads, vocab %lld, %lld positions; %.1f M parameters), "
                  "%lld prompts over %d ranks, %lld new tokens each; weights %s and engine built in %.2f s\n",
                  c.checkpoint.empty() ? "" : " from ", c.checkpoint.c_str(),
                  (long long)c.layers, (long long)c.hidden, (long long)c.heads, (long long)c.vocab,
                  (long long)c.positions, double(engine.weight_bytes()) / 4e6, (long long)n_prompts, ranks,
                  (long long)c.new_tokens, c.checkpoint.empty() ? "made" : "loaded", build_s);

    // This rank's prompts.
    t0 = std::chrono::steady_clock::now();
    std::vector<int64_t> mine;
    {
      ExecutionContext ctx(engine);
      for (int64_t i = first[size_t(rank)]; i < first[size_t(rank)] + count[size_t(rank)]; ++i) {
        std::vector<int64_t> toks = generate(ctx, prompts[size_t(i)], c.new_tokens);
        mine.insert(mine.end(), toks.begin(), toks.end());
      }
    }
    double gen_s = seconds_since(t0);

    // Gather every rank's tokens (rank order is prompt order); ranks with no prompt send 0.
    std::vector<int64_t> counts;
    for (int64_t k : count) counts.push_back(k * c.new_tokens);
    std::vector<int64_t> all(static_cast<size_t>(n_prompts * c.new_tokens));
    world->all_gather(mine.data(), all.data(), counts, DType::I64, {"", "AllGather"});
    double slowest = gen_s;
    world->all_reduce(&slowest, &slowest, 1, DType::F64, dist::ReduceOp::Max, {"", "AllReduce"});

    int64_t ok = 1;
    if (rank == 0) {
      std::printf("data parallel generation: %.2f s (slowest rank)\n", slowest);
      // The reference: the same engine, one rank, every prompt.
      t0 = std::chrono::steady_clock::now();
      ExecutionContext ctx(engine);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < n_prompts; ++i) {
        std::vector<int64_t> ref = generate(ctx, prompts[size_t(i)], c.new_tokens);
        int owner = 0;
        while (i >= first[size_t(owner)] + count[size_t(owner)]) ++owner;
        std::printf("prompt %lld (rank %d, %zu tokens):", (long long)i, owner, prompts[size_t(i)].size());
        for (int64_t t : prompts[size_t(i)]) std::printf(" %lld", (long long)t);
        std::printf("\n  generated:");
        for (int64_t j = 0; j < c.new_tokens; ++j) {
          int64_t got = all[size_t(i * c.new_tokens + j)];
          bool same = got == ref[size_t(j)];
          mismatches += !same;
          std::printf(same ? " %lld" : " %lld(single rank: %lld)", (long long)got, (long long)ref[size_t(j)]);
        }
        std::printf("\n");
      }
      std::printf("single-rank reference: %.2f s\n", seconds_since(t0));
      ok = mismatches == 0;
      std::printf("data parallel (%d ranks) vs single rank: %lld of %lld tokens differ -> %s (total %.2f s)\n", ranks,
                  (long long)mismatches, (long long)(n_prompts * c.new_tokens), ok ? "OK" : "MISMATCH",
                  seconds_since(t_start));
    }
    // Every rank exits with rank 0's verdict.
    world->broadcast(&ok, 1, DType::I64, 0, {"", "Broadcast"});
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "data_parallel_gpt2: error: %s\n", e.what());
    return 1;
  }
}
