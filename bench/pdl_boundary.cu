// What one kernel boundary of a decode step costs on the GPU: a CUDA graph of 60 dependent
// GEMV-like kernels (144 blocks of 256 threads; each block prefetches its constant weights,
// waits for its input, reads a 1 KB vector written by the kernel before it, writes 16
// outputs), launched with programmatic dependent launch (PDL), replayed back to back. The
// wait differs per benchmark:
//   pdl_wait      griddepcontrol.wait (what shardrt's decode kernels do)
//   counter       the producer's blocks fence and add 1 to one counter at their end; the
//                 consumer's blocks spin on it (no griddepcontrol.wait)
//   block_flags   the producer's blocks each store a per-run epoch in their own flag
//                 (release); a warp of every consumer block polls them all (acquire)
//   no_wait       nothing: the results are wrong; the launch floor of the chain
// us_per_kernel = GPU time per graph / 60.
//
//   shardrt_pdl_boundary_bench --benchmark_min_time=1
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

#define CK(x)                                                                               \
  do {                                                                                      \
    cudaError_t e_ = (x);                                                                   \
    if (e_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_));      \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

enum Mode { kPdlWait = 0, kCounter = 1, kBlockFlags = 2, kNoWait = 3 };
constexpr int kKernels = 60, kK = 256, kN = 2304, kOutsPerBlock = 16, kGrid = kN / kOutsPerBlock;

__device__ int g_epoch;  // block_flags: the run number, bumped by the graph's first node

__device__ __forceinline__ int ld_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.s32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__global__ void bump_epoch() { g_epoch += 1; }

// y[n] = dot(x, w[n]) for this block's 16 outputs (2 per warp). `in`: the producer's counter
// or flags; `out`: this kernel's; first: no producer to wait for.
template <int MODE>
__global__ void __launch_bounds__(256) step(const float* __restrict__ x, const float* __restrict__ w,
                                            float* __restrict__ y, const int* in, int* out, int first) {
  asm volatile("griddepcontrol.launch_dependents;" :::);
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int n0 = int(blockIdx.x) * kOutsPerBlock + warp * 2;
  float4 wv[2][2];
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int u = 0; u < 2; ++u)
      wv[r][u] = __ldg(reinterpret_cast<const float4*>(w + int64_t(n0 + r) * kK) + lane + u * 32);
  if (MODE == kPdlWait) {
    asm volatile("griddepcontrol.wait;" ::: "memory");
  } else if (MODE == kCounter) {
    if (!first && threadIdx.x == 0)
      while (ld_acquire(in) < kGrid) {
      }
    __syncthreads();
  } else if (MODE == kBlockFlags) {
    const int ep = *reinterpret_cast<volatile int*>(&g_epoch);
    if (!first && threadIdx.x < 32) {
      bool done;
      do {
        done = true;
        for (int j = lane; j < kGrid; j += 32) done &= ld_acquire(in + j) == ep;
        done = __all_sync(0xffffffffu, done);
      } while (!done);
    }
    __syncthreads();
  }
  float acc[2] = {0.f, 0.f};
#pragma unroll
  for (int u = 0; u < 2; ++u) {
    const float4 xv = __ldcg(reinterpret_cast<const float4*>(x) + lane + u * 32);
#pragma unroll
    for (int r = 0; r < 2; ++r)
      acc[r] += xv.x * wv[r][u].x + xv.y * wv[r][u].y + xv.z * wv[r][u].z + xv.w * wv[r][u].w;
  }
#pragma unroll
  for (int r = 0; r < 2; ++r)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], o);
  if (lane < 2) y[n0 + lane] = acc[lane] * 1e-3f + 1.f;
  if (MODE == kCounter || MODE == kBlockFlags) {
    __syncthreads();
    if (threadIdx.x == 0) {
      if (MODE == kCounter) {
        __threadfence();
        atomicAdd(out, 1);
      } else {
        const int ep = *reinterpret_cast<volatile int*>(&g_epoch);
        asm volatile("st.release.gpu.global.s32 [%0], %1;" ::"l"(out + blockIdx.x), "r"(ep) : "memory");
      }
    }
  }
}

template <int MODE>
void launch(cudaStream_t s, const float* x, const float* w, float* y, const int* in, int* out, int first) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = kGrid;
  cfg.blockDim = 256;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  CK(cudaLaunchKernelEx(&cfg, step<MODE>, x, w, y, in, out, first));
}

void chain(benchmark::State& st) {
  const int mode = int(st.range(0));
  float *buf, *w;
  int* sync;  // counters: one int per kernel; flags: kGrid ints per kernel
  CK(cudaMalloc(&buf, 2 * kN * sizeof(float)));
  CK(cudaMalloc(&w, size_t(kN) * kK * sizeof(float)));
  CK(cudaMemset(w, 0, size_t(kN) * kK * sizeof(float)));
  CK(cudaMemset(buf, 0, 2 * kN * sizeof(float)));
  const size_t sync_ints = size_t(kKernels + 1) * kGrid;
  CK(cudaMalloc(&sync, sync_ints * sizeof(int)));
  CK(cudaMemset(sync, 0, sync_ints * sizeof(int)));
  cudaStream_t s;
  CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cudaGraph_t g;
  CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  if (mode == kCounter) CK(cudaMemsetAsync(sync, 0, sync_ints * sizeof(int), s));
  if (mode == kBlockFlags) bump_epoch<<<1, 1, 0, s>>>();
  for (int l = 0; l < kKernels; ++l) {
    const float* x = buf + (l & 1) * kN;
    float* y = buf + ((l + 1) & 1) * kN;
    const int* in = mode == kCounter ? sync + l : sync + size_t(l) * kGrid;
    int* out = mode == kCounter ? sync + l + 1 : sync + size_t(l + 1) * kGrid;
    switch (mode) {
      case kPdlWait: launch<kPdlWait>(s, x, w, y, in, out, l == 0); break;
      case kCounter: launch<kCounter>(s, x, w, y, in, out, l == 0); break;
      case kBlockFlags: launch<kBlockFlags>(s, x, w, y, in, out, l == 0); break;
      default: launch<kNoWait>(s, x, w, y, in, out, l == 0); break;
    }
  }
  CK(cudaStreamEndCapture(s, &g));
  cudaGraphExec_t ge;
  CK(cudaGraphInstantiate(&ge, g, 0));
  for (int i = 0; i < 20; ++i) CK(cudaGraphLaunch(ge, s));
  CK(cudaStreamSynchronize(s));
  constexpr int kPerSync = 50;
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    for (int i = 0; i < kPerSync; ++i) CK(cudaGraphLaunch(ge, s));
    CK(cudaStreamSynchronize(s));
  }
  const double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
  st.counters["us_per_kernel"] = st.iterations() ? us / double(st.iterations() * kPerSync * kKernels) : 0.0;
  CK(cudaGraphExecDestroy(ge));
  CK(cudaGraphDestroy(g));
  CK(cudaStreamDestroy(s));
  CK(cudaFree(sync));
  CK(cudaFree(w));
  CK(cudaFree(buf));
}

}  // namespace

BENCHMARK(chain)->ArgName("pdl_wait")->Arg(kPdlWait)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(chain)->ArgName("counter")->Arg(kCounter)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(chain)->ArgName("block_flags")->Arg(kBlockFlags)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(chain)->ArgName("no_wait")->Arg(kNoWait)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
