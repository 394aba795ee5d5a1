// The activations of shardrt.Linear as device functions, shared by the GEMM epilogue
// kernels and the decode GEMV (Act values from gemm_epilogue.h).
#pragma once
#include "backends/cuda/gemm_epilogue.h"

namespace shardrt::cuda::gemm {

__device__ inline float erfc_(float x) { return erfcf(x); }
__device__ inline double erfc_(double x) { return erfc(x); }
__device__ inline float exp_(float x) { return expf(x); }
__device__ inline double exp_(double x) { return exp(x); }

template <class A>
__device__ inline A act_fn(int act, A x) {
  switch (act) {
    case int(Act::Relu): return x > A(0) ? x : A(0);
    // 0.5·x·(1 + erf(x/√2)) written with erfc so the negative tail keeps its relative accuracy.
    case int(Act::Gelu): return A(0.5) * x * erfc_(-x * A(0.70710678118654752440));
    case int(Act::GeluTanh): {
      // 0.5x(1 + tanh(u)) == x·sigmoid(2u): no cancellation for negative x.
      const A u = A(0.79788456080286535588) * (x + A(0.044715) * x * x * x);
      return x / (A(1) + exp_(A(-2) * u));
    }
    case int(Act::Silu): return x / (A(1) + exp_(-x));
    default: return x;
  }
}

}  // namespace shardrt::cuda::gemm
