// The attention fusion and the NaN guard of torch's SDPA decomposition (the dynamo exporter
// emits P' = Where(IsNaN(P), 0, P) between the Softmax and the second MatMul so that fully
// masked rows give zeros, as shardrt.Attention does itself): the guard is absorbed when it
// is exactly that, in its plain or negated form, and anything else stays unfused. Outputs
// are compared before and after the pipeline, with a fully masked row among them.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "ir/graph.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "runtime/reference_run.h"

using namespace shardrt;

namespace {

Tensor randn(Dims d, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

int count_op(const Graph& g, const std::string& op) {
  int k = 0;
  for (auto& n : g.nodes)
    if (!n->dead && n->op == op) ++k;
  return k;
}

Value* cst(Graph& g, const std::string& n, Tensor t) { return g.add_constant(n, std::move(t)); }
Value* sc(Graph& g, const std::string& n, float v) { return cst(g, n, Tensor::from_f32({}, {v})); }
Value* op1(Graph& g, const std::string& op, std::vector<Value*> ins, std::map<std::string, Attr> a = {}) {
  return g.add_node(op, op, std::move(ins), {op + "_out"}, std::move(a))->outputs[0];
}

constexpr int64_t B = 2, H = 2, S = 4, D = 8;

// How the guard (or a look-alike) is written after P = Softmax(S).
enum class Guard { Plain, ZerosTensor, Negated, FillOne, FillRank5, SwappedNoNot, IsNaNOfScores, FillNaN };

void build(Graph& g, Guard guard) {
  Value* q = g.add_input("q", DType::F32, {Dim::symbol("batch"), Dim(H), Dim(S), Dim(D)});
  Value* k = g.add_input("k", DType::F32, {Dim::symbol("batch"), Dim(H), Dim(S), Dim(D)});
  Value* v = g.add_input("v", DType::F32, {Dim::symbol("batch"), Dim(H), Dim(S), Dim(D)});
  Value* bm = g.add_input("bm", DType::Bool, {Dim::symbol("batch"), Dim(1), Dim(S), Dim(S)});
  Value* kt = op1(g, "Transpose", {k}, {{"perm", Attr::of(std::vector<int64_t>{0, 1, 3, 2})}});
  Value* madd = op1(g, "Where", {bm, sc(g, "zero", 0.f), sc(g, "ninf", -INFINITY)});
  Value* scores = op1(g, "Add", {op1(g, "Mul", {op1(g, "MatMul", {q, kt}), sc(g, "scale", 0.25f)}), madd});
  Value* p = op1(g, "Softmax", {scores}, {{"axis", Attr::of(int64_t(-1))}});
  Value* w = nullptr;
  switch (guard) {
    case Guard::Plain: w = op1(g, "Where", {op1(g, "IsNaN", {p}), sc(g, "z", 0.f), p}); break;
    case Guard::ZerosTensor:
      w = op1(g, "Where", {op1(g, "IsNaN", {p}), cst(g, "z", Tensor::from_f32({1, 1, 1, S}, std::vector<float>(S, 0.f))), p});
      break;
    case Guard::Negated: w = op1(g, "Where", {op1(g, "Not", {op1(g, "IsNaN", {p})}), p, sc(g, "z", 0.f)}); break;
    case Guard::FillOne: w = op1(g, "Where", {op1(g, "IsNaN", {p}), sc(g, "z", 1.f), p}); break;
    case Guard::FillRank5:  // one element, but broadcasts P up to rank 5
      w = op1(g, "Where", {op1(g, "IsNaN", {p}), cst(g, "z", Tensor::from_f32({1, 1, 1, 1, 1}, {0.f})), p});
      break;
    case Guard::SwappedNoNot: w = op1(g, "Where", {op1(g, "IsNaN", {p}), p, sc(g, "z", 0.f)}); break;
    case Guard::IsNaNOfScores: w = op1(g, "Where", {op1(g, "IsNaN", {scores}), sc(g, "z", 0.f), p}); break;
    case Guard::FillNaN: w = op1(g, "Where", {op1(g, "IsNaN", {p}), sc(g, "z", NAN), p}); break;
  }
  g.outputs = {op1(g, "MatMul", {w, v})};
}

// Causal bool mask; with `masked_row`, row 1 of batch 1 attends nothing (softmax gives NaN,
// the guard zeroes it).
Tensor causal_mask(bool masked_row) {
  Tensor bm(DType::Bool, {B, 1, S, S});
  for (int64_t i = 0; i < bm.numel(); ++i) bm.data<uint8_t>()[i] = (i % S) <= (i / S) % S;
  if (masked_row)
    for (int64_t j = 0; j < S; ++j) bm.data<uint8_t>()[S * S + S + j] = 0;
  return bm;
}

// Runs the default pipeline on one copy; returns {fused count, output before, output after}.
struct Result {
  int fused;
  Tensor before, after;
};
Result run_both(Guard guard, bool masked_row) {
  Graph ref, opt;
  build(ref, guard);
  build(opt, guard);
  infer_graph(ref);
  infer_graph(opt);
  PipelineOptions po;
  po.verify_each = true;
  default_pipeline(po).run(opt);
  opt.verify();
  std::map<std::string, Tensor> in = {{"q", randn({B, H, S, D}, 71)},
                                      {"k", randn({B, H, S, D}, 72)},
                                      {"v", randn({B, H, S, D}, 73)},
                                      {"bm", causal_mask(masked_row)}};
  auto a = run_graph_reference(ref, in);
  auto b = run_graph_reference(opt, in);
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(b.size(), 1u);
  return {count_op(opt, "shardrt.Attention"), a.begin()->second.cast(DType::F32), b.begin()->second.cast(DType::F32)};
}

void expect_same(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  // Softmax in fp32 either way, summed in a different order by the fused kernel: a few ulps
  // of the values (|v| ~ 1, sums of 4 terms).
  for (int64_t i = 0; i < a.numel(); ++i) {
    ASSERT_FALSE(std::isnan(a.get_f(i)) || std::isnan(b.get_f(i))) << what << " element " << i;
    EXPECT_NEAR(a.get_f(i), b.get_f(i), 1e-5) << what << " element " << i;
  }
}

}  // namespace

TEST(FuseAttentionNaNGuard, ExporterGuardIsAbsorbed) {
  for (Guard gd : {Guard::Plain, Guard::ZerosTensor, Guard::Negated}) {
    const std::string what = "guard form " + std::to_string(int(gd));
    Result r = run_both(gd, /*masked_row=*/true);
    EXPECT_EQ(r.fused, 1) << what;
    expect_same(r.before, r.after, what);
    // The fully masked row (batch 1, query 1) is zero both ways: exactly, no arithmetic there.
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) {
        int64_t idx = ((1 * H + h) * S + 1) * D + d;
        EXPECT_EQ(r.before.get_f(idx), 0.0) << what;
        EXPECT_EQ(r.after.get_f(idx), 0.0) << what;
      }
  }
}

TEST(FuseAttentionNaNGuard, LookAlikesStayUnfused) {
  // Fill not zero, fill growing the rank, branches swapped without Not, IsNaN of another
  // value, NaN fill: none of these is what shardrt.Attention computes. No masked row here, so
  // the unfused graphs give finite outputs to compare.
  for (Guard gd : {Guard::FillOne, Guard::FillRank5, Guard::SwappedNoNot, Guard::IsNaNOfScores, Guard::FillNaN}) {
    const std::string what = "look-alike " + std::to_string(int(gd));
    Result r = run_both(gd, /*masked_row=*/false);
    EXPECT_EQ(r.fused, 0) << what;
    expect_same(r.before, r.after, what);
  }
}
