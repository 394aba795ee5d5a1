// Helpers around cuDNN's convolutions (conv_kernels.h): the window copy (zero padding in
// front of cuDNN, which pads only symmetrically, and cropping after it; pure data movement,
// so elements move as raw 2-, 4- or 8-byte words whatever their dtype) and the per-channel
// bias add (own kernel rather than cudnnAddTensor, whose bf16 support is not documented).
#include <algorithm>

#include "backends/cuda/conv_kernels.h"
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

namespace {

struct CopyArgs {
  int64_t total;  // planes × dst[0] × dst[1] × dst[2]
  int64_t src0, src1, src2, dst0, dst1, dst2, off0, off1, off2;
};

template <class W>
__global__ void __launch_bounds__(256) window_copy_kernel(CopyArgs a, const W* __restrict__ src, W* __restrict__ dst) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += step) {
    int64_t r = i;
    const int64_t x2 = r % a.dst2;
    r /= a.dst2;
    const int64_t x1 = r % a.dst1;
    r /= a.dst1;
    const int64_t x0 = r % a.dst0;
    const int64_t plane = r / a.dst0;
    const int64_t s0 = x0 + a.off0, s1 = x1 + a.off1, s2 = x2 + a.off2;
    W v{};
    if (s0 >= 0 && s0 < a.src0 && s1 >= 0 && s1 < a.src1 && s2 >= 0 && s2 < a.src2)
      v = src[((plane * a.src0 + s0) * a.src1 + s1) * a.src2 + s2];
    dst[i] = v;
  }
}

// y[n, m, p] += b[m] over `total` = N·M·P elements, in fp32 (the rounding of an fp16/bf16
// output happens once, as on the CPU).
template <class T>
__global__ void __launch_bounds__(256) bias_add_kernel(T* __restrict__ y, const T* __restrict__ b, int64_t total,
                                                       int64_t channels, int64_t plane) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    y[i] = from_f<T>(to_f(y[i]) + to_f(b[(i / plane) % channels]));
}

// fp64 adds in fp64.
__global__ void __launch_bounds__(256) bias_add_kernel_f64(double* __restrict__ y, const double* __restrict__ b,
                                                           int64_t total, int64_t channels, int64_t plane) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += step)
    y[i] += b[(i / plane) % channels];
}

}  // namespace

void launch_bias_add(DType t, void* y, const void* bias, int64_t batch, int64_t channels, int64_t plane,
                     cudaStream_t stream) {
  const int64_t total = batch * channels * plane;
  if (total <= 0) return;
  const int threads = 256;
  const unsigned blocks = std::min(blocks_for(total, threads), 132u * 32u);
  switch (t) {
    case DType::F32:
      bias_add_kernel<<<blocks, threads, 0, stream>>>(static_cast<float*>(y), static_cast<const float*>(bias), total, channels, plane);
      break;
    case DType::F16:
      bias_add_kernel<<<blocks, threads, 0, stream>>>(static_cast<__half*>(y), static_cast<const __half*>(bias), total, channels, plane);
      break;
    case DType::BF16:
      bias_add_kernel<<<blocks, threads, 0, stream>>>(static_cast<__nv_bfloat16*>(y), static_cast<const __nv_bfloat16*>(bias), total,
                                                      channels, plane);
      break;
    case DType::F64:
      bias_add_kernel_f64<<<blocks, threads, 0, stream>>>(static_cast<double*>(y), static_cast<const double*>(bias), total, channels, plane);
      break;
    default: throw Error(std::string("internal: bias add for dtype ") + dtype_name(t));
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void launch_window_copy(const WindowCopy& g, size_t elem_bytes, const void* src, void* dst, cudaStream_t stream) {
  CopyArgs a{g.planes * g.dst[0] * g.dst[1] * g.dst[2], g.src[0], g.src[1], g.src[2], g.dst[0], g.dst[1], g.dst[2],
             g.off[0], g.off[1], g.off[2]};
  if (a.total <= 0) return;
  const int threads = 256;
  // Grid-stride: enough blocks to fill the GPU several times over, no more.
  const unsigned blocks = std::min(blocks_for(a.total, threads), 132u * 32u);
  switch (elem_bytes) {
    case 2: window_copy_kernel<<<blocks, threads, 0, stream>>>(a, static_cast<const uint16_t*>(src), static_cast<uint16_t*>(dst)); break;
    case 4: window_copy_kernel<<<blocks, threads, 0, stream>>>(a, static_cast<const uint32_t*>(src), static_cast<uint32_t*>(dst)); break;
    case 8: window_copy_kernel<<<blocks, threads, 0, stream>>>(a, static_cast<const uint64_t*>(src), static_cast<uint64_t*>(dst)); break;
    default: throw Error("internal: window copy of " + std::to_string(elem_bytes) + "-byte elements");
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace shardrt::cuda
