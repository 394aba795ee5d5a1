// The fuse_add_norm pass and the CPU kernels of shardrt.AddLayerNorm / shardrt.AddRMSNorm:
// the pass fires on the residual pattern of Network-built graphs (Sum still feeding the
// next residual add, Sum as a graph output), leaves look-alikes alone, and the fused graph
// gives the unfused graph's outputs. The kernels are checked against plain double loops.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "runtime/reference_run.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

Tensor randn(Dims d, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
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

double worst_rel(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    double d = std::fabs(a.get_f(i) - b.get_f(i)) / (1.0 + std::fabs(b.get_f(i)));
    if (!(d <= worst)) worst = d;  // NaN-aware
  }
  return worst;
}

enum class Norm { Layer, LayerNoBias, Rms };

// x + h → norm → y; the residual stream goes on: out = s + y·Wm. Optionally s is an output.
std::unique_ptr<Graph> residual_block(DType t, Norm norm, bool sum_is_output) {
  Network net("res");
  ITensor x = net.input("x", t, {-1, 5, 16}, {"batch"});
  ITensor h = net.input("h", t, {-1, 5, 16}, {"batch"});
  ITensor s = net.add(x, h, "resid");
  ITensor y;
  if (norm == Norm::Rms) {
    y = net.rms_norm(s, net.weight("w", randn({16}, 3).cast(t)), 1e-6f, "rms");
  } else {
    ITensor b = norm == Norm::Layer ? net.weight("b", randn({16}, 5).cast(t)) : ITensor{};
    y = net.layer_norm(s, net.weight("g", randn({16}, 4).cast(t)), b, 1e-5f, "ln");
  }
  ITensor next = net.add(s, net.matmul(y, net.weight("wm", randn({16, 16}, 6, 0.25f).cast(t))), "next");
  net.output(next, "out");
  net.output(y, "y");
  if (sum_is_output) net.output(s, "sum");
  return net.release();
}

void run_pass_only(Graph& g) {
  PassManager pm;
  PipelineOptions po;
  po.verify_each = true;
  pm.set_options(po);
  pm.stage("t").add(make_fuse_add_norm_pass());
  pm.run(g);
  g.verify();
}

std::map<std::string, Tensor> block_inputs(DType t) {
  return {{"x", randn({3, 5, 16}, 11).cast(t)}, {"h", randn({3, 5, 16}, 12, 2.f).cast(t)}};
}

}  // namespace

TEST(FuseAddNorm, FiresOnResidualBlocksAndMatchesUnfused) {
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (Norm norm : {Norm::Layer, Norm::LayerNoBias, Norm::Rms})
      for (bool sum_out : {false, true}) {
        std::string what = std::string(dtype_name(t)) + (norm == Norm::Rms ? " rms" : norm == Norm::Layer ? " ln" : " ln-nobias") +
                           (sum_out ? " sum-output" : "");
        auto ref = residual_block(t, norm, sum_out);
        auto opt = residual_block(t, norm, sum_out);
        run_pass_only(*opt);
        const std::string op = norm == Norm::Rms ? "shardrt.AddRMSNorm" : "shardrt.AddLayerNorm";
        EXPECT_EQ(count_op(*opt, op), 1) << what << "\n" << opt->print();
        EXPECT_EQ(count_op(*opt, "Add"), 1) << what << ": only the next residual add stays";
        EXPECT_EQ(count_op(*opt, norm == Norm::Rms ? "shardrt.RMSNorm" : "LayerNormalization"), 0) << what;
        auto in = block_inputs(t);
        auto a = run_graph_reference(*ref, in);
        auto b = run_graph_reference(*opt, in);
        ASSERT_EQ(a.size(), b.size()) << what;
        for (auto& [name, ta] : a) {
          ASSERT_TRUE(b.count(name)) << what << ": output " << name << " lost its name";
          // The fused CPU kernel rounds the sum like Add and runs the same norm kernel:
          // results are identical, so any difference is a bug.
          EXPECT_EQ(worst_rel(b.at(name), ta), 0.0) << what << " output " << name;
        }
      }
}

TEST(FuseAddNorm, DefaultPipelineFuses) {
  auto g = residual_block(DType::F32, Norm::Layer, false);
  auto ref = residual_block(DType::F32, Norm::Layer, false);
  default_pipeline(PipelineOptions{}).run(*g);
  g->verify();
  EXPECT_EQ(count_op(*g, "shardrt.AddLayerNorm"), 1) << g->print();
  auto in = block_inputs(DType::F32);
  auto a = run_graph_reference(*ref, in);
  auto b = run_graph_reference(*g, in);
  // Other fusions (MatMul+Add → Linear) may reassociate fp32 sums of 16 terms: ~1e-6.
  for (auto& [name, ta] : a) EXPECT_LE(worst_rel(b.at(name), ta), 1e-5) << name;
}

TEST(FuseAddNorm, LookAlikesStayUnfused) {
  // A broadcasting add (a bias, not a residual) must not fuse: the fused op has no broadcast.
  {
    Network net("bias");
    ITensor x = net.input("x", DType::F32, {2, 5, 16});
    ITensor s = net.add(x, net.weight("bias", randn({16}, 1)));
    net.output(net.layer_norm(s, net.weight("g", randn({16}, 2)), {}, 1e-5f), "y");
    auto g = net.release();
    run_pass_only(*g);
    EXPECT_EQ(count_op(*g, "shardrt.AddLayerNorm"), 0);
  }
  // LayerNormalization over more than the last axis.
  {
    Network net("axis");
    ITensor x = net.input("x", DType::F32, {2, 5, 16});
    ITensor h = net.input("h", DType::F32, {2, 5, 16});
    ITensor s = net.add(x, h);
    Network::Attrs at;
    at.i["axis"] = 1;
    auto y = net.op("LayerNormalization", {s, net.weight("g", randn({5, 16}, 2))}, at);
    net.output(y[0], "y");
    auto g = net.release();
    run_pass_only(*g);
    EXPECT_EQ(count_op(*g, "shardrt.AddLayerNorm"), 0);
  }
  // Different symbolic dims: equal shapes are not provable.
  {
    Network net("sym");
    ITensor x = net.input("x", DType::F32, {-1, 16}, {"a"});
    ITensor h = net.input("h", DType::F32, {-1, 16}, {"b"});
    ITensor s = net.add(x, h);
    net.output(net.rms_norm(s, net.weight("w", randn({16}, 2))), "y");
    auto g = net.release();
    run_pass_only(*g);
    EXPECT_EQ(count_op(*g, "shardrt.AddRMSNorm"), 0);
  }
}

namespace {

// Plain double loops: s = a + b (rounded through fp32), then LayerNorm or RMSNorm of s.
void reference_add_norm(const Tensor& a, const Tensor& b, const Tensor& w, const Tensor* bias, bool rms, double eps,
                        Tensor& y, Tensor& s) {
  const int64_t D = a.dims().back(), rows = a.numel() / D;
  y = Tensor(DType::F32, a.dims());
  s = Tensor(DType::F32, a.dims());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> v(static_cast<size_t>(D));
    double mean = 0, ss = 0;
    for (int64_t i = 0; i < D; ++i) {
      v[size_t(i)] = double(float(a.get_f(r * D + i) + b.get_f(r * D + i)));
      s.set_f(r * D + i, v[size_t(i)]);
      mean += v[size_t(i)];
    }
    mean /= double(D);
    for (int64_t i = 0; i < D; ++i) ss += rms ? v[size_t(i)] * v[size_t(i)] : (v[size_t(i)] - mean) * (v[size_t(i)] - mean);
    const double inv = 1.0 / std::sqrt(ss / double(D) + eps);
    for (int64_t i = 0; i < D; ++i) {
      double o = (rms ? v[size_t(i)] : v[size_t(i)] - mean) * inv * w.get_f(i);
      if (bias) o += bias->get_f(i);
      y.set_f(r * D + i, o);
    }
  }
}

}  // namespace

TEST(FuseAddNorm, CpuKernelsMatchPlainLoops) {
  for (bool rms : {false, true})
    for (int64_t D : {1, 7, 64, 768}) {
      Tensor a = randn({3, D}, 41), b = randn({3, D}, 42, 3.f), w = randn({D}, 43), bias = randn({D}, 44);
      Node n;
      n.op = rms ? "shardrt.AddRMSNorm" : "shardrt.AddLayerNorm";
      n.name = "t";
      n.attrs["epsilon"] = Attr::of(1e-5f);
      std::vector<const Tensor*> ins = {&a, &b, &w};
      if (!rms) ins.push_back(&bias);
      auto out = cpu::eval_node(n, ins);
      ASSERT_EQ(out.size(), 2u);
      Tensor y, s;
      reference_add_norm(a, b, w, rms ? nullptr : &bias, rms, 1e-5, y, s);
      // Sum: one fp32 rounding in both. Y: fp32 accumulation over D <= 768 terms against a
      // double reference: ~sqrt(D)·2^-24 relative, far below 1e-5.
      EXPECT_EQ(worst_rel(out[1], s), 0.0) << "sum D=" << D;
      EXPECT_LE(worst_rel(out[0], y), 1e-5) << (rms ? "rms" : "ln") << " D=" << D;
    }
}
