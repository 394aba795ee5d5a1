// Tests of the pass framework and the general passes (constant folding, DCE, CSE, linear and
// activation fusions, autocast) and of the kernels of shardrt.Linear / Silu / SwiGLU.
// Each rewrite is checked twice: structurally (op counts) and numerically (the graph's
// outputs before and after the pass, computed with run_graph_reference).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"
#include "passes/pass_manager.h"
#include "runtime/reference_run.h"

using namespace shardrt;

namespace {

Tensor rand_tensor(Dims d, uint32_t seed, float lo = -2.f, float hi = 2.f, DType t = DType::F32) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor r(DType::F32, d);
  for (int64_t i = 0; i < r.numel(); ++i) r.data<float>()[i] = u(gen);
  return t == DType::F32 ? r : r.cast(t);
}

int count_op(const Graph& g, const std::string& op) {
  int k = 0;
  for (auto& n : g.nodes)
    if (!n->dead && n->op == op) ++k;
  return k;
}

const Node* find_op(const Graph& g, const std::string& op) {
  for (auto& n : g.nodes)
    if (!n->dead && n->op == op) return n.get();
  return nullptr;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.dims(), b.dims());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(a.get_f(i) - b.get_f(i)));
  return m;
}

// Runs `pass` on `g` and checks: it changed the graph, the graph verifies and is sorted, and
// every output is within `tol` of what the unchanged graph computed on `inputs`.
void run_and_compare(Graph& g, Pass& pass, const std::map<std::string, Tensor>& inputs, double tol,
                     bool expect_change = true) {
  g.verify();
  auto before = run_graph_reference(g, inputs);
  bool changed = pass.run(g);
  EXPECT_EQ(changed, expect_change) << pass.name() << "\n" << g.print();
  ASSERT_NO_THROW(g.verify()) << g.print();
  auto after = run_graph_reference(g, inputs);
  ASSERT_EQ(before.size(), after.size());
  for (auto& [name, t] : before) {
    ASSERT_TRUE(after.count(name)) << "output '" << name << "' lost\n" << g.print();
    EXPECT_EQ(after.at(name).dtype(), t.dtype()) << name;
    EXPECT_LE(max_abs_diff(t, after.at(name)), tol) << name << "\n" << g.print();
  }
}

Value* cst(Graph& g, const std::string& name, Tensor t) { return g.add_constant(name, std::move(t)); }
Value* scalar(Graph& g, const std::string& name, float v) { return cst(g, name, Tensor::from_f32({}, {v})); }
Value* i64s(Graph& g, const std::string& name, std::vector<int64_t> v) { return cst(g, name, Tensor::from_i64(v)); }
Value* out(Node* n) { return n->outputs[0]; }

}  // namespace

// ---------------------------------------------------------------- framework

namespace {
// Removes one Relu per run: tests that the manager iterates to a fixed point and counts.
struct PeelRelu : Pass {
  std::string name() const override { return "peel_relu"; }
  std::vector<std::string> target_ops() const override { return {"Relu"}; }
  bool run(Graph& g) override {
    for (auto& n : g.nodes)
      if (!n->dead && n->op == "Relu") {
        g.replace_all_uses(n->outputs[0], n->inputs[0]);
        g.remove_node(n.get());
        g.compact();
        note("peeled one");
        return true;
      }
    return false;
  }
};
struct Counter : Pass {
  int* calls;
  explicit Counter(int* c) : calls(c) {}
  std::string name() const override { return "counter"; }
  std::vector<std::string> target_ops() const override { return {"Softmax"}; }
  bool run(Graph&) override { ++*calls; return false; }
};
}  // namespace

TEST(PassManager, FixedPointStatsFilterAndLog) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(4)});
  Value* v = x;
  for (int i = 0; i < 3; ++i) v = out(g.add_node("Relu", "r" + std::to_string(i), {v}, {"y" + std::to_string(i)}));
  Node* last = g.add_node("Neg", "neg", {v}, {"z"});
  g.outputs = {out(last)};
  infer_graph(g);

  int counter_calls = 0;
  std::vector<std::string> lines;
  PipelineOptions o;
  o.verbose = true;
  o.verify_each = true;
  o.log = [&](const std::string& s) { lines.push_back(s); };
  PassManager pm;
  pm.set_options(o);
  pm.stage("s").add(std::make_unique<PeelRelu>()).add(std::make_unique<Counter>(&counter_calls));
  EXPECT_TRUE(pm.run(g));
  EXPECT_EQ(count_op(g, "Relu"), 0);
  EXPECT_EQ(counter_calls, 0);  // no Softmax in the graph: filtered out
  ASSERT_EQ(pm.stats().size(), 2u);
  EXPECT_EQ(pm.stats()[0].name, "peel_relu");
  EXPECT_EQ(pm.stats()[0].changed_runs, 3);
  EXPECT_EQ(pm.stats()[0].rewrites, 3);
  EXPECT_EQ(pm.stats()[0].runs, 3);  // the 4th round skips it: no Relu left
  EXPECT_GE(lines.size(), 6u);       // a header and a note per change
  EXPECT_NE(pm.stats_report().find("peel_relu: 3 rewrites"), std::string::npos);
  EXPECT_FALSE(pm.run(g));
}

TEST(PassManager, IterationCapAndDisabled) {
  struct Always : Pass {
    std::string name() const override { return "always"; }
    bool run(Graph&) override { return true; }  // a buggy pass that always claims a change
  };
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2)});
  g.outputs = {out(g.add_node("Relu", "r", {x}, {"y"}))};
  infer_graph(g);
  PipelineOptions o;
  o.max_iterations = 5;
  o.log = [](const std::string&) {};
  PassManager pm;
  pm.set_options(o);
  pm.add(std::make_unique<Always>());
  pm.run(g);
  EXPECT_EQ(pm.stats()[0].runs, 5);

  o.disabled_passes = {"always", "cse"};
  PassManager pm2;
  pm2.set_options(o);
  pm2.add(std::make_unique<Always>()).add(make_cse_pass()).add(make_dce_pass());
  EXPECT_EQ(pm2.pass_names(), std::vector<std::string>{"dce"});

  PipelineOptions d;
  d.autocast = DType::F16;
  auto names = default_pipeline(d).pass_names();
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_LT(pos("constant_fold"), pos("fuse_linear"));
  EXPECT_LT(pos("fuse_activations"), pos("fuse_linear"));
  EXPECT_LT(pos("fuse_linear"), pos("autocast"));
  EXPECT_LT(pos("autocast"), int64_t(names.size()));
}

// ---------------------------------------------------------------- constant_fold

TEST(ConstantFold, WeightTransposeAndCastFold) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(6)});
  // An exporter's fp16 weight cast up and transposed at run time.
  Value* w16 = cst(g, "w16", rand_tensor({5, 6}, 1, -1, 1, DType::F16));
  Value* wf = out(g.add_node("Cast", "cast_w", {w16}, {"wf"}, {{"to", Attr::of(int64_t(onnx_type::FLOAT))}}));
  Value* wt = out(g.add_node("Transpose", "tr_w", {wf}, {"wt"}, {{"perm", Attr::of(std::vector<int64_t>{1, 0})}}));
  g.outputs = {out(g.add_node("MatMul", "mm", {x, wt}, {"y"}))};
  infer_graph(g);
  auto pass = make_constant_fold_pass();
  run_and_compare(g, *pass, {{"x", rand_tensor({3, 6}, 2)}}, 0.0);  // same kernels: exact
  EXPECT_EQ(count_op(g, "Cast"), 0);
  EXPECT_EQ(count_op(g, "Transpose"), 0);
  EXPECT_TRUE(find_op(g, "MatMul")->inputs[1]->is_constant());
  EXPECT_EQ(g.find_value("wt")->dtype, DType::F32);
  EXPECT_FALSE(pass->run(g));  // fixed point
}

TEST(ConstantFold, ConstantGraphOutputKeepsName) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(3)});
  Value* c = cst(g, "c", Tensor::from_f32({3}, {1, -2, 3}));
  Value* r = out(g.add_node("Relu", "relu_c", {c}, {"relu_c_out"}));
  Value* y = out(g.add_node("Add", "add", {x, r}, {"y"}));
  g.outputs = {y, r};
  infer_graph(g);
  auto pass = make_constant_fold_pass();
  run_and_compare(g, *pass, {{"x", Tensor::from_f32({3}, {1, 1, 1})}}, 0.0);
  EXPECT_EQ(count_op(g, "Relu"), 0);
  ASSERT_EQ(g.outputs.size(), 2u);
  EXPECT_EQ(g.outputs[1]->name, "relu_c_out");
  ASSERT_TRUE(g.outputs[1]->is_constant());
  EXPECT_EQ(g.outputs[1]->constant->get_f(1), 0.0);
}

TEST(ConstantFold, ShapeArithmeticWithDynamicBatch) {
  // Reshape(x, Concat(Gather(Shape(x), 0), Gather(Shape(x), 1) * Gather(Shape(x), 2))):
  // dims 1 and 2 are known, batch is not: everything but the batch Gather folds.
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(4), Dim(3)});
  Value* sh = out(g.add_node("Shape", "shape", {x}, {"sh"}));
  Value* b = out(g.add_node("Gather", "g0", {sh, cst(g, "i0", Tensor::scalar_i64(0))}, {"b"}, {{"axis", Attr::of(int64_t(0))}}));
  Value* d1 = out(g.add_node("Gather", "g1", {sh, cst(g, "i1", Tensor::scalar_i64(1))}, {"d1"}, {{"axis", Attr::of(int64_t(0))}}));
  Value* d2 = out(g.add_node("Gather", "g2", {sh, cst(g, "i2", Tensor::scalar_i64(-1))}, {"d2"}, {{"axis", Attr::of(int64_t(0))}}));
  Value* prod = out(g.add_node("Mul", "mul", {d1, d2}, {"prod"}));
  Value* axes = i64s(g, "axes0", {0});
  Value* ub = out(g.add_node("Unsqueeze", "ub", {b, axes}, {"ub"}));
  Value* up = out(g.add_node("Unsqueeze", "up", {prod, axes}, {"up"}));
  Value* target = out(g.add_node("Concat", "cat", {ub, up}, {"target"}, {{"axis", Attr::of(int64_t(0))}}));
  Value* y = out(g.add_node("Reshape", "reshape", {x, target}, {"y"}));
  // Slice(Shape(x), 1, 3) and Size(Slice...) : known.
  Value* tail = out(g.add_node("Slice", "slice", {sh, i64s(g, "s0", {1}), i64s(g, "s1", {3})}, {"tail"}));
  Value* tail_f = out(g.add_node("Cast", "tail_f", {tail}, {"tail_f"}, {{"to", Attr::of(int64_t(onnx_type::FLOAT))}}));
  Value* z = out(g.add_node("ReduceSum", "rs", {x}, {"z"}, {{"keepdims", Attr::of(int64_t(0))}}));
  g.outputs = {y, tail_f, z};
  infer_graph(g);
  auto pass = make_constant_fold_pass();
  std::map<std::string, Tensor> in{{"x", rand_tensor({2, 4, 3}, 3)}};
  auto before = run_graph_reference(g, in);
  // The pass alone folds step by step; iterate to a fixed point as the manager does.
  int rounds = 0;
  while (pass->run(g) && rounds < 10) ++rounds;
  g.verify();
  EXPECT_EQ(count_op(g, "Gather"), 1) << g.print();  // the batch dim stays dynamic
  EXPECT_EQ(count_op(g, "Mul"), 0);
  EXPECT_EQ(count_op(g, "Slice"), 0);
  EXPECT_EQ(count_op(g, "Cast"), 0);
  EXPECT_TRUE(g.find_value("tail_f")->is_constant());
  EXPECT_EQ(g.find_value("tail_f")->constant->get_f(1), 3.0);
  EXPECT_TRUE(g.find_value("up")->is_constant());
  auto after = run_graph_reference(g, in);
  for (auto& [k, t] : before) EXPECT_EQ(max_abs_diff(t, after.at(k)), 0.0) << k;
}

TEST(ConstantFold, ShapeAndSizeOfKnownShape) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2), Dim(5)});
  Value* r = out(g.add_node("Relu", "relu", {x}, {"r"}));
  Value* s = out(g.add_node("Shape", "shape", {r}, {"s"}, {{"start", Attr::of(int64_t(-1))}}));
  Value* n = out(g.add_node("Size", "size", {r}, {"n"}));
  g.outputs = {s, n, r};
  infer_graph(g);
  auto pass = make_constant_fold_pass();
  run_and_compare(g, *pass, {{"x", rand_tensor({2, 5}, 4)}}, 0.0);
  EXPECT_EQ(count_op(g, "Shape") + count_op(g, "Size"), 0);
  EXPECT_EQ(g.find_value("s")->constant->to_i64_vector(), std::vector<int64_t>{5});
  EXPECT_EQ(g.find_value("n")->constant->get_i(0), 10);
}

TEST(ConstantFold, SizeCapSkipsGrowthButNotSameSizeTransforms) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(40), Dim(40)});
  // Expand of a scalar to 1600 floats (6400 bytes) grows the data: skipped under a 1 KiB cap.
  Value* e = out(g.add_node("Expand", "expand", {scalar(g, "one", 1.f), i64s(g, "eshape", {40, 40})}, {"e"}));
  // Transposing a 6400-byte weight yields 6400 bytes: folds despite the cap.
  Value* wt = out(g.add_node("Transpose", "tr", {cst(g, "w", rand_tensor({40, 40}, 5))}, {"wt"},
                              {{"perm", Attr::of(std::vector<int64_t>{1, 0})}}));
  Value* a = out(g.add_node("Add", "add", {x, e}, {"a"}));
  g.outputs = {out(g.add_node("MatMul", "mm", {a, wt}, {"y"}))};
  infer_graph(g);
  auto pass = make_constant_fold_pass(1024);
  run_and_compare(g, *pass, {{"x", rand_tensor({40, 40}, 6)}}, 0.0);
  EXPECT_EQ(count_op(g, "Expand"), 1);
  EXPECT_EQ(count_op(g, "Transpose"), 0);
  auto big = make_constant_fold_pass(size_t(1) << 20);
  EXPECT_TRUE(big->run(g));
  EXPECT_EQ(count_op(g, "Expand"), 0);
}

TEST(ConstantFold, RandomOpsAreNotFolded) {
  Graph g;
  g.add_input("x", DType::F32, {Dim(2)});
  Node* r = g.add_node("RandomUniform", "rnd", {}, {"r"},
                       {{"shape", Attr::of(std::vector<int64_t>{2})}, {"dtype", Attr::of(int64_t(onnx_type::FLOAT))}});
  g.outputs = {out(r)};
  if (!find_schema("RandomUniform")) GTEST_SKIP() << "RandomUniform has no schema";
  infer_graph(g);
  EXPECT_FALSE(make_constant_fold_pass()->run(g));
}

// ---------------------------------------------------------------- dce / cse

TEST(DCE, RemovesUnusedChainsAndConstantsKeepsOutputs) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(3)});
  Value* c = cst(g, "unused_c", Tensor::from_f32({3}, {1, 2, 3}));
  Value* a = out(g.add_node("Exp", "dead1", {x}, {"a"}));
  g.add_node("Add", "dead2", {a, c}, {"b"});
  Value* id = out(g.add_node("Identity", "id", {x}, {"xi"}));
  Value* y = out(g.add_node("Relu", "relu", {id}, {"y"}));
  Value* z = out(g.add_node("Identity", "id_out", {y}, {"z"}));  // a graph output: kept
  g.outputs = {y, z};
  infer_graph(g);
  auto pass = make_dce_pass();
  run_and_compare(g, *pass, {{"x", Tensor::from_f32({3}, {-1, 0, 2})}}, 0.0);
  EXPECT_EQ(count_op(g, "Exp") + count_op(g, "Add"), 0);
  EXPECT_EQ(count_op(g, "Identity"), 1);
  EXPECT_EQ(find_op(g, "Relu")->inputs[0], g.find_value("x"));
  EXPECT_EQ(g.find_value("unused_c"), nullptr);
  EXPECT_FALSE(pass->run(g));
}

TEST(CSE, MergesEqualNodesAndSmallConstants) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2), Dim(3)});
  Value* c1 = cst(g, "c1", Tensor::from_f32({3}, {1, 2, 3}));
  Value* c2 = cst(g, "c2", Tensor::from_f32({3}, {1, 2, 3}));
  Value* c3 = cst(g, "c3", Tensor::from_f32({3}, {1, 2, 4}));
  Value* a1 = out(g.add_node("Add", "a1", {x, c1}, {"a1"}));
  Value* a2 = out(g.add_node("Add", "a2", {x, c2}, {"a2"}));  // equal to a1 once c2 == c1
  Value* a3 = out(g.add_node("Add", "a3", {x, c3}, {"a3"}));  // different constant
  Value* s1 = out(g.add_node("Softmax", "s1", {a1}, {"s1"}, {{"axis", Attr::of(int64_t(1))}}));
  Value* s2 = out(g.add_node("Softmax", "s2", {a2}, {"s2"}, {{"axis", Attr::of(int64_t(1))}}));
  Value* s3 = out(g.add_node("Softmax", "s3", {a2}, {"s3"}, {{"axis", Attr::of(int64_t(0))}}));  // other attr
  Value* sum = out(g.add_node("Sum", "sum", {s1, s2, s3, a3}, {"sum"}));
  g.outputs = {sum, s2};
  infer_graph(g);
  auto pass = make_cse_pass();
  run_and_compare(g, *pass, {{"x", rand_tensor({2, 3}, 7)}}, 0.0);
  EXPECT_EQ(count_op(g, "Add"), 2);
  EXPECT_EQ(count_op(g, "Softmax"), 2);
  EXPECT_EQ(g.outputs[1]->name, "s2");  // the output kept its name
  EXPECT_FALSE(pass->run(g));
}

// ---------------------------------------------------------------- fuse_linear

TEST(FuseLinear, MatMulBiasActivation) {
  for (std::string act : {"Relu", "Gelu", "none"}) {
    Graph g;
    Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(5), Dim(8)});
    Value* w = cst(g, "w", rand_tensor({8, 16}, 10));
    Value* b = cst(g, "b", rand_tensor({16}, 11));
    Value* mm = out(g.add_node("MatMul", "h.0/mlp/c_fc/MatMul", {x, w}, {"mm"}));
    Value* y = out(g.add_node("Add", "h.0/mlp/c_fc/Add", {b, mm}, {"fc"}));  // bias first
    if (act != "none") y = out(g.add_node(act, "h.0/mlp/act", {y}, {"act"}));
    g.outputs = {y};
    std::string out_name = y->name;
    infer_graph(g);
    auto pass = make_fuse_linear_pass();
    // Same GEMM, one rounding difference at most from the bias added in another order.
    run_and_compare(g, *pass, {{"x", rand_tensor({2, 5, 8}, 12)}}, 1e-5);
    ASSERT_EQ(g.nodes.size(), 1u) << g.print();
    const Node* lin = g.nodes[0].get();
    EXPECT_EQ(lin->op, "shardrt.Linear");
    EXPECT_EQ(lin->name, "h.0/mlp/c_fc/MatMul");
    EXPECT_EQ(lin->inputs.size(), 3u);
    EXPECT_EQ(lin->attr_s("activation", "none"), act == "Relu" ? "relu" : act == "Gelu" ? "gelu" : "none");
    EXPECT_NE(lin->fused_from.find("MatMul 'h.0/mlp/c_fc/MatMul' + Add 'h.0/mlp/c_fc/Add'"), std::string::npos)
        << lin->fused_from;
    EXPECT_EQ(g.outputs[0]->name, out_name);
  }
}

TEST(FuseLinear, GemmTransBWithRowBias) {
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim(3), Dim(7)});
  Value* w = cst(g, "w", rand_tensor({4, 7}, 20));  // torch.nn.Linear layout [N, K]
  Value* c = cst(g, "c", rand_tensor({1, 4}, 21));
  Value* y = out(g.add_node("Gemm", "fc", {a, w, c}, {"y"}, {{"transB", Attr::of(int64_t(1))}}));
  g.outputs = {out(g.add_node("Relu", "relu", {y}, {"z"}))};
  infer_graph(g);
  auto pass = make_fuse_linear_pass();
  run_and_compare(g, *pass, {{"a", rand_tensor({3, 7}, 22)}}, 1e-5);  // bias order only
  ASSERT_EQ(count_op(g, "shardrt.Linear"), 1);
  const Node* lin = find_op(g, "shardrt.Linear");
  EXPECT_EQ(lin->attr_i("trans_b", 0), 1);
  EXPECT_EQ(lin->attr_s("activation", ""), "relu");
  EXPECT_EQ(lin->inputs[2]->shape.size(), 1u);
}

TEST(FuseLinear, ActivationBehindAReshape) {
  // The exporters' form: Gemm on [B*S, K], Reshape back to [B, S, N], then the activation.
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim(6), Dim(8)});
  Value* w = cst(g, "w", rand_tensor({16, 8}, 30));
  Value* c = cst(g, "c", rand_tensor({16}, 31));
  Value* y = out(g.add_node("Gemm", "fc", {a, w, c}, {"y"}, {{"transB", Attr::of(int64_t(1))}}));
  Value* shape = cst(g, "shape", Tensor::from_i64({2, 3, 16}));
  Value* r = out(g.add_node("Reshape", "back", {y, shape}, {"r"}));
  g.outputs = {out(g.add_node("Gelu", "act", {r}, {"z"}, {{"approximate", Attr::of(std::string("tanh"))}}))};
  infer_graph(g);
  auto pass = make_fuse_linear_pass();
  run_and_compare(g, *pass, {{"a", rand_tensor({6, 8}, 32)}}, 1e-5);  // bias order only
  EXPECT_EQ(count_op(g, "Gelu"), 0) << g.print();
  ASSERT_EQ(count_op(g, "shardrt.Linear"), 1);
  EXPECT_EQ(find_op(g, "shardrt.Linear")->attr_s("activation", ""), "gelu_tanh");
  EXPECT_EQ(g.outputs[0]->producer->op, "Reshape");
  EXPECT_EQ(g.outputs[0]->name, "z");
}

TEST(FuseLinear, AddAfterTheActivationStaysAnAdd) {
  // relu(x·W) + b is not relu(x·W + b): once the activation is in the Linear, a following
  // constant Add is not its bias.
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(4), Dim(8)});
  Value* w = cst(g, "w", rand_tensor({8, 6}, 40));
  Value* mm = out(g.add_node("MatMul", "mm", {x, w}, {"mm"}));
  Value* r = out(g.add_node("Relu", "relu", {mm}, {"r"}));
  Value* y = out(g.add_node("Add", "add", {r, cst(g, "b", rand_tensor({6}, 41))}, {"y"}));
  g.outputs = {y};
  infer_graph(g);
  auto pass = make_fuse_linear_pass();
  // Same GEMM and the same add: the fused and unfused graphs differ by rounding only.
  run_and_compare(g, *pass, {{"x", rand_tensor({4, 8}, 42)}}, 1e-5);
  EXPECT_EQ(count_op(g, "shardrt.Linear"), 1);
  EXPECT_EQ(count_op(g, "Add"), 1) << g.print();
}

TEST(FuseLinear, RefusesWhatItCannotExpress) {
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim(3), Dim(4)});
  Value* w = cst(g, "w", rand_tensor({4, 4}, 30));
  Value* w3 = cst(g, "w3", rand_tensor({2, 4, 4}, 31));
  // alpha != 1
  Value* y1 = out(g.add_node("Gemm", "g1", {a, w}, {"y1"}, {{"alpha", Attr::of(0.5f)}}));
  // per-row bias [3,1] is not a Linear bias
  Value* y2 = out(g.add_node("Gemm", "g2", {a, w, cst(g, "crow", rand_tensor({3, 1}, 32))}, {"y2"}));
  // batched (3-D) weight
  Value* y3 = out(g.add_node("MatMul", "m3", {a, w3}, {"y3"}));
  // the MatMul output is read twice: the Add stays separate (the MatMul still fuses)
  Value* m4 = out(g.add_node("MatMul", "m4", {a, w}, {"m4"}));
  Value* y4 = out(g.add_node("Add", "add4", {m4, cst(g, "b4", rand_tensor({4}, 33))}, {"y4"}));
  g.outputs = {y1, y2, y3, y4, m4};
  infer_graph(g);
  auto pass = make_fuse_linear_pass();
  run_and_compare(g, *pass, {{"a", rand_tensor({3, 4}, 34)}}, 1e-5);
  EXPECT_EQ(count_op(g, "Gemm"), 2);
  EXPECT_EQ(count_op(g, "MatMul"), 1);
  EXPECT_EQ(count_op(g, "Add"), 1);
  EXPECT_EQ(count_op(g, "shardrt.Linear"), 1);
}

// ---------------------------------------------------------------- fuse_activations

namespace {
enum class GeluForm { TorchErf, HfErf, HalfFirstErf, DivTwoErf, TanhPow, TanhMulMul };

// Builds one exporter's GELU over a Relu of the input (so that x is an intermediate value).
Graph gelu_graph(GeluForm f) {
  Graph g;
  Value* in = g.add_input("in", DType::F32, {Dim::symbol("batch"), Dim(16)});
  Value* x = out(g.add_node("Neg", "pre", {in}, {"x"}));
  Value* s = nullptr;
  bool tanh_form = f == GeluForm::TanhPow || f == GeluForm::TanhMulMul;
  if (!tanh_form) {
    Value* d = f == GeluForm::HfErf ? out(g.add_node("Mul", "scale", {x, scalar(g, "inv_sqrt2", 0.70710678f)}, {"d"}))
                                    : out(g.add_node("Div", "scale", {x, scalar(g, "sqrt2", 1.4142135f)}, {"d"}));
    Value* e = out(g.add_node("Erf", "erf", {d}, {"e"}));
    s = out(g.add_node("Add", "plus1", {scalar(g, "one", 1.f), e}, {"s"}));
  } else {
    Value* cube;
    if (f == GeluForm::TanhPow) {
      cube = out(g.add_node("Pow", "pow", {x, scalar(g, "three", 3.f)}, {"cube"}));
    } else {
      Value* sq = out(g.add_node("Mul", "sq", {x, x}, {"sq"}));
      cube = out(g.add_node("Mul", "cube", {x, sq}, {"cube"}));
    }
    Value* c3 = out(g.add_node("Mul", "k3", {cube, scalar(g, "k", 0.044715f)}, {"c3"}));
    Value* inner = out(g.add_node("Add", "inner", {x, c3}, {"inner"}));
    Value* u = out(g.add_node("Mul", "ks", {scalar(g, "sqrt2pi", 0.7978845608f), inner}, {"u"}));
    Value* t = out(g.add_node("Tanh", "tanh", {u}, {"t"}));
    s = out(g.add_node("Add", "plus1", {t, scalar(g, "one", 1.f)}, {"s"}));
  }
  Value* y;
  switch (f) {
    case GeluForm::TorchErf: {  // (x * s) * 0.5
      Value* xs = out(g.add_node("Mul", "xs", {x, s}, {"xs"}));
      y = out(g.add_node("Mul", "half", {xs, scalar(g, "h", 0.5f)}, {"y"}));
      break;
    }
    case GeluForm::HfErf:
    case GeluForm::TanhPow: {  // (x * 0.5) * s
      Value* hx = out(g.add_node("Mul", "hx", {x, scalar(g, "h", 0.5f)}, {"hx"}));
      y = out(g.add_node("Mul", "final", {hx, s}, {"y"}));
      break;
    }
    case GeluForm::HalfFirstErf:
    case GeluForm::TanhMulMul: {  // (0.5 * s) * x
      Value* hs = out(g.add_node("Mul", "hs", {scalar(g, "h", 0.5f), s}, {"hs"}));
      y = out(g.add_node("Mul", "final", {hs, x}, {"y"}));
      break;
    }
    case GeluForm::DivTwoErf: {  // (x * s) / 2
      Value* xs = out(g.add_node("Mul", "xs", {s, x}, {"xs"}));
      y = out(g.add_node("Div", "half", {xs, scalar(g, "two", 2.f)}, {"y"}));
      break;
    }
  }
  g.outputs = {y};
  infer_graph(g);
  return g;
}
}  // namespace

TEST(FuseActivations, GeluForms) {
  for (GeluForm f : {GeluForm::TorchErf, GeluForm::HfErf, GeluForm::HalfFirstErf, GeluForm::DivTwoErf,
                     GeluForm::TanhPow, GeluForm::TanhMulMul}) {
    SCOPED_TRACE(int(f));
    Graph g = gelu_graph(f);
    auto pass = make_fuse_activations_pass();
    // Gelu's kernel vs the decomposed formula in fp32: a few ulps on values of size <= 3.
    run_and_compare(g, *pass, {{"in", rand_tensor({3, 16}, 40, -3, 3)}}, 2e-6);
    ASSERT_EQ(g.nodes.size(), 2u) << g.print();
    const Node* gl = find_op(g, "Gelu");
    ASSERT_NE(gl, nullptr);
    bool tanh_form = f == GeluForm::TanhPow || f == GeluForm::TanhMulMul;
    EXPECT_EQ(gl->attr_s("approximate", ""), tanh_form ? "tanh" : "none");
    EXPECT_EQ(gl->outputs[0]->name, "y");
    EXPECT_NE(gl->fused_from.find(tanh_form ? "Tanh 'tanh'" : "Erf 'erf'"), std::string::npos) << gl->fused_from;
  }
}

TEST(FuseActivations, GeluNotFusedWhenIntermediateIsShared) {
  Graph g = gelu_graph(GeluForm::TorchErf);
  // Read erf's output elsewhere too: it must still be computed, so no fusion.
  Value* e = g.find_value("e");
  Value* extra = out(g.add_node("Neg", "extra", {e}, {"extra"}));
  g.outputs.push_back(extra);
  infer_graph(g);
  EXPECT_FALSE(make_fuse_activations_pass()->run(g));
  // A wrong constant (not sqrt 2) does not match either.
  Graph g2 = gelu_graph(GeluForm::TorchErf);
  g2.find_value("sqrt2")->constant = std::make_shared<Tensor>(Tensor::from_f32({}, {1.5f}));
  EXPECT_FALSE(make_fuse_activations_pass()->run(g2));
}

TEST(FuseActivations, SiluSwiGLUThenLinear) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(8)});
  Value* wg = cst(g, "wg", rand_tensor({8, 12}, 50, -0.5, 0.5));
  Value* wu = cst(g, "wu", rand_tensor({8, 12}, 51, -0.5, 0.5));
  Value* wd = cst(g, "wd", rand_tensor({12, 8}, 52, -0.5, 0.5));
  Value* gt = out(g.add_node("MatMul", "gate_proj", {x, wg}, {"gate"}));
  Value* up = out(g.add_node("MatMul", "up_proj", {x, wu}, {"up"}));
  Value* sg = out(g.add_node("Sigmoid", "sig", {gt}, {"sg"}));
  Value* sl = out(g.add_node("Mul", "silu", {gt, sg}, {"silu"}));
  Value* h = out(g.add_node("Mul", "glu", {sl, up}, {"h"}));
  Value* y = out(g.add_node("MatMul", "down_proj", {h, wd}, {"y"}));
  // A lone x * sigmoid(x) (no following product) stays Silu and folds into its Linear.
  Value* w2 = cst(g, "w2", rand_tensor({8, 8}, 53, -0.5, 0.5));
  Value* p = out(g.add_node("MatMul", "proj2", {x, w2}, {"p"}));
  Value* ps = out(g.add_node("Sigmoid", "sig2", {p}, {"ps"}));
  Value* z = out(g.add_node("Mul", "silu2", {ps, p}, {"z"}));
  g.outputs = {y, z};
  infer_graph(g);
  std::map<std::string, Tensor> in{{"x", rand_tensor({2, 3, 8}, 54)}};
  auto act = make_fuse_activations_pass();
  run_and_compare(g, *act, in, 1e-6);  // silu kernel vs Sigmoid*Mul: an ulp or two
  EXPECT_EQ(count_op(g, "shardrt.SwiGLU"), 1);
  EXPECT_EQ(count_op(g, "shardrt.Silu"), 1);
  EXPECT_EQ(count_op(g, "Sigmoid"), 0);
  auto lin = make_fuse_linear_pass();
  run_and_compare(g, *lin, in, 1e-6);
  EXPECT_EQ(count_op(g, "MatMul"), 0);
  EXPECT_EQ(count_op(g, "shardrt.Linear"), 4);
  EXPECT_EQ(count_op(g, "shardrt.Silu"), 0);  // folded into proj2
  EXPECT_EQ(g.find_value("z")->producer->attr_s("activation", ""), "silu");
}

TEST(FuseActivations, SwiGLUNeedsEqualShapes) {
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim(2), Dim(4)});
  Value* b = g.add_input("b", DType::F32, {Dim(1), Dim(4)});  // broadcasts: not a SwiGLU
  Value* s = out(g.add_node("shardrt.Silu", "silu", {a}, {"s"}));
  g.outputs = {out(g.add_node("Mul", "m", {s, b}, {"y"}))};
  infer_graph(g);
  EXPECT_FALSE(make_fuse_activations_pass()->run(g));
}

// ---------------------------------------------------------------- autocast

namespace {
// x -> Linear(relu) -> (unfused) LayerNorm-ish: ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div ->
// MatMul -> y ; plus an integer-derived position path: Cast(ids) * 0.01 -> Cos -> Add to y.
Graph autocast_graph() {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(4), Dim(8)});
  Value* ids = g.add_input("ids", DType::I64, {Dim(4), Dim(1)});
  Node* lin = g.add_node("shardrt.Linear", "lin", {x, cst(g, "w1", rand_tensor({8, 8}, 60, -0.5, 0.5)),
                                                   cst(g, "b1", rand_tensor({8}, 61))},
                         {"h"}, {{"activation", Attr::of(std::string("relu"))}});
  Value* h = out(lin);
  Value* ax = i64s(g, "ax", {-1});
  Value* mean = out(g.add_node("ReduceMean", "mean", {h, ax}, {"mean"}));
  Value* d = out(g.add_node("Sub", "sub", {h, mean}, {"d"}));
  Value* sq = out(g.add_node("Pow", "pow", {d, scalar(g, "two", 2.f)}, {"sq"}));
  Value* var = out(g.add_node("ReduceMean", "var", {sq, ax}, {"var"}));
  Value* ve = out(g.add_node("Add", "eps", {var, scalar(g, "eps", 1e-6f)}, {"ve"}));
  Value* sd = out(g.add_node("Sqrt", "sqrt", {ve}, {"sd"}));
  Value* nrm = out(g.add_node("Div", "norm", {d, sd}, {"nrm"}));
  Value* y0 = out(g.add_node("MatMul", "mm", {nrm, cst(g, "w2", rand_tensor({8, 8}, 62, -0.5, 0.5))}, {"y0"}));
  Value* pf = out(g.add_node("Cast", "pos_f", {ids}, {"pf"}, {{"to", Attr::of(int64_t(onnx_type::FLOAT))}}));
  Value* ang = out(g.add_node("Mul", "ang", {pf, scalar(g, "freq", 0.01f)}, {"ang"}));
  Value* cs = out(g.add_node("Cos", "cos", {ang}, {"cs"}));
  Value* y = out(g.add_node("Add", "add_pos", {y0, cs}, {"y"}));
  g.outputs = {y, pf};
  infer_graph(g);
  return g;
}
}  // namespace

TEST(Autocast, LowersMathKeepsInterfaceAndIslands) {
  if (!find_schema("Cos") || !cpu::find_kernel("Cos")) GTEST_SKIP() << "Cos missing";
  for (DType t : {DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    Graph g = autocast_graph();
    std::map<std::string, Tensor> in{{"x", rand_tensor({4, 8}, 63)}, {"ids", Tensor(DType::I64, {4, 1})}};
    for (int i = 0; i < 4; ++i) in["ids"].data<int64_t>()[i] = 1000 + 37 * i;
    auto pass = make_autocast_pass(t);
    // Outputs are O(1..3); fp16 keeps ~11 bits (relative 5e-4 per rounding) and bf16 ~8 bits
    // (4e-3); two GEMMs of 8 plus the norm compound to a few roundings.
    double tol = t == DType::F16 ? 2e-2 : 1.2e-1;
    run_and_compare(g, *pass, in, tol);
    EXPECT_EQ(g.find_value("x")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("y")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("pf")->dtype, DType::F32);
    // Lowered: the Linear and its weight, the final MatMul.
    const Node* lin = find_op(g, "shardrt.Linear");
    EXPECT_EQ(lin->inputs[0]->dtype, t);
    EXPECT_EQ(lin->inputs[1]->dtype, t);
    EXPECT_TRUE(lin->inputs[1]->is_constant());
    EXPECT_EQ(find_op(g, "MatMul")->outputs[0]->dtype, t);
    // Kept in fp32: Pow, both ReduceMeans, the eps Add and Sqrt (fed only by islands), and
    // the integer-derived position path (positions 1000+ are not exact in bf16).
    EXPECT_EQ(g.find_value("sq")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("var")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("ve")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("sd")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("ang")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("cs")->dtype, DType::F32);
    EXPECT_EQ(g.find_value("nrm")->dtype, t);  // meets lowered data
    EXPECT_GE(count_op(g, "Cast"), 4);
    EXPECT_FALSE(g.find_value("w1"));  // the fp32 weights were replaced and dropped
    // The engine's own inference agrees with what the pass left.
    infer_graph(g);
    g.verify();
  }
}

TEST(Autocast, InPipelineAfterFusions) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim(16)});
  Value* mm = out(g.add_node("MatMul", "fc", {x, cst(g, "w", rand_tensor({16, 16}, 70, -0.3, 0.3))}, {"mm"}));
  Value* a = out(g.add_node("Add", "fc_bias", {mm, cst(g, "b", rand_tensor({16}, 71))}, {"a"}));
  Value* sg = out(g.add_node("Sigmoid", "sg", {a}, {"sg"}));
  g.outputs = {out(g.add_node("Mul", "silu", {a, sg}, {"y"}))};
  infer_graph(g);
  std::map<std::string, Tensor> in{{"x", rand_tensor({3, 16}, 72)}};
  auto before = run_graph_reference(g, in);
  PipelineOptions o;
  o.autocast = DType::F16;
  o.verify_each = true;
  std::vector<std::string> log;
  o.verbose = true;
  o.log = [&](const std::string& s) { log.push_back(s); };
  auto pm = default_pipeline(o);
  EXPECT_TRUE(pm.run(g));
  g.verify();
  EXPECT_EQ(count_op(g, "shardrt.Linear"), 1) << g.print();
  EXPECT_EQ(find_op(g, "shardrt.Linear")->attr_s("activation", ""), "silu");
  EXPECT_EQ(count_op(g, "Cast"), 2);  // one after x, one before y
  auto after = run_graph_reference(g, in);
  // |y| <= ~4; fp16 rounding of x, W, b and y plus a 16-term dot: well under 1e-2.
  EXPECT_LE(max_abs_diff(before.at("y"), after.at("y")), 1e-2);
  EXPECT_EQ(after.at("y").dtype(), DType::F32);
  bool saw = false;
  for (auto& l : log) saw |= l.find("fuse_linear") != std::string::npos;
  EXPECT_TRUE(saw);
}

// ---------------------------------------------------------------- kernels

namespace {
double act_ref(const std::string& a, double v) {
  if (a == "relu") return v > 0 ? v : 0;
  if (a == "gelu") return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
  if (a == "gelu_tanh") return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
  if (a == "silu") return v / (1 + std::exp(-v));
  return v;
}
}  // namespace

TEST(FusedLinearKernels, LinearMatchesPlainLoop) {
  struct Case { Dims x; int64_t n; bool tb; bool bias; std::string act; DType t; double tol; };
  // fp32: a K<=40 dot product in float vs double: ~1e-5 relative. fp16/bf16 results are
  // rounded once to the type (inputs are already in the type and the kernel computes in
  // fp32): half an ulp of |y| <= ~8, i.e. 4e-3 (fp16) and 3e-2 (bf16), plus slack.
  std::vector<Case> cases = {
      {{3, 5}, 4, false, true, "none", DType::F32, 1e-5},
      {{2, 3, 7}, 6, true, true, "relu", DType::F32, 1e-5},
      {{7}, 3, false, false, "gelu", DType::F32, 1e-5},
      {{2, 2, 40}, 9, true, true, "gelu_tanh", DType::F32, 1e-5},
      {{4, 16}, 8, false, true, "silu", DType::F32, 1e-5},
      {{4, 16}, 8, true, true, "gelu", DType::F16, 8e-3},
      {{3, 16}, 5, false, true, "silu", DType::BF16, 6e-2},
      {{3, 6}, 5, true, true, "relu", DType::F64, 1e-12},
      {{3, 0}, 4, false, true, "relu", DType::F32, 0},  // K = 0: bias only
  };
  int seed = 100;
  for (auto& c : cases) {
    SCOPED_TRACE(dims_str(c.x) + " " + c.act + " " + dtype_name(c.t));
    int64_t K = c.x.back();
    Tensor X = rand_tensor(c.x, seed++, -2, 2, c.t == DType::F64 ? DType::F32 : c.t);
    Tensor W = rand_tensor(c.tb ? Dims{c.n, K} : Dims{K, c.n}, seed++, -1, 1, c.t == DType::F64 ? DType::F32 : c.t);
    Tensor B = rand_tensor({c.n}, seed++, -1, 1, c.t == DType::F64 ? DType::F32 : c.t);
    if (c.t == DType::F64) { X = X.cast(DType::F64); W = W.cast(DType::F64); B = B.cast(DType::F64); }
    Graph g;
    Node* n = g.add_node("shardrt.Linear", "lin", {}, {"y"},
                         {{"trans_b", Attr::of(int64_t(c.tb))}, {"activation", Attr::of(c.act)}});
    std::vector<const Tensor*> ins{&X, &W};
    if (c.bias) ins.push_back(&B);
    auto outs = cpu::eval_node(*n, ins);
    ASSERT_EQ(outs.size(), 1u);
    const Tensor& Y = outs[0];
    EXPECT_EQ(Y.dtype(), c.t);
    Dims yd = c.x;
    yd.back() = c.n;
    ASSERT_EQ(Y.dims(), yd);
    int64_t M = X.numel() / std::max<int64_t>(K, 1);
    if (K == 0) M = Y.numel() / c.n;
    double worst = 0;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < c.n; ++j) {
        double acc = c.bias ? B.get_f(j) : 0;
        for (int64_t k = 0; k < K; ++k) acc += X.get_f(i * K + k) * (c.tb ? W.get_f(j * K + k) : W.get_f(k * c.n + j));
        worst = std::max(worst, std::abs(act_ref(c.act, acc) - Y.get_f(i * c.n + j)));
      }
    EXPECT_LE(worst, c.tol);
  }
}

TEST(FusedLinearKernels, SiluSwiGLU) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    SCOPED_TRACE(dtype_name(t));
    Tensor G = rand_tensor({3, 50001}, 200, -8, 8, t == DType::F64 ? DType::F32 : t);  // > one parallel chunk
    Tensor U = rand_tensor({3, 50001}, 201, -2, 2, t == DType::F64 ? DType::F32 : t);
    if (t == DType::F64) { G = G.cast(t); U = U.cast(t); }
    Graph g;
    Node* s = g.add_node("shardrt.Silu", "s", {}, {"y"});
    Node* w = g.add_node("shardrt.SwiGLU", "w", {}, {"z"});
    Tensor Ys = cpu::eval_node(*s, {&G})[0];
    Tensor Yw = cpu::eval_node(*w, {&G, &U})[0];
    ASSERT_EQ(Ys.dtype(), t);
    // One final rounding to the type: relative 2^-11 (fp16), 2^-8 (bf16); fp32 ~1e-7.
    double rel = t == DType::F16 ? 1e-3 : t == DType::BF16 ? 8e-3 : t == DType::F32 ? 1e-6 : 1e-14;
    double ws = 0, ww = 0;
    for (int64_t i = 0; i < G.numel(); ++i) {
      double gv = G.get_f(i), sv = gv / (1 + std::exp(-gv));
      ws = std::max(ws, std::abs(sv - Ys.get_f(i)) / (1 + std::abs(sv)));
      ww = std::max(ww, std::abs(sv * U.get_f(i) - Yw.get_f(i)) / (1 + std::abs(sv * U.get_f(i))));
    }
    EXPECT_LE(ws, rel);
    EXPECT_LE(ww, rel);
  }
}

TEST(FusedLinearSchemas, ShapesAndValidation) {
  Graph g;
  Value* x = g.add_input("x", DType::F16, {Dim::symbol("b"), Dim(3), Dim(8)});
  Value* w = g.add_input("w", DType::F16, {Dim(5), Dim(8)});
  Node* n = g.add_node("shardrt.Linear", "lin", {x, w}, {"y"}, {{"trans_b", Attr::of(int64_t(1))}});
  infer_node(g, *n);
  EXPECT_EQ(shape_str(n->outputs[0]->shape), "[b,3,5]");
  n->attrs["trans_b"] = Attr::of(int64_t(0));
  EXPECT_THROW(infer_node(g, *n), GraphError);  // K mismatch: 8 vs 5
  n->attrs["activation"] = Attr::of(std::string("swish"));
  EXPECT_NE(find_schema("shardrt.Linear")->validate(*n), "");
  Value* i = g.add_input("i", DType::I32, {Dim(2)});
  Node* s = g.add_node("shardrt.Silu", "silu", {i}, {"si"});
  EXPECT_THROW(infer_node(g, *s), GraphError);  // integers are refused
}
