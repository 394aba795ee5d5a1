// The device choice (BuildConfig::device, ContextOptions::device) and the split run API,
// checked without a GPU: "cuda" fails with a message saying why (no CUDA in this build, or
// no GPU on this machine), an unknown device is refused, the CPU backend's split API
// agrees with run().
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <unistd.h>

#include "error_util.h"
#include "backends/cuda/cuda_eval.h"
#include "op_test_util.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using shardrt::optest::random_tensor;

namespace {

Engine tiny_engine(const std::string& device = "cpu") {
  Network net("tiny");
  ITensor x = net.input("x", DType::F32, {-1, 4}, {"batch"});
  ITensor w = net.weight("w", random_tensor(DType::F32, {4, 3}, -1, 1, 1));
  net.output(net.relu(net.matmul(x, w)), "y");
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 4}, {2, 4}, {8, 4}};
  cfg.device = device;
  return build_engine(net, cfg);
}

}  // namespace

TEST(DeviceOption, CudaWithoutAGpuOrWithoutCudaSaysWhy) {
  if (cuda::device_available()) GTEST_SKIP() << "this machine has a GPU";
  Engine e = tiny_engine();
  std::string msg = error_of([&] { ExecutionContext ctx(e, ContextOptions{"cuda"}); });
  ASSERT_FALSE(msg.empty()) << "device cuda on a machine without a GPU must fail";
#ifdef SHARDRT_WITH_CUDA
  EXPECT_NE(msg.find("cannot run on device 'cuda'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(cuda::device_description()), std::string::npos) << msg;
#else
  EXPECT_NE(msg.find("built without CUDA"), std::string::npos) << msg;
  EXPECT_NE(msg.find("-DSHARDRT_WITH_CUDA=ON"), std::string::npos) << msg;
#endif
}

TEST(DeviceOption, EngineBuiltForCudaKeepsTheSettingAndRunsOnTheCpuWhenAsked) {
  if (cuda::device_available()) GTEST_SKIP() << "with a GPU the build also tunes; covered by CudaExecutor tests";
  Engine e = tiny_engine("cuda");  // building for cuda needs no GPU (no tuning run then)
  EXPECT_NE(e.inspect(true).find("\"device\": \"cuda\""), std::string::npos);
  std::string path = (std::filesystem::temp_directory_path() / ("shardrt_dev_" + std::to_string(::getpid()))).string();
  e.save(path);
  Engine loaded = Engine::load(path);
  std::filesystem::remove(path);
  EXPECT_NE(loaded.inspect(false).find("device cuda"), std::string::npos);
  // The engine's own setting is cuda: without a GPU the default context fails clearly...
  EXPECT_FALSE(error_of([&] { ExecutionContext ctx(loaded); }).empty());
  // ...and the caller can pick the CPU.
  ExecutionContext cpu(loaded, ContextOptions{"cpu"});
  EXPECT_EQ(cpu.device(), "cpu");
  Tensor x = random_tensor(DType::F32, {2, 4}, -1, 1, 2);
  EXPECT_EQ(cpu.run({{"x", x}}).at("y").dims(), (Dims{2, 3}));
}

TEST(DeviceOption, UnknownDeviceIsRefused) {
  Engine e = tiny_engine();
  std::string msg = error_of([&] { ExecutionContext ctx(e, ContextOptions{"tpu"}); });
  EXPECT_NE(msg.find("unknown device 'tpu'"), std::string::npos) << msg;
  msg = error_of([&] { tiny_engine("gpu"); });
  EXPECT_NE(msg.find("unknown device 'gpu'"), std::string::npos) << msg;
  // The default is the engine's setting: cpu.
  EXPECT_EQ(ExecutionContext(e).device(), "cpu");
  EXPECT_EQ(ExecutionContext(e, ContextOptions{}).device(), "cpu");
}

TEST(DeviceOption, CpuSplitApiMatchesRun) {
  Engine e = tiny_engine();
  ExecutionContext ctx(e, ContextOptions{"cpu"});
  EXPECT_THROW(ctx.execute(), Error);   // no inputs yet
  EXPECT_THROW(ctx.outputs(), Error);   // has not run
  Tensor x1 = random_tensor(DType::F32, {3, 4}, -1, 1, 3), x2 = random_tensor(DType::F32, {5, 4}, -1, 1, 4);
  Tensor want1 = ctx.run({{"x", x1}}).at("y"), want2 = ctx.run({{"x", x2}}).at("y");
  ctx.set_inputs({{"x", x1}});
  ctx.execute();
  ctx.synchronize();
  Tensor got1 = ctx.outputs().at("y");
  ctx.execute();  // again with the same inputs: a fresh output, `got1` stays as it was
  ctx.synchronize();
  Tensor again = ctx.outputs().at("y");
  ctx.set_inputs({{"x", x2}});
  ctx.execute();
  ctx.synchronize();
  Tensor got2 = ctx.outputs().at("y");
  for (auto [got, want] : {std::pair{&got1, &want1}, {&again, &want1}, {&got2, &want2}}) {
    ASSERT_EQ(got->dims(), want->dims());
    EXPECT_EQ(std::memcmp(got->raw(), want->raw(), got->nbytes()), 0);
  }
  EXPECT_THROW(ctx.set_inputs({{"x", random_tensor(DType::F32, {9, 4}, -1, 1, 5)}}), Error);  // outside 1..8
}
