// Device allocations of the CUDA backend (executor buffers, Resources' workspace and
// persistent buffers) in one place, so that running out of GPU memory always says what was
// being allocated, how much, what the GPU had free at that moment, and in which node.
#pragma once
#include <cstddef>
#include <string>

#include "shardrt/engine.h"

namespace shardrt::cuda {

// cudaMalloc failed with cudaErrorMemoryAllocation. what() is the whole message:
// "out of GPU memory: <what> needs N bytes (X MB); the GPU has F MB free of T MB
// (cudaMemGetInfo)[, in node 'n' (Op)]".
struct DeviceOutOfMemory : Error {
  DeviceOutOfMemory(std::string what_alloc, size_t bytes, size_t free_bytes, size_t total_bytes, std::string node);
  // The same error naming `node` (a Node::describe() string), unless it names one already.
  DeviceOutOfMemory with_node(const std::string& node) const;
  std::string what_alloc;
  size_t bytes, free_bytes, total_bytes;
  std::string node;  // "" when no node was running (context creation, uploads)
};

// cudaMalloc of max(bytes, 1) on the current device. Out of memory: DeviceOutOfMemory;
// any other failure: Error naming the CUDA error and `what`.
void* device_alloc(size_t bytes, const std::string& what, const std::string& node = "");

}  // namespace shardrt::cuda
