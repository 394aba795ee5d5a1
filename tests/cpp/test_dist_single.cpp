// The distributed runtime on a world of one: the shared distributed test body
// (tests/mpi/dist_cases.h) with the single communicator, and what needs no second rank:
// bootstrap from the environment, the collective ops' shape rules for other group shapes,
// fuse_collectives, the com.microsoft import, errors without a communicator, the host hook.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <optional>

#include "error_util.h"
#include "../mpi/dist_cases.h"
#include "backends/cpu/cpu_kernels.h"
#include "dist/bootstrap.h"
#include "dist/collective_exec.h"
#include "ir/op_schema.h"
#include "onnx/importer.h"
#include "onnx/onnx.pb.h"
#include "passes/pass_manager.h"

using namespace shardrt;

shardrt::dist::Communicator& dist_test_comm(const std::string& kind) {
  static auto single = dist::make_single_communicator();
  if (kind == "single") return *single;
  throw Error("no communicator '" + kind + "' in this binary");
}

using dist_cases::DistCollectives;
INSTANTIATE_TEST_SUITE_P(Comm, DistCollectives, ::testing::Values(std::string("single")),
                         [](const auto& i) { return i.param; });

namespace {

// Sets environment variables for one test and restores them after.
struct EnvGuard {
  std::vector<std::pair<std::string, std::optional<std::string>>> saved;
  void set(const std::string& k, const char* v) {
    const char* old = std::getenv(k.c_str());
    saved.push_back({k, old ? std::optional<std::string>(old) : std::nullopt});
    if (v) setenv(k.c_str(), v, 1);
    else unsetenv(k.c_str());
  }
  EnvGuard() {
    for (const char* k : {"SHARDRT_COMM", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "RANK",
                          "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SHARDRT_COLLECTIVE_TIMEOUT"})
      set(k, nullptr);
  }
  ~EnvGuard() {
    for (auto it = saved.rbegin(); it != saved.rend(); ++it) {
      if (it->second) setenv(it->first.c_str(), it->second->c_str(), 1);
      else unsetenv(it->first.c_str());
    }
  }
};

}  // namespace

TEST(DistBootstrap, DetectsLaunchers) {
  EnvGuard env;
  EXPECT_EQ(dist::detect_launch().launcher, "none");
  auto c = dist::communicator_from_env();
  EXPECT_EQ(c->backend(), "single");
  EXPECT_EQ(c->size(), 1);

  env.set("OMPI_COMM_WORLD_SIZE", "4");
  env.set("OMPI_COMM_WORLD_RANK", "2");
  env.set("OMPI_COMM_WORLD_LOCAL_RANK", "0");
  auto li = dist::detect_launch();
  EXPECT_EQ(li.launcher, "mpirun");
  EXPECT_EQ(li.world_size, 4);
  EXPECT_EQ(li.rank, 2);
  env.set("OMPI_COMM_WORLD_SIZE", nullptr);

  env.set("SLURM_NTASKS", "8");
  env.set("SLURM_PROCID", "5");
  env.set("SLURM_LOCALID", "1");
  li = dist::detect_launch();
  EXPECT_EQ(li.launcher, "srun");
  EXPECT_EQ(li.world_size, 8);
  EXPECT_EQ(li.rank, 5);
  EXPECT_EQ(li.local_rank, 1);
  env.set("SLURM_NTASKS", nullptr);

  env.set("PMI_SIZE", "3");
  env.set("PMI_RANK", "1");
  li = dist::detect_launch();
  EXPECT_EQ(li.launcher, "pmi");
  EXPECT_EQ(li.rank, 1);
}

TEST(DistBootstrap, TorchrunIsRefusedWithAHint) {
  EnvGuard env;
  env.set("RANK", "1");
  env.set("WORLD_SIZE", "2");
  env.set("LOCAL_RANK", "1");
  env.set("MASTER_ADDR", "127.0.0.1");
  env.set("MASTER_PORT", "29500");
  EXPECT_EQ(dist::detect_launch().launcher, "torchrun");
  std::string m = any_error_of([] { dist::communicator_from_env(); });
  EXPECT_NE(m.find("torchrun"), std::string::npos) << m;
  EXPECT_NE(m.find("mpirun -n 2"), std::string::npos) << m;
  EXPECT_NE(m.find("Python package"), std::string::npos) << m;
  // A torchrun world of one needs nothing.
  env.set("WORLD_SIZE", "1");
  EXPECT_EQ(dist::communicator_from_env()->backend(), "single");
}

TEST(DistBootstrap, ExplicitOverride) {
  EnvGuard env;
  env.set("RANK", "1");
  env.set("WORLD_SIZE", "2");
  env.set("SHARDRT_COMM", "single");
  EXPECT_EQ(dist::communicator_from_env()->backend(), "single");
  env.set("SHARDRT_COMM", "nccl2");
  std::string m = any_error_of([] { dist::communicator_from_env(); });
  EXPECT_NE(m.find("SHARDRT_COMM='nccl2'"), std::string::npos) << m;
  env.set("SHARDRT_COLLECTIVE_TIMEOUT", "2.5");
  EXPECT_EQ(dist::collective_timeout_seconds(), 2.5);
  env.set("SHARDRT_COLLECTIVE_TIMEOUT", "soon");
  EXPECT_THROW(dist::collective_timeout_seconds(), Error);
}

TEST(DistBootstrap, ChunkSizesAreTorchChunks) {
  // torch.chunk(torch.arange(n), k) sizes, from torch 2.x.
  EXPECT_EQ(dist::chunk_sizes(5, 4), (std::vector<int64_t>{2, 2, 1, 0}));
  EXPECT_EQ(dist::chunk_sizes(6, 4), (std::vector<int64_t>{2, 2, 2, 0}));
  EXPECT_EQ(dist::chunk_sizes(7, 4), (std::vector<int64_t>{2, 2, 2, 1}));
  EXPECT_EQ(dist::chunk_sizes(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(dist::chunk_sizes(10, 3), (std::vector<int64_t>{4, 4, 2}));
  EXPECT_EQ(dist::chunk_sizes(0, 2), (std::vector<int64_t>{0, 0}));
}

namespace {

// One collective node on X of `shape`; returns its inferred output shape.
Shape infer_one(const std::string& op, const Shape& shape, std::map<std::string, Attr> attrs) {
  Graph g;
  Value* x = g.add_input("x", DType::F16, shape);
  Node* n = g.add_node(op, "n", {x}, {"y"}, std::move(attrs));
  infer_node(g, *n);
  EXPECT_EQ(n->outputs[0]->dtype, DType::F16);
  return n->outputs[0]->shape;
}

}  // namespace

TEST(DistOps, ShapeRulesFollowTheGroupShapes) {
  using A = std::map<std::string, Attr>;
  A rs{{"axis", Attr::of(int64_t(1))}};
  // Without group shapes (an ordinary build) the split dim is unknown, the rest kept.
  Shape s = infer_one("shardrt.ReduceScatter", {2, 5}, rs);
  EXPECT_EQ(s[0].value, 2);
  EXPECT_FALSE(s[1].known());
  {
    dist::ScopedGroupShapes g(/*dp=*/2, /*tp=*/4, /*world_rank=*/7);  // tp index 3, dp index 1
    EXPECT_EQ(dist::current_group_shape("tp").size, 4);
    EXPECT_EQ(dist::current_group_shape("tp").index, 3);
    EXPECT_EQ(dist::current_group_shape("dp").index, 1);
    EXPECT_EQ(infer_one("shardrt.ReduceScatter", {2, 5}, rs), (Shape{2, 0}));  // chunk(5, 4)[3] = 0
    EXPECT_EQ(infer_one("shardrt.ReduceScatterStart", {2, 7}, rs), (Shape{2, 1}));
    A rs_dp{{"axis", Attr::of(int64_t(0))}, {"group", Attr::of(std::string("dp"))}};
    EXPECT_EQ(infer_one("shardrt.ReduceScatter", {5, 3}, rs_dp), (Shape{2, 3}));  // chunk(5, 2)[1] = 2
    A ag{{"axis", Attr::of(int64_t(-1))}};
    EXPECT_EQ(infer_one("shardrt.AllGather", {3, 2}, ag), (Shape{3, 8}));
    A ag_uneven{{"axis", Attr::of(int64_t(0))}, {"gathered_size", Attr::of(int64_t(7))}};
    EXPECT_EQ(infer_one("shardrt.AllGatherStart", {1, 2}, ag_uneven), (Shape{7, 2}));
    // Rank 3 of chunk(7, 4) holds 1 row, not 2.
    EXPECT_THROW(infer_one("shardrt.AllGather", {2, 2}, ag_uneven), GraphError);
    EXPECT_EQ(infer_one("shardrt.AllReduce", {3, Dim::symbol("seq")}, {}), (Shape{3, Dim::symbol("seq")}));
  }
  EXPECT_EQ(dist::current_group_shape("tp").size, 0);  // restored
  EXPECT_THROW(infer_one("shardrt.AllGather", {}, {}), GraphError);  // rank 0 has no axis
}

TEST(DistOps, ValidateAttributes) {
  const OpSchema* s = find_schema("shardrt.AllReduce");
  ASSERT_NE(s, nullptr);
  Node n;
  n.op = "shardrt.AllReduce";
  n.attrs["reduce"] = Attr::of(std::string("mean"));
  EXPECT_NE(s->validate(n), "");
  n.attrs["reduce"] = Attr::of(std::string("max"));
  n.attrs["group"] = Attr::of(std::string("pp"));
  EXPECT_NE(s->validate(n), "");
  n.attrs["group"] = Attr::of(std::string("dp"));
  EXPECT_EQ(s->validate(n), "");
  for (const char* op : {"shardrt.AllGather", "shardrt.ReduceScatter", "shardrt.AllReduceStart",
                         "shardrt.AllGatherStart", "shardrt.ReduceScatterStart", "shardrt.Wait"}) {
    EXPECT_NE(find_schema(op), nullptr) << op;
    EXPECT_NE(cpu::find_kernel(op), nullptr) << op;
  }
}

TEST(DistOps, CollectivesNeedACommunicator) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {2});
  g.outputs = {g.add_node("shardrt.AllReduce", "my_allreduce", {x}, {"y"})->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  std::string m = any_error_of([&] { ExecutionContext ctx(e); });
  EXPECT_NE(m.find("my_allreduce"), std::string::npos) << m;
  EXPECT_NE(m.find("communicator"), std::string::npos) << m;
  // Constant folding must not run a collective (it has no communicator at build time).
  Graph g2;
  Value* c = g2.add_constant("c", Tensor::from_f32({2}, {1, 2}));
  g2.outputs = {g2.add_node("shardrt.AllReduce", "ar", {c}, {"y"})->outputs[0]};
  Engine e2 = build_engine_from_graph(std::move(g2), BuildConfig{});
  EXPECT_NE(e2.inspect(false).find("shardrt.AllReduce"), std::string::npos);
}

namespace {

Graph start_wait_graph(bool extra_user) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {4, 2});
  Value* s = g.add_node("shardrt.ReduceScatterStart", "rs_start", {x}, {"s"},
                        {{"axis", Attr::of(int64_t(0))}, {"group", Attr::of(std::string("dp"))}})
                 ->outputs[0];
  Value* w = g.add_node("shardrt.Wait", "rs_wait", {s}, {"out"})->outputs[0];
  g.outputs = {w};
  if (extra_user) g.outputs.push_back(g.add_node("Relu", "peek", {s}, {"peek"})->outputs[0]);
  infer_graph(g);
  return g;
}

}  // namespace

TEST(DistPasses, FuseCollectivesFusesSoleWait) {
  Graph g = start_wait_graph(false);
  auto p = make_fuse_collectives_pass();
  ASSERT_TRUE(p->run(g));
  g.verify();
  ASSERT_EQ(g.nodes.size(), 1u);
  const Node& n = *g.nodes[0];
  EXPECT_EQ(n.op, "shardrt.ReduceScatter");
  EXPECT_EQ(n.attr_s("group", ""), "dp");
  EXPECT_EQ(n.attr_i("axis", -1), 0);
  EXPECT_EQ(n.outputs[0]->name, "out");  // the graph output keeps its name
  EXPECT_FALSE(p->run(g));

  // The Start's result is read before the Wait too: left alone.
  Graph h = start_wait_graph(true);
  EXPECT_FALSE(make_fuse_collectives_pass()->run(h));
  EXPECT_EQ(h.nodes.size(), 3u);
  // In the default pipeline.
  auto names = default_pipeline(PipelineOptions{}).pass_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "fuse_collectives"), names.end());
}

namespace {

std::string contrib_model(const std::string& op, std::vector<std::pair<std::string, int64_t>> attrs, int inputs = 1) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  auto* o = m.add_opset_import();
  o->set_version(17);
  o = m.add_opset_import();
  o->set_domain("com.microsoft");
  o->set_version(1);
  auto* g = m.mutable_graph();
  g->set_name("g");
  auto* n = g->add_node();
  n->set_op_type(op);
  n->set_domain("com.microsoft");
  n->set_name("c0");
  for (int i = 0; i < inputs; ++i) {
    auto* v = g->add_input();
    v->set_name("x" + std::to_string(i));
    auto* tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    tt->mutable_shape()->add_dim()->set_dim_value(4);
    tt->mutable_shape()->add_dim()->set_dim_value(6);
    n->add_input("x" + std::to_string(i));
    n->add_output("y" + std::to_string(i));
    auto* y = g->add_output();
    y->set_name("y" + std::to_string(i));
    y->mutable_type()->mutable_tensor_type()->set_elem_type(onnx::TensorProto::FLOAT);
  }
  for (auto& [k, v] : attrs) {
    auto* a = n->add_attribute();
    a->set_name(k);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  return m.SerializeAsString();
}

}  // namespace

TEST(DistImport, ContribCollectivesBecomeFusedOps) {
  Graph g = import_onnx_model_bytes(contrib_model("AllReduce", {}), "", "m");
  ASSERT_EQ(g.nodes.size(), 1u);
  EXPECT_EQ(g.nodes[0]->op, "shardrt.AllReduce");
  EXPECT_EQ(g.nodes[0]->attr_s("group", ""), "world");
  EXPECT_EQ(g.nodes[0]->attr_s("reduce", ""), "sum");

  g = import_onnx_model_bytes(contrib_model("AllGather", {{"group_size", 2}, {"axis", 1}}), "", "m");
  EXPECT_EQ(g.nodes[0]->op, "shardrt.AllGather");
  EXPECT_EQ(g.nodes[0]->attr_i("axis", -1), 1);

  g = import_onnx_model_bytes(contrib_model("ReduceScatter", {{"group_size", 2}}), "", "m");
  EXPECT_EQ(g.nodes[0]->op, "shardrt.ReduceScatter");
  EXPECT_EQ(g.nodes[0]->attr_i("axis", -1), 0);

  // Variadic forms and unknown attributes are refused, naming the node.
  std::string m = any_error_of([] { import_onnx_model_bytes(contrib_model("AllReduce", {}, 2), "", "m"); });
  EXPECT_NE(m.find("one tensor per node"), std::string::npos) << m;
  m = any_error_of([] { import_onnx_model_bytes(contrib_model("AllGather", {{"ring", 1}}), "", "m"); });
  EXPECT_NE(m.find("'ring'"), std::string::npos) << m;
  // Other com.microsoft ops stay refused.
  m = any_error_of([] { import_onnx_model_bytes(contrib_model("AllToAll", {}), "", "m"); });
  EXPECT_NE(m.find("com.microsoft"), std::string::npos) << m;
}

TEST(DistHostFallback, RunsOnTheHostCommunicator) {
  auto comm = dist::make_single_communicator();
  Graph g;
  Value* x = g.add_input("x", DType::F32, {3});
  Node* n = g.add_node("shardrt.AllReduce", "ar", {x}, {"y"});
  Tensor in = Tensor::from_f32({3}, {1, 2, 3}), out(DType::F32, {3});
  testing::internal::CaptureStderr();
  dist::run_collective_via_host("testdev", *n, comm.get(), {&in}, {&out});
  dist::run_collective_via_host("testdev", *n, comm.get(), {&in}, {&out});
  std::string log = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.get_f(2), 3.0);
  // One line per backend and op, however many runs.
  EXPECT_EQ(std::count(log.begin(), log.end(), '\n'), 1) << log;
  EXPECT_NE(log.find("host communicator (single)"), std::string::npos) << log;
}
