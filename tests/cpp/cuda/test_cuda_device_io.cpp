// ExecutionContext's device-memory API: inputs from device pointers and outputs into device
// buffers (or shardrt-allocated ones) give the host path's results bit for bit, across
// signatures and CUDA graph replays; the caller's stream orders both ways; refusals (host
// memory, another GPU, a context on the CPU, wrong dtypes/shapes, unknown names) name the
// binding.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "../op_test_util.h"
#include "backends/cuda/cuda_eval.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using shardrt::optest::random_tensor;

namespace {

#define REQUIRE_GPU() \
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU: " << shardrt::cuda::device_description()

#define CK(x) ASSERT_EQ((x), cudaSuccess) << #x

// x [batch, 64] -> Linear(64->32, gelu) -> Softmax, and Shape(x) as a second output (a
// value the executor computes on the host).
Engine small_engine() {
  Network net("io");
  ITensor x = net.input("x", DType::F32, {-1, 64}, {"batch"});
  ITensor w = net.weight("w", random_tensor(DType::F32, {32, 64}, -0.2, 0.2, 1));
  ITensor b = net.weight("b", random_tensor(DType::F32, {32}, -0.1, 0.1, 2));
  net.output(net.softmax(net.linear(x, w, b, Activation::Gelu), -1), "y");
  net.output(net.op("Shape", {x})[0], "shape");
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 64}, {4, 64}, {16, 64}};
  return build_engine(net, cfg);
}

// Device memory for a test, freed at scope end.
struct DevMem {
  void* p = nullptr;
  explicit DevMem(size_t n) { cudaMalloc(&p, n ? n : 1); }
  ~DevMem() { cudaFree(p); }
};

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); }
  ~Stream() { cudaStreamDestroy(s); }
};

Tensor download(const void* d, DType t, const Dims& dims) {
  Tensor h(t, dims);
  if (h.nbytes()) cudaMemcpy(h.raw(), d, h.nbytes(), cudaMemcpyDeviceToHost);
  return h;
}

void expect_identical(const Tensor& a, const Tensor& b, const std::string& what) {
  ASSERT_EQ(a.dtype(), b.dtype()) << what;
  ASSERT_EQ(a.dims(), b.dims()) << what;
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << what << ": device path differs from the host path";
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(CudaDeviceIO, DevicePathMatchesHostPathAcrossSignaturesAndReplays) {
  REQUIRE_GPU();
  Engine e = small_engine();
  // One context for both paths: a second one could time other GEMM tactics (other bits).
  ExecutionContext dev(e, ContextOptions{"cuda"});
  ExecutionContext& host = dev;
  int gpu = 0;
  CK(cudaGetDevice(&gpu));
  EXPECT_EQ(dev.cuda_device(), gpu);
  Stream st;
  // 3, 16 (another signature), then 3 three times: eager, captured, replayed.
  for (int64_t batch : {3, 16, 3, 3, 3}) {
    Tensor x = random_tensor(DType::F32, {batch, 64}, -2, 2, 40 + unsigned(batch));
    auto want = host.run({{"x", x}});
    DevMem dx(x.nbytes());
    CK(cudaMemcpy(dx.p, x.raw(), x.nbytes(), cudaMemcpyHostToDevice));
    dev.set_inputs_device({{"x", DeviceTensor{DType::F32, x.dims(), dx.p, gpu, nullptr}}}, st.s);
    dev.execute();
    auto shapes = dev.output_shapes();
    ASSERT_EQ(shapes.size(), 2u);
    EXPECT_EQ(shapes.at("y").dtype, DType::F32);
    EXPECT_EQ(shapes.at("y").dims, (Dims{batch, 32}));
    EXPECT_EQ(shapes.at("shape").dtype, DType::I64);
    EXPECT_EQ(shapes.at("shape").dims, (Dims{2}));
    // Into the caller's buffers (both outputs: one from the GPU, one the host computed).
    DevMem dy(size_t(batch) * 32 * 4), ds(2 * 8);
    dev.outputs_to_device({{"y", DeviceTensor{DType::F32, {batch, 32}, dy.p, gpu, nullptr}},
                           {"shape", DeviceTensor{DType::I64, {2}, ds.p, gpu, nullptr}}},
                          st.s);
    CK(cudaStreamSynchronize(st.s));
    std::string what = "batch " + std::to_string(batch);
    expect_identical(download(dy.p, DType::F32, {batch, 32}), want.at("y"), what + " y");
    expect_identical(download(ds.p, DType::I64, {2}), want.at("shape"), what + " shape");
    // A subset, and shardrt-allocated buffers.
    DevMem dy2(size_t(batch) * 32 * 4);
    dev.outputs_to_device({{"y", DeviceTensor{DType::F32, {batch, 32}, dy2.p, gpu, nullptr}}}, st.s);
    auto owned = dev.outputs_device(st.s);
    CK(cudaStreamSynchronize(st.s));
    expect_identical(download(dy2.p, DType::F32, {batch, 32}), want.at("y"), what + " subset");
    ASSERT_EQ(owned.size(), 2u);
    EXPECT_TRUE(owned.at("y").owner);
    EXPECT_EQ(owned.at("y").device, gpu);
    expect_identical(download(owned.at("y").data, DType::F32, {batch, 32}), want.at("y"), what + " owned y");
    expect_identical(download(owned.at("shape").data, DType::I64, {2}), want.at("shape"), what + " owned shape");
  }
  // The legacy default stream (nullptr) works as the caller's stream too.
  Tensor x = random_tensor(DType::F32, {5, 64}, -2, 2, 9);
  DevMem dx(x.nbytes());
  CK(cudaMemcpy(dx.p, x.raw(), x.nbytes(), cudaMemcpyHostToDevice));
  dev.set_inputs_device({{"x", DeviceTensor{DType::F32, x.dims(), dx.p, gpu, nullptr}}}, nullptr);
  dev.execute();
  auto owned = dev.outputs_device(nullptr);
  CK(cudaDeviceSynchronize());
  expect_identical(download(owned.at("y").data, DType::F32, {5, 32}), host.run({{"x", x}}).at("y"), "legacy stream");
}

TEST(CudaDeviceIO, CallerStreamOrdersInputsAndOutputs) {
  REQUIRE_GPU();
  Engine e = small_engine();
  ExecutionContext dev(e, ContextOptions{"cuda"});  // both paths, as above
  ExecutionContext& host = dev;
  const int64_t batch = 16;
  const int gpu = dev.cuda_device();
  Tensor x = random_tensor(DType::F32, {batch, 64}, -2, 2, 5);
  Tensor want = host.run({{"x", x}}).at("y");
  DevMem src(x.nbytes()), dx(x.nbytes()), dy(size_t(batch) * 32 * 4);
  // 256 MB copied back and forth keeps the caller's stream busy for a while (~0.2 ms per
  // copy on an H100) before the input is written: a context that did not wait for the
  // caller's stream would read the 0xff (NaN) fill instead.
  const size_t big = size_t(256) << 20;
  DevMem b1(big), b2(big);
  CK(cudaMemcpy(src.p, x.raw(), x.nbytes(), cudaMemcpyHostToDevice));
  CK(cudaMemset(dx.p, 0xff, x.nbytes()));
  CK(cudaMemset(dy.p, 0xff, size_t(batch) * 32 * 4));
  CK(cudaDeviceSynchronize());
  Stream st;
  for (int round = 0; round < 3; ++round) {  // eager, captured, replayed
    for (int i = 0; i < 8; ++i) CK(cudaMemcpyAsync(i % 2 ? b1.p : b2.p, i % 2 ? b2.p : b1.p, big,
                                                   cudaMemcpyDeviceToDevice, st.s));
    CK(cudaMemcpyAsync(dx.p, src.p, x.nbytes(), cudaMemcpyDeviceToDevice, st.s));
    dev.set_inputs_device({{"x", DeviceTensor{DType::F32, x.dims(), dx.p, gpu, nullptr}}}, st.s);
    // The caller may overwrite its input right away: its stream waits for the engine's copy.
    CK(cudaMemsetAsync(dx.p, 0xff, x.nbytes(), st.s));
    dev.execute();
    dev.outputs_to_device({{"y", DeviceTensor{DType::F32, {batch, 32}, dy.p, gpu, nullptr}}}, st.s);
    // Work the caller enqueues afterwards sees the outputs (no host synchronisation between).
    Tensor got(DType::F32, {batch, 32});
    CK(cudaMemcpyAsync(got.raw(), dy.p, got.nbytes(), cudaMemcpyDeviceToHost, st.s));
    CK(cudaStreamSynchronize(st.s));
    expect_identical(got, want, "round " + std::to_string(round));
    CK(cudaMemsetAsync(dy.p, 0xff, got.nbytes(), st.s));
  }
}

TEST(CudaDeviceIO, RefusalsNameTheBinding) {
  REQUIRE_GPU();
  Engine e = small_engine();
  ExecutionContext dev(e, ContextOptions{"cuda"});
  const int gpu = dev.cuda_device();
  DevMem dx(16 * 64 * 4);
  auto in = [&](void* p, DType t, Dims d, int device = -1) {
    return std::map<std::string, DeviceTensor>{{"x", DeviceTensor{t, std::move(d), p, device, nullptr}}};
  };
  // Host memory, pageable and pinned.
  std::vector<float> pageable(4 * 64);
  std::string m = error_of([&] { dev.set_inputs_device(in(pageable.data(), DType::F32, {4, 64}), nullptr); });
  EXPECT_NE(m.find("input 'x' is in host memory (pageable)"), std::string::npos) << m;
  void* pinned = nullptr;
  CK(cudaMallocHost(&pinned, 4 * 64 * 4));
  m = error_of([&] { dev.set_inputs_device(in(pinned, DType::F32, {4, 64}), nullptr); });
  EXPECT_NE(m.find("input 'x' is in host memory (pinned)"), std::string::npos) << m;
  cudaFreeHost(pinned);
  // The caller says another GPU (checked before the pointer, so one GPU is enough).
  m = error_of([&] { dev.set_inputs_device(in(dx.p, DType::F32, {4, 64}, gpu + 1), nullptr); });
  EXPECT_NE(m.find("input 'x' is on GPU " + std::to_string(gpu + 1)), std::string::npos) << m;
  // set_inputs' own checks.
  m = error_of([&] { dev.set_inputs_device(in(dx.p, DType::F16, {4, 64}), nullptr); });
  EXPECT_NE(m.find("input 'x' has dtype"), std::string::npos) << m;
  m = error_of([&] { dev.set_inputs_device(in(dx.p, DType::F32, {17, 64}), nullptr); });
  EXPECT_NE(m.find("outside the engine's profile"), std::string::npos) << m;
  m = error_of([&] {
    dev.set_inputs_device({{"z", DeviceTensor{DType::F32, {4, 64}, dx.p, gpu, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("unknown input 'z'"), std::string::npos) << m;
  // Outputs before a run, then with wrong buffers.
  m = error_of([&] { dev.output_shapes(); });
  EXPECT_NE(m.find("before execute()"), std::string::npos) << m;
  dev.set_inputs_device(in(dx.p, DType::F32, {4, 64}, gpu), nullptr);
  dev.execute();
  DevMem dy(4 * 32 * 4);
  m = error_of([&] {
    dev.outputs_to_device({{"y", DeviceTensor{DType::F32, {4, 31}, dy.p, gpu, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("the buffer for output 'y' is fp32[4,31]"), std::string::npos) << m;
  m = error_of([&] {
    dev.outputs_to_device({{"logits", DeviceTensor{DType::F32, {4, 32}, dy.p, gpu, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("unknown output 'logits'"), std::string::npos) << m;
  std::vector<float> host_out(4 * 32);
  m = error_of([&] {
    dev.outputs_to_device({{"y", DeviceTensor{DType::F32, {4, 32}, host_out.data(), -1, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("the buffer for output 'y' is in host memory"), std::string::npos) << m;
  CK(cudaDeviceSynchronize());
}

// No GPU needed: the CPU context refuses before it looks at the memory.
TEST(CudaDeviceIO, CpuContextRefusesDeviceMemory) {
  Engine e = small_engine();
  ExecutionContext cpu(e, ContextOptions{"cpu"});
  EXPECT_EQ(cpu.cuda_device(), -1);
  float fake[4];  // never read: only a pointer to pass
  std::string m = error_of([&] {
    cpu.set_inputs_device({{"x", DeviceTensor{DType::F32, {1, 4}, fake, 0, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("input 'x' is in GPU memory: this ExecutionContext runs on \"cpu\""), std::string::npos) << m;
  m = error_of([&] { cpu.output_shapes(); });
  EXPECT_NE(m.find("runs on \"cpu\""), std::string::npos) << m;
  m = error_of([&] { cpu.outputs_to_device({{"y", DeviceTensor{DType::F32, {1, 32}, fake, 0, nullptr}}}, nullptr); });
  EXPECT_NE(m.find("output buffer 'y' is in GPU memory"), std::string::npos) << m;
  m = error_of([&] { cpu.outputs_device(nullptr); });
  EXPECT_NE(m.find("runs on \"cpu\""), std::string::npos) << m;
}

TEST(CudaDeviceIO, AnotherGpusMemoryIsRefused) {
  REQUIRE_GPU();
  int n = 0;
  CK(cudaGetDeviceCount(&n));
  if (n < 2) GTEST_SKIP() << "needs two GPUs";
  Engine e = small_engine();
  CK(cudaSetDevice(0));
  ExecutionContext dev(e, ContextOptions{"cuda"});
  CK(cudaSetDevice(1));
  void* p = nullptr;
  CK(cudaMalloc(&p, 4 * 64 * 4));
  // The pointer's own GPU, when the caller does not say (device -1).
  std::string m = error_of([&] {
    dev.set_inputs_device({{"x", DeviceTensor{DType::F32, {4, 64}, p, -1, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("input 'x' is on GPU 1; this context runs on GPU 0"), std::string::npos) << m;
  cudaFree(p);
  CK(cudaSetDevice(0));
}

TEST(CudaDeviceIO, CheckNumericsScansDeviceInputs) {
  REQUIRE_GPU();
  Engine e = small_engine();
  ContextOptions o{"cuda"};
  o.check_numerics = true;
  ExecutionContext dev(e, o);
  Tensor x = random_tensor(DType::F32, {4, 64}, -1, 1, 3);
  x.data<float>()[70] = std::numeric_limits<float>::quiet_NaN();
  DevMem dx(x.nbytes());
  CK(cudaMemcpy(dx.p, x.raw(), x.nbytes(), cudaMemcpyHostToDevice));
  std::string m = error_of([&] {
    dev.set_inputs_device({{"x", DeviceTensor{DType::F32, x.dims(), dx.p, 0, nullptr}}}, nullptr);
  });
  EXPECT_NE(m.find("'x'"), std::string::npos) << m;
  EXPECT_NE(m.find("NaN"), std::string::npos) << m;
  // The failed call left no inputs behind.
  EXPECT_THROW(dev.execute(), Error);
}

TEST(CudaDeviceIO, StreamWaitOrdersTwoStreams) {
  REQUIRE_GPU();
  Stream a, b;
  const size_t n = size_t(64) << 20;
  DevMem big1(n), big2(n), flag(4);
  int got = 0;
  CK(cudaMemset(flag.p, 0, 4));
  CK(cudaDeviceSynchronize());
  // Stream a: busy, then sets the flag; stream b, after the wait, reads it.
  for (int i = 0; i < 8; ++i) CK(cudaMemcpyAsync(big1.p, big2.p, n, cudaMemcpyDeviceToDevice, a.s));
  CK(cudaMemsetAsync(flag.p, 0x01, 4, a.s));
  cuda_stream_wait(b.s, a.s);
  CK(cudaMemcpyAsync(&got, flag.p, 4, cudaMemcpyDeviceToHost, b.s));
  CK(cudaStreamSynchronize(b.s));
  EXPECT_EQ(got, 0x01010101);
}
