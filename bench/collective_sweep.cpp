// Collective latency and bus bandwidth through shardrt's device communicator (DeviceComm:
// NCCL, with the one-shot peer all-reduce for small messages), as nccl-tests reports them:
// for each size (bytes of the all-reduce's buffer, of all-gather's output, of
// reduce-scatter's input; fp32), the slowest rank's time per call averaged over a timed
// loop on the stream, algbw = size / time, busbw = algbw · 2(n-1)/n (all-reduce) or
// · (n-1)/n (all-gather, reduce-scatter).
//
//   mpirun -n 2 shardrt_collective_bench [--min-bytes 8] [--max-bytes 1073741824] [--step 4]
//                                        [--ops all_reduce,all_gather,reduce_scatter] [--json]
// SHARDRT_PEER_ALLREDUCE=0 turns the peer path off (every all-reduce through NCCL).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/device_comm.h"
#include "dist/bootstrap.h"
#include "dist/communicator.h"

using namespace shardrt;

namespace {

struct Opts {
  int64_t min_bytes = 8, max_bytes = int64_t(1) << 30, step = 4;
  std::vector<std::string> ops = {"all_reduce", "all_gather", "reduce_scatter"};
  bool json = false;
};

Opts parse(int argc, char** argv) {
  Opts o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--min-bytes") o.min_bytes = std::atoll(next().c_str());
    else if (a == "--max-bytes") o.max_bytes = std::atoll(next().c_str());
    else if (a == "--step") o.step = std::atoll(next().c_str());
    else if (a == "--json") o.json = true;
    else if (a == "--ops") {
      o.ops.clear();
      std::stringstream ss(next());
      for (std::string t; std::getline(ss, t, ',');) o.ops.push_back(t);
    } else {
      throw Error("unknown argument '" + a + "'");
    }
  }
  if (o.min_bytes < 4 || o.max_bytes < o.min_bytes || o.step < 2) throw Error("bad size range");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Opts o = parse(argc, argv);
    auto world = dist::make_mpi_communicator();
    cuda::DeviceComm::select_local_device();
    auto res = std::make_unique<cuda::Resources>();
    cudaStream_t s = res->stream();
    auto dc = cuda::DeviceComm::create(*world, s);
    dc->prepare({"world"});
    const int n = world->size(), rank = world->rank();
    // Buffers for the largest size: send and receive of max_bytes each.
    const size_t cap = size_t(o.max_bytes);
    void *send = nullptr, *recv = nullptr;
    SHARDRT_CUDA_CHECK(cudaMalloc(&send, cap));
    SHARDRT_CUDA_CHECK(cudaMalloc(&recv, cap));
    SHARDRT_CUDA_CHECK(cudaMemset(send, 0, cap));
    cudaEvent_t e0, e1;
    SHARDRT_CUDA_CHECK(cudaEventCreate(&e0));
    SHARDRT_CUDA_CHECK(cudaEventCreate(&e1));
    if (rank == 0 && !o.json)
      std::printf("%d ranks, backend %s\n%-15s %12s %-14s %11s %10s %10s\n", n, dc->backend().c_str(), "op", "bytes",
                  "path", "time_us", "algbw_GBs", "busbw_GBs");
    if (rank == 0 && o.json) std::printf("[");
    bool first = true;
    for (const std::string& op : o.ops) {
      for (int64_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= o.step) {
        const int64_t total = bytes / 4 / n * n;  // elements, a multiple of the ranks
        if (total < n) continue;
        const std::vector<int64_t> counts(size_t(n), total / n);
        const dist::CallSite site{"collective_bench", op};
        std::string path = dc->backend();
        if (op == "all_reduce") path = dc->all_reduce_path("world", total, DType::F32);
        auto call = [&] {
          if (op == "all_reduce")
            dc->all_reduce("world", send, recv, total, DType::F32, dist::ReduceOp::Sum, s, site);
          else if (op == "all_gather")
            dc->all_gather("world", send, recv, counts, DType::F32, s, site);
          else if (op == "reduce_scatter")
            dc->reduce_scatter("world", send, recv, counts, DType::F32, dist::ReduceOp::Sum, s, site);
          else
            throw Error("unknown op '" + op + "'");
        };
        const int iters = bytes <= (int64_t(1) << 20) ? 200 : bytes <= (int64_t(1) << 26) ? 40 : 10;
        for (int i = 0; i < 5; ++i) call();
        dc->wait_or_abort(s, site);
        int64_t z = 0, zz = 0;
        world->all_reduce(&z, &zz, 1, DType::I64, dist::ReduceOp::Max);  // start together
        SHARDRT_CUDA_CHECK(cudaEventRecord(e0, s));
        for (int i = 0; i < iters; ++i) call();
        SHARDRT_CUDA_CHECK(cudaEventRecord(e1, s));
        dc->wait_or_abort(s, site);
        float ms = 0.f;
        SHARDRT_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
        double us = 1e3 * double(ms) / iters, slowest = 0;
        world->all_reduce(&us, &slowest, 1, DType::F64, dist::ReduceOp::Max);
        const double size = double(total) * 4, algbw = size / (slowest * 1e-6) / 1e9;
        const double busbw = algbw * (op == "all_reduce" ? 2.0 * (n - 1) / n : double(n - 1) / n);
        if (rank == 0) {
          if (o.json)
            std::printf("%s{\"op\": \"%s\", \"bytes\": %.0f, \"path\": \"%s\", \"time_us\": %.3f, \"algbw_GBs\": %.3f, "
                        "\"busbw_GBs\": %.3f}",
                        first ? "" : ",\n ", op.c_str(), size, path.c_str(), slowest, algbw, busbw);
          else
            std::printf("%-15s %12.0f %-14s %11.2f %10.2f %10.2f\n", op.c_str(), size, path.c_str(), slowest, algbw,
                        busbw);
          std::fflush(stdout);
        }
        first = false;
      }
    }
    if (rank == 0 && o.json) std::printf("]\n");
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaFree(send);
    cudaFree(recv);
    dc.reset();
    res.reset();
    return 0;
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "shardrt_collective_bench: %s\n", ex.what());
    return 1;
  }
}
