// Convolution and pooling on CUDA: Conv and ConvTranspose through cuDNN (conv_cudnn.cpp),
// MaxPool, AveragePool, GlobalMaxPool and GlobalAveragePool as own kernels (kernels_pool.cu),
// and the helpers around cuDNN (conv_helpers.cu): the window copy that its symmetric-only
// padding needs and the bias add.
#pragma once
#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "shardrt/dtype.h"

namespace shardrt::cuda {

// Registers Conv, ConvTranspose and the pools; safe to call more than once (it replaces the
// same entries). Called from register_all_kernels.
void register_conv_kernels();
// The pools alone (kernels_pool.cu); register_conv_kernels calls it.
void register_pool_kernels();

// A copy of `planes` planes of up to 3 spatial dims (unused leading dims are 1) where
// dst[i] = src[i + off] per axis, and 0 where i + off falls outside src: with a negative
// `off` it pads (zero borders), with a positive one it crops.
struct WindowCopy {
  int64_t planes = 0;
  int64_t src[3] = {1, 1, 1}, dst[3] = {1, 1, 1}, off[3] = {0, 0, 0};
};
// Enqueues the copy on `stream` for elements of `elem_bytes` (2, 4 or 8) bytes.
void launch_window_copy(const WindowCopy& g, size_t elem_bytes, const void* src, void* dst, cudaStream_t stream);

// y[n, m, ...] += bias[m] for y [batch, channels, plane elements] of a float dtype.
void launch_bias_add(DType t, void* y, const void* bias, int64_t batch, int64_t channels, int64_t plane,
                     cudaStream_t stream);

}  // namespace shardrt::cuda
