// --check-numerics on the CUDA backend: the device reduction (kernels_numerics.cu) finds
// NaN and Inf after each node, names the node that made them and not later ones, counts
// exactly over many blocks, checks graph inputs and nodes that fall back to the CPU, and
// leaves clean runs (and their results) unchanged.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <limits>

#include "../numerics_graphs.h"
#include "../error_util.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

using namespace shardrt;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

ContextOptions on_gpu(bool check) {
  unsetenv("SHARDRT_CHECK_NUMERICS");  // the tests decide
  ContextOptions o;
  o.device = "cuda";
  o.check_numerics = check;
  return o;
}

}  // namespace

TEST(CudaCheckNumerics, NamesTheNodeThatMadeTheNaN) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  Engine e = sqrt_chain("cuda");
  ExecutionContext ctx(e, on_gpu(true));
  Tensor x = positive({3, 4});
  ASSERT_NO_THROW(ctx.run({{"x", x}}));  // clean first: the context survives runs either way
  x.data<float>()[1 * 4 + 2] = -1.0f;
  std::string m = error_of([&] { ctx.run({{"x", x}}); });
  EXPECT_TRUE(has(m, "node 'sqrt_node' (Sqrt")) << m;
  EXPECT_TRUE(has(m, "1 NaN and 0 Inf")) << m;
  EXPECT_TRUE(has(m, "index [1,2]")) << m;
  EXPECT_TRUE(has(m, "held none, so this node produced them")) << m;
  EXPECT_FALSE(has(m, "add_after")) << m;
  EXPECT_FALSE(has(m, "relu_last")) << m;
  // The same shapes again, clean: no CUDA graph replays a run that should be checked.
  x.data<float>()[1 * 4 + 2] = 1.0f;
  EXPECT_NO_THROW(ctx.run({{"x", x}}));
  x.data<float>()[0] = -5.0f;
  EXPECT_TRUE(has(error_of([&] { ctx.run({{"x", x}}); }), "sqrt_node"));
}

TEST(CudaCheckNumerics, CleanRunsMatchUncheckedRuns) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  Engine e = sqrt_chain("cuda");
  ExecutionContext plain(e, on_gpu(false)), checked(e, on_gpu(true));
  for (int64_t n : {1, 5, 8}) {
    Tensor x = positive({n, 4});
    auto want = plain.run({{"x", x}});
    std::map<std::string, Tensor> got;
    ASSERT_NO_THROW(got = checked.run({{"x", x}})) << n;
    ASSERT_EQ(got.at("y").nbytes(), want.at("y").nbytes());
    // The same kernels on the same inputs: bit for bit.
    EXPECT_EQ(std::memcmp(got.at("y").raw(), want.at("y").raw(), want.at("y").nbytes()), 0) << n;
  }
  // Off: the NaN goes unreported (the final Relu may turn it into 0).
  Tensor x = positive({2, 4});
  x.data<float>()[3] = -1.0f;
  EXPECT_NO_THROW(plain.run({{"x", x}}));
}

TEST(CudaCheckNumerics, CountsExactlyOverManyBlocks) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // 3M elements: more than the 4096-block grid covers in one stride, so threads loop and
  // every block reduces; the bad values sit far apart.
  const int64_t n = 3'000'000;
  Graph g;
  Value* x = g.add_input("x", DType::F32, {n});
  g.outputs = {g.add_node("Sqrt", "big_sqrt", {x}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.device = "cuda";
  Engine e = build_engine_from_graph(std::move(g), cfg);
  Tensor in(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) in.data<float>()[i] = float(i % 7);
  for (int64_t i : {2'999'999, 70'001, 1'048'576}) in.data<float>()[i] = -2.0f;  // NaN after Sqrt
  ExecutionContext ctx(e, on_gpu(true));
  std::string m = error_of([&] { ctx.run({{"x", in}}); });
  EXPECT_TRUE(has(m, "node 'big_sqrt' (Sqrt")) << m;
  EXPECT_TRUE(has(m, "3 NaN and 0 Inf")) << m;
  EXPECT_TRUE(has(m, "index [70001]")) << m;
}

TEST(CudaCheckNumerics, InfAndNaNInHalfBFloatAndDouble) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    Graph g;
    Value* x = g.add_input("x", t, {5});
    g.outputs = {g.add_node("Log", "log_node", {x}, {"y"})->outputs[0]};
    BuildConfig cfg;
    cfg.device = "cuda";
    Engine e = build_engine_from_graph(std::move(g), cfg);
    Tensor in(t, {5});
    const double vals[] = {1.0, 2.0, 0.0, -1.0, 0.0};  // log: 0, 0.69, -Inf, NaN, -Inf
    for (int i = 0; i < 5; ++i) in.set_f(i, vals[i]);
    ExecutionContext ctx(e, on_gpu(true));
    std::string m = error_of([&] { ctx.run({{"x", in}}); });
    EXPECT_TRUE(has(m, "node 'log_node' (Log")) << dtype_name(t) << ": " << m;
    EXPECT_TRUE(has(m, "1 NaN and 2 Inf")) << dtype_name(t) << ": " << m;
    EXPECT_TRUE(has(m, "index [2]")) << dtype_name(t) << ": " << m;
    for (int i = 0; i < 5; ++i) in.set_f(i, 1.0 + i);
    EXPECT_NO_THROW(ctx.run({{"x", in}})) << dtype_name(t);
  }
}

TEST(CudaCheckNumerics, GraphInputsAndConstantsAreNamed) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  Engine e = sqrt_chain("cuda");
  ExecutionContext ctx(e, on_gpu(true));
  Tensor x = positive({2, 4});
  x.data<float>()[6] = kInf;
  std::string m = error_of([&] { ctx.run({{"x", x}}); });
  EXPECT_TRUE(has(m, "input 'x'")) << m;
  EXPECT_TRUE(has(m, "0 NaN and 1 Inf")) << m;
  EXPECT_TRUE(has(m, "index [1,2]")) << m;

  Graph g;
  Value* in = g.add_input("x", DType::F32, {2, 2});
  Value* w = g.add_constant("bad_weight", Tensor::from_f32({2, 2}, {1, kNaN, 3, 4}));
  Value* s = g.add_node("Add", "add_weight", {in, w}, {"s"})->outputs[0];
  g.outputs = {g.add_node("Relu", "relu_next", {s}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.device = "cuda";
  Engine e2 = build_engine_from_graph(std::move(g), cfg);
  ExecutionContext ctx2(e2, on_gpu(true));
  m = error_of([&] { ctx2.run({{"x", Tensor::from_f32({2, 2}, {1, 1, 1, 1})}}); });
  EXPECT_TRUE(has(m, "node 'add_weight' (Add")) << m;
  EXPECT_TRUE(has(m, "input 1 'bad_weight' (constant")) << m;
  EXPECT_FALSE(has(m, "relu_next")) << m;
}

TEST(CudaCheckNumerics, CpuFallbackNodesAreChecked) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // Einsum has no CUDA kernel: it runs on the CPU inside the GPU run. Inf * 0 = NaN.
  Graph g;
  Value* a = g.add_input("a", DType::F32, {3});
  Value* b = g.add_input("b", DType::F32, {3});
  Value* p = g.add_node("Mul", "mul_first", {a, b}, {"p"})->outputs[0];
  Value* q = g.add_node("Einsum", "einsum_cpu", {p, b}, {"q"}, {{"equation", Attr::of(std::string("i,i->i"))}})
                 ->outputs[0];
  g.outputs = {g.add_node("Neg", "neg_last", {q}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.device = "cuda";
  Engine e = build_engine_from_graph(std::move(g), cfg);
  ExecutionContext ctx(e, on_gpu(true));
  // p = a*b = [1e20, 2, 3] is finite; q = p*b = [1e40 -> Inf, 4, 9]: the Einsum makes it.
  std::string m = error_of([&] {
    ctx.run({{"a", Tensor::from_f32({3}, {1.0f, 1.0f, 1.0f})}, {"b", Tensor::from_f32({3}, {1e20f, 2.0f, 3.0f})}});
  });
  EXPECT_TRUE(has(m, "node 'einsum_cpu' (Einsum")) << m;
  EXPECT_TRUE(has(m, "0 NaN and 1 Inf")) << m;
  EXPECT_TRUE(has(m, "index [0]")) << m;
  EXPECT_FALSE(has(m, "mul_first")) << m;
  EXPECT_FALSE(has(m, "neg_last")) << m;
  EXPECT_NO_THROW(
      ctx.run({{"a", Tensor::from_f32({3}, {1.0f, 1.0f, 1.0f})}, {"b", Tensor::from_f32({3}, {1.0f, 2.0f, 3.0f})}}));
}
