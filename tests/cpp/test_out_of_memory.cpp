// Running out of host memory is an Error with the sizes (what was asked, what the machine
// has), never a crash: the activation arena, an output without an arena slot, and the
// message format.
#include <gtest/gtest.h>

#include <regex>

#include "error_util.h"
#include "ir/graph.h"
#include "runtime/engine_impl.h"
#include "runtime/host_memory.h"
#include "shardrt/engine.h"

using namespace shardrt;

namespace {

// "... needs <bytes> bytes (<x> MB); the machine has <y> MB available (MemAvailable)"
void expect_sizes(const std::string& m, size_t bytes) {
  EXPECT_TRUE(has(m, "out of memory")) << m;
  EXPECT_TRUE(has(m, "needs " + std::to_string(bytes) + " bytes")) << m;
  EXPECT_TRUE(std::regex_search(m, std::regex(R"(the machine has [0-9]+\.[0-9] MB available \(MemAvailable\))"))) << m;
}

}  // namespace

TEST(OutOfMemory, ActivationArenaTooBigForTheMachine) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {4, 4});
  Value* r = g.add_node("Relu", "relu", {x}, {"r"})->outputs[0];
  g.outputs = {g.add_node("Neg", "neg", {r}, {"y"})->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  // What a profile of enormous max shapes plans (the build's sizing run cannot run at such
  // shapes, so the plan is set here): 4.4 TB, more than any test machine has.
  const size_t huge = size_t(1) << 42;
  e.impl().memory.arena_bytes = huge;
  std::string m = error_of([&] { ExecutionContext ctx(e, ContextOptions{"cpu"}); });
  expect_sizes(m, huge);
  EXPECT_TRUE(has(m, "activation arena")) << m;
}

TEST(OutOfMemory, OutputAllocationNamesTheNodeAndOutput) {
  // Expand to a shape that is an input: the build sizes it at zeros (empty), the run asks
  // for [2^20, 2^20, 2] floats = 8 TiB for the graph output.
  Graph g;
  Value* x = g.add_input("x", DType::F32, {1});
  Value* shape = g.add_input("shape", DType::I64, {3});
  g.outputs = {g.add_node("Expand", "expand_huge", {x, shape}, {"big"})->outputs[0]};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  ExecutionContext ctx(e, ContextOptions{"cpu"});
  std::map<std::string, Tensor> ins{{"x", Tensor::from_f32({1}, {1.0f})},
                                    {"shape", Tensor::from_i64({1 << 20, 1 << 20, 2})}};
  std::string m = error_of([&] { ctx.run(ins); });
  expect_sizes(m, size_t(1) << 43);
  EXPECT_TRUE(has(m, "output 0 'big'")) << m;
  EXPECT_TRUE(has(m, "node 'expand_huge' (Expand")) << m;
  // The context is still usable at a size that fits.
  ins["shape"] = Tensor::from_i64({2, 3, 1});
  std::map<std::string, Tensor> out;
  ASSERT_NO_THROW(out = ctx.run(ins));
  EXPECT_EQ(out.at("big").dims(), (Dims{2, 3, 1}));
}

TEST(OutOfMemory, MessageFormat) {
  std::string m = host_oom_message("the thing", 3'000'000);
  EXPECT_TRUE(has(m, "out of memory: the thing needs 3000000 bytes (3.0 MB); ")) << m;
  if (host_memory_available()) EXPECT_TRUE(has(m, "MB available (MemAvailable)")) << m;
  // Beyond RAM + swap: refused without trying.
  if (host_memory_total()) EXPECT_EQ(try_host_alloc(host_memory_total() + 1), nullptr);
  auto p = try_host_alloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p.get()) % 64, 0u);
}
