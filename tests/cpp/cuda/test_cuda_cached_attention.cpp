// shardrt.CachedAttention on the GPU against the CPU kernel. The op keeps a KV cache per
// execution context, so each test builds a one-node engine, opens one context on "cpu"
// and one on "cuda", runs the same sequence of steps (prefill, then decode steps with
// per-row past lengths) on both, and compares every step's output. Covered: the fused
// decode launch (S < 16) and its CUDA-graph replays with changing lengths, the flash
// prefill path (fp16/bf16, S >= 16, equal past lengths; with and without copying the
// caches' prefixes), the general prefill path (fp32, unequal lengths), GQA and MHA,
// rotary rotate-half / interleaved / partial / none, head sizes 20, 36, 64, 80, 128
// (the non-multiples of 8 take the scalar loads), partial query tiles (7 heads per group),
// splits spanning several 64-key tiles, B = 1, 2, 3, 24, max_seq not a multiple of 16;
// decode lengths on both sides of split and tile boundaries (past 0 to max_seq - 1) with
// both merges of the splits (a thread-block cluster through shared memory, or the
// workspace and a counter) and with PastLens read before or after the PDL wait; the
// resident plans (SHARDRT_ATTN_RESIDENT=1: 1, 2, 4, 8 splits each holding its whole key
// range) and the one-buffer tile loop of large fp32 heads; the output projection fused into
// the op (fuse_attention_linear): the deferred merge in the projection GEMV's prologue (one
// row, one token, MHA and GQA, every dtype, lengths across split boundaries) and the
// unfused pair that every other case runs, outputs poisoned.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "../op_test_util.h"
#include "backends/cuda/cuda_eval.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using optest::random_tensor;

namespace {

#define REQUIRE_GPU() \
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU: " << shardrt::cuda::device_description()

struct Cfg {
  DType t = DType::F32;
  int64_t Hq = 4, Hkv = 2, D = 64;
  int64_t max_batch = 3, max_seq = 100;
  int64_t nf = 0;  // InvFreq entries (R/2); 0: no rotary input
  bool inter = false;
  float scale = 0.f;
  int64_t proj = 0;  // > 0: the attention feeds a Linear of `proj` outputs (with bias)
  int64_t W() const { return (Hq + 2 * Hkv) * D; }
};

// One step: S new tokens per row, after past[b] tokens.
struct Step {
  int64_t S;
  std::vector<int64_t> past;
};

// Absolute and relative tolerances per dtype, for outputs that are convex combinations of
// V's values in [-1, 1):
// - fp32: both compute in fp32; they differ in summation order, exp2f vs exp, and CUDA's
//   sincosf (<= 2 ulp) vs the C library's cos/sin in the rotated q and k: ~1e-6; 2e-5.
// - fp16: rotated q/k are rounded to fp16 on both sides (an ulp apart at worst when the
//   fp32 rotations differ in the last bit, which moves a score by ~1e-4); the outputs
//   round to fp16 (2^-11 relative, an ulp apart at worst) and the flash prefill path
//   rounds the probabilities to fp16 before P·V (<= 4.9e-4 absolute): ~1.5e-3; 3e-3.
// - bf16: the same with bf16's 2^-8 unit: <= 3.9e-3 (output ulp) + 2e-3 (probabilities)
//   + score effects; 1.6e-2 absolute, 1e-2 relative.
struct Tol {
  double atol, rtol;
};
Tol tol_for(DType t) {
  switch (t) {
    case DType::F16: return {3e-3, 3e-3};
    case DType::BF16: return {1.6e-2, 1e-2};
    default: return {2e-5, 2e-5};
  }
}

void expect_close(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
  ASSERT_EQ(got.dims(), want.dims()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  Tensor g = got.cast(DType::F32), w = want.cast(DType::F32);
  int bad = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double a = g.get_f(i), b = w.get_f(i);
    // Written so that NaN (the 0xff poison of unwritten outputs) fails.
    if (!(std::fabs(a - b) <= tol.atol + tol.rtol * std::fabs(b))) {
      if (++bad <= 5) ADD_FAILURE() << what << ": element " << i << " got " << a << " want " << b;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.numel() << " elements differ";
}

Engine make_engine(const Cfg& c) {
  Network net("cached_attention");
  ITensor qkv = net.input("qkv", c.t, {-1, -1, c.W()}, {"batch", "seq"});
  ITensor past = net.input("past", DType::I64, {-1}, {"batch"});
  ITensor inv;
  if (c.nf > 0) {
    // Llama's frequencies over the rotated width R = 2 nf: base^(-2j / R).
    Tensor f(DType::F32, {c.nf});
    for (int64_t j = 0; j < c.nf; ++j) f.data<float>()[j] = std::pow(10000.0f, -float(2 * j) / float(2 * c.nf));
    inv = net.weight("inv_freq", f);
  }
  ITensor y = net.cached_attention(qkv, past, inv, c.Hq, c.Hkv, c.D, c.max_batch, c.max_seq, 0, c.scale, c.inter);
  if (c.proj > 0) {
    // Weights scaled by 1/sqrt(K), so that the projection stays O(1) like the attention.
    const int64_t K = c.Hq * c.D;
    const double a = 1.0 / std::sqrt(double(K));
    ITensor w = net.weight("w_o", random_tensor(c.t, {c.proj, K}, -a, a, 11));
    ITensor b = net.weight("b_o", random_tensor(c.t, {c.proj}, -0.5, 0.5, 12));
    y = net.linear(y, w, b);
  }
  net.output(y, "y");
  BuildConfig cfg;
  cfg.shapes["qkv"] = {{1, 1, c.W()}, {1, 1, c.W()}, {c.max_batch, c.max_seq, c.W()}};
  cfg.shapes["past"] = {{1}, {1}, {c.max_batch}};
  return build_engine(net, cfg);
}

Tensor lens_tensor(const std::vector<int64_t>& v) {
  Tensor t(DType::I64, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<int64_t>()[i] = v[i];
  return t;
}

std::string str(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  return s + "}";
}

// `n` decode steps (S = 1) from per-row lengths `lens`, each row growing by one per step.
void add_decode(std::vector<Step>& steps, std::vector<int64_t> lens, int n) {
  for (int i = 0; i < n; ++i) {
    steps.push_back({1, lens});
    for (auto& l : lens) ++l;
  }
}

// Runs the steps on both backends (fresh contexts: zero caches) and compares each output.
// With `twice`, every GPU step runs again with the same inputs: re-running a node rewrites
// the same cache entries, and the second run (a CUDA-graph replay) must give the same bits.
void run_steps(const Cfg& c, const std::vector<Step>& steps, const std::string& name, bool twice = false,
               unsigned seed = 1) {
  Engine e = make_engine(c);
  if (c.proj > 0) {  // the pass fused the projection into the attention node
    int fused = 0;
    for (auto& n : e.graph().nodes)
      fused += !n->dead && n->op == "shardrt.CachedAttention" && n->inputs.size() > 3 && n->inputs[3];
    ASSERT_EQ(fused, 1) << name << ": the output projection was not fused";
  }
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  ExecutionContext gpu(e, ContextOptions{"cuda"});
  const Tol tol = tol_for(c.t);
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& st = steps[i];
    const int64_t B = int64_t(st.past.size());
    std::map<std::string, Tensor> in;
    in["qkv"] = random_tensor(c.t, {B, st.S, c.W()}, -1.0, 1.0, seed * 7919u + unsigned(i));
    in["past"] = lens_tensor(st.past);
    const std::string what = name + " step " + std::to_string(i) + " (S " + std::to_string(st.S) + ", past " +
                             str(st.past) + ")";
    Tensor want = cpu.run(in).at("y");
    Tensor got = gpu.run(in).at("y");
    expect_close(got, want, tol, what);
    if (twice) {
      Tensor again = gpu.run(in).at("y");
      ASSERT_EQ(again.nbytes(), got.nbytes());
      EXPECT_EQ(std::memcmp(again.raw(), got.raw(), got.nbytes()), 0) << what << ": the rerun differs";
    }
    if (::testing::Test::HasFailure()) return;  // later steps would only repeat the report
  }
}

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

}  // namespace

TEST(CudaCachedAttention, DecodeFp32RotateHalfGqaRowsOfDifferentLengths) {
  REQUIRE_GPU();
  Cfg c;
  c.t = DType::F32;
  c.Hq = 4, c.Hkv = 2, c.D = 64, c.max_batch = 3, c.max_seq = 100, c.nf = 32;
  std::vector<Step> steps{{6, {0, 0, 0}}};  // right-padded prompt of 6 (real lengths 6, 4, 2)
  add_decode(steps, {6, 4, 2}, 8);
  run_steps(c, steps, "fp32 gqa");
}

TEST(CudaCachedAttention, DecodeFp16InterleavedPartialRotaryD80) {
  REQUIRE_GPU();
  Cfg c;
  c.t = DType::F16;
  c.Hq = 8, c.Hkv = 2, c.D = 80, c.max_batch = 3, c.max_seq = 77, c.nf = 16, c.inter = true;
  // Prefill, then a 3-token step over unequal past lengths (fused: S < 16), then decode.
  std::vector<Step> steps{{5, {0, 0, 0}}, {3, {5, 2, 4}}};
  add_decode(steps, {8, 5, 7}, 6);
  run_steps(c, steps, "fp16 d80");
}

TEST(CudaCachedAttention, DecodeBf16Llama3DimsBatch1And3) {
  REQUIRE_GPU();
  Cfg c;
  c.t = DType::BF16;
  c.Hq = 32, c.Hkv = 8, c.D = 128, c.max_batch = 3, c.max_seq = 300, c.nf = 64;
  {
    std::vector<Step> steps{{40, {0}}};  // flash prefill
    add_decode(steps, {40}, 10);
    run_steps(c, steps, "bf16 llama B1");
  }
  {
    std::vector<Step> steps{{40, {0, 0, 0}}};
    add_decode(steps, {40, 17, 33}, 10);
    run_steps(c, steps, "bf16 llama B3", false, 2);
  }
}

TEST(CudaCachedAttention, DecodeFp16MhaWithoutRotaryGpt2Dims) {
  REQUIRE_GPU();
  Cfg c;
  c.t = DType::F16;
  c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 1, c.max_seq = 1024, c.nf = 0;
  std::vector<Step> steps{{100, {0}}};
  add_decode(steps, {100}, 10);
  run_steps(c, steps, "fp16 gpt2");
}

TEST(CudaCachedAttention, PartialQueryTilesAndHeadSizesNotMultipleOf8) {
  REQUIRE_GPU();
  // Every output element must be written: the executor fills outputs with 0xff (NaN) first.
  ScopedEnv poison("SHARDRT_POISON", "1");
  {
    Cfg c;  // 7 q heads per kv head: a query tile of 8 rows with one unused
    c.t = DType::BF16;
    c.Hq = 7, c.Hkv = 1, c.D = 64, c.max_batch = 2, c.max_seq = 90, c.nf = 32;
    std::vector<Step> steps{{4, {0, 0}}};
    add_decode(steps, {4, 1}, 6);
    run_steps(c, steps, "bf16 G7");
  }
  {
    Cfg c;  // D = 20: scalar loads, shared rows padded to 24
    c.t = DType::F16;
    c.Hq = 4, c.Hkv = 2, c.D = 20, c.max_batch = 2, c.max_seq = 50, c.nf = 5;
    std::vector<Step> steps{{20, {0, 0}}};  // S >= 16 with D % 8 != 0: the general prefill path
    add_decode(steps, {20, 11}, 6);
    run_steps(c, steps, "fp16 d20", false, 3);
  }
  {
    Cfg c;  // D = 36 in fp32, interleaved partial rotary, explicit scale
    c.t = DType::F32;
    c.Hq = 6, c.Hkv = 3, c.D = 36, c.max_batch = 2, c.max_seq = 41, c.nf = 9, c.inter = true, c.scale = 0.3f;
    std::vector<Step> steps{{3, {0, 0}}};
    add_decode(steps, {3, 2}, 6);
    run_steps(c, steps, "fp32 d36", false, 4);
  }
}

TEST(CudaCachedAttention, PrefillPaths) {
  REQUIRE_GPU();
  Cfg c;
  c.t = DType::F16;
  c.Hq = 8, c.Hkv = 4, c.D = 64, c.max_batch = 2, c.max_seq = 96, c.nf = 32;
  std::vector<Step> steps{
      {20, {0, 0}},    // flash, caches' prefix copied
      {20, {20, 20}},  // flash with causal offset 20
      {18, {40, 43}},  // unequal lengths: prep + split-K over the cache
      {1, {58, 61}},   // decode
      {35, {61, 61}},  // flash over the whole cache (P + S == max_seq): no copy
  };
  run_steps(c, steps, "fp16 prefill");

  Cfg f = c;  // fp32 prefill: always the general path (and capturable: no host lengths)
  f.t = DType::F32;
  std::vector<Step> fs{{33, {0, 0}}, {17, {33, 20}}};
  add_decode(fs, {50, 37}, 4);
  run_steps(f, fs, "fp32 prefill", false, 5);

  Cfg b = c;  // bf16, D 128, one kv head, prefill after a past of 7
  b.t = DType::BF16;
  b.Hq = 4, b.Hkv = 1, b.D = 128, b.nf = 64;
  std::vector<Step> bs{{7, {0, 0}}, {30, {7, 7}}};
  add_decode(bs, {37, 37}, 3);
  run_steps(b, bs, "bf16 prefill", false, 6);
}

TEST(CudaCachedAttention, ManyDecodeStepsReplayTheCapturedGraph) {
  REQUIRE_GPU();
  // Every decode step at B = 2 has the same input shapes: the executor runs the first two
  // eagerly, captures the second, and replays the graph for the others. The lengths change every
  // step, so matching the CPU step for step shows the kernel reads PastLens on the device;
  // each step also runs twice (same writes, bit-identical output).
  Cfg c;
  c.t = DType::BF16;
  c.Hq = 8, c.Hkv = 2, c.D = 128, c.max_batch = 2, c.max_seq = 200, c.nf = 64;
  std::vector<Step> steps{{17, {0, 0}}};
  add_decode(steps, {17, 9}, 60);
  run_steps(c, steps, "bf16 replay", true);

  Cfg f = c;  // fp32, MHA, GPT-2-like, B = 1, to the last cache position
  f.t = DType::F32;
  f.Hq = 12, f.Hkv = 12, f.D = 64, f.max_batch = 1, f.max_seq = 70, f.nf = 0;
  std::vector<Step> fs{{5, {0}}};
  add_decode(fs, {5}, 65);  // the last step writes position 69 = max_seq - 1
  run_steps(f, fs, "fp32 replay", true, 7);
}

TEST(CudaCachedAttention, LongContextsSpanManySplitsAndTiles) {
  REQUIRE_GPU();
  {
    // B = 1, one kv head: the most splits (up to 64), ~700 keys: chunks of 16 keys.
    Cfg c;
    c.t = DType::F16;
    c.Hq = 4, c.Hkv = 1, c.D = 64, c.max_batch = 1, c.max_seq = 2000, c.nf = 32;
    std::vector<Step> steps{{700, {0}}};
    add_decode(steps, {700}, 5);
    run_steps(c, steps, "fp16 long");
  }
  {
    // B = 24 x 8 kv heads: few splits, so each split covers several 64-key tiles (the
    // double-buffered loop) on a 132-SM GPU.
    Cfg c;
    c.t = DType::F16;
    c.Hq = 8, c.Hkv = 8, c.D = 64, c.max_batch = 24, c.max_seq = 450, c.nf = 32;
    std::vector<int64_t> zeros(24, 0), lens(24);
    for (int b = 0; b < 24; ++b) lens[size_t(b)] = 420 - 7 * b;
    std::vector<Step> steps{{420, zeros}};
    add_decode(steps, lens, 3);
    run_steps(c, steps, "fp16 B24", false, 8);
  }
  {
    // fp32 D 128 prefill of 200 tokens (general path, many query tiles, splits of 2 tiles).
    Cfg c;
    c.t = DType::F32;
    c.Hq = 8, c.Hkv = 8, c.D = 128, c.max_batch = 2, c.max_seq = 260, c.nf = 64;
    std::vector<Step> steps{{200, {0, 0}}};
    add_decode(steps, {200, 150}, 3);
    run_steps(c, steps, "fp32 d128 long", false, 9);
  }
}

namespace {

// Decode steps (S = 1, B rows of different lengths, all replays of one captured graph after
// the first two runs) at lengths around tile (64) and split boundaries, from 0 to
// max_seq - 1. Positions never written are zeros in both caches, so steps may jump.
std::vector<Step> boundary_steps(const std::vector<std::vector<int64_t>>& lens) {
  std::vector<Step> steps;
  for (const auto& l : lens) steps.push_back({1, l});
  return steps;
}

}  // namespace

TEST(CudaCachedAttention, DecodeLengthsAcrossSplitAndTileBoundaries) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  {
    Cfg c;  // GPT-2's attention: MHA, D 64, fp16, the engine's max_seq 1024
    c.t = DType::F16;
    c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 3, c.max_seq = 1024, c.nf = 0;
    std::vector<Step> steps{{30, {0, 0, 0}}};  // some history (flash prefill)
    for (const Step& s : boundary_steps({{0, 1, 2},
                                          {15, 16, 17},
                                          {31, 32, 33},
                                          {63, 64, 65},
                                          {127, 128, 129},
                                          {511, 512, 513},
                                          {1000, 1022, 1023},
                                          {1023, 0, 700}}))
      steps.push_back(s);
    run_steps(c, steps, "fp16 gpt2 boundaries", true, 11);
  }
  {
    Cfg c;  // Llama-3's attention: GQA 4, D 128, bf16, rotary
    c.t = DType::BF16;
    c.Hq = 32, c.Hkv = 8, c.D = 128, c.max_batch = 2, c.max_seq = 1100, c.nf = 64;
    std::vector<Step> steps = boundary_steps({{0, 1023}, {64, 1024}, {1025, 65}, {1099, 500}, {255, 256}});
    run_steps(c, steps, "bf16 llama boundaries", true, 12);
  }
  {
    Cfg c;  // fp32, GQA 2, D 64, interleaved rotary
    c.t = DType::F32;
    c.Hq = 4, c.Hkv = 2, c.D = 64, c.max_batch = 2, c.max_seq = 300, c.nf = 32, c.inter = true;
    std::vector<Step> steps = boundary_steps({{0, 299}, {63, 64}, {128, 191}, {257, 1}});
    run_steps(c, steps, "fp32 boundaries", true, 13);
  }
}

TEST(CudaCachedAttention, DecodeMergesAndEarlyReadsAgree) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  // The same decode sequence with each way of merging the splits and with PastLens read
  // after the PDL wait. SHARDRT_ATTN_CLUSTER: 16 is the automatic choice (the fp16 MHA case
  // merges through the workspace, the bf16 GQA case through a cluster of 16), 4 forces
  // clusters of 4, 0 forces the workspace and counters.
  const char* variants[][2] = {{"16", "1"}, {"4", "1"}, {"0", "1"}, {"16", "0"}, {"0", "0"}};
  for (const auto& v : variants) {
    ScopedEnv cl("SHARDRT_ATTN_CLUSTER", v[0]);
    ScopedEnv ea("SHARDRT_ATTN_EARLY", v[1]);
    const std::string tag = std::string(" cluster ") + v[0] + " early " + v[1];
    {
      Cfg c;
      c.t = DType::F16;
      c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 2, c.max_seq = 1024, c.nf = 0;
      std::vector<Step> steps{{20, {0, 0}}};
      add_decode(steps, {510, 20}, 6);  // rows 510.. and 20..: tiles and splits of both kinds
      run_steps(c, steps, "fp16 mha" + tag, true, 21);
    }
    {
      Cfg c;
      c.t = DType::BF16;
      c.Hq = 32, c.Hkv = 8, c.D = 128, c.max_batch = 1, c.max_seq = 1100, c.nf = 64;
      std::vector<Step> steps{{3, {0}}};
      add_decode(steps, {1022}, 4);
      run_steps(c, steps, "bf16 gqa" + tag, true, 22);
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(CudaCachedAttention, DecodeResidentKeyRangesAgree) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  // SHARDRT_ATTN_RESIDENT=1: each split holds its whole key range (ceil(max_seq / splits)
  // keys, one or several 64-key tiles) in shared memory, requested at once. Split counts
  // 1 (no merge), 2, 4, 8 (cluster merges, or the workspace with SHARDRT_ATTN_CLUSTER=0),
  // PastLens read before or after the PDL wait; lengths at 0, at the ranges' and tiles'
  // edges, at max_seq - 1, rows of different lengths in one step; every step replayed.
  const char* variants[][3] = {{"1", "16", "1"}, {"2", "16", "1"}, {"4", "16", "1"}, {"8", "16", "1"},
                               {"4", "0", "1"},  {"8", "0", "0"},  {"2", "16", "0"}};
  for (const auto& v : variants) {
    ScopedEnv rs("SHARDRT_ATTN_RESIDENT", "1");
    ScopedEnv sp("SHARDRT_ATTN_SPLITS", v[0]);
    ScopedEnv cl("SHARDRT_ATTN_CLUSTER", v[1]);
    ScopedEnv ea("SHARDRT_ATTN_EARLY", v[2]);
    const std::string tag = std::string(" splits ") + v[0] + " cluster " + v[1] + " early " + v[2];
    {
      Cfg c;  // GPT-2's attention with the decode bench's max_seq (past 512 + 16)
      c.t = DType::F16;
      c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 3, c.max_seq = 528, c.nf = 0;
      std::vector<Step> steps{{17, {0, 0, 0}}};
      for (const Step& s : boundary_steps({{0, 1, 2},
                                            {63, 64, 65},
                                            {65, 66, 67},
                                            {127, 128, 129},
                                            {131, 132, 133},
                                            {263, 264, 265},
                                            {511, 512, 513},
                                            {527, 0, 300}}))
        steps.push_back(s);
      add_decode(steps, {40, 130, 526}, 2);
      run_steps(c, steps, "fp16 gpt2 528" + tag, true, 31);
    }
    {
      Cfg c;  // the generate engine's max_seq
      c.t = DType::F16;
      c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 2, c.max_seq = 1024, c.nf = 0;
      std::vector<Step> steps =
          boundary_steps({{0, 1023}, {127, 128}, {255, 256}, {511, 512}, {1022, 767}, {1, 1000}});
      run_steps(c, steps, "fp16 gpt2 1024" + tag, true, 32);
    }
    {
      Cfg c;  // Llama-3's attention: GQA 4, D 128, bf16, rotary
      c.t = DType::BF16;
      c.Hq = 32, c.Hkv = 8, c.D = 128, c.max_batch = 2, c.max_seq = 1040, c.nf = 64;
      std::vector<Step> steps = boundary_steps({{0, 1039}, {129, 130}, {259, 260}, {519, 520}, {1024, 3}});
      run_steps(c, steps, "bf16 llama" + tag, true, 33);
    }
    {
      Cfg c;  // fp32, GQA 2, D 64, interleaved rotary, a small max_seq
      c.t = DType::F32;
      c.Hq = 4, c.Hkv = 2, c.D = 64, c.max_batch = 2, c.max_seq = 150, c.nf = 32, c.inter = true;
      std::vector<Step> steps{{5, {0, 0}}};
      for (const Step& s : boundary_steps({{0, 149}, {18, 19}, {37, 38}, {74, 75}, {63, 64}, {148, 128}}))
        steps.push_back(s);
      run_steps(c, steps, "fp32 small" + tag, true, 34);
    }
    if (::testing::Test::HasFailure()) return;
  }
}

TEST(CudaCachedAttention, Fp32LargeHeadSingleBufferSpansTiles) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  // fp32 with head size 256: two K/V tile buffers exceed the shared memory of one block, so
  // the kernel keeps one and loads each 64-key tile after the previous one's math; with
  // 2 splits a split spans several tiles.
  ScopedEnv sp("SHARDRT_ATTN_SPLITS", "2");
  ScopedEnv rs("SHARDRT_ATTN_RESIDENT", "0");
  Cfg c;
  c.t = DType::F32;
  c.Hq = 2, c.Hkv = 1, c.D = 256, c.max_batch = 2, c.max_seq = 300, c.nf = 64;
  std::vector<Step> steps{{3, {0, 0}}};
  for (const Step& s : boundary_steps({{64, 65}, {129, 200}, {299, 150}})) steps.push_back(s);
  run_steps(c, steps, "fp32 D256 one buffer", true, 35);
}

// The output projection fused into the op. Tolerances are tol_for's: the projection's inputs
// are the attention outputs (an ulp apart at worst, rounded to the dtype on both sides) times
// weights of at most 1/sqrt(K), so their differences add up over K to about one output ulp,
// and the projection's own rounding is the dtype's unit again.
TEST(CudaCachedAttention, OutputProjectionFusedDeferredMerge) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  {
    Cfg c;  // GPT-2's dims: 9 one-tile splits over max_seq 528, the projection's GEMV merges
    c.t = DType::F16;
    c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 1, c.max_seq = 528, c.nf = 0, c.proj = 768;
    std::vector<Step> steps{{100, {0}}};
    add_decode(steps, {100}, 4);
    for (int64_t p : {0, 1, 63, 64, 65, 511, 526, 527}) steps.push_back({1, {p}});
    run_steps(c, steps, "fp16 gpt2 proj", true);
  }
  {
    Cfg c;  // Llama-like GQA (4 q heads per kv head: one query tile), rotary, bf16, 4 splits
    c.t = DType::BF16;
    c.Hq = 8, c.Hkv = 2, c.D = 128, c.max_batch = 1, c.max_seq = 256, c.nf = 64, c.proj = 512;
    std::vector<Step> steps{{40, {0}}};
    add_decode(steps, {40}, 3);
    for (int64_t p : {0, 63, 64, 127, 128, 200, 255}) steps.push_back({1, {p}});
    run_steps(c, steps, "bf16 gqa proj", false, 2);
  }
  {
    Cfg c;  // fp32, a projection narrower than the attention
    c.t = DType::F32;
    c.Hq = 6, c.Hkv = 3, c.D = 32, c.max_batch = 1, c.max_seq = 200, c.nf = 16, c.proj = 100;
    std::vector<Step> steps{{3, {0}}};
    add_decode(steps, {3}, 70);  // graph replays across split boundaries
    run_steps(c, steps, "fp32 proj", false, 3);
  }
}

TEST(CudaCachedAttention, OutputProjectionFusedUnfusedPair) {
  REQUIRE_GPU();
  ScopedEnv poison("SHARDRT_POISON", "1");
  {
    Cfg c;  // two rows: the attention kernel merges, then the Linear kernel
    c.t = DType::F16;
    c.Hq = 12, c.Hkv = 12, c.D = 64, c.max_batch = 2, c.max_seq = 300, c.nf = 0, c.proj = 768;
    std::vector<Step> steps{{20, {0, 0}}};
    add_decode(steps, {20, 7}, 5);
    run_steps(c, steps, "fp16 b2 proj", true);
  }
  {
    Cfg c;  // more splits than the deferred merge takes (max_seq 2000: 32 tiles)
    c.t = DType::BF16;
    c.Hq = 4, c.Hkv = 1, c.D = 64, c.max_batch = 1, c.max_seq = 2000, c.nf = 32, c.proj = 256;
    std::vector<Step> steps{{700, {0}}};
    add_decode(steps, {700}, 3);
    run_steps(c, steps, "bf16 long proj", false, 4);
  }
  {
    Cfg c;  // GQA with 16 splits: 66.5 KB of partials, above the deferred merge's 32 KB
    c.t = DType::BF16;
    c.Hq = 8, c.Hkv = 2, c.D = 128, c.max_batch = 1, c.max_seq = 1024, c.nf = 64, c.proj = 512;
    std::vector<Step> steps{{40, {0}}};
    add_decode(steps, {40}, 2);
    for (int64_t p : {127, 1023}) steps.push_back({1, {p}});
    run_steps(c, steps, "bf16 gqa 16 splits proj", false, 6);
  }
  {
    Cfg c;  // D = 20: no 16-byte rows, the pair again
    c.t = DType::F16;
    c.Hq = 4, c.Hkv = 2, c.D = 20, c.max_batch = 1, c.max_seq = 50, c.nf = 5, c.proj = 64;
    std::vector<Step> steps{{5, {0}}};
    add_decode(steps, {5}, 4);
    run_steps(c, steps, "fp16 d20 proj", false, 5);
  }
}
