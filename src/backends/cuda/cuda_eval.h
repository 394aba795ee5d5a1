// Host-only entry points of the CUDA backend (no CUDA headers): whether a GPU is usable,
// and one node evaluated on the GPU from host tensors (the per-op tests compare it with
// the CPU backend's eval_node).
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"

namespace shardrt::cuda {

// True when the CUDA runtime finds a device this build can run on.
bool device_available();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)" or why there is none.
std::string device_description();

// Runs node `n` on the GPU: uploads `ins` (null for omitted inputs), allocates outputs with
// the shape rule's dims, fills them with 0xff first (poison: a kernel that leaves elements
// unwritten shows), runs the CUDA kernel, synchronises and downloads the outputs.
// Throws GraphError naming the node when the CUDA backend has no kernel for its op.
std::vector<Tensor> eval_node(const Node& n, const std::vector<const Tensor*>& ins);

// Op types with a CUDA kernel.
std::vector<std::string> kernel_names();
bool has_kernel(const std::string& op);

}  // namespace shardrt::cuda
