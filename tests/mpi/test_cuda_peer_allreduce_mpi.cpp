// The one-shot peer all-reduce (backends/cuda/peer_allreduce.h) under mpirun, through the
// binary's DeviceComm (cuda_mpi_env.h). With ctest's 2 ranks on a one-GPU machine both ranks
// share the GPU: NCCL refuses that, the peer path must not, and the two processes'
// kernels time-slice the GPU (a wait spins until the other process's kernel has run).
// Every result is compared with the host communicator's on the same data; every rank must
// get the same bits.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../cpp/cuda/cuda_collective_util.h"
#include "cuda_mpi_env.h"

namespace {

using namespace shardrt;
using dist::ReduceOp;
constexpr const char* kPeer = "one-shot peer";

bool peer_off() {
  const char* e = std::getenv("SHARDRT_PEER_ALLREDUCE");
  return e && std::string(e) == "0";
}

// Rank r's element i at repetition k: a spread of values in [-2, 2) with fractional bits
// (rounding matters), different in every repetition (a stale slot would show).
Tensor rank_values(int r, int64_t n, DType t, int k) {
  Tensor x(t, {n});
  for (int64_t i = 0; i < n; ++i) {
    uint32_t h = uint32_t(i) * 2654435761u ^ uint32_t(r + 1) * 40503u ^ uint32_t(k) * 97u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    x.set_f(i, double(h % 4096) / 1024.0 - 2.0);
  }
  return x;
}

struct Dev {
  void* p = nullptr;
  explicit Dev(size_t b) { SHARDRT_CUDA_CHECK(cudaMalloc(&p, b ? b : 1)); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

void upload(void* d, const Tensor& x, cudaStream_t s) {
  if (x.nbytes()) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(d, x.raw(), x.nbytes(), cudaMemcpyHostToDevice, s));
}

Tensor download(const void* d, DType t, int64_t n, cudaStream_t s) {
  Tensor x(t, {n});
  if (x.nbytes()) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(x.raw(), d, x.nbytes(), cudaMemcpyDeviceToHost, s));
  SHARDRT_CUDA_CHECK(cudaStreamSynchronize(s));
  return x;
}

// Host reference: the host communicator reduces fp16/bf16 in fp32 and rounds once, as the
// peer kernel does; with 2 ranks the sum a + b has one possible result, so the bits must
// match exactly. With more ranks the host may add in another order: fp32 results then
// differ by a few ulps (tolerance 1e-6 relative per term), fp16/bf16 by one rounding.
void expect_matches(const Tensor& got, const Tensor& want, int ranks, const std::string& what) {
  if (ranks == 2) {
    EXPECT_TRUE(cudatest::same_bytes(got, want)) << what;
    return;
  }
  double tol = got.dtype() == DType::F32 ? 1e-6 * ranks * 2 : got.dtype() == DType::F16 ? 1e-3 : 8e-3;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double a = got.get_f(i), b = want.get_f(i);
    if (std::abs(a - b) > tol * (2.0 * ranks)) {
      ADD_FAILURE() << what << " element " << i << ": " << a << " vs " << b;
      return;
    }
  }
}

// Every rank's result has rank 0's bits.
void expect_same_on_every_rank(dist::Communicator& w, const Tensor& got, const std::string& what) {
  std::vector<uint8_t> all(got.nbytes() * size_t(w.size()));
  w.all_gather(got.raw(), all.data(), int64_t(got.nbytes()), DType::U8);
  for (int r = 1; r < w.size(); ++r)
    EXPECT_EQ(std::memcmp(all.data(), all.data() + size_t(r) * got.nbytes(), got.nbytes()), 0)
        << what << ": rank " << r << " differs from rank 0";
}

TEST(CudaPeerAllReduceMpi, PathChosenByMessageSize) {
  auto& env = cudatest::mpi_cuda_env();
  cuda::DeviceComm& dc = *env.dc;
  std::string why = dc.peer_unavailable_reason("world");
  if (env.world->rank() == 0)
    std::printf("[ info ] one-shot peer path: %s\n", why.empty() ? "available" : why.c_str());
  if (peer_off()) {
    EXPECT_NE(why.find("off"), std::string::npos) << why;
    EXPECT_EQ(dc.all_reduce_path("world", 16, DType::F32), dc.backend());
    return;
  }
  // One host here (mpirun on one machine): the GPUs of the ranks are one GPU or GPUs that
  // this machine's driver reports as peers; only the latter may refuse.
  if (!why.empty()) GTEST_SKIP() << "GPUs do not reach each other: " << why;
  size_t max = cuda::peer_allreduce_settings().max_bytes;
  EXPECT_EQ(dc.all_reduce_path("world", 1, DType::F32), kPeer);
  EXPECT_EQ(dc.all_reduce_path("tp", int64_t(max / 2), DType::BF16), kPeer);
  EXPECT_EQ(dc.all_reduce_path("world", int64_t(max / 4), DType::F32), kPeer);
  EXPECT_EQ(dc.all_reduce_path("world", int64_t(max / 4) + 1, DType::F32), dc.backend());
  EXPECT_EQ(dc.all_reduce_path("world", 16, DType::I64), dc.backend());  // integers: not its dtypes
}

// Sizes 1, 7, 4096, 65537 in fp32/fp16/bf16, 200 repetitions each (epochs and both slot
// parities many times over, new data every time), some in place, some at misaligned
// addresses (the element-wise edges of the kernel). 65537 fp32 elements (256 KiB + 4 bytes)
// exceed the default threshold: that one takes the other path, and must agree too.
TEST(CudaPeerAllReduceMpi, SumsMatchHostOverManyEpochs) {
  auto& env = cudatest::mpi_cuda_env();
  dist::Communicator& w = *env.world;
  cuda::DeviceComm& dc = *env.dc;
  cudaStream_t s = env.res->stream();
  const int reps = 200;
  int on_peer = 0, off_peer = 0, fit = 0;  // fit: cases within the threshold
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (int64_t n : {int64_t(1), int64_t(7), int64_t(4096), int64_t(65537)}) {
      const std::string path = dc.all_reduce_path("world", n, t);
      (path == kPeer ? on_peer : off_peer)++;
      const size_t es = dtype_size(t), bytes = size_t(n) * es;
      fit += bytes <= cuda::peer_allreduce_settings().max_bytes;
      Dev in(bytes + 16), out(bytes + 16);
      for (int k = 0; k < reps; ++k) {
        Tensor x = rank_values(w.rank(), n, t, k), want(t, {n});
        w.all_reduce(x.raw(), want.raw(), n, t, ReduceOp::Sum);
        const bool in_place = k % 5 == 1, shifted = k % 7 == 3;
        char* src = static_cast<char*>(in.p) + (shifted ? es : 0);
        char* dst = in_place ? src : static_cast<char*>(out.p) + (shifted ? es : 0);
        upload(src, x, s);
        dc.all_reduce(k % 2 ? "tp" : "world", src, dst, n, t, ReduceOp::Sum, s, {"", "AllReduce"});
        dc.wait_or_abort(s, {"", "run"});
        Tensor got = download(dst, t, n, s);
        std::string what = std::string(dtype_name(t)) + " n=" + std::to_string(n) + " rep " + std::to_string(k) + " (" +
                           path + (in_place ? ", in place" : "") + (shifted ? ", misaligned" : "") + ")";
        expect_matches(got, want, w.size(), what);
        if (k % 50 == 0) expect_same_on_every_rank(w, got, what);
        if (::testing::Test::HasFailure()) return;  // one report, not 200
      }
    }
  if (w.rank() == 0)
    std::printf("[ info ] %d cases on the one-shot peer path, %d on %s\n", on_peer, off_peer, dc.backend().c_str());
  if (!peer_off() && dc.peer_unavailable_reason("world").empty()) {
    EXPECT_EQ(on_peer, fit);  // by default every case but fp32 x 65537 (256 KiB + 4 bytes)
    EXPECT_EQ(off_peer, 12 - fit);
  }
}

TEST(CudaPeerAllReduceMpi, MaxMinProdMatchHost) {
  auto& env = cudatest::mpi_cuda_env();
  dist::Communicator& w = *env.world;
  cuda::DeviceComm& dc = *env.dc;
  cudaStream_t s = env.res->stream();
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (ReduceOp op : {ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod}) {
      const int64_t n = 1000;
      Tensor x = rank_values(w.rank(), n, t, int(op)), want(t, {n});
      w.all_reduce(x.raw(), want.raw(), n, t, op);
      Dev d(x.nbytes());
      upload(d.p, x, s);
      dc.all_reduce("world", d.p, d.p, n, t, op, s, {"", "AllReduce"});
      dc.wait_or_abort(s, {"", "run"});
      expect_matches(download(d.p, t, n, s), want, w.size(), std::string(dtype_name(t)) + " " + dist::reduce_op_name(op));
    }
}

// Captured into a CUDA graph: the epoch lives in device memory, so replays, and eager calls
// between them, keep every rank in step.
TEST(CudaPeerAllReduceMpi, CapturedInGraphAndReplayed) {
  auto& env = cudatest::mpi_cuda_env();
  dist::Communicator& w = *env.world;
  cuda::DeviceComm& dc = *env.dc;
  cudaStream_t s = env.res->stream();
  const int64_t n = 4096;
  const DType t = DType::BF16;
  if (dc.all_reduce_path("world", n, t) != kPeer) GTEST_SKIP() << "no one-shot peer path here";
  Dev in(size_t(n) * 2), out(size_t(n) * 2), eager(size_t(n) * 2);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  dc.all_reduce("world", in.p, out.p, n, t, ReduceOp::Sum, s, {"", "AllReduce"});
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  for (int k = 0; k < 100; ++k) {
    Tensor x = rank_values(w.rank(), n, t, 1000 + k), want(t, {n});
    w.all_reduce(x.raw(), want.raw(), n, t, ReduceOp::Sum);
    upload(in.p, x, s);
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    if (k % 3 == 0) dc.all_reduce("world", in.p, eager.p, n, t, ReduceOp::Sum, s, {"", "AllReduce"});
    dc.wait_or_abort(s, {"", "run"});
    expect_matches(download(out.p, t, n, s), want, w.size(), "graph replay " + std::to_string(k));
    if (k % 3 == 0) expect_matches(download(eager.p, t, n, s), want, w.size(), "eager between replays " + std::to_string(k));
    if (::testing::Test::HasFailure()) break;
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// A rank that skips the call: the other ranks' waits give up after
// SHARDRT_COLLECTIVE_TIMEOUT (2 s here) and wait_or_abort throws naming the missing rank,
// instead of hanging. Own DeviceComm: its peer path is out of step afterwards.
TEST(CudaPeerAllReduceMpi, MissingRankTimesOutWithError) {
  auto& env = cudatest::mpi_cuda_env();
  dist::Communicator& w = *env.world;
  cudaStream_t s = env.res->stream();
  std::string saved = std::getenv("SHARDRT_COLLECTIVE_TIMEOUT") ? std::getenv("SHARDRT_COLLECTIVE_TIMEOUT") : "";
  setenv("SHARDRT_COLLECTIVE_TIMEOUT", "2", 1);
  auto dc = cuda::DeviceComm::create(w, s);
  dc->prepare({"world"});
  if (saved.empty()) unsetenv("SHARDRT_COLLECTIVE_TIMEOUT");
  else setenv("SHARDRT_COLLECTIVE_TIMEOUT", saved.c_str(), 1);
  if (dc->all_reduce_path("world", 64, DType::F32) != kPeer) GTEST_SKIP() << "no one-shot peer path here";
  Dev d(64 * 4);
  SHARDRT_CUDA_CHECK(cudaMemsetAsync(d.p, 0, 64 * 4, s));
  if (w.rank() == 0) {
    auto t0 = std::chrono::steady_clock::now();
    dc->all_reduce("world", d.p, d.p, 64, DType::F32, ReduceOp::Sum, s, {"n_skip", "AllReduce"});
    std::string msg;
    try {
      dc->wait_or_abort(s, {"", "run"});
    } catch (const Error& e) {
      msg = e.what();
    }
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(msg.find("one-shot peer all-reduce waited"), std::string::npos) << msg;
    // Every other rank skipped: the first wait to give up names one of them.
    EXPECT_NE(msg.find(w.size() == 2 ? "for rank 1" : "for rank "), std::string::npos) << msg;
    EXPECT_NE(msg.find("more than 2 s"), std::string::npos) << msg;
    EXPECT_NE(msg.find("n_skip"), std::string::npos) << msg;
    EXPECT_LT(secs, 30.0);
    std::printf("[ info ] rank 0 gave up after %.1f s: %s\n", secs, msg.c_str());
    // The path is out of step now: a later call refuses rather than computing garbage.
    EXPECT_THROW(dc->all_reduce("world", d.p, d.p, 64, DType::F32, ReduceOp::Sum, s, {"", "AllReduce"}), Error);
  }
  w.barrier();  // rank 1 keeps its buffer mapped until rank 0's kernel has ended
}

// Latency of one all-reduce, one-shot peer path vs the staged path (NCCL refuses two ranks
// on one GPU), for 8 B .. 256 KiB of fp16. Diagnostic, never fails; runs only with
// SHARDRT_PEER_BENCH=1. With 2 processes on one GPU the kernels time-slice: the numbers say
// that the path works, not what it costs between GPUs.
TEST(CudaPeerAllReduceMpi, LatencyTable) {
  if (!std::getenv("SHARDRT_PEER_BENCH")) GTEST_SKIP() << "set SHARDRT_PEER_BENCH=1";
  auto& env = cudatest::mpi_cuda_env();
  dist::Communicator& w = *env.world;
  cudaStream_t s = env.res->stream();
  auto staged = cuda::DeviceComm::create_staged(w, s, "latency comparison");
  cuda::DeviceComm& dc = *env.dc;
  if (w.rank() == 0) std::printf("[ info ] bytes   one-shot peer (us/call)   %s (us/call)\n", staged->backend().c_str());
  for (int64_t bytes : {8, 64, 512, 4096, 16384, 65536, 262144}) {
    const int64_t n = bytes / 2;
    Dev d(static_cast<size_t>(bytes));
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(d.p, 0, size_t(bytes), s));
    double us[2] = {0, 0};
    for (int which = 0; which < 2; ++which) {
      cuda::DeviceComm& c = which == 0 ? dc : *staged;
      if (which == 0 && c.all_reduce_path("world", n, DType::F16) != kPeer) continue;
      const int warm = 10, iters = which == 0 ? 200 : 50;
      for (int i = 0; i < warm; ++i) c.all_reduce("world", d.p, d.p, n, DType::F16, ReduceOp::Sum, s, {"", "AllReduce"});
      c.wait_or_abort(s, {"", "run"});
      w.barrier();
      auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) c.all_reduce("world", d.p, d.p, n, DType::F16, ReduceOp::Sum, s, {"", "AllReduce"});
      c.wait_or_abort(s, {"", "run"});
      us[which] = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / iters;
    }
    if (w.rank() == 0) std::printf("[ info ] %7lld   %10.1f   %10.1f\n", (long long)bytes, us[0], us[1]);
  }
}

}  // namespace
