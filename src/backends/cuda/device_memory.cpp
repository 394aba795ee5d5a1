#include "backends/cuda/device_memory.h"

#include <cuda_runtime.h>

#include <cstdio>

namespace shardrt::cuda {

namespace {
std::string mb(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

std::string oom_message(const std::string& what, size_t bytes, size_t free_b, size_t total_b, const std::string& node) {
  std::string r = "out of GPU memory: " + what + " needs " + std::to_string(bytes) + " bytes (" + mb(bytes) +
                  "); the GPU has " + mb(free_b) + " free of " + mb(total_b) + " (cudaMemGetInfo)";
  return node.empty() ? r : r + ", in " + node;
}
}  // namespace

DeviceOutOfMemory::DeviceOutOfMemory(std::string w, size_t b, size_t f, size_t t, std::string n)
    : Error(oom_message(w, b, f, t, n)), what_alloc(std::move(w)), bytes(b), free_bytes(f), total_bytes(t),
      node(std::move(n)) {}

DeviceOutOfMemory DeviceOutOfMemory::with_node(const std::string& n) const {
  return node.empty() ? DeviceOutOfMemory(what_alloc, bytes, free_bytes, total_bytes, n) : *this;
}

void* device_alloc(size_t bytes, const std::string& what, const std::string& node) {
  void* p = nullptr;
  cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
  if (e == cudaSuccess) return p;
  cudaGetLastError();  // an allocation failure is not sticky: clear it so later checks do not see it
  if (e == cudaErrorMemoryAllocation) {
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) cudaGetLastError();
    throw DeviceOutOfMemory(what, bytes, free_b, total_b, node);
  }
  throw Error(std::string("CUDA error: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") allocating " +
              std::to_string(bytes) + " bytes for " + what + (node.empty() ? "" : ", in " + node));
}

}  // namespace shardrt::cuda
