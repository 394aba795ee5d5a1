// Device helpers shared by the norm/reduce/softmax/rotary kernel files: warp and block
// reductions, 16-byte vector access of a row, parameter loads of any float dtype, and the
// registration functions of each file (kernels_norm.cu calls them).
#pragma once
#include <cfloat>
#include <cstdint>
#include <string>

#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda {

// Registration of the files of this family (kernels_norm.cu's register_norm_kernels calls each).
void register_norm_row_kernels();      // kernels_norm_row.cu: LayerNormalization, RMSNorm, AddLayerNorm, AddRMSNorm
void register_norm_channel_kernels();  // kernels_norm_channel.cu: Batch/Instance/GroupNormalization
void register_softmax_kernels();       // kernels_softmax.cu: Softmax, LogSoftmax, Hardmax
void register_reduce_kernels();        // kernels_reduce.cu: Reduce*
void register_reduce_index_kernels();  // kernels_reduce_index.cu: ArgMax, ArgMin, CumSum
void register_rotary_kernels();        // kernels_rotary.cu: shardrt.Rotary

namespace normk {

// Float dtype codes for parameters read with ldf (per-channel scales, Cos/Sin, ...): a
// uniform switch per load is cheap next to the memory traffic and avoids one instantiation
// per parameter dtype.
enum FCode : int { kF32 = 0, kF16 = 1, kBF16 = 2, kF64 = 3 };

inline int fcode(const KernelCtx& c, DType t, const char* what) {
  switch (t) {
    case DType::F32: return kF32;
    case DType::F16: return kF16;
    case DType::BF16: return kBF16;
    case DType::F64: return kF64;
    default: c.fail(std::string(what) + " has dtype " + dtype_name(t) + ", expected a float type");
  }
}

__device__ __forceinline__ float ldf(const void* p, int code, int64_t i) {
  switch (code) {
    case kF16: return __half2float(static_cast<const __half*>(p)[i]);
    case kBF16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    case kF64: return float(static_cast<const double*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// Accumulator type: fp32 for fp32/fp16/bf16, fp64 for fp64.
template <class T> struct acc_of { using type = float; };
template <> struct acc_of<double> { using type = double; };

template <class A> __device__ __forceinline__ A dev_to(float v) { return A(v); }
template <class T> __device__ __forceinline__ double to_d(T v) { return double(to_f(v)); }
template <> __device__ __forceinline__ double to_d<double>(double v) { return v; }
// Conversion between the element type and its accumulator (double stays double).
template <class T> __device__ __forceinline__ typename acc_of<T>::type ld_acc(T v) { return to_f(v); }
template <> __device__ __forceinline__ double ld_acc<double>(double v) { return v; }
template <class T> __device__ __forceinline__ T st_acc(typename acc_of<T>::type v) { return from_f<T>(v); }
template <> __device__ __forceinline__ double st_acc<double>(double v) { return v; }

template <class A> __device__ __forceinline__ A warp_sum(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
template <class A> __device__ __forceinline__ A warp_max(A v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    A w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// Sum over the whole block (every thread gets the result). `sh` holds >= 32 A's; the
// function syncs before reusing it, so back-to-back calls with the same buffer are safe.
template <class A> __device__ __forceinline__ A block_sum(A v, A* sh) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  A t = lane < nw ? sh[lane] : A(0);
  return warp_sum(t);
}
template <class A> __device__ __forceinline__ A block_max(A v, A* sh, A lowest) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  A t = lane < nw ? sh[lane] : lowest;
  return warp_max(t);
}

// VEC elements of T moved as one access (16 bytes when VEC * sizeof(T) == 16).
template <class T, int VEC> struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Largest grid worth launching for a grid-stride loop over `work` items of `per_block` each.
inline unsigned grid_for(int64_t work, int64_t per_block, int64_t cap = 65535LL * 32) {
  int64_t b = (work + per_block - 1) / per_block;
  if (b < 1) b = 1;
  if (b > cap) b = cap;
  return unsigned(b);
}

// Up to 8 dims of index math passed by value to kernels.
constexpr int kMaxDims = 8;
struct Dims8 {
  int n = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride[kMaxDims] = {};
};

}  // namespace normk
}  // namespace shardrt::cuda

// Dispatch over fp32/fp16/bf16 only (the register-resident fast paths); T is the device type.
#define NORMK_HALF_DISPATCH(ctx, dtype, ...)                                                 \
  switch (dtype) {                                                                             \
    case ::shardrt::DType::F32: { using T = float; __VA_ARGS__; break; }                   \
    case ::shardrt::DType::F16: { using T = __half; __VA_ARGS__; break; }                  \
    case ::shardrt::DType::BF16: { using T = __nv_bfloat16; __VA_ARGS__; break; }          \
    default: (ctx).fail(std::string("dtype ") + ::shardrt::dtype_name(dtype) + " is not supported on CUDA"); \
  }
