// The --check-numerics reduction: one grid-stride pass counting NaN and Inf by their bits
// (exponent all ones; mantissa zero = Inf, else NaN), exact for every float format, with
// the smallest bad index. Per block: a warp shuffle, then shared memory, then one atomic
// per counter (only blocks that found something touch the global record).
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/numerics.h"

namespace shardrt::cuda {

namespace {

constexpr int kThreads = 256;

template <class U>
__global__ void __launch_bounds__(kThreads)
    numerics_kernel(const U* __restrict__ p, int64_t n, U exp_mask, U man_mask, DeviceNumerics* out) {
  unsigned long long nan = 0, inf = 0, first = ~0ull;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  // A thread visits its indices in increasing order: the first it finds is its smallest.
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    U u = p[i];
    if ((u & exp_mask) != exp_mask) continue;
    if (u & man_mask) ++nan;
    else ++inf;
    if (first == ~0ull) first = (unsigned long long)i;
  }
  for (int o = 16; o > 0; o >>= 1) {
    nan += __shfl_xor_sync(0xffffffffu, nan, o);
    inf += __shfl_xor_sync(0xffffffffu, inf, o);
    unsigned long long f = __shfl_xor_sync(0xffffffffu, first, o);
    first = f < first ? f : first;
  }
  __shared__ unsigned long long s_nan[kThreads / 32], s_inf[kThreads / 32], s_first[kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    s_nan[warp] = nan;
    s_inf[warp] = inf;
    s_first[warp] = first;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  for (int w = 1; w < kThreads / 32; ++w) {
    nan += s_nan[w];
    inf += s_inf[w];
    first = s_first[w] < first ? s_first[w] : first;
  }
  if (nan == 0 && inf == 0) return;
  atomicAdd(&out->nan, nan);
  atomicAdd(&out->inf, inf);
  atomicMin(&out->first, first);
}

template <class U>
void launch(const void* data, int64_t n, U exp_mask, U man_mask, DeviceNumerics* out, cudaStream_t s) {
  // Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
  int64_t blocks = (n + kThreads - 1) / kThreads;
  if (blocks > 4096) blocks = 4096;
  numerics_kernel<U><<<unsigned(blocks), kThreads, 0, s>>>(static_cast<const U*>(data), n, exp_mask, man_mask, out);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void enqueue_numerics_scan(DType t, const void* data, int64_t n, DeviceNumerics* out, cudaStream_t s) {
  static_assert(sizeof(DeviceNumerics) == 24, "the reset below writes the record field by field");
  SHARDRT_CUDA_CHECK(cudaMemsetAsync(out, 0, 2 * sizeof(unsigned long long), s));   // nan, inf
  SHARDRT_CUDA_CHECK(cudaMemsetAsync(&out->first, 0xff, sizeof(unsigned long long), s));  // none yet
  if (n <= 0 || !data) return;
  switch (t) {
    case DType::F32: launch<uint32_t>(data, n, 0x7f800000u, 0x007fffffu, out, s); break;
    case DType::F16: launch<uint16_t>(data, n, uint16_t(0x7c00), uint16_t(0x03ff), out, s); break;
    case DType::BF16: launch<uint16_t>(data, n, uint16_t(0x7f80), uint16_t(0x007f), out, s); break;
    case DType::F64: launch<uint64_t>(data, n, 0x7ff0000000000000ull, 0x000fffffffffffffull, out, s); break;
    default: break;
  }
}

}  // namespace shardrt::cuda
