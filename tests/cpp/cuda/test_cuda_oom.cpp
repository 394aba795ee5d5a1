// Running out of GPU memory is an Error naming what was being allocated, the bytes asked,
// and what cudaMemGetInfo reported free and in total at that moment; the context (and the
// process) stays usable afterwards.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <regex>

#include "../error_util.h"
#include "backends/cuda/cuda_eval.h"
#include "backends/cuda/device_memory.h"
#include "ir/graph.h"
#include "runtime/engine_impl.h"
#include "shardrt/engine.h"

using namespace shardrt;

namespace {

void expect_sizes(const std::string& m, size_t bytes) {
  EXPECT_TRUE(has(m, "out of GPU memory")) << m;
  EXPECT_TRUE(has(m, "needs " + std::to_string(bytes) + " bytes")) << m;
  EXPECT_TRUE(std::regex_search(
      m, std::regex(R"(the GPU has [0-9]+\.[0-9] MB free of [1-9][0-9]*\.[0-9] MB \(cudaMemGetInfo\))")))
      << m;
}

Engine small_engine() {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("N"), 4});
  Value* r = g.add_node("Relu", "relu", {x}, {"r"})->outputs[0];
  g.outputs = {g.add_node("Neg", "neg", {r}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 4}, {2, 4}, {8, 4}};
  cfg.device = "cuda";
  return build_engine_from_graph(std::move(g), cfg);
}

ContextOptions cuda_opts() {
  ContextOptions o;
  o.device = "cuda";
  return o;
}

}  // namespace

TEST(CudaOutOfMemory, ActivationArenaOfTenTerabytes) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  Engine e = small_engine();
  // What a profile of enormous max shapes plans (the build's sizing run cannot run at such
  // shapes on the host, so the plan is set here): 10 TB, more than any GPU has.
  const size_t huge = size_t(10) * 1000 * 1000 * 1000 * 1000;
  const size_t planned = e.impl().memory.arena_bytes;
  e.impl().memory.arena_bytes = huge;
  std::string m = error_of([&] { ExecutionContext ctx(e, cuda_opts()); });
  expect_sizes(m, huge);
  EXPECT_TRUE(has(m, "activation arena")) << m;
  // Nothing sticky: a context with the real plan runs.
  e.impl().memory.arena_bytes = planned;
  ExecutionContext ok(e, cuda_opts());
  auto out = ok.run({{"x", Tensor::from_f32({2, 4}, {1, -2, 3, -4, 5, -6, 7, -8})}});
  EXPECT_EQ(out.at("y").data<float>()[0], -1.0f);
  EXPECT_EQ(out.at("y").data<float>()[1], 0.0f);
}

TEST(CudaOutOfMemory, InputBufferForProfileMaxShapes) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  Engine e = small_engine();
  // Input staging buffers are sized for the profile's max: 2^40 x 4 floats = 16 TiB.
  const int64_t rows = int64_t(1) << 40;
  e.impl().inputs[0].profile->max = {rows, 4};
  std::string m = error_of([&] { ExecutionContext ctx(e, cuda_opts()); });
  expect_sizes(m, size_t(rows) * 4 * sizeof(float));
  EXPECT_TRUE(has(m, "input 'x'")) << m;
}

TEST(CudaOutOfMemory, DeviceAllocNamesTheNode) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const size_t huge = size_t(1) << 44;
  try {
    cuda::device_alloc(huge, "a test buffer", "node 'n1' (Relu)");
    FAIL() << "a 16 TiB allocation succeeded";
  } catch (const cuda::DeviceOutOfMemory& oom) {
    std::string m = oom.what();
    expect_sizes(m, huge);
    EXPECT_TRUE(has(m, "a test buffer")) << m;
    EXPECT_TRUE(has(m, "in node 'n1' (Relu)")) << m;
    EXPECT_EQ(oom.bytes, huge);
    EXPECT_GT(oom.total_bytes, 0u);
    EXPECT_LE(oom.free_bytes, oom.total_bytes);
    // with_node adds a node only where none is named yet.
    EXPECT_EQ(std::string(oom.with_node("node 'other' (Neg)").what()), m);
  }
  void* p = cuda::device_alloc(256, "a small buffer");
  EXPECT_NE(p, nullptr);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);  // the failure above left no error behind
}
