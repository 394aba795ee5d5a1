// Programmatic dependent launch (PDL, Hopper) for the kernels of the decode chain: a kernel
// launched with launch_pdl may start while the kernel before it on the stream is still
// running, so its launch latency and its reads of constant data (weights) overlap the
// previous kernel's tail. Graph capture turns the attribute into a programmatic edge.
//
// The contract of a kernel launched this way:
//   - before pdl_wait() it touches nothing an earlier kernel produces or reads (only data
//     that no kernel writes, such as weights, may be read before it);
//   - it calls pdl_trigger() to let the next kernel (if it too was launched with the
//     attribute) be scheduled once every block of this one has called it. Where is a matter
//     of speed only: the next kernel's pdl_wait() still waits for this one to complete. Most
//     kernels call it right after pdl_wait(); the decode GEMV (gemv.cu) first thing.
// Both are no-ops in a kernel launched without the attribute. SHARDRT_PDL=0 launches
// everything without it (for comparison and as a way out).
#pragma once
#include <cuda_runtime.h>

#include <cstdlib>
#include <cstring>
#include <utility>

#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

inline bool pdl_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SHARDRT_PDL");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

// Waits until every earlier kernel on the stream has completed and its writes are visible.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
// Lets the next kernel launch (it will still wait for this one to complete before it reads
// what this one writes).
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// kernel<<<grid, block, smem, s>>>(args...) with the programmatic-serialization attribute
// (unless SHARDRT_PDL=0), followed by the launch-error check.
template <class... KArgs, class... Args>
void launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = s;
  cfg.attrs = attr;
  cfg.numAttrs = pdl_enabled() ? 1 : 0;
  SHARDRT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...));
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace shardrt::cuda
