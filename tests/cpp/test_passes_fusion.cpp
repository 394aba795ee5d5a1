// Fused transformer ops (shardrt.RMSNorm / Rotary / Attention) against plain loops, and the
// norm/rotary/attention fusion passes on hand-built graphs: each checks the rewrite happened
// (or, for look-alikes, did not) and that outputs are equal before and after.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "runtime/reference_run.h"

using namespace shardrt;

namespace {

Tensor randn(Dims d, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

Node make_node(const std::string& op, std::map<std::string, Attr> attrs = {}) {
  Node n;
  n.op = op;
  n.name = "n";
  n.attrs = std::move(attrs);
  return n;
}

void expect_close(const Tensor& a, const Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = std::fabs(a.get_f(i) - b.get_f(i)) / (1.0 + std::fabs(b.get_f(i)));
    if (!(d <= worst)) worst = d;  // NaN-aware
  }
  EXPECT_LE(worst, tol) << what;
}

int count_op(const Graph& g, const std::string& op) {
  int k = 0;
  for (auto& n : g.nodes)
    if (!n->dead && n->op == op) ++k;
  return k;
}

// Plain-loop attention in double: Q [B,Hq,Sq,D], K/V [B,Hkv,Skv,D]; mask [B?,H?,Sq,Skv]
// (expanded to full here by index clamping on size-1 dims).
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor* mask, double scale,
                       bool causal) {
  int64_t B = q.dim(0), Hq = q.dim(1), Sq = q.dim(2), D = q.dim(3), Hkv = k.dim(1), Skv = k.dim(2), Dv = v.dim(3);
  Tensor out(DType::F32, {B, Hq, Sq, Dv});
  auto midx = [&](int64_t b, int64_t h, int64_t i, int64_t j) {
    const Dims& md = mask->dims();
    Dims full(4 - md.size(), 1);
    full.insert(full.end(), md.begin(), md.end());
    int64_t idx[4] = {b, h, i, j};
    int64_t off = 0;
    for (int a = 0; a < 4; ++a) off = off * full[a] + (full[a] == 1 ? 0 : idx[a]);
    return off;
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < Hq; ++h) {
      int64_t kh = h / (Hq / Hkv);
      for (int64_t i = 0; i < Sq; ++i) {
        std::vector<double> s(static_cast<size_t>(Skv));
        double mx = -INFINITY;
        for (int64_t j = 0; j < Skv; ++j) {
          double acc = 0;
          for (int64_t d = 0; d < D; ++d)
            acc += q.get_f(((b * Hq + h) * Sq + i) * D + d) * k.get_f(((b * Hkv + kh) * Skv + j) * D + d);
          acc *= scale;
          if (causal && j > i + (Skv - Sq)) acc = -INFINITY;
          if (mask) {
            double m = mask->get_f(midx(b, h, i, j));
            if (mask->dtype() == DType::Bool) { if (m == 0) acc = -INFINITY; }
            else acc += m;
          }
          s[size_t(j)] = acc;
          mx = std::max(mx, acc);
        }
        double sum = 0;
        for (auto& x : s) { x = mx == -INFINITY ? 0 : std::exp(x - mx); sum += x; }
        for (int64_t d = 0; d < Dv; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < Skv; ++j)
            acc += (sum > 0 ? s[size_t(j)] / sum : 0) * v.get_f(((b * Hkv + kh) * Skv + j) * Dv + d);
          out.set_f(((b * Hq + h) * Sq + i) * Dv + d, acc);
        }
      }
    }
  return out;
}

Tensor run1(const Node& n, std::vector<const Tensor*> ins) { return cpu::eval_node(n, ins).at(0); }

}  // namespace

// ---------------------------------------------------------------- fused op kernels

TEST(FusedRMSNorm, MatchesLoopF32AndHalf) {
  for (Dims d : {Dims{2, 3, 8}, Dims{5, 64}, Dims{1, 1}}) {
    int64_t D = d.back();
    Tensor x = randn(d, 1), w = randn({D}, 2);
    Node n = make_node("shardrt.RMSNorm", {{"epsilon", Attr::of(1e-5f)}});
    Tensor want(DType::F32, d);
    for (int64_t r = 0; r < x.numel() / D; ++r) {
      double ss = 0;
      for (int64_t i = 0; i < D; ++i) ss += x.get_f(r * D + i) * x.get_f(r * D + i);
      double inv = 1 / std::sqrt(ss / D + 1e-5);
      for (int64_t i = 0; i < D; ++i) want.set_f(r * D + i, x.get_f(r * D + i) * inv * w.get_f(i));
    }
    // fp32 accumulation over <= 64 terms: a few ulps.
    expect_close(run1(n, {&x, &w}), want, 1e-5, "fp32 " + dims_str(d));
    for (DType t : {DType::F16, DType::BF16}) {
      Tensor xh = x.cast(t), wh = w.cast(t);
      // One rounding of the output to the half type (2^-11 / 2^-8 relative) plus input rounding.
      double tol = t == DType::F16 ? 4e-3 : 3e-2;
      expect_close(run1(n, {&xh, &wh}).cast(DType::F32), want, tol, std::string(dtype_name(t)));
    }
  }
}

TEST(FusedRotary, RotateHalfInterleavedAndPartial) {
  const int64_t B = 2, H = 3, S = 5, D = 8;
  Tensor x = randn({B, H, S, D}, 3);
  for (int64_t R : {D, int64_t(4)})
    for (int inter : {0, 1}) {
      Tensor c = randn({B, 1, S, R}, 4), s = randn({B, 1, S, R}, 5);
      Node n = make_node("shardrt.Rotary", {{"interleaved", Attr::of(int64_t(inter))}});
      Tensor got = run1(n, {&x, &c, &s});
      Tensor want(DType::F32, {B, H, S, D});
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t t = 0; t < S; ++t)
            for (int64_t i = 0; i < D; ++i) {
              auto X = [&](int64_t j) { return x.get_f(((b * H + h) * S + t) * D + j); };
              double val = X(i);
              if (i < R) {
                double rot = inter ? (i % 2 == 0 ? -X(i + 1) : X(i - 1)) : (i < R / 2 ? -X(i + R / 2) : X(i - R / 2));
                val = X(i) * c.get_f((b * S + t) * R + i) + rot * s.get_f((b * S + t) * R + i);
              }
              want.set_f(((b * H + h) * S + t) * D + i, val);
            }
      // Two fp32 products and a sum per element.
      expect_close(got, want, 1e-6, "R=" + std::to_string(R) + " inter=" + std::to_string(inter));
    }
}

TEST(FusedAttention, GQACausalMasksAndHalf) {
  struct Case { int64_t B, Hq, Hkv, Sq, Skv, D; int causal; int mask; };  // mask 0 none, 1 float, 2 bool
  for (Case cs : {Case{2, 4, 4, 6, 6, 8, 0, 0}, Case{2, 4, 2, 6, 6, 8, 1, 0}, Case{1, 8, 2, 3, 7, 16, 1, 1},
                  Case{2, 2, 1, 5, 5, 4, 0, 2}, Case{1, 2, 2, 1, 9, 8, 1, 0}, Case{1, 2, 1, 300, 300, 8, 1, 0}}) {
    Tensor q = randn({cs.B, cs.Hq, cs.Sq, cs.D}, 7), k = randn({cs.B, cs.Hkv, cs.Skv, cs.D}, 8),
           v = randn({cs.B, cs.Hkv, cs.Skv, cs.D}, 9);
    Tensor mask;
    if (cs.mask == 1) mask = randn({cs.B, 1, cs.Sq, cs.Skv}, 10);
    if (cs.mask == 2) {
      mask = Tensor(DType::Bool, {cs.B, 1, 1, cs.Skv});
      for (int64_t i = 0; i < mask.numel(); ++i) mask.data<uint8_t>()[i] = (i % 3) != 1;
    }
    const float scale = 0.3f;
    Node n = make_node("shardrt.Attention", {{"scale", Attr::of(scale)}, {"causal", Attr::of(int64_t(cs.causal))}});
    std::vector<const Tensor*> ins = {&q, &k, &v};
    if (cs.mask) ins.push_back(&mask);
    Tensor want = naive_attention(q, k, v, cs.mask ? &mask : nullptr, scale, cs.causal);
    std::string what = "B" + std::to_string(cs.B) + " Hq" + std::to_string(cs.Hq) + " Hkv" + std::to_string(cs.Hkv) +
                       " Sq" + std::to_string(cs.Sq) + " Skv" + std::to_string(cs.Skv);
    // fp32 GEMMs over D and Skv terms and an fp32 softmax: ~1e-6 relative, with margin.
    expect_close(run1(n, ins), want, 2e-5, what);
    Tensor qh = q.cast(DType::F16), kh = k.cast(DType::F16), vh = v.cast(DType::F16);
    std::vector<const Tensor*> hins = {&qh, &kh, &vh};
    if (cs.mask) hins.push_back(&mask);
    // fp16 inputs/outputs: input rounding (2^-11) spread through scores of size ~|q||k|.
    expect_close(run1(n, hins).cast(DType::F32), want, 1e-2, what + " fp16");
  }
}

TEST(FusedAttention, FullyMaskedRowsAreZeroAndDefaultScale) {
  Tensor q = randn({1, 1, 3, 4}, 1), k = randn({1, 1, 3, 4}, 2), v = randn({1, 1, 3, 4}, 3);
  Tensor mask(DType::Bool, {1, 1, 3, 3});
  for (int64_t j = 0; j < 3; ++j) mask.data<uint8_t>()[3 + j] = 0;  // row 1 sees nothing
  for (int64_t j : {0, 2, 6, 7, 8}) mask.data<uint8_t>()[j] = 1;
  Node n = make_node("shardrt.Attention");  // scale 0: 1/sqrt(D)
  Tensor got = run1(n, {&q, &k, &v, &mask});
  Tensor want = naive_attention(q, k, v, &mask, 0.5, false);
  expect_close(got, want, 2e-6, "default scale");  // fp32 sums of 3-4 terms
  for (int64_t d = 0; d < 4; ++d) EXPECT_EQ(got.get_f(4 + d), 0.0);
}

TEST(FusedAttention, SchemaRejectsBadShapes) {
  Graph g;
  Value* q = g.add_input("q", DType::F32, {Dim(1), Dim(3), Dim(4), Dim(8)});
  Value* k = g.add_input("k", DType::F32, {Dim(1), Dim(2), Dim(4), Dim(8)});
  Node* n = g.add_node("shardrt.Attention", "a", {q, k, k}, {"y"});
  EXPECT_THROW(infer_node(g, *n), GraphError);  // 3 query heads over 2 kv heads
}

// ---------------------------------------------------------------- passes

namespace {

using Builder = std::function<void(Graph&)>;

// Builds the graph twice, runs the default pipeline on one, compares outputs on `inputs`.
void check_fusion(const Builder& build, const std::map<std::string, Tensor>& inputs, const std::string& op,
                  int want_count, double tol, const std::string& what) {
  Graph ref, opt;
  build(ref);
  build(opt);
  infer_graph(ref);
  infer_graph(opt);
  PipelineOptions po;
  po.verify_each = true;
  default_pipeline(po).run(opt);
  opt.verify();
  EXPECT_EQ(count_op(opt, op), want_count) << what << "\n" << opt.print();
  auto a = run_graph_reference(ref, inputs);
  auto b = run_graph_reference(opt, inputs);
  for (auto& [name, t] : a) {
    ASSERT_TRUE(b.count(name)) << what << ": output " << name << " missing";
    expect_close(b.at(name).cast(DType::F32), t.cast(DType::F32), tol, what + " output " + name);
  }
}

Value* cst(Graph& g, const std::string& n, Tensor t) { return g.add_constant(n, std::move(t)); }
Value* sc(Graph& g, const std::string& n, float v) { return cst(g, n, Tensor::from_f32({}, {v})); }
Value* ints(Graph& g, const std::string& n, std::vector<int64_t> v) { return cst(g, n, Tensor::from_i64(v)); }
Value* op1(Graph& g, const std::string& op, std::vector<Value*> ins, std::map<std::string, Attr> a = {}) {
  return g.add_node(op, op, std::move(ins), {op + "_out"}, std::move(a))->outputs[0];
}

}  // namespace

TEST(FusionPasses, DecomposedLayerNorm) {
  for (bool recip : {false, true}) {
    auto build = [&](Graph& g) {
      Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(5), Dim(16)});
      Value* m = op1(g, "ReduceMean", {x, ints(g, "ax", {-1})});
      Value* d = op1(g, "Sub", {x, m});
      Value* sq = op1(g, "Pow", {d, sc(g, "two", 2.f)});
      Value* v = op1(g, "ReduceMean", {sq, ints(g, "ax2", {-1})});
      Value* s = op1(g, "Sqrt", {op1(g, "Add", {v, sc(g, "eps", 1e-5f)})});
      Value* n = recip ? op1(g, "Mul", {d, op1(g, "Reciprocal", {s})}) : op1(g, "Div", {d, s});
      Value* y = op1(g, "Mul", {n, cst(g, "gamma", randn({16}, 11))});
      y = op1(g, "Add", {cst(g, "beta", randn({16}, 12)), y});
      g.outputs = {y};
    };
    // LayerNormalization computes mean/variance in fp32 too: reassociation only.
    check_fusion(build, {{"x", randn({3, 5, 16}, 13)}}, "LayerNormalization", 1, 1e-5,
                 recip ? "layernorm reciprocal" : "layernorm div");
  }
}

TEST(FusionPasses, RMSNormLlamaWithCasts) {
  for (DType t : {DType::F32, DType::F16}) {
    auto build = [&](Graph& g) {
      Value* x = g.add_input("x", t, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(32)});
      Value* xc = op1(g, "Cast", {x}, {{"to", Attr::of(int64_t(1))}});
      Value* p = op1(g, "Pow", {xc, sc(g, "two", 2.f)});
      Value* m = op1(g, "ReduceMean", {p, ints(g, "ax", {-1})});
      Value* s = op1(g, "Sqrt", {op1(g, "Add", {m, sc(g, "eps", 1e-6f)})});
      Value* r = op1(g, "Div", {sc(g, "one", 1.f), s});
      Value* n = op1(g, "Mul", {xc, r});
      Value* nc = op1(g, "Cast", {n}, {{"to", Attr::of(int64_t(t == DType::F16 ? 10 : 1))}});
      Value* y = op1(g, "Mul", {cst(g, "w", randn({32}, 21).cast(t)), nc});
      g.outputs = {y};
    };
    // fp32: reassociation only; fp16: the fused op rounds once instead of twice (2^-11 each).
    check_fusion(build, {{"x", randn({2, 3, 32}, 22).cast(t)}}, "shardrt.RMSNorm", 1,
                 t == DType::F32 ? 1e-5 : 2e-3, std::string("rmsnorm ") + dtype_name(t));
  }
}

TEST(FusionPasses, RotaryRotateHalf) {
  auto build = [&](Graph& g) {
    Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(4), Dim::symbol("seq"), Dim(8)});
    Value* cos = g.add_input("cos", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(8)});
    Value* sin = g.add_input("sin", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(8)});
    Value* cu = op1(g, "Unsqueeze", {cos, ints(g, "one", {1})});
    Value* su = op1(g, "Unsqueeze", {sin, ints(g, "one2", {1})});
    Value* a = op1(g, "Mul", {x, cu});
    Value* x1 = op1(g, "Slice", {x, ints(g, "s0", {0}), ints(g, "e0", {4}), ints(g, "a0", {3}), ints(g, "st0", {1})});
    Value* x2 = op1(g, "Slice", {x, ints(g, "s1", {4}), ints(g, "e1", {INT64_MAX}), ints(g, "a1", {-1})});
    Value* rot = op1(g, "Concat", {op1(g, "Neg", {x2}), x1}, {{"axis", Attr::of(int64_t(-1))}});
    Value* y = op1(g, "Add", {a, op1(g, "Mul", {rot, su})});
    g.outputs = {y};
  };
  // Same products and sum as the decomposed graph.
  check_fusion(build, {{"x", randn({2, 4, 5, 8}, 31)}, {"cos", randn({2, 5, 8}, 32)}, {"sin", randn({2, 5, 8}, 33)}},
               "shardrt.Rotary", 1, 1e-6, "rotary");
}

TEST(FusionPasses, RotaryLookAlikeStaysUnfused) {
  // Slices at 3 instead of D/2: not a rotation.
  auto build = [&](Graph& g) {
    Value* x = g.add_input("x", DType::F32, {Dim(1), Dim(2), Dim(3), Dim(8)});
    Value* c = g.add_input("c", DType::F32, {Dim(3), Dim(8)});
    Value* x1 = op1(g, "Slice", {x, ints(g, "s0", {0}), ints(g, "e0", {3}), ints(g, "a0", {-1})});
    Value* x2 = op1(g, "Slice", {x, ints(g, "s1", {3}), ints(g, "e1", {8}), ints(g, "a1", {-1})});
    Value* rot = op1(g, "Concat", {op1(g, "Neg", {x2}), x1}, {{"axis", Attr::of(int64_t(-1))}});
    g.outputs = {op1(g, "Add", {op1(g, "Mul", {x, c}), op1(g, "Mul", {rot, c})})};
  };
  check_fusion(build, {{"x", randn({1, 2, 3, 8}, 1)}, {"c", randn({3, 8}, 2)}}, "shardrt.Rotary", 0, 0, "lookalike");
}

namespace {

// GPT-2 (TorchScript) style: q/k/v from [B,S,H,D]; K^T = Transpose(k, 0,2,3,1); scores*scale
// + additive mask; Softmax; no-op Cast; MatMul(V).
void build_gpt2_attn(Graph& g, bool with_mask) {
  Value* qs = g.add_input("q", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(4), Dim(8)});
  Value* ks = g.add_input("k", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(4), Dim(8)});
  Value* vs = g.add_input("v", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(4), Dim(8)});
  Value* q = op1(g, "Transpose", {qs}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 1, 3})}});
  Value* kt = op1(g, "Transpose", {ks}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 3, 1})}});
  Value* v = op1(g, "Transpose", {vs}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 1, 3})}});
  Value* s = op1(g, "Mul", {op1(g, "MatMul", {q, kt}), sc(g, "scale", 0.35355339f)});
  if (with_mask) {
    Value* m = g.add_input("mask", DType::F32, {Dim::symbol("batch"), Dim(1), Dim::symbol("seq"), Dim::symbol("seq")});
    s = op1(g, "Add", {s, m});
  }
  Value* p = op1(g, "Cast", {op1(g, "Softmax", {s}, {{"axis", Attr::of(int64_t(-1))}})}, {{"to", Attr::of(int64_t(1))}});
  g.outputs = {op1(g, "Transpose", {op1(g, "MatMul", {p, v})}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 1, 3})}})};
}

}  // namespace

TEST(FusionPasses, AttentionGPT2StyleWithMask) {
  Tensor mask = randn({2, 1, 6, 6}, 44);
  for (int64_t j = 0; j < 36; ++j) if (j % 7 == 3) mask.data<float>()[j] = -3.4028234663852886e+38f;
  // Reassociated scale and fp32 softmax: ~1e-6 relative.
  check_fusion([](Graph& g) { build_gpt2_attn(g, true); },
               {{"q", randn({2, 6, 4, 8}, 41)}, {"k", randn({2, 6, 4, 8}, 42)}, {"v", randn({2, 6, 4, 8}, 43)},
                {"mask", mask}},
               "shardrt.Attention", 1, 1e-5, "gpt2 attention");
  check_fusion([](Graph& g) { build_gpt2_attn(g, false); },
               {{"q", randn({2, 6, 4, 8}, 41)}, {"k", randn({2, 6, 4, 8}, 42)}, {"v", randn({2, 6, 4, 8}, 43)}},
               "shardrt.Attention", 1, 1e-5, "gpt2 attention, no mask");
}

TEST(FusionPasses, AttentionLlamaGQAWithConstantCausalWhere) {
  const int64_t S = 5;
  auto build = [&](Graph& g) {
    Value* q = g.add_input("q", DType::F32, {Dim(2), Dim(4), Dim(S), Dim(8)});
    Value* k = g.add_input("k", DType::F32, {Dim(2), Dim(2), Dim(S), Dim(8)});
    Value* v = g.add_input("v", DType::F32, {Dim(2), Dim(2), Dim(S), Dim(8)});
    auto repeat = [&](Value* x, const std::string& nm) {
      Value* u = op1(g, "Unsqueeze", {x, ints(g, nm + "ax", {2})});
      Value* e = op1(g, "Expand", {u, ints(g, nm + "shape", {2, 2, 2, S, 8})});
      return op1(g, "Reshape", {e, ints(g, nm + "tgt", {2, 4, S, 8})});
    };
    Value* kr = repeat(k, "k");
    Value* vr = repeat(v, "v");
    Value* kt = op1(g, "Transpose", {kr}, {{"perm", Attr::of(std::vector<int64_t>{0, 1, 3, 2})}});
    Value* s = op1(g, "Div", {op1(g, "MatMul", {q, kt}), sc(g, "sqrtd", std::sqrt(8.f))});
    Tensor tri(DType::Bool, {1, 1, S, S});
    for (int64_t i = 0; i < S; ++i)
      for (int64_t j = 0; j <= i; ++j) tri.data<uint8_t>()[i * S + j] = 1;
    s = op1(g, "Where", {cst(g, "causal", tri), s, sc(g, "ninf", -INFINITY)});
    Value* p = op1(g, "Softmax", {s}, {{"axis", Attr::of(int64_t(-1))}});
    g.outputs = {op1(g, "MatMul", {p, vr})};
  };
  Graph g;
  build(g);
  infer_graph(g);
  default_pipeline(PipelineOptions{}).run(g);
  ASSERT_EQ(count_op(g, "shardrt.Attention"), 1) << g.print();
  for (auto& n : g.nodes) {
    if (n->op != "shardrt.Attention") continue;
    EXPECT_EQ(n->attr_i("causal", 0), 1);
    EXPECT_EQ(n->inputs.size(), 3u);  // the constant mask became the attribute
    EXPECT_EQ(n->in(1)->name, "k");   // repeat_kv removed: K with 2 heads
    EXPECT_EQ(n->in(2)->name, "v");
  }
  EXPECT_EQ(count_op(g, "Expand"), 0);
  // Reassociated scale, fp32 softmax.
  check_fusion(build, {{"q", randn({2, 4, S, 8}, 51)}, {"k", randn({2, 2, S, 8}, 52)}, {"v", randn({2, 2, S, 8}, 53)}},
               "shardrt.Attention", 1, 1e-5, "llama gqa causal");
}

TEST(FusionPasses, AttentionDynamoSplitScaleAndReshapedKT) {
  // The dynamo exporter: Q*sqrt(s), K^T via Reshape([-1,S,D])/Transpose(0,2,1)/Reshape built
  // from Shape(K), times sqrt(s); mask from Where(bool, 0, -inf) added; IsNaN guard.
  auto build = [&](Graph& g) {
    Value* q = g.add_input("q", DType::F32, {Dim::symbol("batch"), Dim(2), Dim::symbol("seq"), Dim(8)});
    Value* k = g.add_input("k", DType::F32, {Dim::symbol("batch"), Dim(2), Dim::symbol("seq"), Dim(8)});
    Value* v = g.add_input("v", DType::F32, {Dim::symbol("batch"), Dim(2), Dim::symbol("seq"), Dim(8)});
    Value* bm = g.add_input("bm", DType::Bool, {Dim::symbol("batch"), Dim(1), Dim::symbol("seq"), Dim::symbol("seq")});
    Value* shp = op1(g, "Shape", {k});
    auto sl = [&](const std::string& nm, int64_t s, int64_t e) {
      return op1(g, "Slice", {shp, ints(g, nm + "s", {s}), ints(g, nm + "e", {e})});
    };
    Value* last = sl("l", -1, INT64_MAX);
    Value* pen = sl("p", -2, -1);
    Value* lead = sl("d", INT64_MIN, -2);
    Value* r1 = op1(g, "Reshape", {k, op1(g, "Concat", {ints(g, "m1", {-1}), pen, last}, {{"axis", Attr::of(int64_t(0))}})});
    Value* tr = op1(g, "Transpose", {r1}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 1})}});
    Value* kt = op1(g, "Reshape", {tr, op1(g, "Concat", {lead, last, pen}, {{"axis", Attr::of(int64_t(0))}})});
    float r = 0.5946035385131836f;  // 8^-1/4
    Value* qs = op1(g, "Mul", {q, sc(g, "rq", r)});
    Value* ks = op1(g, "Mul", {kt, sc(g, "rk", r)});
    Value* madd = op1(g, "Where", {bm, sc(g, "zero", 0.f), sc(g, "ninf", -INFINITY)});
    Value* s = op1(g, "Add", {op1(g, "MatMul", {qs, ks}), madd});
    Value* p = op1(g, "Softmax", {s}, {{"axis", Attr::of(int64_t(-1))}});
    Value* w = op1(g, "Where", {op1(g, "IsNaN", {p}), sc(g, "zero2", 0.f), p});
    g.outputs = {op1(g, "MatMul", {w, v})};
  };
  Tensor bm(DType::Bool, {2, 1, 4, 4});
  for (int64_t i = 0; i < bm.numel(); ++i) bm.data<uint8_t>()[i] = (i % 4) <= (i / 4) % 4;
  for (int64_t j = 0; j < 4; ++j) bm.data<uint8_t>()[16 + 4 + j] = 0;  // a fully masked row: zeros both ways
  // Split scale reassociated; fp32 softmax.
  check_fusion(build,
               {{"q", randn({2, 2, 4, 8}, 61)}, {"k", randn({2, 2, 4, 8}, 62)}, {"v", randn({2, 2, 4, 8}, 63)}, {"bm", bm}},
               "shardrt.Attention", 1, 1e-5, "dynamo attention");
}

TEST(FusionPasses, AttentionLookAlikesStayUnfused) {
  // Probabilities also returned (output_attentions): the softmax must stay.
  auto build = [&](Graph& g) {
    Value* q = g.add_input("q", DType::F32, {Dim(1), Dim(2), Dim(3), Dim(4)});
    Value* kt = g.add_input("kt", DType::F32, {Dim(1), Dim(2), Dim(4), Dim(3)});
    Value* v = g.add_input("v", DType::F32, {Dim(1), Dim(2), Dim(3), Dim(4)});
    Value* p = op1(g, "Softmax", {op1(g, "MatMul", {q, kt})}, {{"axis", Attr::of(int64_t(-1))}});
    g.outputs = {op1(g, "MatMul", {p, v}), p};
  };
  check_fusion(build, {{"q", randn({1, 2, 3, 4}, 1)}, {"kt", randn({1, 2, 4, 3}, 2)}, {"v", randn({1, 2, 3, 4}, 3)}},
               "shardrt.Attention", 0, 0, "probs returned");
  // A mask larger than the scores (broadcasting scores up): not the op's semantics.
  auto build2 = [&](Graph& g) {
    Value* q = g.add_input("q", DType::F32, {Dim(1), Dim(2), Dim(3), Dim(4)});
    Value* kt = g.add_input("kt", DType::F32, {Dim(1), Dim(2), Dim(4), Dim(3)});
    Value* v = g.add_input("v", DType::F32, {Dim(1), Dim(2), Dim(3), Dim(4)});
    Value* m = g.add_input("m", DType::F32, {Dim(3), Dim(2), Dim(3), Dim(3)});
    Value* p = op1(g, "Softmax", {op1(g, "Add", {op1(g, "MatMul", {q, kt}), m})}, {{"axis", Attr::of(int64_t(-1))}});
    g.outputs = {op1(g, "MatMul", {p, v})};
  };
  check_fusion(build2,
               {{"q", randn({1, 2, 3, 4}, 1)}, {"kt", randn({1, 2, 4, 3}, 2)}, {"v", randn({1, 2, 3, 4}, 3)},
                {"m", randn({3, 2, 3, 3}, 4)}},
               "shardrt.Attention", 0, 0, "mask broadcasts scores");
}
