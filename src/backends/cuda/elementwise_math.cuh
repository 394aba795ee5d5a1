// Device math of the elementwise kernels, one overload per compute type: float calls the
// single-precision CUDA functions (expf, ...; fast math is off, so they are the accurate
// versions, a few ulp from glibc), double the double ones.
#pragma once
#include <cuda_runtime.h>

namespace shardrt::cuda::ew {

#define SHARDRT_EW_MATH1(name)                                                        \
  __device__ __forceinline__ float m_##name(float x) { return ::name##f(x); }        \
  __device__ __forceinline__ double m_##name(double x) { return ::name(x); }

SHARDRT_EW_MATH1(exp)
SHARDRT_EW_MATH1(log)
SHARDRT_EW_MATH1(log1p)
SHARDRT_EW_MATH1(sqrt)
SHARDRT_EW_MATH1(sin)
SHARDRT_EW_MATH1(cos)
SHARDRT_EW_MATH1(tan)
SHARDRT_EW_MATH1(asin)
SHARDRT_EW_MATH1(acos)
SHARDRT_EW_MATH1(atan)
SHARDRT_EW_MATH1(sinh)
SHARDRT_EW_MATH1(cosh)
SHARDRT_EW_MATH1(asinh)
SHARDRT_EW_MATH1(acosh)
SHARDRT_EW_MATH1(atanh)
SHARDRT_EW_MATH1(tanh)
SHARDRT_EW_MATH1(erf)
SHARDRT_EW_MATH1(erfc)
SHARDRT_EW_MATH1(floor)
SHARDRT_EW_MATH1(ceil)
SHARDRT_EW_MATH1(rint)
SHARDRT_EW_MATH1(fabs)

#undef SHARDRT_EW_MATH1

__device__ __forceinline__ float m_fmod(float x, float y) { return ::fmodf(x, y); }
__device__ __forceinline__ double m_fmod(double x, double y) { return ::fmod(x, y); }
__device__ __forceinline__ float m_pow(float x, float y) { return ::powf(x, y); }
__device__ __forceinline__ double m_pow(double x, double y) { return ::pow(x, y); }
__device__ __forceinline__ bool m_isinf(float x) { return ::isinf(x); }
__device__ __forceinline__ bool m_isinf(double x) { return ::isinf(x); }

}  // namespace shardrt::cuda::ew
