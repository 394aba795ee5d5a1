// CUDA collective kernels (kernels_collective.cpp) and DeviceComm on a world of one:
// every collective op gives the CPU kernels' result (identity semantics at size 1), through
// NCCL (skipped when libnccl cannot be loaded) and through the staged MPI path. The block
// moves for uneven chunks along an inner axis (pack/unpack) and the NCCL padding of uneven
// chunks are checked alone against plain host loops with fake multi-rank layouts.
// Results are moved, never computed, at size 1: comparisons are exact.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "backends/cuda/cuda_eval.h"
#include "backends/cuda/kernels_collective_pack.h"
#include "cuda_collective_util.h"

namespace shardrt {
namespace {

using cudatest::collective_node;
using cudatest::run_cpu;
using cudatest::run_gpu;
using cudatest::same_bytes;
using A = std::map<std::string, Attr>;

Tensor random_of(DType t, Dims d, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> u(-9, 9);
  Tensor x(t, std::move(d));
  for (int64_t i = 0; i < x.numel(); ++i) {
    int v = u(g);
    if (t == DType::U8) v = v + 9;
    if (t == DType::Bool) v = v > 0;
    x.set_f(i, is_float(t) ? v * 0.37 : double(v));
  }
  return x;
}

// Process-wide: one communicator, one context, one DeviceComm per path (NCCL setup is the
// slow part). Leaked on purpose: NCCL communicators must not be torn down after the CUDA
// runtime at exit.
dist::Communicator& world() {
  static dist::Communicator* c = dist::make_single_communicator().release();
  return *c;
}
cuda::Resources& res() {
  static cuda::Resources* r = new cuda::Resources();
  return *r;
}
cuda::DeviceComm* nccl_comm() {
  static cuda::DeviceComm* d = [] {
    std::string why;
    if (!cuda::DeviceComm::nccl_loadable(&why)) return static_cast<cuda::DeviceComm*>(nullptr);
    return cuda::DeviceComm::create(world(), res().stream()).release();
  }();
  return d;
}
cuda::DeviceComm* staged_comm() {
  static cuda::DeviceComm* d = cuda::DeviceComm::create_staged(world(), res().stream(), "test").release();
  return d;
}

const DType kAllTypes[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                           DType::I32, DType::I8,  DType::U8,   DType::Bool};

class CudaCollective : public ::testing::TestWithParam<std::string> {
 protected:
  cuda::DeviceComm* dc() {
    if (GetParam() == "nccl") return nccl_comm();
    return staged_comm();
  }
  void SetUp() override {
    if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
    if (GetParam() == "nccl") {
      std::string why;
      if (!cuda::DeviceComm::nccl_loadable(&why)) GTEST_SKIP() << "NCCL not loadable: " << why;
    }
  }
  void check(const std::string& op, A attrs, const Tensor& x, const std::string& what) {
    Node n = collective_node(op, std::move(attrs));
    std::vector<Tensor> ref = run_cpu(n, world(), {&x});
    std::vector<Tensor> got = run_gpu(n, world(), dc(), res(), {&x});
    ASSERT_EQ(ref.size(), got.size());
    EXPECT_TRUE(same_bytes(got[0], ref[0])) << op << " " << what << " " << dtype_name(x.dtype());
  }
};

TEST_P(CudaCollective, BackendIsTheOneAsked) {
  EXPECT_EQ(dc()->backend(), GetParam() == "nccl" ? "nccl" : "mpi-staged");
  EXPECT_EQ(dc()->capturable(), GetParam() == "nccl");
  EXPECT_EQ(dc()->group_size("tp"), 1);
  EXPECT_EQ(dc()->group_size("dp"), 1);
}

TEST_P(CudaCollective, AllReduceEveryDtypeAndOp) {
  unsigned seed = 1;
  for (DType t : kAllTypes)
    for (const char* red : {"sum", "max", "min", "prod"})
      for (Dims d : {Dims{1}, Dims{37}, Dims{3, 5, 7}, Dims{0, 4}})
        for (const char* op : {"shardrt.AllReduce", "shardrt.AllReduceStart"}) {
          Tensor x = random_of(t, d, seed++);
          check(op, {{"reduce", Attr::of(std::string(red))}}, x, red);
        }
}

TEST_P(CudaCollective, AllGatherAxesAndGroups) {
  unsigned seed = 100;
  for (DType t : kAllTypes)
    for (int64_t axis : {0, 1, -1})
      for (const char* group : {"tp", "dp", "world"})
        for (const char* op : {"shardrt.AllGather", "shardrt.AllGatherStart"}) {
          // Odd inner sizes (5 × es bytes) exercise the narrow-word paths of the unpack.
          Tensor x = random_of(t, {3, 4, 5}, seed++);
          check(op, {{"axis", Attr::of(axis)}, {"group", Attr::of(std::string(group))}}, x,
                "axis " + std::to_string(axis) + " " + group);
        }
  // gathered_size (equal to the local size in a group of one), size-1 and empty dims.
  Tensor x = random_of(DType::BF16, {2, 7, 3}, 7);
  check("shardrt.AllGather", {{"axis", Attr::of(int64_t(1))}, {"gathered_size", Attr::of(int64_t(7))}}, x, "gs");
  Tensor x1 = random_of(DType::F32, {1, 1, 9}, 8);
  check("shardrt.AllGather", {{"axis", Attr::of(int64_t(1))}}, x1, "size-1 dims");
  Tensor x0 = random_of(DType::F16, {2, 0, 3}, 9);
  check("shardrt.AllGather", {{"axis", Attr::of(int64_t(1))}}, x0, "empty");
}

TEST_P(CudaCollective, ReduceScatterAxes) {
  unsigned seed = 200;
  for (DType t : kAllTypes)
    for (int64_t axis : {0, 1, 2})
      for (const char* red : {"sum", "max"})
        for (const char* op : {"shardrt.ReduceScatter", "shardrt.ReduceScatterStart"}) {
          Tensor x = random_of(t, {2, 6, 3}, seed++);
          check(op, {{"axis", Attr::of(axis)}, {"reduce", Attr::of(std::string(red))}}, x,
                "axis " + std::to_string(axis) + " " + red);
        }
  Tensor x0 = random_of(DType::F32, {0, 5}, 3);
  check("shardrt.ReduceScatter", {{"axis", Attr::of(int64_t(1))}}, x0, "empty");
}

TEST_P(CudaCollective, WaitIsIdentity) {
  for (DType t : kAllTypes) {
    Tensor x = random_of(t, {4, 33}, 5);
    check("shardrt.Wait", {}, x, "wait");
  }
}

TEST_P(CudaCollective, DirectCalls) {
  // DeviceComm's own calls at size 1: all_reduce in place, broadcast, uneven-count vectors
  // of one entry, and the validation of counts.
  cuda::DeviceComm& d = *dc();
  cudaStream_t s = res().stream();
  Tensor x = random_of(DType::F32, {1000}, 11);
  float* p = nullptr;
  ASSERT_EQ(cudaMalloc(&p, x.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(p, x.raw(), x.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  d.all_reduce("tp", p, p, 1000, DType::F32, dist::ReduceOp::Sum, s, {"n", "AllReduce"});
  d.broadcast("world", p, 1000, DType::F32, 0, s, {"n", "Broadcast"});
  d.all_gather("tp", p, p + 500, {500}, DType::F32, s, {"n", "AllGather"});  // copies the first half up
  d.wait_or_abort(s, {"", "run"});
  Tensor y(DType::F32, {1000});
  ASSERT_EQ(cudaMemcpy(y.raw(), p, y.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (int64_t i = 0; i < 1000; ++i) ASSERT_EQ(y.get_f(i), x.get_f(i % 500)) << i;
  EXPECT_THROW(d.all_gather("tp", p, p, {1, 2}, DType::F32, s, {"n", "AllGather"}), Error);
  EXPECT_THROW(d.broadcast("tp", p, 4, DType::F32, 1, s, {"n", "Broadcast"}), Error);
  cudaFree(p);
}

INSTANTIATE_TEST_SUITE_P(Path, CudaCollective, ::testing::Values(std::string("nccl"), std::string("staged")),
                         [](const auto& i) { return i.param; });

TEST(CudaCollectiveCtx, WithoutDeviceCommFailsClearly) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  Tensor x = random_of(DType::F32, {4}, 1);
  Node n = collective_node("shardrt.AllReduce", {});
  try {
    run_gpu(n, world(), nullptr, res(), {&x});
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("run it in a context created with a communicator"), std::string::npos)
        << e.what();
  }
}

TEST(CudaCollectiveCtx, CreateHonoursShardrtNccl) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  const char* old = std::getenv("SHARDRT_NCCL");
  std::string saved = old ? old : "";
  setenv("SHARDRT_NCCL", "0", 1);
  auto d = cuda::DeviceComm::create(world(), res().stream());
  if (old) setenv("SHARDRT_NCCL", saved.c_str(), 1); else unsetenv("SHARDRT_NCCL");
  EXPECT_EQ(d->backend(), "mpi-staged");
  EXPECT_EQ(d->staged_reason(), "SHARDRT_NCCL=0");
  EXPECT_FALSE(d->capturable());
  if (!old && cuda::DeviceComm::nccl_loadable()) {
    auto n = cuda::DeviceComm::create(world(), res().stream());
    EXPECT_EQ(n->backend(), "nccl");
    EXPECT_EQ(n->staged_reason(), "");
  }
}

// An NCCL collective (with the uneven-padding copies around it on a wider group they would
// be there too) captured into a CUDA graph and replayed gives the eager result.
TEST(CudaCollectiveCtx, NcclCapturesIntoAGraph) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  if (!nccl_comm()) GTEST_SKIP() << "NCCL not loadable";
  cuda::DeviceComm& d = *nccl_comm();
  cudaStream_t s = res().stream();
  Tensor x = random_of(DType::BF16, {257}, 21);
  void *a = nullptr, *b = nullptr;
  ASSERT_EQ(cudaMalloc(&a, x.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMalloc(&b, x.nbytes()), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(a, x.raw(), x.nbytes(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(b, 0, x.nbytes()), cudaSuccess);
  d.all_reduce("tp", a, b, 257, DType::BF16, dist::ReduceOp::Sum, s, {"g", "AllReduce"});  // eager: sets up
  d.wait_or_abort(s, {"", "run"});
  ASSERT_EQ(cudaMemset(b, 0, x.nbytes()), cudaSuccess);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  d.all_reduce("tp", a, b, 257, DType::BF16, dist::ReduceOp::Sum, s, {"g", "AllReduce"});
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t ge = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&ge, g, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(ge, s), cudaSuccess);
  d.wait_or_abort(s, {"", "run"});
  Tensor y(DType::BF16, {257});
  ASSERT_EQ(cudaMemcpy(y.raw(), b, y.nbytes(), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(same_bytes(y, x));
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  cudaFree(a);
  cudaFree(b);
}

TEST(CudaCollectiveCtx, StagedRefusesCapture) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  cuda::DeviceComm& d = *staged_comm();
  cudaStream_t s = res().stream();
  void* a = nullptr;
  ASSERT_EQ(cudaMalloc(&a, 64), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  EXPECT_THROW(d.all_reduce("tp", a, a, 16, DType::F32, dist::ReduceOp::Sum, s, {"n", "AllReduce"}), Error);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  if (g) cudaGraphDestroy(g);
  cudaFree(a);
}

// ---- the block moves alone, with fake multi-rank layouts ----

// The host loops of dist/collective_exec.cpp: blocked [outer][total][inner] → rank-major.
std::vector<char> pack_ref(const std::vector<char>& blocked, int64_t outer, int64_t total, int64_t inner,
                           const std::vector<int64_t>& sizes, size_t es) {
  std::vector<char> out(blocked.size());
  char* dst = out.data();
  int64_t off = 0;
  for (int64_t sz : sizes) {
    size_t row = size_t(sz * inner) * es;
    for (int64_t o = 0; o < outer; ++o) {
      if (row) std::memcpy(dst, blocked.data() + size_t((o * total + off) * inner) * es, row);
      dst += row;
    }
    off += sz;
  }
  return out;
}

TEST(CudaCollectivePack, PackUnpackUnevenChunks) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  cudaStream_t s = res().stream();
  std::mt19937 rng(3);
  for (size_t es : {size_t(1), size_t(2), size_t(4), size_t(8)})
    for (int parts : {1, 2, 3, 4})
      for (int64_t total : {1, 5, 7, 8, 13})
        for (int64_t inner : {1, 3, 8})
          for (int64_t outer : {1, 2, 5})
            for (size_t misalign : {size_t(0), es}) {  // offset pointers: narrower words
              std::vector<int64_t> sizes = dist::chunk_sizes(total, parts);
              size_t bytes = size_t(outer * total * inner) * es;
              std::vector<char> blocked(bytes);
              for (char& c : blocked) c = char(rng());
              std::vector<char> want = pack_ref(blocked, outer, total, inner, sizes, es);
              char *db = nullptr, *dr = nullptr;
              ASSERT_EQ(cudaMalloc(&db, bytes + 16), cudaSuccess);
              ASSERT_EQ(cudaMalloc(&dr, bytes + 16), cudaSuccess);
              char* b = db + misalign;
              char* r = dr + misalign;
              ASSERT_EQ(cudaMemcpy(b, blocked.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
              cuda::launch_chunk_pack(b, r, outer, total, inner, sizes[0], es, s);
              std::vector<char> got(bytes), back(bytes);
              ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
              ASSERT_EQ(cudaMemcpy(got.data(), r, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
              EXPECT_EQ(got, want) << "pack es=" << es << " parts=" << parts << " total=" << total
                                   << " inner=" << inner << " outer=" << outer << " misalign=" << misalign;
              ASSERT_EQ(cudaMemset(b, 0, bytes), cudaSuccess);
              cuda::launch_chunk_unpack(r, b, outer, total, inner, sizes[0], es, s);
              ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
              ASSERT_EQ(cudaMemcpy(back.data(), b, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
              EXPECT_EQ(back, blocked) << "unpack es=" << es << " parts=" << parts << " total=" << total;
              cudaFree(db);
              cudaFree(dr);
            }
}

TEST(CudaCollectivePack, PadAndCompactUnevenCounts) {
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
  cudaStream_t s = res().stream();
  const std::vector<std::vector<int64_t>> cases = {{4, 4, 3, 0}, {2, 3, 3}, {0, 0, 5}, {3, 1, 3, 2}, {5}, {1, 0, 1}};
  for (const auto& counts : cases) {
    int64_t slot = *std::max_element(counts.begin(), counts.end()), total = 0;
    for (int64_t c : counts) total += c;
    const size_t es = 2;
    std::vector<uint16_t> compact(static_cast<size_t>(total));
    for (size_t i = 0; i < compact.size(); ++i) compact[i] = uint16_t(i + 1);
    size_t pbytes = counts.size() * size_t(slot) * es;
    void *dc = nullptr, *dp = nullptr, *dback = nullptr;
    ASSERT_EQ(cudaMalloc(&dc, total * es + 1), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dp, pbytes + 1), cudaSuccess);
    ASSERT_EQ(cudaMalloc(&dback, total * es + 1), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dc, compact.data(), total * es, cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemset(dp, 0, pbytes), cudaSuccess);
    cuda::detail::pad_chunks(dc, dp, counts, slot, es, s);
    cuda::detail::compact_chunks(dp, dback, counts, slot, es, s);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    std::vector<uint16_t> padded(counts.size() * static_cast<size_t>(slot)), back(static_cast<size_t>(total));
    ASSERT_EQ(cudaMemcpy(padded.data(), dp, pbytes, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(back.data(), dback, total * es, cudaMemcpyDeviceToHost), cudaSuccess);
    int64_t off = 0;
    for (size_t r = 0; r < counts.size(); ++r) {
      for (int64_t i = 0; i < slot; ++i)
        EXPECT_EQ(padded[r * size_t(slot) + size_t(i)], i < counts[r] ? compact[size_t(off + i)] : uint16_t(0))
            << "rank " << r << " i " << i;
      off += counts[r];
    }
    EXPECT_EQ(back, compact);
    cudaFree(dc);
    cudaFree(dp);
    cudaFree(dback);
  }
}

}  // namespace
}  // namespace shardrt
