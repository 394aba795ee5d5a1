// The fuse_norm_linear pass and the CPU kernel of shardrt.NormLinear: the default pipeline
// turns pre-norm blocks (norm → Linear, with and without the residual add before the norm)
// into one NormLinear, the residual stream keeps its readers, graph outputs keep their
// names, look-alikes stay unfused, and the fused graph gives the unfused graph's outputs
// exactly (the CPU kernel runs the same norm and Linear kernels). The norm and Linear
// kernels themselves are checked against references in their own tests.
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

Tensor randn_nl(Dims d, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

int count_live(const Graph& g, const std::string& op) {
  int k = 0;
  for (auto& n : g.nodes)
    if (!n->dead && n->op == op) ++k;
  return k;
}

enum class Norm { Layer, LayerNoBias, Rms };

struct BlockOpts {
  DType t = DType::F32;
  Norm norm = Norm::Layer;
  bool residual = true;     // s = x + h feeds the norm and the next residual add
  bool linear_bias = true;  // the Linear's own bias
  Activation act = Activation::Gelu;
};

// [residual: s = x + h] → norm → Linear(W [24, 16]) → [residual: out = s + proj(...)].
std::unique_ptr<Graph> prenorm_block(const BlockOpts& o) {
  Network net("prenorm");
  ITensor x = net.input("x", o.t, {-1, 16}, {"rows"});
  ITensor s = x;
  if (o.residual) s = net.add(x, net.input("h", o.t, {-1, 16}, {"rows"}), "resid");
  ITensor y;
  if (o.norm == Norm::Rms) {
    y = net.rms_norm(s, net.weight("w", randn_nl({16}, 3).cast(o.t)), 1e-6f, "rms");
  } else {
    ITensor b = o.norm == Norm::Layer ? net.weight("b", randn_nl({16}, 5).cast(o.t)) : ITensor{};
    y = net.layer_norm(s, net.weight("g", randn_nl({16}, 4).cast(o.t)), b, 1e-5f, "ln");
  }
  ITensor lb = o.linear_bias ? net.weight("lb", randn_nl({24}, 7).cast(o.t)) : ITensor{};
  ITensor z = net.linear(y, net.weight("lw", randn_nl({24, 16}, 6, 0.25f).cast(o.t)), lb, o.act, "fc");
  ITensor back = net.linear(z, net.weight("pw", randn_nl({16, 24}, 8, 0.25f).cast(o.t)), {}, Activation::None, "proj");
  net.output(o.residual ? net.add(s, back, "next") : back, "out");
  return net.release();
}

std::map<std::string, Tensor> block_inputs(DType t, int64_t rows) {
  return {{"x", randn_nl({rows, 16}, 11).cast(t)}, {"h", randn_nl({rows, 16}, 12, 2.f).cast(t)}};
}

std::string describe(const BlockOpts& o) {
  return std::string(dtype_name(o.t)) + (o.norm == Norm::Rms ? " rms" : o.norm == Norm::Layer ? " ln" : " ln-nobias") +
         (o.residual ? " residual" : "") + (o.linear_bias ? " bias" : "") + " act " + std::to_string(int(o.act));
}

}  // namespace

TEST(FuseNormLinear, DefaultPipelineFusesPreNormBlocksExactly) {
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (Norm norm : {Norm::Layer, Norm::LayerNoBias, Norm::Rms})
      for (bool residual : {true, false})
        for (bool lbias : {true, false}) {
          BlockOpts o{t, norm, residual, lbias, lbias ? Activation::Gelu : Activation::None};
          const std::string what = describe(o);
          auto ref = prenorm_block(o);
          auto opt = prenorm_block(o);
          default_pipeline(PipelineOptions{}).run(*opt);
          opt->verify();
          EXPECT_EQ(count_live(*opt, "shardrt.NormLinear"), 1) << what << "\n" << opt->print();
          EXPECT_EQ(count_live(*opt, "shardrt.Linear"), 1) << what << ": only the projection stays a Linear";
          for (const char* op : {"LayerNormalization", "shardrt.RMSNorm", "shardrt.AddLayerNorm", "shardrt.AddRMSNorm"})
            EXPECT_EQ(count_live(*opt, op), 0) << what << ": " << op << " left";
          for (int64_t rows : {1, 5}) {
            auto in = block_inputs(t, rows);
            if (!residual) in.erase("h");
            auto a = run_graph_reference(*ref, in);
            auto b = run_graph_reference(*opt, in);
            ASSERT_TRUE(b.count("out")) << what;
            const Tensor& ta = a.at("out");
            const Tensor& tb = b.at("out");
            ASSERT_EQ(ta.dims(), tb.dims()) << what;
            // The fused CPU kernel rounds the sum like Add and runs the same norm and Linear
            // kernels as the unfused graph: results are identical, any difference is a bug.
            for (int64_t i = 0; i < ta.numel(); ++i)
              ASSERT_EQ(ta.get_f(i), tb.get_f(i)) << what << " rows " << rows << " element " << i;
          }
        }
}

TEST(FuseNormLinear, RecordsWhatItFusedAndKeepsTheResidualStream) {
  auto g = prenorm_block(BlockOpts{});
  default_pipeline(PipelineOptions{}).run(*g);
  const Node* f = nullptr;
  for (auto& n : g->nodes)
    if (!n->dead && n->op == "shardrt.NormLinear") f = n.get();
  ASSERT_NE(f, nullptr) << g->print();
  EXPECT_NE(f->fused_from.find("AddLayerNorm"), std::string::npos) << f->fused_from;
  EXPECT_NE(f->fused_from.find("'fc'"), std::string::npos) << f->fused_from;
  EXPECT_EQ(f->attr_s("norm", ""), "layer");
  EXPECT_EQ(f->attr_s("activation", ""), "gelu");
  ASSERT_EQ(f->outputs.size(), 3u);
  // The Sum output feeds the next residual add; the Normed output is read by nobody.
  ASSERT_NE(f->out(2), nullptr);
  EXPECT_EQ(f->out(2)->users.size(), 1u);
  EXPECT_EQ(f->out(2)->users[0]->op, "Add");
  EXPECT_TRUE(f->out(1)->users.empty());
}

TEST(FuseNormLinear, LookAlikesStayUnfused) {
  // The norm's output read by a second node (here: also a graph output).
  {
    Network net("two_users");
    ITensor x = net.input("x", DType::F32, {2, 16});
    ITensor y = net.layer_norm(x, net.weight("g", randn_nl({16}, 2)), {}, 1e-5f, "ln");
    net.output(net.linear(y, net.weight("w", randn_nl({8, 16}, 3))), "z");
    net.output(y, "y");
    auto g = net.release();
    default_pipeline(PipelineOptions{}).run(*g);
    EXPECT_EQ(count_live(*g, "shardrt.NormLinear"), 0) << g->print();
    EXPECT_EQ(count_live(*g, "LayerNormalization"), 1);
  }
  // A cast between the norm and the Linear (the dtypes differ): nothing to fuse.
  {
    Network net("cast");
    ITensor x = net.input("x", DType::F32, {2, 16});
    ITensor y = net.cast(net.layer_norm(x, net.weight("g", randn_nl({16}, 2)), {}, 1e-5f, "ln"), DType::F16);
    net.output(net.linear(y, net.weight("w", randn_nl({8, 16}, 3).cast(DType::F16))), "z");
    auto g = net.release();
    default_pipeline(PipelineOptions{}).run(*g);
    EXPECT_EQ(count_live(*g, "shardrt.NormLinear"), 0) << g->print();
  }
  // The pass can be disabled by name.
  {
    auto g = prenorm_block(BlockOpts{});
    PipelineOptions po;
    po.disabled_passes = {"fuse_norm_linear"};
    default_pipeline(po).run(*g);
    EXPECT_EQ(count_live(*g, "shardrt.NormLinear"), 0);
    EXPECT_EQ(count_live(*g, "shardrt.AddLayerNorm"), 1);
  }
}

TEST(FuseNormLinear, SchemaRefusesMalformedNodes) {
  Tensor x = randn_nl({2, 16}, 1), g16 = randn_nl({16}, 2), w = randn_nl({8, 16}, 3), g8 = randn_nl({8}, 4);
  auto eval = [&](const std::map<std::string, Attr>& attrs, const std::vector<const Tensor*>& ins) {
    Node n;
    n.op = "shardrt.NormLinear";
    n.name = "nl";
    n.attrs = attrs;
    return cpu::eval_node(n, ins);
  };
  const std::map<std::string, Attr> rms = {{"norm", Attr::of(std::string("rms"))}, {"trans_b", Attr::of(int64_t(1))}};
  // rms with a NormBias
  EXPECT_THROW(eval(rms, {&x, nullptr, &g16, &g16, &w, nullptr}), GraphError);
  // Scale of the wrong length
  EXPECT_THROW(eval(rms, {&x, nullptr, &g8, nullptr, &w, nullptr}), GraphError);
  // W that disagrees with X on K (trans_b 0 reads W as [K, N] = [8, 16])
  EXPECT_THROW(eval({{"norm", Attr::of(std::string("rms"))}}, {&x, nullptr, &g16, nullptr, &w, nullptr}), GraphError);
  // fine: Y [2, 8], Normed [2, 16], no Sum without R
  auto out = eval(rms, {&x, nullptr, &g16, nullptr, &w, nullptr});
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].dims(), (Dims{2, 8}));
  EXPECT_EQ(out[1].dims(), (Dims{2, 16}));
  // with R: three outputs
  Tensor r = randn_nl({2, 16}, 5);
  EXPECT_EQ(eval(rms, {&x, &r, &g16, nullptr, &w, nullptr}).size(), 3u);
  Node bad;
  bad.op = "shardrt.NormLinear";
  bad.attrs = {{"norm", Attr::of(std::string("group"))}};
  EXPECT_NE(find_schema("shardrt.NormLinear")->validate(bad), "");
}

TEST(FuseNormLinear, LinearOutputThatIsAGraphOutputKeepsItsName) {
  Network net("out");
  ITensor x = net.input("x", DType::F32, {3, 16});
  ITensor y = net.rms_norm(x, net.weight("w", randn_nl({16}, 2)), 1e-6f, "rms");
  net.output(net.linear(y, net.weight("lw", randn_nl({8, 16}, 3)), {}, Activation::Silu, "fc"), "z");
  auto ref = net.release();
  Network net2("out");
  ITensor x2 = net2.input("x", DType::F32, {3, 16});
  ITensor y2 = net2.rms_norm(x2, net2.weight("w", randn_nl({16}, 2)), 1e-6f, "rms");
  net2.output(net2.linear(y2, net2.weight("lw", randn_nl({8, 16}, 3)), {}, Activation::Silu, "fc"), "z");
  auto g = net2.release();
  default_pipeline(PipelineOptions{}).run(*g);
  g->verify();
  EXPECT_EQ(count_live(*g, "shardrt.NormLinear"), 1) << g->print();
  ASSERT_EQ(g->outputs.size(), 1u);
  EXPECT_EQ(g->outputs[0]->name, "z");
  std::map<std::string, Tensor> in = {{"x", randn_nl({3, 16}, 9)}};
  auto a = run_graph_reference(*ref, in);
  auto b = run_graph_reference(*g, in);
  ASSERT_TRUE(b.count("z"));
  for (int64_t i = 0; i < a.at("z").numel(); ++i) ASSERT_EQ(a.at("z").get_f(i), b.at("z").get_f(i)) << i;
}
