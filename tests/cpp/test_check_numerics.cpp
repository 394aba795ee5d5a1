// --check-numerics on the CPU backend (ContextOptions::check_numerics): the first node whose
// float output holds NaN or Inf ends the run, named with its output, the counts and the
// first bad index; graph inputs are checked before any node; clean runs are unaffected.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "numerics_graphs.h"
#include "error_util.h"
#include "ir/graph.h"
#include "runtime/numerics.h"
#include "shardrt/engine.h"

using namespace shardrt;

namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// The environment variable turns the check on for every context: these tests decide it.
struct NoEnvCheck {
  NoEnvCheck() { unsetenv("SHARDRT_CHECK_NUMERICS"); }
};

ContextOptions checked() {
  ContextOptions o;
  o.device = "cpu";
  o.check_numerics = true;
  return o;
}


}  // namespace

TEST(CheckNumerics, NamesTheNodeThatMadeTheNaNNotLaterOnes) {
  NoEnvCheck env;
  Engine e = sqrt_chain("cpu");
  Tensor x = positive({3, 4});
  x.data<float>()[1 * 4 + 2] = -1.0f;  // index [1,2]
  ExecutionContext ctx(e, checked());
  std::string m = error_of([&] { ctx.run({{"x", x}}); });
  EXPECT_TRUE(has(m, "check-numerics")) << m;
  EXPECT_TRUE(has(m, "node 'sqrt_node' (Sqrt")) << m;
  EXPECT_TRUE(has(m, "output 0 'b'")) << m;
  EXPECT_TRUE(has(m, "1 NaN and 0 Inf")) << m;
  EXPECT_TRUE(has(m, "index [1,2]")) << m;
  EXPECT_TRUE(has(m, "held none, so this node produced them")) << m;
  EXPECT_FALSE(has(m, "add_after")) << m;
  EXPECT_FALSE(has(m, "relu_last")) << m;
}

TEST(CheckNumerics, CleanRunsAreUnaffected) {
  NoEnvCheck env;
  Engine e = sqrt_chain("cpu");
  ExecutionContext plain(e, ContextOptions{"cpu"});
  ExecutionContext ctx(e, checked());
  for (int64_t n : {1, 5, 8}) {
    Tensor x = positive({n, 4});
    auto want = plain.run({{"x", x}});
    std::map<std::string, Tensor> got;
    ASSERT_NO_THROW(got = ctx.run({{"x", x}})) << n;
    ASSERT_EQ(got.at("y").dims(), want.at("y").dims());
    for (int64_t i = 0; i < x.numel(); ++i) {
      // The same kernels on the same inputs: bit for bit.
      EXPECT_EQ(got.at("y").data<float>()[i], want.at("y").data<float>()[i]) << i;
      EXPECT_FLOAT_EQ(got.at("y").data<float>()[i], std::sqrt(2 * x.data<float>()[i]) + 1) << i;
    }
  }
}

TEST(CheckNumerics, OffMeansNoCheck) {
  NoEnvCheck env;
  Engine e = sqrt_chain("cpu");
  Tensor x = positive({2, 4});
  x.data<float>()[0] = -1.0f;
  ExecutionContext ctx(e, ContextOptions{"cpu"});
  std::map<std::string, Tensor> out;
  ASSERT_NO_THROW(out = ctx.run({{"x", x}}));  // (the final Relu may turn the NaN into 0)
  // Inputs are not checked either.
  x.data<float>()[1] = kNaN;
  EXPECT_NO_THROW(ctx.run({{"x", x}}));
}

TEST(CheckNumerics, EnvironmentVariableTurnsItOn) {
  NoEnvCheck env;
  Engine e = sqrt_chain("cpu");
  Tensor x = positive({2, 4});
  x.data<float>()[5] = -3.0f;
  setenv("SHARDRT_CHECK_NUMERICS", "1", 1);
  std::string m = error_of([&] { ExecutionContext(e, ContextOptions{"cpu"}).run({{"x", x}}); });
  setenv("SHARDRT_CHECK_NUMERICS", "0", 1);
  std::string off = error_of([&] { ExecutionContext(e, ContextOptions{"cpu"}).run({{"x", x}}); });
  unsetenv("SHARDRT_CHECK_NUMERICS");
  EXPECT_TRUE(has(m, "sqrt_node")) << m;
  EXPECT_EQ(off, "");
}

TEST(CheckNumerics, InfAndNaNCountedWithTheFirstIndex) {
  NoEnvCheck env;
  Graph g;
  Value* x = g.add_input("num", DType::F32, {2, 3});
  Value* d = g.add_input("den", DType::F32, {2, 3});
  g.outputs = {g.add_node("Div", "div_node", {x, d}, {"q"})->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  Tensor num = Tensor::from_f32({2, 3}, {1, 2, 3, 4, 0, -6});
  Tensor den = Tensor::from_f32({2, 3}, {1, 2, 3, 0, 0, 0});  // 4/0 = Inf, 0/0 = NaN, -6/0 = -Inf
  ExecutionContext ctx(e, checked());
  std::string m = error_of([&] { ctx.run({{"num", num}, {"den", den}}); });
  EXPECT_TRUE(has(m, "node 'div_node' (Div")) << m;
  EXPECT_TRUE(has(m, "1 NaN and 2 Inf")) << m;
  EXPECT_TRUE(has(m, "index [1,0]")) << m;
  EXPECT_TRUE(has(m, "its 2 float inputs held none")) << m;
}

TEST(CheckNumerics, GraphInputWithNaNIsNamed) {
  NoEnvCheck env;
  Engine e = sqrt_chain("cpu");
  Tensor x = positive({4, 4});
  x.data<float>()[2 * 4 + 3] = kNaN;
  x.data<float>()[3 * 4 + 0] = -kInf;
  ExecutionContext ctx(e, checked());
  std::string m = error_of([&] { ctx.run({{"x", x}}); });
  EXPECT_TRUE(has(m, "input 'x'")) << m;
  EXPECT_TRUE(has(m, "1 NaN and 1 Inf")) << m;
  EXPECT_TRUE(has(m, "index [2,3]")) << m;
  EXPECT_TRUE(has(m, "before any node ran")) << m;
  EXPECT_FALSE(has(m, "sqrt_node")) << m;
  // set_inputs checks too (the step benchmarks use).
  EXPECT_TRUE(has(error_of([&] { ctx.set_inputs({{"x", x}}); }), "input 'x'"));
}

TEST(CheckNumerics, InputsThatAlreadyHeldNaNAreNamed) {
  NoEnvCheck env;
  // A weight with a NaN: the Add that reads it is where it shows, and the message says the
  // NaN came in through the constant.
  Graph g;
  Value* x = g.add_input("x", DType::F32, {2, 2});
  Value* w = g.add_constant("bad_weight", Tensor::from_f32({2, 2}, {1, kNaN, 3, 4}));
  Value* s = g.add_node("Add", "add_weight", {x, w}, {"s"})->outputs[0];
  g.outputs = {g.add_node("Relu", "relu_next", {s}, {"y"})->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  ExecutionContext ctx(e, checked());
  std::string m = error_of([&] { ctx.run({{"x", Tensor::from_f32({2, 2}, {1, 1, 1, 1})}}); });
  EXPECT_TRUE(has(m, "node 'add_weight' (Add")) << m;
  EXPECT_TRUE(has(m, "its inputs already held NaN/Inf")) << m;
  EXPECT_TRUE(has(m, "input 1 'bad_weight' (constant")) << m;
  EXPECT_FALSE(has(m, "input 0 'x'")) << m;  // x was finite
  EXPECT_FALSE(has(m, "relu_next")) << m;
}

TEST(CheckNumerics, HalfBFloatAndDoubleOutputs) {
  NoEnvCheck env;
  for (DType t : {DType::F16, DType::BF16, DType::F64}) {
    Graph g;
    Value* x = g.add_input("x", t, {5});
    g.outputs = {g.add_node("Log", "log_node", {x}, {"y"})->outputs[0]};
    Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
    Tensor in(t, {5});
    const double vals[] = {1.0, 2.0, 0.0, -1.0, 0.0};  // log: 0, 0.69, -Inf, NaN, -Inf
    for (int i = 0; i < 5; ++i) in.set_f(i, vals[i]);
    ExecutionContext ctx(e, checked());
    std::string m = error_of([&] { ctx.run({{"x", in}}); });
    EXPECT_TRUE(has(m, "node 'log_node' (Log")) << dtype_name(t) << ": " << m;
    EXPECT_TRUE(has(m, "1 NaN and 2 Inf")) << dtype_name(t) << ": " << m;
    EXPECT_TRUE(has(m, "index [2]")) << dtype_name(t) << ": " << m;
    // Integer and clean outputs pass.
    for (int i = 0; i < 5; ++i) in.set_f(i, 1.0 + i);
    EXPECT_NO_THROW(ctx.run({{"x", in}})) << dtype_name(t);
  }
}

TEST(CheckNumerics, ParallelScanCountsEveryChunkAndKeepsTheSmallestIndex) {
  // 3M elements: several chunks of the parallel scan; the bad values sit in different ones.
  const int64_t n = 3'000'000;
  Tensor t(DType::F32, {n});
  for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = float(i % 7);
  t.data<float>()[2'000'001] = kNaN;
  t.data<float>()[2'999'999] = kInf;
  t.data<float>()[70'000] = -kInf;
  t.data<float>()[1'234'567] = kNaN;
  NumericsCount c = scan_numerics(t);
  EXPECT_EQ(c.nan, 2u);
  EXPECT_EQ(c.inf, 2u);
  EXPECT_EQ(c.first, 70'000);
  // The largest finite values are not Inf, in any format.
  Tensor big(DType::F64, {2});
  big.data<double>()[0] = std::numeric_limits<double>::max();
  big.data<double>()[1] = -std::numeric_limits<double>::max();
  EXPECT_FALSE(scan_numerics(big).bad());
  Tensor h(DType::F16, {1});
  h.set_f(0, 65504.0);  // fp16's largest finite value
  EXPECT_FALSE(scan_numerics(h).bad());
  // Integer tensors count nothing.
  EXPECT_FALSE(scan_numerics(Tensor::from_i64({-1, 0, 1})).bad());
}

TEST(CheckNumerics, MultiIndex) {
  EXPECT_EQ(multi_index(0, {2, 3, 4}), "[0,0,0]");
  EXPECT_EQ(multi_index(23, {2, 3, 4}), "[1,2,3]");
  EXPECT_EQ(multi_index(13, {2, 3, 4}), "[1,0,1]");
  EXPECT_EQ(multi_index(0, {}), "[]");
  EXPECT_EQ(multi_index(-1, {3}), "none");
}
