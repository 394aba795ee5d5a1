// The CUDA execution context: whole engines built with the Network API run on the CPU and
// on the GPU with the same results; graph replay, several shapes of one profile, profile
// checks, CPU fallback of an op without a CUDA kernel, poisoned buffers, the split API.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "../op_test_util.h"
#include "backends/cuda/cuda_common.h"  // cuda::Unsupported
#include "backends/cuda/cuda_eval.h"
#include "dist/communicator.h"
#include "ir/graph.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using shardrt::optest::random_tensor;

namespace {

#define REQUIRE_GPU() \
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU: " << shardrt::cuda::device_description()

// x [batch, 64] -> Linear(64->96, gelu) -> LayerNorm -> Linear(96->32) + residual slice
// -> Reshape [batch, 4, 8] -> Softmax: GEMMs, an activation, a norm, a view, shape math.
Engine mlp_engine(std::optional<DType> autocast = std::nullopt, const std::string& device = "cpu") {
  Network net("mlp");
  ITensor x = net.input("x", DType::F32, {-1, 64}, {"batch"});
  ITensor w1 = net.weight("w1", random_tensor(DType::F32, {96, 64}, -0.2, 0.2, 1));
  ITensor b1 = net.weight("b1", random_tensor(DType::F32, {96}, -0.1, 0.1, 2));
  ITensor g = net.weight("g", random_tensor(DType::F32, {96}, 0.5, 1.5, 3));
  ITensor bb = net.weight("bb", random_tensor(DType::F32, {96}, -0.1, 0.1, 4));
  ITensor w2 = net.weight("w2", random_tensor(DType::F32, {32, 96}, -0.2, 0.2, 5));
  ITensor h = net.linear(x, w1, b1, Activation::Gelu);
  h = net.layer_norm(h, g, bb, 1e-5f);
  ITensor y = net.linear(h, w2);
  y = net.add(y, net.slice(x, {0, 0}, {INT64_MAX, 32}, {0, 1}));
  y = net.reshape(y, {-1, 4, 8});
  net.output(net.softmax(y, -1), "y");
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 64}, {4, 64}, {16, 64}};
  cfg.autocast = autocast;
  cfg.device = device;
  return build_engine(net, cfg);
}

void expect_near_all(const Tensor& got, const Tensor& want, double atol, double rtol, const std::string& what) {
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  ASSERT_EQ(got.dims(), want.dims()) << what;
  int bad = 0;
  for (int64_t i = 0; i < got.numel() && bad < 10; ++i) {
    double a = got.get_f(i), b = want.get_f(i);
    if (!(std::fabs(a - b) <= atol + rtol * std::fabs(b))) {
      ADD_FAILURE() << what << " element " << i << ": cuda " << a << " cpu " << b;
      ++bad;
    }
  }
}

void expect_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dims(), b.dims()) << what;
  ASSERT_EQ(a.nbytes(), b.nbytes()) << what;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << ": runs differ";
}

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

}  // namespace

TEST(CudaExecutor, MlpMatchesCpuInFp32AcrossShapesAndReplays) {
  REQUIRE_GPU();
  Engine e = mlp_engine();
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  ExecutionContext gpu(e, ContextOptions{"cuda"});
  EXPECT_EQ(gpu.device(), "cuda");
  // batch 3, then 16 (another signature of the same profile), then 3 again (its graph).
  for (int64_t batch : {3, 16, 3, 1}) {
    Tensor x = random_tensor(DType::F32, {batch, 64}, -2, 2, 10 + unsigned(batch));
    Tensor want = cpu.run({{"x", x}}).at("y");
    Tensor first = gpu.run({{"x", x}}).at("y");
    // fp32 everywhere (the GEMMs compute in fp32, no TF32): only the order of the 64- and
    // 96-term sums and the exp/erf implementations differ, a few ulp of values <= 1.
    expect_near_all(first, want, 2e-5, 1e-4, "batch " + std::to_string(batch));
    // The second run is eager again and captured; the third and fourth replay the graph:
    // all bit-identical to the first.
    for (int r = 0; r < 3; ++r) expect_identical(gpu.run({{"x", x}}).at("y"), first, "replay " + std::to_string(r));
  }
}

TEST(CudaExecutor, MlpMatchesCpuWithFp16Autocast) {
  REQUIRE_GPU();
  Engine e = mlp_engine(DType::F16);
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  ExecutionContext gpu(e, ContextOptions{"cuda"});
  Tensor x = random_tensor(DType::F32, {5, 64}, -2, 2, 7);
  Tensor want = cpu.run({{"x", x}}).at("y");
  Tensor got = gpu.run({{"x", x}}).at("y");
  // Both round every intermediate to fp16 (~5e-4 relative) but may round at different
  // places (fused epilogues, accumulation order); a few such roundings through two GEMMs
  // and a LayerNorm stay well within 1e-2 on softmax outputs in [0, 1].
  expect_near_all(got, want, 1e-2, 1e-2, "fp16 autocast");
  for (int r = 0; r < 2; ++r) expect_identical(gpu.run({{"x", x}}).at("y"), got, "fp16 capture and replay");
}

TEST(CudaExecutor, RefusesInputsOutsideTheProfile) {
  REQUIRE_GPU();
  Engine e = mlp_engine();
  ExecutionContext gpu(e, ContextOptions{"cuda"});
  try {
    gpu.run({{"x", random_tensor(DType::F32, {17, 64}, -1, 1, 1)}});
    FAIL() << "batch 17 is outside the profile 1..16";
  } catch (const Error& ex) {
    EXPECT_NE(std::string(ex.what()).find("outside the engine's profile"), std::string::npos) << ex.what();
  }
  try {
    gpu.run({{"x", random_tensor(DType::F16, {4, 64}, -1, 1, 1)}});
    FAIL() << "fp16 input for an fp32 binding";
  } catch (const Error& ex) {
    EXPECT_NE(std::string(ex.what()).find("dtype"), std::string::npos) << ex.what();
  }
}

TEST(CudaExecutor, SplitApiPoisonProfilingAndNoGraphsAgree) {
  REQUIRE_GPU();
  // Built for CUDA, at the profile's opt shape: the engine carries the GEMM tactics, so every
  // context below runs the same cuBLASLt algorithms (each context timing its own could pick
  // another whose sums differ in the last bits, and the runs are compared bit for bit).
  Engine e = mlp_engine(std::nullopt, "cuda");
  Tensor x = random_tensor(DType::F32, {4, 64}, -2, 2, 3);
  Tensor ref;
  {
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    gpu.set_inputs({{"x", x}});
    for (int i = 0; i < 4; ++i) gpu.execute();  // two eager (the second captured), two replays, queued
    gpu.synchronize();
    ref = gpu.outputs().at("y");
    EXPECT_THROW(ExecutionContext(e, ContextOptions{"cuda"}).execute(), Error);
  }
  {
    // Every output filled with 0xff (NaN) before its kernel: an element left unwritten shows.
    ScopedEnv p("SHARDRT_POISON", "1");
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    for (int i = 0; i < 3; ++i) expect_identical(gpu.run({{"x", x}}).at("y"), ref, "poisoned run " + std::to_string(i));
  }
  {
    ScopedEnv g("SHARDRT_CUDA_GRAPHS", "0");
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    for (int i = 0; i < 2; ++i) expect_identical(gpu.run({{"x", x}}).at("y"), ref, "eager run " + std::to_string(i));
  }
  {
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    gpu.set_profiling(true);
    for (int i = 0; i < 2; ++i) expect_identical(gpu.run({{"x", x}}).at("y"), ref, "profiled run");
    std::string rep = gpu.profile_report(5);
    EXPECT_NE(rep.find("profile: 2 runs"), std::string::npos) << rep;
    // The LayerNorm runs fused into the Linear after it (fuse_norm_linear).
    EXPECT_NE(rep.find("shardrt.NormLinear"), std::string::npos) << rep;
  }
}

// Whether stderr carries the executor's note that a node ran on the CPU (or, from an older
// wording, that its signature ran without a CUDA graph because of it).
bool has_fallback_note(const std::string& err) {
  return err.find("runs on the CPU") != std::string::npos || err.find("has no CUDA kernel") != std::string::npos ||
         err.find("without a CUDA graph") != std::string::npos;
}

TEST(CudaExecutor, OpWithoutCudaKernelFallsBackToTheCpu) {
  REQUIRE_GPU();
  if (cuda::has_kernel("Einsum")) GTEST_SKIP() << "Einsum has a CUDA kernel now; pick another op for this test";
  // 2048 columns: relu's fp32 output (24 KB at n = 3) is too big to run on the host, so the
  // Einsum's input really lives on the GPU and the fallback downloads and re-uploads.
  Network net("fallback");
  ITensor a = net.input("a", DType::F32, {-1, 2048}, {"n"});
  ITensor w = net.weight("w", random_tensor(DType::F32, {2048, 7}, -1, 1, 2));
  Network::Attrs at;
  at.s["equation"] = "ij,jk->ik";
  ITensor y = net.op("Einsum", {net.relu(a), w}, at)[0];
  net.output(net.add(y, y), "y");
  BuildConfig cfg;
  cfg.shapes["a"] = {{1, 2048}, {3, 2048}, {8, 2048}};
  Engine e = build_engine(net, cfg);
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  // The note may come when the context is made or at the first run, once per context (or
  // per process): capture from before the context exists to the end of the runs.
  testing::internal::CaptureStderr();
  std::string err;
  {
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    for (int64_t n : {3, 8, 3}) {
      Tensor x = random_tensor(DType::F32, {n, 2048}, -1, 1, unsigned(n));
      Tensor got = gpu.run({{"a", x}}).at("y");
      // The Einsum runs on the CPU's kernel in both contexts; relu and add on the GPU are exact.
      // 1e-5 leaves room should the two ever sum in another order (2048 fp32 terms ~ 1e-6).
      expect_near_all(got, cpu.run({{"a", x}}).at("y"), 1e-5, 1e-5, "einsum n=" + std::to_string(n));
    }
  }
  err = testing::internal::GetCapturedStderr();
  if (!has_fallback_note(err)) ADD_FAILURE() << "expected a note about the CPU fallback on stderr, got: " << err;
}

// A kernel that refuses a case it does not handle (cuda::Unsupported: ReduceSum has no int8
// kernel on the GPU, the CPU has one) hands the node to the CPU with a note saying why.
TEST(CudaExecutor, KernelRefusingACaseFallsBackToTheCpu) {
  REQUIRE_GPU();
  {
    // Only meaningful while the GPU's ReduceSum refuses int8.
    Node probe;
    probe.op = "ReduceSum";
    probe.name = "probe";
    Tensor x = random_tensor(DType::I8, {2, 5}, -5, 5, 1);
    Tensor axes = Tensor::from_i64({-1});
    bool refused = false;
    try {
      cuda::eval_node(probe, {&x, &axes});
    } catch (const cuda::Unsupported&) {
      refused = true;
    }
    if (!refused) GTEST_SKIP() << "the GPU's ReduceSum takes int8 now; pick another refused case for this test";
  }
  // 6000 int8 columns: relu's output (18 KB at n = 3) is too big to run on the host, so the
  // ReduceSum's input lives on the GPU and its kernel really runs (and refuses).
  Network net("refused");
  ITensor a = net.input("a", DType::I8, {-1, 6000}, {"n"});
  ITensor axes = net.weight("axes", Tensor::from_i64({-1}));
  Network::Attrs at;
  at.i["keepdims"] = 1;
  ITensor y = net.op("ReduceSum", {net.relu(a), axes}, at)[0];
  net.output(y, "y");
  BuildConfig cfg;
  cfg.shapes["a"] = {{1, 6000}, {3, 6000}, {4, 6000}};
  Engine e = build_engine(net, cfg);
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  testing::internal::CaptureStderr();
  {
    ExecutionContext gpu(e, ContextOptions{"cuda"});
    for (int64_t n : {3, 4, 3}) {
      // Whole numbers in [-99, 1]: after relu about 1 in 100 is 1, so a row sums to ~60 (sd ~8),
      // inside int8. The CPU's kernel runs in both contexts: equal exactly.
      Tensor x = random_tensor(DType::I8, {n, 6000}, -99, 2, unsigned(n));
      Tensor got = gpu.run({{"a", x}}).at("y");
      Tensor want = cpu.run({{"a", x}}).at("y");
      ASSERT_EQ(got.dims(), want.dims());
      for (int64_t i = 0; i < want.numel(); ++i) EXPECT_EQ(got.get_i(i), want.get_i(i)) << "n=" << n << " row " << i;
    }
  }
  const std::string err = testing::internal::GetCapturedStderr();
  if (err.find("runs on the CPU") == std::string::npos && err.find("without a CUDA graph") == std::string::npos)
    ADD_FAILURE() << "expected a note that ReduceSum runs on the CPU on stderr, got: " << err;
}

TEST(CudaExecutor, BuildForCudaRecordsTacticsThatSurviveTheEngineFile) {
  REQUIRE_GPU();
  Network net("tactics");
  ITensor x = net.input("x", DType::F32, {-1, 256}, {"batch"});
  ITensor w = net.weight("w", random_tensor(DType::F32, {128, 256}, -0.1, 0.1, 4));
  net.output(net.linear(x, w), "y");
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 256}, {32, 256}, {64, 256}};
  cfg.device = "cuda";
  Engine e = build_engine(net, cfg);
  EXPECT_NE(e.inspect(true).find("\"device\": \"cuda\""), std::string::npos);
  std::string path = testing::TempDir() + "/cuda_tactics.engine";
  e.save(path);
  Engine loaded = Engine::load(path);
  size_t with = 0;
  for (auto& n : loaded.graph().nodes) with += n->attrs.count("cuda_tactics");
  // Only kernels that choose something record tactics; say so rather than fail when the
  // GEMM recorded none.
  if (!with) std::fprintf(stderr, "note: no node recorded CUDA tactics\n");
  ExecutionContext gpu(loaded);  // the engine's own device setting
  EXPECT_EQ(gpu.device(), "cuda");
  Tensor xin = random_tensor(DType::F32, {32, 256}, -1, 1, 5);
  ExecutionContext cpu(loaded, ContextOptions{"cpu"});
  // 256-term fp32 dot products of values <= 1 x 0.1: sums of order 1, order-of-summation
  // differences of a few ulp times sqrt(256).
  expect_near_all(gpu.run({{"x", xin}}).at("y"), cpu.run({{"x", xin}}).at("y"), 1e-5, 1e-4, "tuned engine");
  std::remove(path.c_str());
}

// A tensor-parallel engine's collectives on one rank: the context's communicator is a world
// of one, so the device communicator is NCCL's (no GPU is shared), the all-reduce is an
// identity, and its launch is captured in the CUDA graph with the rest.
TEST(CudaExecutor, CollectiveThroughNcclOnOneRankIsCapturedAndExact) {
  REQUIRE_GPU();
  auto make = [] {
    Graph g;
    Value* x = g.add_input("x", DType::F32, {Dim(4), Dim(3000)});
    Node* ar = g.add_node("shardrt.AllReduce", "ar", {x}, {"s"}, {{"group", Attr::of(std::string("tp"))}});
    Node* relu = g.add_node("Relu", "relu", {ar->outputs[0]}, {"y"});
    g.outputs = {relu->outputs[0]};
    return g;
  };
  BuildConfig cfg;
  cfg.device = "cuda";
  Engine e = build_engine_from_graph(make(), cfg);
  auto comm = dist::make_single_communicator();
  Tensor x = random_tensor(DType::F32, {4, 3000}, -2, 2, 77);
  ExecutionContext cpu(e, ContextOptions{"cpu", comm.get()});
  Tensor want = cpu.run({{"x", x}}).at("y");
  testing::internal::CaptureStderr();
  {
    ExecutionContext gpu(e, ContextOptions{"cuda", comm.get()});
    for (int r = 0; r < 3; ++r) {
      Tensor got = gpu.run({{"x", x}}).at("y");
      expect_identical(got, want, "run " + std::to_string(r));  // a sum over one rank is exact
    }
  }
  std::string err = testing::internal::GetCapturedStderr();
  // No "NCCL not available" (staged) and no "without a CUDA graph" note.
  EXPECT_EQ(err.find("NCCL not available"), std::string::npos) << err;
  EXPECT_EQ(err.find("without a CUDA graph"), std::string::npos) << err;
}

// The small kernels around a decoder's layers, chained as in a decode step and launched with
// programmatic dependent launch (each may start while the one before it runs): token and
// position embeddings (Gather; the positions through an int64 Add), their fp16 Add, an Expand
// feeding GatherElements (the last token's row), a LayerNorm, a Cast to fp32 and an ArgMax
// over a row long enough for its split path (parts merged by the last block). Replayed as a
// CUDA graph with new inputs every run, each compared with the CPU: a kernel reading its input
// before the one producing it has finished would read the previous run's values.
TEST(CudaExecutor, DecodeHeadAndTailChainMatchesCpuAcrossGraphReplays) {
  REQUIRE_GPU();
  constexpr int64_t kV = 40, kP = 24;
  constexpr int64_t kD = 20000;  // > 16384: ArgMax splits the row over blocks, then merges
  Network net("decode_chain");
  ITensor ids = net.input("ids", DType::I64, {1, -1}, {"b", "seq"});
  ITensor pos = net.input("pos", DType::I64, {1, -1}, {"b", "seq"});
  ITensor last = net.input("last", DType::I64, {1, 1, 1});
  ITensor wte = net.weight("wte", random_tensor(DType::F16, {kV, kD}, -1, 1, 1));
  ITensor wpe = net.weight("wpe", random_tensor(DType::F16, {kP, kD}, -1, 1, 2));
  ITensor h = net.add(net.gather(wte, ids), net.gather(wpe, net.add(pos, net.weight("one", Tensor::from_i64({1})))));
  Network::Attrs ax1;
  ax1.i["axis"] = 1;
  ITensor idx = net.op("Expand", {last, net.weight("row_shape", Tensor::from_i64({1, 1, kD}))})[0];
  ITensor row = net.op("GatherElements", {h, idx}, ax1)[0];
  net.output(net.layer_norm(row, net.weight("g", random_tensor(DType::F16, {kD}, 0.5, 1.5, 3)),
                            net.weight("bb", random_tensor(DType::F16, {kD}, -0.1, 0.1, 4))),
             "normed");
  ITensor logits = net.cast(row, DType::F32);
  net.output(logits, "logits");
  Network::Attrs am;
  am.i["axis"] = -1;
  am.i["keepdims"] = 0;
  net.output(net.op("ArgMax", {logits}, am)[0], "next");
  BuildConfig cfg;
  cfg.shapes["ids"] = {{1, 1}, {1, 4}, {1, 8}};
  cfg.shapes["pos"] = {{1, 1}, {1, 4}, {1, 8}};
  Engine e = build_engine(net, cfg);
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  ExecutionContext gpu(e, ContextOptions{"cuda"});
  // 5 eager, captured, then replayed; 3 eager and captured; 5's graph replayed again.
  unsigned seed = 100;
  for (int64_t S : {5, 5, 5, 5, 3, 3, 5}) {
    ++seed;
    Tensor pos_t(DType::I64, {1, S});
    const int64_t start = int64_t(seed) % (kP - S);  // pos + 1 stays below kP
    for (int64_t i = 0; i < S; ++i) pos_t.data<int64_t>()[i] = start + i;
    Tensor last_t(DType::I64, {1, 1, 1});
    last_t.data<int64_t>()[0] = int64_t(seed) % S;
    std::map<std::string, Tensor> in{
        {"ids", random_tensor(DType::I64, {1, S}, 0, kV, seed)}, {"pos", pos_t}, {"last", last_t}};
    auto want = cpu.run(in);
    auto got = gpu.run(in);
    const std::string what = "S " + std::to_string(S) + " seed " + std::to_string(seed);
    // Gathers, the fp16 Add (one rounding of an exact fp32 sum on both sides) and the Cast
    // are exact, so the logits and their ArgMax match bit for bit.
    expect_identical(got.at("logits"), want.at("logits"), what + " logits");
    expect_identical(got.at("next"), want.at("next"), what + " next");
    // LayerNorm statistics in fp32 differ only in summation order (~1e-6 relative over 20000
    // terms); the fp16 outputs may then round one ulp (~1e-3 relative) apart.
    expect_near_all(got.at("normed"), want.at("normed"), 2e-3, 2e-3, what + " normed");
  }
}
