// shardrt.CachedAttention on the CPU: prefill then decode steps through engines built with
// the Network API, each step compared with a plain-loop reference that keeps every row's
// whole history (only the real tokens) and attends over it in double precision; one case
// against numbers from PyTorch (HF Llama's rotary + SDPA). Also the op's checks, the
// passes around it (no folding, merging or dropping), autocast, inspect, save/load and the
// sharding pass's refusal.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <unistd.h>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "dist/plan.h"
#include "ir/graph.h"
#include "ir/op_schema.h"
#include "ir/ops/ops.h"
#include "op_test_util.h"
#include "passes/shard.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

// Every test runs with poisoned buffers: a kernel reading output memory it did not write
// sees NaNs.
class CachedAttention : public ::testing::Test {
 protected:
  ScopedEnv poison{"SHARDRT_POISON", "1"};
};

struct Geo {
  int64_t hq = 4, hkv = 2, d = 8;
  int64_t max_batch = 4, max_seq = 32;
  int64_t r = 0;  // rotary width (0: no InvFreq)
  bool inter = false;
  DType t = DType::F32;
  float scale = 0.f;
  int64_t width() const { return (hq + 2 * hkv) * d; }
};

std::vector<float> inv_freq_of(int64_t r) {
  std::vector<float> f;
  for (int64_t j = 0; j < r / 2; ++j) f.push_back(float(1.0 / std::pow(100.0, double(2 * j) / double(r))));
  return f;
}

// The network of one CachedAttention node (optionally with its inputs' profiles larger
// than the cache, to reach the kernel's own checks).
Network make_net(const Geo& g, const std::string& name = "attn") {
  Network net("cached_attention");
  ITensor qkv = net.input("qkv", g.t, {-1, -1, g.width()}, {"B", "S"});
  ITensor pl = net.input("past_lens", DType::I64, {-1}, {"B"});
  ITensor inv;
  if (g.r) inv = net.weight("inv_freq", Tensor::from_f32({g.r / 2}, inv_freq_of(g.r)));
  ITensor y = net.cached_attention(qkv, pl, inv, g.hq, g.hkv, g.d, g.max_batch, g.max_seq, 3, g.scale, g.inter, name);
  net.output(y, "out");
  return net;
}

BuildConfig profiles(const Geo& g, int64_t max_b, int64_t max_s) {
  BuildConfig cfg;
  cfg.shapes["qkv"] = {{1, 1, g.width()}, {1, 1, g.width()}, {max_b, max_s, g.width()}};
  cfg.shapes["past_lens"] = {{1}, {1}, {max_b}};
  return cfg;
}

Engine build(const Geo& g, int64_t max_b = -1, int64_t max_s = -1) {
  Network net = make_net(g);
  return build_engine(net, profiles(g, max_b < 0 ? g.max_batch : max_b, max_s < 0 ? g.max_seq : max_s));
}

double round_dt(DType t, double x) {
  switch (t) {
    case DType::F16: return half_to_float(float_to_half(float(x)));
    case DType::BF16: return bf16_to_float(float_to_bf16(float(x)));
    default: return double(float(x));
  }
}

// The definition, read literally: every row's history of (rotated) k and v per position,
// appended token by token; each real token's query attends over positions 0..p.
struct Ref {
  Geo g;
  std::vector<std::vector<std::vector<double>>> k, v;  // [row][position][Hkv·D]
  explicit Ref(const Geo& geo) : g(geo), k(size_t(geo.max_batch)), v(size_t(geo.max_batch)) {}

  void rotate(std::vector<double>& x, int64_t p) const {
    auto f = inv_freq_of(g.r);
    const int64_t half = g.r / 2;
    for (int64_t j = 0; j < half; ++j) {
      const double ang = double(float(p) * f[size_t(j)]);  // the angle is an fp32 product
      const double c = std::cos(ang), s = std::sin(ang);
      const size_t a = size_t(g.inter ? 2 * j : j), b = size_t(g.inter ? 2 * j + 1 : j + half);
      const double x0 = x[a], x1 = x[b];
      x[a] = x0 * c - x1 * s;
      x[b] = x1 * c + x0 * s;
    }
    for (auto& e : x) e = round_dt(g.t, e);  // rotated values are values of the dtype
  }

  // Checks `out` of a run on `qkv` with `past`; n[b] real tokens in row b (the rest is
  // right padding, neither recorded nor checked).
  void step(const Tensor& qkv, const std::vector<int64_t>& past, const std::vector<int64_t>& n, const Tensor& out,
            double tol, const std::string& what) {
    const int64_t B = qkv.dim(0), S = qkv.dim(1), D = g.d, W = g.width(), group = g.hq / g.hkv;
    ASSERT_EQ(out.dims(), (Dims{B, S, g.hq * D})) << what;
    auto in = [&](int64_t b, int64_t s, int64_t i) { return qkv.get_f((b * S + s) * W + i); };
    for (int64_t b = 0; b < B; ++b) {
      auto& kb = k[size_t(b)];
      auto& vb = v[size_t(b)];
      ASSERT_LE(past[size_t(b)], int64_t(kb.size())) << what << ": the test skipped positions";
      kb.resize(size_t(past[size_t(b)]));  // a rerun of a row from an earlier length
      vb.resize(size_t(past[size_t(b)]));
      for (int64_t s = 0; s < n[size_t(b)]; ++s) {
        const int64_t p = past[size_t(b)] + s;
        std::vector<double> kr(size_t(g.hkv * D)), vr(size_t(g.hkv * D));
        for (int64_t h = 0; h < g.hkv; ++h) {
          std::vector<double> x(static_cast<size_t>(D));
          for (int64_t d = 0; d < D; ++d) x[size_t(d)] = in(b, s, (g.hq + h) * D + d);
          if (g.r) rotate(x, p);
          for (int64_t d = 0; d < D; ++d) {
            kr[size_t(h * D + d)] = x[size_t(d)];
            vr[size_t(h * D + d)] = in(b, s, (g.hq + g.hkv + h) * D + d);
          }
        }
        kb.push_back(kr);
        vb.push_back(vr);
      }
      const double scale = g.scale != 0.f ? double(g.scale) : 1.0 / std::sqrt(double(D));
      for (int64_t s = 0; s < n[size_t(b)]; ++s) {
        const int64_t p = past[size_t(b)] + s;
        for (int64_t h = 0; h < g.hq; ++h) {
          const int64_t kvh = h / group;
          std::vector<double> q(static_cast<size_t>(D));
          for (int64_t d = 0; d < D; ++d) q[size_t(d)] = in(b, s, h * D + d);
          if (g.r) rotate(q, p);
          std::vector<double> sc(size_t(p + 1));
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j <= p; ++j) {
            double dot = 0;
            for (int64_t d = 0; d < D; ++d) dot += q[size_t(d)] * kb[size_t(j)][size_t(kvh * D + d)];
            sc[size_t(j)] = dot * scale;
            mx = std::max(mx, sc[size_t(j)]);
          }
          for (auto& e : sc) sum += (e = std::exp(e - mx));
          for (int64_t d = 0; d < D; ++d) {
            double acc = 0;
            for (int64_t j = 0; j <= p; ++j) acc += sc[size_t(j)] / sum * vb[size_t(j)][size_t(kvh * D + d)];
            const double got = out.get_f((b * S + s) * g.hq * D + h * D + d);
            ASSERT_NEAR(got, acc, tol) << what << ": row " << b << " token " << s << " (position " << p << ") head " << h
                                       << " dim " << d;
          }
        }
      }
    }
  }
};

// A context plus the reference and the rows' lengths.
struct Session {
  Geo g;
  ExecutionContext ctx;
  Ref ref;
  std::vector<int64_t> len;
  double tol;
  Session(const Geo& geo, const Engine& e, int64_t rows, double t)
      : g(geo), ctx(e), ref(geo), len(size_t(rows), 0), tol(t) {}

  // One run of S tokens per row; n[b] of them real (default all). Returns the output.
  Tensor step(int64_t S, std::vector<int64_t> n, unsigned seed, const std::string& what) {
    const int64_t B = int64_t(len.size());
    if (n.empty()) n.assign(size_t(B), S);
    Tensor qkv = optest::random_tensor(g.t, {B, S, g.width()}, -1.5, 1.5, seed);
    Tensor pl = Tensor::from_i64(len);
    Tensor out = ctx.run({{"qkv", qkv}, {"past_lens", pl}}).at("out");
    ref.step(qkv, len, n, out, tol, what);
    for (size_t b = 0; b < len.size(); ++b) len[b] += n[b];
    return out;
  }
};

// Prefill (rows of different real lengths, right-padded), decode steps, a chunk of two
// tokens per row, more decode steps.
void run_scenario(const Geo& g, double tol, const std::string& name) {
  Engine e = build(g);
  Session ss(g, e, 3, tol);  // 3 rows < max_batch 4
  ss.step(6, {6, 3, 1}, 1, name + " prefill");
  for (int i = 0; i < 3; ++i) ss.step(1, {}, 10 + unsigned(i), name + " decode " + std::to_string(i));
  ss.step(2, {2, 2, 1}, 20, name + " chunk");
  for (int i = 0; i < 3; ++i) ss.step(1, {}, 30 + unsigned(i), name + " decode after chunk " + std::to_string(i));
}

// fp32: both sides compute each output from ≤ 16 positions of O(1) values; fp32 dot
// products and sums of that length round at ~1e-6 (observed: below 1e-6).
constexpr double kTolF32 = 1e-5;
// fp16: the output is rounded to fp16 (half an ulp is 2^-11 at values in [1, 1.5], 4.9e-4),
// and a rotated q or k may round to the neighbouring fp16 value where the kernel's fp32
// rotation and the reference's double one straddle a rounding boundary (observed: 4.6e-4).
constexpr double kTolF16 = 1e-3;
// bf16: 8-bit mantissas: half an ulp of the output is 2^-8 at values in [1, 1.5] (3.9e-3);
// the same straddles with 8x coarser steps (observed: 3.6e-3).
constexpr double kTolBF16 = 8e-3;

}  // namespace

// PyTorch: HF Llama's apply_rotary_pos_emb on the first R = 4 of D = 6 dims (partial
// rotary, rotate-half), repeat_kv for GQA (4 q heads, 2 kv heads), SDPA causal in fp64 over
// the whole 5-token sequence; inv_freq = 1 / 100^(2j/R), angles as fp32 products. The
// engine sees it as a prefill of 3 tokens and two decode steps.
TEST_F(CachedAttention, MatchesTorchLlamaAttentionWithPartialRotary) {
  Geo g;
  g.hq = 4, g.hkv = 2, g.d = 6, g.r = 4, g.max_batch = 2, g.max_seq = 8;
  Engine e = build(g);
  ExecutionContext ctx(e);
  auto qkv_vals = [&](int64_t S, int step) {
    Tensor t(DType::F32, {1, S, g.width()});
    for (int64_t s = 0; s < S; ++s)
      for (int64_t i = 0; i < g.width(); ++i)
        t.data<float>()[s * g.width() + i] = float(std::sin(0.37 * double(i + 1) + 1.3 * double(s) + 2.1 * step));
    return t;
  };
  const std::vector<std::vector<float>> expected = {
      {0.9016758f, 0.9970241f, 0.9574299f, 0.7882521f, 0.5123880f, 0.1671746f, 0.9016758f, 0.9970241f,
       0.9574299f, 0.7882521f, 0.5123880f, 0.1671746f, -0.2006651f, -0.5413457f, -0.8087577f, -0.9667081f,
       -0.9938192f, -0.8864214f, -0.2006651f, -0.5413457f, -0.8087577f, -0.9667081f, -0.9938192f, -0.8864214f},
      {0.6829683f, 0.6091157f, 0.4528221f, 0.2352412f, -0.0141785f, -0.2616792f, 0.1877046f, -0.0305604f,
       -0.2446892f, -0.4257004f, -0.5490951f, -0.5981724f, -0.5846095f, -0.4692122f, -0.2903092f, -0.0721142f,
       0.1558411f, 0.3627040f, -0.4102810f, -0.4078010f, -0.3501270f, -0.2450649f, -0.1068345f, 0.0458554f},
      {0.5303747f, 0.4147676f, 0.2430237f, 0.0383876f, -0.1714440f, -0.3580715f, 0.2055800f, -0.0364482f,
       -0.2735433f, -0.4736155f, -0.6095862f, -0.6630522f, -0.6605909f, -0.5198276f, -0.3087080f, -0.0558062f,
       0.2046487f, 0.4374053f, -0.4855322f, -0.3566032f, -0.1794095f, 0.0220663f, 0.2205556f, 0.3891937f},
      {0.1854059f, -0.0049455f, -0.1946276f, -0.3579677f, -0.4728586f, -0.5237503f, -0.4699480f, -0.4651621f,
       -0.3974187f, -0.2758865f, -0.1170145f, 0.0576950f, 0.1977793f, 0.2895881f, 0.3422024f, 0.3485013f,
       0.3076321f, 0.2251264f, -0.2027298f, -0.1729967f, -0.1198493f, -0.0504809f, 0.0257199f, 0.0984396f}};
  // fp32 against fp64 on the same fp32 inputs, values printed to 7 decimals: 2e-6.
  auto check = [&](const Tensor& out, int64_t s, const std::vector<float>& exp, const std::string& what) {
    for (int64_t i = 0; i < 24; ++i)
      ASSERT_NEAR(out.get_f(s * 24 + i), exp[size_t(i)], 2e-6) << what << " feature " << i;
  };
  Tensor pre = ctx.run({{"qkv", qkv_vals(3, 0)}, {"past_lens", Tensor::from_i64({0})}}).at("out");
  check(pre, 0, expected[0], "prefill token 0");
  check(pre, 2, expected[1], "prefill token 2");
  Tensor d1 = ctx.run({{"qkv", qkv_vals(1, 1)}, {"past_lens", Tensor::from_i64({3})}}).at("out");
  check(d1, 0, expected[2], "decode at position 3");
  Tensor d2 = ctx.run({{"qkv", qkv_vals(1, 2)}, {"past_lens", Tensor::from_i64({4})}}).at("out");
  check(d2, 0, expected[3], "decode at position 4");
}

TEST_F(CachedAttention, GroupedQueryAndRotaryVariantsInFp32) {
  struct Case { int64_t hkv, r; bool inter; const char* name; };
  for (const Case& c : {Case{2, 0, false, "GQA 4/2, no rotary"}, Case{1, 0, false, "MQA 4/1, no rotary"},
                        Case{2, 8, false, "GQA 4/2, rotate-half R = D"}, Case{1, 4, false, "MQA 4/1, rotate-half R < D"},
                        Case{2, 8, true, "GQA 4/2, interleaved R = D"}, Case{4, 4, true, "MHA 4/4, interleaved R < D"}}) {
    Geo g;
    g.hkv = c.hkv, g.r = c.r, g.inter = c.inter;
    SCOPED_TRACE(c.name);
    run_scenario(g, kTolF32, c.name);
  }
}

TEST_F(CachedAttention, ExplicitScale) {
  Geo g;
  g.r = 4, g.scale = 0.7f;
  run_scenario(g, kTolF32, "scale 0.7");
}

TEST_F(CachedAttention, HalfPrecisionCaches) {
  for (DType t : {DType::F16, DType::BF16}) {
    Geo g;
    g.t = t, g.r = 4;
    SCOPED_TRACE(dtype_name(t));
    run_scenario(g, t == DType::F16 ? kTolF16 : kTolBF16, dtype_name(t));
    g.hkv = 1, g.r = 8, g.inter = true;
    run_scenario(g, t == DType::F16 ? kTolF16 : kTolBF16, std::string(dtype_name(t)) + " MQA interleaved");
  }
}

TEST_F(CachedAttention, ContextsOfOneEngineHaveTheirOwnCaches) {
  Geo g;
  g.r = 4;
  Engine e = build(g);
  Session a(g, e, 2, kTolF32), b(g, e, 2, kTolF32);
  a.step(4, {}, 1, "a prefill");
  b.step(2, {}, 2, "b prefill");  // writes the same slots and positions with other values
  for (int i = 0; i < 3; ++i) {
    a.step(1, {}, 10 + unsigned(i), "a decode");
    b.step(1, {}, 20 + unsigned(i), "b decode");
  }
}

TEST_F(CachedAttention, RerunningAStepAndRowsOfOtherLengthsAreHarmless) {
  Geo g;
  g.r = 8;
  Engine e = build(g);
  Session ss(g, e, 2, kTolF32);
  ss.step(5, {}, 1, "prefill");
  // The same inputs twice: the same writes, the same outputs.
  Tensor qkv = optest::random_tensor(g.t, {2, 1, g.width()}, -1.5, 1.5, 7);
  Tensor pl = Tensor::from_i64(ss.len);
  Tensor o1 = ss.ctx.run({{"qkv", qkv}, {"past_lens", pl}}).at("out");
  Tensor o2 = ss.ctx.run({{"qkv", qkv}, {"past_lens", pl}}).at("out");
  for (int64_t i = 0; i < o1.numel(); ++i) ASSERT_EQ(o1.get_f(i), o2.get_f(i)) << i;
  ss.ref.step(qkv, ss.len, {1, 1}, o2, kTolF32, "rerun");
  for (auto& l : ss.len) ++l;
  // A batch of one: row 0 only (row 1's cache stays as it was).
  Tensor q1 = optest::random_tensor(g.t, {1, 1, g.width()}, -1.5, 1.5, 8);
  Tensor out = ss.ctx.run({{"qkv", q1}, {"past_lens", Tensor::from_i64({ss.len[0]})}}).at("out");
  Ref r0 = ss.ref;
  r0.k.resize(1), r0.v.resize(1);
  r0.step(q1, {ss.len[0]}, {1}, out, kTolF32, "batch of one");
  ss.ref.k[0] = r0.k[0], ss.ref.v[0] = r0.v[0];
  ss.len[0] += 1;
  ss.step(1, {}, 9, "both rows again");
  // Row 1 restarts from an earlier length (a new sequence in its slot): 2 tokens from 0.
  Tensor q2 = optest::random_tensor(g.t, {2, 2, g.width()}, -1.5, 1.5, 10);
  Tensor o3 = ss.ctx.run({{"qkv", q2}, {"past_lens", Tensor::from_i64({ss.len[0], 0})}}).at("out");
  ss.ref.step(q2, {ss.len[0], 0}, {2, 2}, o3, kTolF32, "row 1 restarted");
}

TEST_F(CachedAttention, SaveAndLoadRoundTrip) {
  Geo g;
  g.hkv = 1, g.r = 4, g.inter = true, g.scale = 0.3f;
  Engine e = build(g);
  std::string path = (std::filesystem::temp_directory_path() / ("ca_" + std::to_string(getpid()) + ".shardrt")).string();
  e.save(path);
  Engine l = Engine::load(path);
  std::filesystem::remove(path);
  const Node* n = nullptr;
  for (auto& up : l.graph().nodes)
    if (up->op == "shardrt.CachedAttention") n = up.get();
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->attr_i("num_heads"), 4);
  EXPECT_EQ(n->attr_i("num_kv_heads"), 1);
  EXPECT_EQ(n->attr_i("head_dim"), 8);
  EXPECT_EQ(n->attr_i("max_batch"), 4);
  EXPECT_EQ(n->attr_i("max_seq"), 32);
  EXPECT_EQ(n->attr_i("layer"), 3);
  EXPECT_EQ(n->attr_i("rotary_interleaved"), 1);
  EXPECT_FLOAT_EQ(n->attr_f("scale", 0.f), 0.3f);
  ExecutionContext c1(e), c2(l);
  for (int i = 0; i < 4; ++i) {
    int64_t S = i == 0 ? 5 : 1, past = i == 0 ? 0 : 4 + i;
    Tensor qkv = optest::random_tensor(g.t, {2, S, g.width()}, -1.5, 1.5, unsigned(i));
    std::map<std::string, Tensor> ins{{"qkv", qkv}, {"past_lens", Tensor::from_i64({past, past})}};
    Tensor a = c1.run(ins).at("out"), b = c2.run(ins).at("out");
    for (int64_t k = 0; k < a.numel(); ++k) ASSERT_EQ(a.get_f(k), b.get_f(k)) << "step " << i;
  }
  EXPECT_NE(l.inspect(false).find("KV cache:"), std::string::npos);
}

TEST_F(CachedAttention, InspectReportsTheCache) {
  Geo g;
  Engine e = build(g);
  const size_t bytes = 2 * 4 * 2 * 32 * 8 * 4;  // 2 caches of [4, 2, 32, 8] fp32
  EXPECT_EQ(cached_attention_state_bytes(e.graph()), bytes);
  std::string text = e.inspect(false);
  EXPECT_NE(text.find("KV cache: 0.0164 MB per execution context (1 layer × 2 × [4, 2, 32, 8] fp32)"), std::string::npos)
      << text;
  std::string json = e.inspect(true);
  EXPECT_NE(json.find("\"kv_cache_bytes\": " + std::to_string(bytes)), std::string::npos) << json;
  // An engine without the op reports none.
  Network net;
  net.output(net.relu(net.input("x", DType::F32, {2})), "y");
  Engine plain = build_engine(net, {});
  EXPECT_EQ(plain.inspect(false).find("KV cache"), std::string::npos);
  EXPECT_NE(plain.inspect(true).find("\"kv_cache_bytes\": 0"), std::string::npos);
}

TEST_F(CachedAttention, RunTimeChecksNameNodeRowAndValues) {
  Geo g;
  Engine e = build(g, 6, 40);  // profiles wider than the cache: the op's own checks answer
  ExecutionContext ctx(e);
  auto run = [&](int64_t B, int64_t S, std::vector<int64_t> past) {
    Tensor qkv = optest::random_tensor(g.t, {B, S, g.width()}, -1, 1, 1);
    ctx.run({{"qkv", qkv}, {"past_lens", Tensor::from_i64(past)}});
  };
  auto expect_error = [&](auto fn, std::vector<std::string> parts) {
    try {
      fn();
      FAIL() << "no error; expected " << parts[0];
    } catch (const std::exception& ex) {
      std::string m = ex.what();
      EXPECT_NE(m.find("node 'attn' (shardrt.CachedAttention)"), std::string::npos) << m;
      for (auto& p : parts) EXPECT_NE(m.find(p), std::string::npos) << m;
    }
  };
  expect_error([&] { run(5, 1, {0, 0, 0, 0, 0}); }, {"batch 5 exceeds max_batch 4"});
  expect_error([&] { run(2, 3, {0, 30}); }, {"row 1: past length 30 + 3 new tokens exceeds max_seq 32"});
  expect_error([&] { run(2, 33, {0, 0}); }, {"33", "max_seq 32"});
  expect_error([&] { run(2, 1, {-1, 0}); }, {"row 0: past length -1 is negative"});
  // The context still works after refused runs (nothing was written).
  Session ss(g, e, 2, kTolF32);
  ss.step(3, {}, 5, "after errors");
  run(2, 2, {30, 30});  // exactly full
}

TEST_F(CachedAttention, KernelNeedsAnExecutionContext) {
  Node n = optest::make_node("shardrt.CachedAttention", {{"num_heads", Attr::of(int64_t(2))},
                                                          {"num_kv_heads", Attr::of(int64_t(1))},
                                                          {"head_dim", Attr::of(int64_t(2))},
                                                          {"max_batch", Attr::of(int64_t(1))},
                                                          {"max_seq", Attr::of(int64_t(4))}});
  Tensor qkv(DType::F32, {1, 1, 8});
  Tensor pl = Tensor::from_i64({0});
  try {
    cpu::eval_node(n, {&qkv, &pl});
    FAIL() << "evaluated without a context";
  } catch (const GraphError& ex) {
    EXPECT_NE(std::string(ex.what()).find("needs an execution context (it keeps a KV cache)"), std::string::npos)
        << ex.what();
  }
}

TEST_F(CachedAttention, ShapeRuleAndAttributeErrors) {
  Geo g;
  auto expect_error = [&](const std::function<void(Network&)>& fn, const std::string& part) {
    Network net;
    try {
      fn(net);
      ADD_FAILURE() << "no error; expected " << part;
    } catch (const Error& ex) {
      EXPECT_NE(std::string(ex.what()).find(part), std::string::npos) << ex.what();
    }
  };
  auto qkv = [&](Network& n, DType t = DType::F32, Dims d = {-1, -1, 64}) { return n.input("qkv", t, d, {"B", "S"}); };
  auto pl = [&](Network& n, DType t = DType::I64, Dims d = {-1}) { return n.input("pl", t, d, {"B"}); };
  auto inv = [&](Network& n, int64_t len, DType t = DType::F32) {
    return n.weight("inv", Tensor::from_f32({len}, std::vector<float>(size_t(len), 1.f)).cast(t));
  };
  // (4 + 2·2)·8 = 64 wide.
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::F32, {-1, -1, 60}), pl(n), {}, 4, 2, 8, 4, 32, 0); },
               "QKV's last dim is 60, expected (num_heads + 2·num_kv_heads)·head_dim = (4 + 2·2)·8 = 64");
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::I32), pl(n), {}, 4, 2, 8, 4, 32, 0); },
               "QKV has type int32, expected fp32, fp16 or bf16");
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::F32, {-1, 64}), pl(n), {}, 4, 2, 8, 4, 32, 0); },
               "QKV must be 3-D");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n, DType::I32), {}, 4, 2, 8, 4, 32, 0); },
               "PastLens has type int32, expected int64");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n, DType::I64, {-1, 1}), {}, 4, 2, 8, 4, 32, 0); },
               "PastLens must be 1-D [B]");
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::F32, {2, -1, 64}), pl(n, DType::I64, {3}), {}, 4, 2, 8, 4, 32, 0); },
               "PastLens has 3 rows, QKV's batch is 2");
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::F32, {6, -1, 64}), pl(n), {}, 4, 2, 8, 4, 32, 0); },
               "batch 6 exceeds max_batch 4");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), inv(n, 2, DType::F16), 4, 2, 8, 4, 32, 0); },
               "InvFreq has type fp16, expected fp32");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), inv(n, 5), 4, 2, 8, 4, 32, 0); },
               "rotary width 2·5 exceeds head_dim 8");
  expect_error([&](Network& n) { n.cached_attention(qkv(n, DType::F32, {-1, -1, 40}), pl(n), {}, 4, 3, 4, 4, 32, 0); },
               "num_heads (4) is not a multiple of num_kv_heads (3)");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), {}, 4, 2, 8, 0, 32, 0); }, "max_batch must be > 0, got 0");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), {}, 4, 2, 8, 4, -1, 0); }, "max_seq must be > 0, got -1");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), {}, 4, 2, 8, 4, 32, -2); }, "layer must be >= 0, got -2");
  expect_error([&](Network& n) { n.cached_attention(qkv(n), pl(n), {}, 4, 2, 8, 4, 32, 0, NAN); }, "scale must be finite");
  expect_error(
      [&](Network& n) {
        Network::Attrs a;
        a.i = {{"num_heads", 4}, {"num_kv_heads", 2}, {"head_dim", 8}, {"max_batch", 4}, {"max_seq", 32}, {"rotary_interleaved", 2}};
        n.op("shardrt.CachedAttention", {qkv(n), pl(n)}, a);
      },
      "rotary_interleaved must be 0 or 1, got 2");
  expect_error(
      [&](Network& n) {
        Network::Attrs a;
        a.i = {{"num_heads", 4}, {"num_kv_heads", 2}, {"max_batch", 4}, {"max_seq", 32}};
        n.op("shardrt.CachedAttention", {qkv(n), pl(n)}, a);
      },
      "needs attribute 'head_dim'");
  expect_error(
      [&](Network& n) {
        Network::Attrs a;
        a.i = {{"num_heads", 4}, {"num_kv_heads", 2}, {"head_dim", 8}, {"max_batch", 4}};
        a.f = {{"max_seq", 32.f}};
        n.op("shardrt.CachedAttention", {qkv(n), pl(n)}, a);
      },
      "attribute 'max_seq' must be an int");
  // Good: shapes as the definition gives them, symbolic dims kept.
  Network net;
  ITensor y = net.cached_attention(qkv(net), pl(net), inv(net, 4), 4, 2, 8, 4, 32, 0);
  EXPECT_EQ(net.shape_of(y), (std::vector<std::string>{"B", "S", "32"}));
  EXPECT_EQ(net.dtype_of(y), DType::F32);
}

// Nodes with the same inputs (and even the same attributes) keep separate caches: CSE must
// not merge them, constant folding must not evaluate one whose inputs are all constant, and
// the memory plan still covers the graph (the builder's sizing run skips the stateful op).
TEST_F(CachedAttention, PassesNeitherMergeNorFoldNorDrop) {
  Geo g;
  g.r = 4;
  Network net;
  ITensor qkv = net.input("qkv", g.t, {2, 3, g.width()});
  ITensor pl = net.input("past_lens", DType::I64, {2});
  ITensor inv = net.weight("inv_freq", Tensor::from_f32({2}, inv_freq_of(4)));
  ITensor a = net.cached_attention(qkv, pl, inv, g.hq, g.hkv, g.d, g.max_batch, g.max_seq, 0, 0.f, false, "l0");
  ITensor b = net.cached_attention(qkv, pl, inv, g.hq, g.hkv, g.d, g.max_batch, g.max_seq, 1, 0.f, false, "l1");
  ITensor c = net.cached_attention(qkv, pl, inv, g.hq, g.hkv, g.d, g.max_batch, g.max_seq, 1, 0.f, false, "l1_again");
  net.output(net.add(net.add(a, b), c), "sum");
  // All-constant inputs: a foldable-looking node.
  Tensor cq = optest::random_tensor(g.t, {1, 2, g.width()}, -1, 1, 3);
  ITensor k = net.cached_attention(net.weight("cq", cq), net.weight("cpl", Tensor::from_i64({0})), inv, g.hq, g.hkv, g.d,
                                   g.max_batch, g.max_seq, 2, 0.f, false, "const");
  net.output(k, "const_out");
  Engine e = build_engine(net, {});
  int count = 0;
  for (auto& n : e.graph().nodes) count += n->op == "shardrt.CachedAttention";
  EXPECT_EQ(count, 4) << e.inspect(false);
  EXPECT_GT(e.arena_bytes(), 0u) << "no memory plan: " << e.inspect(false);
  EXPECT_EQ(cached_attention_state_bytes(e.graph()), size_t(4 * 2 * 4 * 2 * 32 * 8 * 4));
  EXPECT_NE(e.inspect(false).find("4 layers × 2 × [4, 2, 32, 8] fp32"), std::string::npos);

  ExecutionContext ctx(e);
  Ref ref(g), cref(g);
  std::vector<int64_t> len{0, 0};
  for (int i = 0; i < 3; ++i) {
    Tensor x = optest::random_tensor(g.t, {2, 3, g.width()}, -1, 1, unsigned(40 + i));
    auto outs = ctx.run({{"qkv", x}, {"past_lens", Tensor::from_i64(len)}});
    // Three independent caches fed the same tokens: three times one node's output.
    Tensor third(DType::F32, outs.at("sum").dims());
    for (int64_t j = 0; j < third.numel(); ++j) third.set_f(j, outs.at("sum").get_f(j) / 3.0);
    ref.step(x, len, {3, 3}, third, 3 * kTolF32, "step " + std::to_string(i));
    // The constant node rewrites positions 0..1 each run: the same result every time.
    Ref r(g);
    r.step(cq, {0}, {2}, outs.at("const_out"), kTolF32, "constant node, step " + std::to_string(i));
    for (auto& l : len) l += 3;
  }
}

TEST_F(CachedAttention, AutocastKeepsInvFreqInFp32) {
  Geo g;
  g.r = 8;
  Network net = make_net(g);
  BuildConfig cfg = profiles(g, g.max_batch, g.max_seq);
  cfg.autocast = DType::F16;
  Engine e = build_engine(net, cfg);
  for (auto& n : e.graph().nodes)
    if (n->op == "shardrt.CachedAttention") {
      EXPECT_EQ(n->in(0)->dtype, DType::F16);
      EXPECT_EQ(n->in(2)->dtype, DType::F32);
    }
  // The engine's interface stays fp32; the reference sees the fp16-rounded inputs.
  Geo h = g;
  h.t = DType::F16;
  ExecutionContext ctx(e);
  Ref ref(h);
  std::vector<int64_t> len{0, 0};
  for (int i = 0; i < 4; ++i) {
    int64_t S = i == 0 ? 4 : 1;
    Tensor x = optest::random_tensor(DType::F16, {2, S, g.width()}, -1.5, 1.5, unsigned(i)).cast(DType::F32);
    Tensor out = ctx.run({{"qkv", x}, {"past_lens", Tensor::from_i64(len)}}).at("out");
    ref.step(x.cast(DType::F16), len, {S, S}, out, kTolF16, "autocast step " + std::to_string(i));
    for (auto& l : len) l += S;
  }
}

TEST_F(CachedAttention, ShardingPassRefusesIt) {
  Geo g;
  Network net = make_net(g);
  auto graph = net.release();
  dist::ShardingPlan plan;
  try {
    shard_graph(*graph, plan, 2, 0);
    FAIL() << "sharded a graph with a KV cache";
  } catch (const Error& ex) {
    std::string m = ex.what();
    EXPECT_NE(m.find("node 'attn' (shardrt.CachedAttention)"), std::string::npos) << m;
    EXPECT_NE(m.find("not sharded by a plan"), std::string::npos) << m;
  }
}
