// Sharding plans and the sharding pass, in one process: parsing and printing of placements
// and plan files, the pass's propagation and refusals, and numerical checks of sharded
// graphs run on threads that stand in for ranks (a shared-memory communicator defined
// here), compared with the unsharded engine.
#include <gtest/gtest.h>

#include <barrier>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>
#include <unistd.h>

#include "build/multi_rank.h"
#include "dist/collective_exec.h"
#include "dist/communicator.h"
#include "dist/mesh.h"
#include "dist/plan.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "passes/shard.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using dist::Placement;

namespace {

// ---- a communicator of threads: rank i is thread i; fp32 only (what these tests use) ----
struct Shared {
  explicit Shared(int n) : size(n), bar(n), sends(size_t(n)) {}
  int size;
  std::barrier<> bar;
  std::vector<const void*> sends;
};

class ThreadComm final : public dist::Communicator {
 public:
  ThreadComm(std::shared_ptr<Shared> s, int rank) : s_(std::move(s)), rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return s_->size; }
  std::string backend() const override { return "threads"; }
  std::string group_name() const override { return "world"; }
  int world_rank_of(int r) const override { return r; }
  void all_reduce(const void* send, void* recv, int64_t n, DType t, dist::ReduceOp, const dist::CallSite&) override {
    need_f32(t);
    std::vector<float> acc(size_t(n), 0.f);
    publish(send);
    for (int r = 0; r < size(); ++r)
      for (int64_t i = 0; i < n; ++i) acc[size_t(i)] += static_cast<const float*>(s_->sends[size_t(r)])[i];
    s_->bar.arrive_and_wait();
    std::memcpy(recv, acc.data(), size_t(n) * 4);
  }
  void all_gather(const void* send, void* recv, const std::vector<int64_t>& counts, DType t, const dist::CallSite&) override {
    size_t es = dtype_size(t);
    publish(send);
    std::vector<char> tmp;
    for (int r = 0; r < size(); ++r) {
      const char* p = static_cast<const char*>(s_->sends[size_t(r)]);
      tmp.insert(tmp.end(), p, p + counts[size_t(r)] * int64_t(es));
    }
    s_->bar.arrive_and_wait();
    std::memcpy(recv, tmp.data(), tmp.size());
  }
  using Communicator::all_gather;
  void reduce_scatter(const void* send, void* recv, const std::vector<int64_t>& counts, DType t, dist::ReduceOp,
                      const dist::CallSite&) override {
    need_f32(t);
    int64_t off = 0;
    for (int r = 0; r < rank_; ++r) off += counts[size_t(r)];
    std::vector<float> acc(size_t(counts[size_t(rank_)]), 0.f);
    publish(send);
    for (int r = 0; r < size(); ++r)
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += static_cast<const float*>(s_->sends[size_t(r)])[off + int64_t(i)];
    s_->bar.arrive_and_wait();
    std::memcpy(recv, acc.data(), acc.size() * 4);
  }
  void broadcast(void* buf, int64_t n, DType t, int root, const dist::CallSite&) override {
    publish(buf);
    std::vector<char> tmp(static_cast<const char*>(s_->sends[size_t(root)]),
                          static_cast<const char*>(s_->sends[size_t(root)]) + n * int64_t(dtype_size(t)));
    s_->bar.arrive_and_wait();
    std::memcpy(buf, tmp.data(), tmp.size());
  }
  void barrier(const dist::CallSite&) override { s_->bar.arrive_and_wait(); }
  std::unique_ptr<Communicator> split(int, int, const std::string&) override { throw Error("ThreadComm: no split"); }

 private:
  void publish(const void* p) {
    s_->sends[size_t(rank_)] = p;
    s_->bar.arrive_and_wait();
  }
  static void need_f32(DType t) { if (t != DType::F32) throw Error("ThreadComm reduces fp32 only"); }
  std::shared_ptr<Shared> s_;
  int rank_;
};

Tensor randn(Dims d, uint32_t seed, float scale = 1.f) {
  Tensor t(DType::F32, d);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

float max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dims(), b.dims());
  float m = 0;
  for (int64_t i = 0; i < std::min(a.numel(), b.numel()); ++i) m = std::max(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

// Rows [start, start+len) of a 2-D+ tensor along dim 0.
Tensor rows(const Tensor& t, int64_t start, int64_t len) {
  Dims d = t.dims();
  int64_t inner = t.numel() / d[0];
  d[0] = len;
  Tensor o(t.dtype(), d);
  std::memcpy(o.raw(), t.data<float>() + start * inner, size_t(len * inner) * 4);
  return o;
}

// The seed's MLP 10→3200→1600→500→100 (smaller widths keep the test fast; same structure).
Graph make_mlp(int64_t batch, std::vector<int64_t> widths) {
  Network net("mlp");
  ITensor x = net.input("x", DType::F32, {batch, widths[0]});
  const char* names[] = {"in_proj", "out_proj", "in_proj2", "out_proj2"};
  for (int l = 0; l < 4; ++l) {
    ITensor w = net.weight(std::string(names[l]) + ".weight", randn({widths[size_t(l) + 1], widths[size_t(l)]}, 10 + l, 0.3f));
    ITensor b = net.weight(std::string(names[l]) + ".bias", randn({widths[size_t(l) + 1]}, 20 + l, 0.1f));
    x = net.linear(x, w, b, l < 3 ? Activation::Relu : Activation::None, names[l]);
  }
  net.output(x, "y");
  return std::move(*net.release());
}

dist::ShardingPlan mlp_plan() {
  return dist::parse_plan_json(R"J({"tp_plan": {
      "in_proj":   {"style": "colwise", "input_layouts": "Shard(0)"},
      "out_proj":  {"style": "rowwise", "output_layouts": "Shard(0)"},
      "in_proj2":  {"style": "colwise", "input_layouts": "Shard(0)"},
      "out_proj2": {"style": "rowwise", "output_layouts": "Shard(0)"}}})J",
                               "mlp_plan.json");
}

// Builds rank r's engine of a tp-way sharded graph (fused first, as the multi-rank build does).
Engine build_rank(const std::function<Graph()>& make, const dist::ShardingPlan& plan, int tp, int r, ShardResult* out = nullptr) {
  Graph g = make();
  infer_graph(g);
  // As the tensor-parallel build does (build/multi_rank.cpp): the fusions into ops that the
  // sharding rules do not know wait until after sharding.
  PipelineOptions po;
  po.disabled_passes = {"fuse_add_norm", "fuse_norm_linear", "fuse_attention_linear"};
  PassManager pm = default_pipeline(po);
  pm.run(g);
  g.sort();
  g.compact();
  infer_graph(g);
  dist::ScopedGroupShapes gs(1, tp, r);
  ShardResult sr = shard_graph(g, plan, tp, r);
  if (out) *out = sr;
  return build_engine_from_graph(std::move(g), {});
}

// Runs the tp engines on threads; feeds[r] are rank r's inputs.
std::vector<std::map<std::string, Tensor>> run_ranks(std::vector<Engine>& engines, const std::vector<std::map<std::string, Tensor>>& feeds) {
  int n = int(engines.size());
  auto shared = std::make_shared<Shared>(n);
  std::vector<std::map<std::string, Tensor>> outs{size_t(n)};
  std::vector<std::string> errors{size_t(n)};
  std::vector<std::thread> th;
  for (int r = 0; r < n; ++r)
    th.emplace_back([&, r] {
      try {
        ThreadComm c(shared, r);
        ExecutionContext ctx(engines[size_t(r)], c);
        outs[size_t(r)] = ctx.run(feeds[size_t(r)]);
      } catch (const std::exception& e) {
        errors[size_t(r)] = e.what();
      }
    });
  for (auto& t : th) t.join();
  for (auto& e : errors) EXPECT_EQ(e, "");
  return outs;
}

int count_op(const Engine& e, const std::string& op) {
  int c = 0;
  for (auto& n : e.graph().nodes) c += n->op == op;
  return c;
}

}  // namespace

TEST(ShardPlan, PlacementsParseAndPrint) {
  EXPECT_EQ(Placement::shard(1).str(), "Shard(1)");
  EXPECT_EQ(Placement::replicate().str(), "Replicate");
  EXPECT_EQ(Placement::partial().str(), "Partial(sum)");
  EXPECT_EQ(dist::parse_placement("Shard(-1)")->dim, -1);
  EXPECT_EQ(dist::parse_placement(" shard( 2 ) ")->dim, 2);
  EXPECT_EQ(dist::parse_placement("Shard(dim=0)")->dim, 0);
  EXPECT_TRUE(dist::parse_placement("Replicate()")->is_replicate());
  EXPECT_TRUE(dist::parse_placement("Partial")->is_partial());
  EXPECT_EQ(dist::parse_placement("Partial(max)")->reduce, "max");
  EXPECT_FALSE(dist::parse_placement("Shard(x)"));
  EXPECT_FALSE(dist::parse_placement("Shard()"));
  EXPECT_FALSE(dist::parse_placement("Sharded(1)"));
  EXPECT_EQ(Placement::shard(-1).normalized(3), Placement::shard(2));
}

TEST(ShardPlan, GlobMatch) {
  EXPECT_TRUE(dist::glob_match("*.attn.c_attn", "transformer.h.0.attn.c_attn"));
  EXPECT_TRUE(dist::glob_match("model.layers.*.self_attn.q_proj", "model.layers.11.self_attn.q_proj"));
  EXPECT_FALSE(dist::glob_match("model.layers.*.self_attn.q_proj", "model.layers.1.self_attn.k_proj"));
  EXPECT_TRUE(dist::glob_match("in_proj?", "in_proj2"));
  EXPECT_FALSE(dist::glob_match("in_proj", "in_proj2"));
  EXPECT_TRUE(dist::glob_match("*", ""));
}

TEST(ShardPlan, ParsesAndRoundTrips) {
  auto p = mlp_plan();
  ASSERT_EQ(p.entries.size(), 4u);
  EXPECT_EQ(p.entries[0].pattern, "in_proj");  // file order kept: first match wins
  EXPECT_EQ(p.entries[0].str(), "colwise(input_layouts=Shard(0))");
  EXPECT_EQ(p.entries[1].output_or_default(), Placement::shard(0));
  EXPECT_EQ(p.entries[0].output_or_default(), Placement::shard(-1));  // PyTorch's colwise default
  EXPECT_EQ(p.entries[1].input_or_default(), Placement::shard(-1));   // rowwise default
  auto q = dist::parse_plan_json(p.to_json(), "again");
  EXPECT_EQ(q.str(), p.str());
  auto s = dist::parse_plan_json(R"J({"tp_plan": {"*.norm": {"style": "sequence", "sequence_dim": 1},
      "x": {"style": "prepare_input", "input_layouts": ["Shard(0)"], "desired_input_layouts": "Replicate"},
      "*.up": "colwise"}})J", "f.json");
  EXPECT_EQ(s.str(), "  *.norm: sequence(sequence_dim=1)\n"
                     "  x: prepare_input(input_layouts=Shard(0), desired_input_layouts=Replicate)\n"
                     "  *.up: colwise()\n");
  EXPECT_EQ(s.match({"a.b.up"}), &s.entries[2]);
  EXPECT_EQ(s.match({"nothing"}), nullptr);
}

TEST(ShardPlan, ParseErrorsNameFileLineAndKey) {
  auto msg = [](const std::string& text) {
    try {
      dist::parse_plan_json(text, "plan.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = msg("{\n  \"tp_plan\": {\n    \"a\": \"colwise\",\n  }\n}");
  EXPECT_NE(m.find("plan.json"), std::string::npos) << m;
  EXPECT_NE(m.find("line 4"), std::string::npos) << m;
  m = msg(R"J({"tp_plan": {"q": {"style": "colwize"}}})J");
  EXPECT_NE(m.find("tp_plan['q'].style"), std::string::npos) << m;
  EXPECT_NE(m.find("colwize"), std::string::npos) << m;
  m = msg(R"J({"tp_plan": {"q": {"style": "colwise", "output_layouts": "Shard(a)"}}})J");
  EXPECT_NE(m.find("tp_plan['q'].output_layouts"), std::string::npos) << m;
  m = msg(R"J({"tp_plan": {"q": {"style": "colwise", "sequence_dim": 1}}})J");
  EXPECT_NE(m.find("tp_plan['q'].sequence_dim"), std::string::npos) << m;
  m = msg(R"J({"plan": {}})J");
  EXPECT_NE(m.find("tp_plan"), std::string::npos) << m;
  m = msg(R"J({"tp_plan": {"x": {"style": "prepare_input"}}})J");
  EXPECT_NE(m.find("prepare_input needs"), std::string::npos) << m;
}

TEST(ShardPass, MlpStructureAndPlacements) {
  std::vector<int64_t> w = {10, 64, 32, 16, 8};
  ShardResult sr;
  Engine e = build_rank([&] { return make_mlp(20, w); }, mlp_plan(), 2, 1, &sr);
  // All-gather in front of each column-wise layer, reduce-scatter after each row-wise one.
  EXPECT_EQ(count_op(e, "shardrt.AllGather"), 2);
  EXPECT_EQ(count_op(e, "shardrt.ReduceScatter"), 2);
  EXPECT_EQ(count_op(e, "shardrt.AllReduce"), 0);
  EXPECT_EQ(sr.inputs.at("x"), Placement::shard(0));
  EXPECT_EQ(sr.outputs.at("y"), Placement::shard(0));
  ASSERT_EQ(e.inputs()[0].dims, (std::vector<std::string>{"10", "10"}));  // rank 1's rows of 20
  EXPECT_EQ(e.outputs()[0].dims, (std::vector<std::string>{"10", "8"}));
  EXPECT_EQ(sr.collectives.size(), 4u);
  EXPECT_NE(sr.report().find("ReduceScatter"), std::string::npos);
  // Weights: in_proj [64,10] → [32,10] per rank; out_proj [32,64] → [32,32].
  size_t wbytes = 0;
  for (auto& v : e.graph().values) if (v->constant) wbytes += v->constant->nbytes();
  EXPECT_LT(wbytes, size_t((64 * 10 + 32 * 64 + 16 * 32 + 8 * 16) * 4));
}

TEST(ShardPass, MlpMatchesSingleRankOnThreads) {
  std::vector<int64_t> w = {10, 64, 32, 16, 8};
  for (int tp : {2, 4}) {
    for (int64_t batch : {20, 7}) {  // 7: uneven torch.chunk pieces along the batch
      auto make = [&] { return make_mlp(batch, w); };
      Engine ref = build_engine_from_graph(make(), {});
      Tensor x = randn({batch, 10}, 5);
      Tensor y = ExecutionContext(ref).run({{"x", x}}).at("y");
      std::vector<Engine> es;
      std::vector<std::map<std::string, Tensor>> feeds;
      auto sizes = std::vector<int64_t>();
      int64_t cs = (batch + tp - 1) / tp, start = 0;
      for (int r = 0; r < tp; ++r) {
        es.push_back(build_rank(make, mlp_plan(), tp, r));
        int64_t len = std::max<int64_t>(0, std::min(cs, batch - start));
        feeds.push_back({{"x", rows(x, start, len)}});
        sizes.push_back(len);
        start += len;
      }
      auto outs = run_ranks(es, feeds);
      start = 0;
      for (int r = 0; r < tp; ++r) {
        // fp32 sums of ≤64 terms regrouped across ranks: a few ulps of values of size ~1.
        EXPECT_LT(max_abs_diff(outs[size_t(r)].at("y"), rows(y, start, sizes[size_t(r)])), 1e-4f) << "tp " << tp << " rank " << r;
        start += sizes[size_t(r)];
      }
    }
  }
}

namespace {

// An attention block with Llama-3 rotary embeddings: x [B,S,E] → q/k/v projections →
// [B,H,S,D] → rotary on q, k → attention → o projection.
Graph make_attention(int64_t B, int64_t S, int64_t H, int64_t HKV, int64_t D, bool causal) {
  Network net("attn");
  int64_t E = H * D;
  ITensor x = net.input("x", DType::F32, {B, S, E});
  auto proj = [&](const std::string& n, int64_t out) {
    ITensor w = net.weight(n + ".weight", randn({out, E}, uint32_t(std::hash<std::string>{}(n) % 1000), 0.2f));
    return net.linear(x, w, {}, Activation::None, n);
  };
  auto heads = [&](ITensor t, int64_t h, const std::string& n) {
    return net.transpose(net.reshape(t, {B, S, h, D}, n + "/split_heads"), {0, 2, 1, 3}, n + "/to_bhsd");
  };
  ITensor q = heads(proj("q_proj", H * D), H, "q"), k = heads(proj("k_proj", HKV * D), HKV, "k"),
          v = heads(proj("v_proj", HKV * D), HKV, "v");
  // Llama-3 frequencies (rope_theta 500000), positions 0..S-1, rotate-half layout.
  Tensor cos(DType::F32, {1, 1, S, D}), sin(DType::F32, {1, 1, S, D});
  for (int64_t s = 0; s < S; ++s)
    for (int64_t i = 0; i < D / 2; ++i) {
      double f = std::pow(500000.0, -2.0 * double(i) / double(D)) * double(s);
      cos.data<float>()[s * D + i] = cos.data<float>()[s * D + i + D / 2] = float(std::cos(f));
      sin.data<float>()[s * D + i] = sin.data<float>()[s * D + i + D / 2] = float(std::sin(f));
    }
  ITensor c = net.weight("rope.cos", cos), sn = net.weight("rope.sin", sin);
  q = net.rotary(q, c, sn, false, "q_rope");
  k = net.rotary(k, c, sn, false, "k_rope");
  ITensor a = net.attention(q, k, v, {}, causal, 0.f, "attn");
  ITensor m = net.reshape(net.transpose(a, {0, 2, 1, 3}, "merge/t"), {B, S, E}, "merge_heads");
  ITensor o = net.linear(m, net.weight("o_proj.weight", randn({E, E}, 77, 0.2f)), {}, Activation::None, "o_proj");
  net.output(o, "y");
  return std::move(*net.release());
}

dist::ShardingPlan attn_plan(bool kv) {
  std::string s = R"J({"tp_plan": {"q_proj": "colwise", )J";
  if (kv) s += R"J("k_proj": "colwise", "v_proj": "colwise", )J";
  s += R"J("o_proj": "rowwise"}})J";
  return dist::parse_plan_json(s, "attn_plan.json");
}

void check_attention(int64_t H, int64_t HKV, int tp, bool shard_kv, bool use_auto) {
  auto make = [&] { return make_attention(2, 16, H, HKV, 8, true); };
  Engine ref = build_engine_from_graph(make(), {});
  Tensor x = randn({2, 16, H * 8}, 3);
  Tensor y = ExecutionContext(ref).run({{"x", x}}).at("y");
  dist::ShardingPlan plan = attn_plan(shard_kv);
  if (use_auto) {
    Graph g = make();
    infer_graph(g);
    PassManager pm = default_pipeline({});
    pm.run(g);
    std::string rep;
    plan = dist::auto_plan(g, tp, rep);
    EXPECT_NE(rep.find("q_proj"), std::string::npos) << rep;
    EXPECT_NE(rep.find("o_proj"), std::string::npos) << rep;
  }
  std::vector<Engine> es;
  std::vector<std::map<std::string, Tensor>> feeds;
  for (int r = 0; r < tp; ++r) {
    es.push_back(build_rank(make, plan, tp, r));
    feeds.push_back({{"x", x}});
    EXPECT_EQ(count_op(es.back(), "shardrt.AllReduce"), 1);  // one, after the row-wise o_proj
  }
  auto outs = run_ranks(es, feeds);
  for (int r = 0; r < tp; ++r)
    // fp32 attention + projections of width ≤ 64 split over ranks: sums regrouped, ~1e-6 relative.
    EXPECT_LT(max_abs_diff(outs[size_t(r)].at("y"), y), 2e-4f) << "H " << H << " HKV " << HKV << " tp " << tp << " rank " << r;
}

}  // namespace

TEST(ShardPass, AttentionWithRotaryMatchesSingleRank) {
  check_attention(4, 4, 2, true, false);
  check_attention(4, 2, 2, true, false);  // GQA, kv heads split
}

TEST(ShardPass, GqaWithReplicatedKvWhenKvHeadsFewerThanRanks) {
  check_attention(4, 2, 4, false, false);  // each rank slices the one kv head it needs
  check_attention(4, 2, 4, false, true);   // auto plan chooses the same
  check_attention(8, 2, 4, false, true);
}

TEST(ShardPass, RefusesImpossiblePlans) {
  auto msg = [](const std::function<Graph()>& make, const dist::ShardingPlan& p, int tp) {
    try {
      build_rank(make, p, tp, 0);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // 6 heads over tp=4.
  std::string m = msg([] { return make_attention(1, 8, 6, 6, 8, false); }, attn_plan(true), 4);
  EXPECT_NE(m.find("q_proj"), std::string::npos) << m;
  EXPECT_NE(m.find("48"), std::string::npos) << m;  // 6 heads × 8 features
  EXPECT_NE(m.find("tp=4"), std::string::npos) << m;
  // kv heads (2) split over 4 ranks.
  m = msg([] { return make_attention(1, 8, 4, 2, 8, false); }, attn_plan(true), 4);
  EXPECT_NE(m.find("k_proj"), std::string::npos) << m;
  EXPECT_NE(m.find("tp=4"), std::string::npos) << m;
  // Features of the MLP's 10-wide output layer not divisible by 4.
  m = msg([] { return make_mlp(8, {12, 10, 8, 8, 4}); }, mlp_plan(), 4);
  EXPECT_NE(m.find("in_proj"), std::string::npos) << m;
  EXPECT_NE(m.find("(10)"), std::string::npos) << m;
  // Entries that apply to no node: named with their file and key.
  m = msg([] { return make_mlp(8, {12, 8, 8, 8, 4}); },
          dist::parse_plan_json(R"J({"tp_plan": {"*": {"style": "sequence"}}})J", "p.json"), 2);
  EXPECT_NE(m.find("p.json: tp_plan['*']"), std::string::npos) << m;
  EXPECT_NE(m.find("matches no node it applies to"), std::string::npos) << m;
  m = msg([] { return make_mlp(8, {12, 8, 8, 8, 4}); },
          dist::parse_plan_json(R"J({"tp_plan": {"no_such_layer": "colwise"}})J", "p.json"), 2);
  EXPECT_NE(m.find("no_such_layer"), std::string::npos) << m;
}

namespace {

// A Megatron-style block with sequence parallelism: LayerNorm → up (Linear) → ReLU → down
// (Linear), x [B, S, E].
Graph make_sp_block(int64_t B, int64_t S, int64_t E, int64_t F) {
  Network net("sp_block");
  ITensor x = net.input("x", DType::F32, {B, S, E});
  ITensor h = net.layer_norm(x, net.weight("norm.weight", randn({E}, 31, 0.5f)), net.weight("norm.bias", randn({E}, 32, 0.1f)),
                             1e-5f, "norm");
  h = net.linear(h, net.weight("up.weight", randn({F, E}, 33, 0.3f)), net.weight("up.bias", randn({F}, 34, 0.1f)),
                 Activation::None, "up");
  h = net.relu(h, "act");
  h = net.linear(h, net.weight("down.weight", randn({E, F}, 35, 0.3f)), net.weight("down.bias", randn({E}, 36, 0.1f)),
                 Activation::None, "down");
  net.output(h, "y");
  return std::move(*net.release());
}

// Rank r's torch.chunk piece of `t` along dim 1 (the sequence).
Tensor seq_chunk(const Tensor& t, int tp, int r) {
  const Dims& d = t.dims();
  auto sizes = dist::chunk_sizes(d[1], tp);
  int64_t start = 0;
  for (int i = 0; i < r; ++i) start += sizes[size_t(i)];
  Dims od = d;
  od[1] = sizes[size_t(r)];
  Tensor o(DType::F32, od);
  int64_t inner = 1;
  for (size_t i = 2; i < d.size(); ++i) inner *= d[i];
  for (int64_t b = 0; b < d[0]; ++b)
    std::memcpy(o.data<float>() + b * od[1] * inner, t.data<float>() + (b * d[1] + start) * inner, size_t(od[1] * inner) * 4);
  return o;
}

}  // namespace

TEST(ShardPass, SequenceParallelBlockMatchesSingleRank) {
  const int64_t B = 2, S = 8, E = 16, F = 32;
  auto make = [&] { return make_sp_block(B, S, E, F); };
  Engine ref = build_engine_from_graph(make(), {});
  Tensor x = randn({B, S, E}, 7);
  Tensor y = ExecutionContext(ref).run({{"x", x}}).at("y");
  const char* block = R"J(
      "norm": {"style": "sequence", "sequence_dim": 1},
      "up":   {"style": "colwise"},
      "down": {"style": "rowwise", "output_layouts": "Shard(1)"})J";
  // pre_sharded: the graph input is declared Shard(1) (each rank is fed its sequence chunk,
  // as the previous SP block leaves it); otherwise x is Replicate and the norm slices it.
  for (bool pre_sharded : {false, true}) {
    for (int tp : {2, 4}) {
      std::string text = std::string(R"J({"tp_plan": {)J") +
                         (pre_sharded ? R"J("x": {"style": "prepare_input", "input_layouts": "Shard(1)"},)J" : "") + block + "}}";
      auto plan = dist::parse_plan_json(text, "sp_plan.json");
      std::vector<Engine> es;
      std::vector<std::map<std::string, Tensor>> feeds;
      for (int r = 0; r < tp; ++r) {
        ShardResult sr;
        es.push_back(build_rank(make, plan, tp, r, &sr));
        EXPECT_EQ(sr.inputs.at("x"), pre_sharded ? Placement::shard(1) : Placement::replicate());
        // Sequence parallelism: reduce-scatter along the sequence after the row-wise layer,
        // never an all-reduce.
        EXPECT_EQ(count_op(es.back(), "shardrt.ReduceScatter"), 1) << "tp " << tp;
        EXPECT_EQ(count_op(es.back(), "shardrt.AllReduce"), 0) << "tp " << tp;
        feeds.push_back({{"x", pre_sharded ? seq_chunk(x, tp, r) : x}});
      }
      auto outs = run_ranks(es, feeds);
      for (int r = 0; r < tp; ++r)
        // fp32 LayerNorm (per-token, unchanged by the split) then sums of ≤32 terms regrouped
        // across ranks on values of size ~1: a few ulps, 1e-4 leaves room.
        EXPECT_LT(max_abs_diff(outs[size_t(r)].at("y"), y), 1e-4f) << "pre_sharded " << pre_sharded << " tp " << tp << " rank " << r;
    }
  }
}

// prepare_input on the node in front of the column-wise layer (a node's input 0 declared
// Shard(0), made Replicate there): x → pre (ReLU) → up (colwise) → ReLU → down (rowwise).
TEST(ShardPass, PrepareInputShardToReplicateBeforeColwise) {
  const int64_t E = 16, F = 32, O = 8;
  // The entry names the node in front of the column-wise layer, or the graph input itself.
  for (std::string target : {"pre", "x"})
  for (int tp : {2, 4}) {
    for (int64_t batch : {8, 7}) {  // 7: uneven torch.chunk pieces gathered
      auto make = [&] {
        Network net("prep");
        ITensor x = net.input("x", DType::F32, {batch, E});
        ITensor h = net.relu(x, "pre");
        h = net.linear(h, net.weight("up.weight", randn({F, E}, 41, 0.3f)), net.weight("up.bias", randn({F}, 42, 0.1f)),
                               Activation::None, "up");
        h = net.relu(h, "act");
        h = net.linear(h, net.weight("down.weight", randn({O, F}, 43, 0.3f)), {}, Activation::None, "down");
        net.output(h, "y");
        return std::move(*net.release());
      };
      Engine ref = build_engine_from_graph(make(), {});
      Tensor x = randn({batch, E}, 9);
      Tensor y = ExecutionContext(ref).run({{"x", x}}).at("y");
      auto plan = dist::parse_plan_json(R"J({"tp_plan": {
          ")J" + target + R"J(":  {"style": "prepare_input", "input_layouts": "Shard(0)", "desired_input_layouts": "Replicate"},
          "up":   "colwise",
          "down": "rowwise"}})J",
                                        "prep_plan.json");
      std::vector<Engine> es;
      std::vector<std::map<std::string, Tensor>> feeds;
      int64_t cs = (batch + tp - 1) / tp, start = 0;
      for (int r = 0; r < tp; ++r) {
        ShardResult sr;
        es.push_back(build_rank(make, plan, tp, r, &sr));
        EXPECT_EQ(sr.inputs.at("x"), Placement::shard(0));
        EXPECT_EQ(sr.outputs.at("y"), Placement::replicate());
        // The rows are gathered once in front of the column-wise layer; one all-reduce after
        // the row-wise one.
        EXPECT_EQ(count_op(es.back(), "shardrt.AllGather"), 1) << "tp " << tp << " target " << target;
        EXPECT_EQ(count_op(es.back(), "shardrt.AllReduce"), 1) << "tp " << tp;
        int64_t len = std::max<int64_t>(0, std::min(cs, batch - start));
        feeds.push_back({{"x", rows(x, start, len)}});
        start += len;
      }
      auto outs = run_ranks(es, feeds);
      for (int r = 0; r < tp; ++r)
        // fp32 sums of ≤32 terms regrouped across ranks on values of size ~1: a few ulps.
        EXPECT_LT(max_abs_diff(outs[size_t(r)].at("y"), y), 1e-4f) << "tp " << tp << " batch " << batch << " rank " << r << " target " << target;
    }
  }
}

TEST(MultiRank, ManifestAndLaunchChecks) {
  namespace fs = std::filesystem;
  std::string dir = (fs::temp_directory_path() / ("shardrt_mr_" + std::to_string(::getpid()))).string();
  MultiRankOptions o;
  o.mesh = parse_mesh("dp=2,tp=2");
  auto plan = mlp_plan();
  o.plan_object = &plan;
  Manifest m = build_multi_rank([] { return make_mlp(20, {10, 16, 8, 8, 4}); }, dir, o, "mlp");
  Manifest l = Manifest::load(dir);
  EXPECT_EQ(l.mesh.dp, 2);
  EXPECT_EQ(l.mesh.tp, 2);
  ASSERT_EQ(l.ranks.size(), 4u);
  EXPECT_EQ(l.ranks[3].tp_index, 1);
  EXPECT_EQ(l.ranks[3].dp_index, 1);
  EXPECT_EQ(l.input_placements.at("x"), Placement::shard(0));
  EXPECT_NO_THROW(load_rank_engine(l, dir, 2));
  try {
    check_launch(l, dir, 2);
    FAIL() << "a 2-rank launch of a 4-rank folder was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("dp=2,tp=2 (4 ranks), but this launch has 2"), std::string::npos) << e.what();
  }
  MeshShape other{4, 1};
  EXPECT_THROW(check_launch(l, dir, 4, &other), Error);
  // A corrupted rank file is named.
  { std::ofstream f(fs::path(dir) / l.ranks[1].file, std::ios::app); f << "x"; }
  EXPECT_THROW(load_rank_engine(l, dir, 1), Error);
  fs::remove_all(dir);
  EXPECT_THROW(parse_mesh("dp=2,pp=2"), Error);
  EXPECT_EQ(dp_slice(5, 2, 0), (std::pair<int64_t, int64_t>{0, 3}));
  EXPECT_EQ(dp_slice(5, 2, 1), (std::pair<int64_t, int64_t>{3, 2}));
  EXPECT_EQ(dp_slice(1, 2, 1), (std::pair<int64_t, int64_t>{1, 0}));  // a group with nothing
}
