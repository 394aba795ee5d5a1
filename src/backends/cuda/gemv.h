// The decode GEMV (gemv.cu): shardrt.Linear with a [N, K] weight (trans_b 1) for at most
// kGemvMaxRows rows of X, bias and activation fused. SHARDRT_GEMV=0 sends those shapes to
// cuBLASLt instead (for comparison).
#pragma once
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/gemm_epilogue.h"

namespace shardrt::cuda::gemm {

inline constexpr int64_t kGemvMaxRows = 4;

bool gemv_enabled();

// Y[M, N] = act(X[M, K] · W[N, K]^T + bias) on `s`; bias may be null. Returns false,
// launching nothing, when the case is not one it handles (dtype other than fp32/fp16/bf16,
// M > kGemvMaxRows, rows of X or W not 16-byte aligned). Launched with programmatic
// dependent launch (launch_pdl.h); w_const: W is a constant of the engine (no kernel writes
// it), so its first loads may be issued before the previous kernel has finished.
bool launch_gemv(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act,
                 void* y, bool w_const, cudaStream_t s);

// Linear's activation "swiglu": Y[M, N] = silu(X·Wg^T + Bg) · (X·Wu^T + Bu) with W [2N, K] the
// gate rows then the up rows and bias [2N] (or null): a warp streams the rows j and N + j of
// its outputs together and stores the product once. Same refusals as launch_gemv.
bool launch_gemv_swiglu(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias,
                        void* y, bool w_const, cudaStream_t s);

// shardrt.NormLinear's decode path: the GEMV with the norm in its prologue. Every block forms
// S = X (+ R) and its LayerNorm / RMSNorm over K in shared memory before the product; block 0
// stores `sum` (when `res`) and `normed`. Refused (false) as launch_gemv refuses, and when the
// M rows of X take more than kGemvNormMaxBytes or a norm pointer is not 16-byte aligned.
inline constexpr size_t kGemvNormMaxBytes = 48 * 1024;
struct GemvNorm {
  const void* res = nullptr;    // R [M, K] or null
  const void* scale = nullptr;  // [K]
  const void* shift = nullptr;  // [K] or null (LayerNorm's bias)
  void* sum = nullptr;          // [M, K]: X + R, when res
  void* normed = nullptr;       // [M, K]
  float eps = 1e-5f;
  bool rms = false;
  bool params_const = false;    // scale and shift are engine constants: fetched before the PDL wait
};
bool launch_gemv_norm(DType t, int64_t M, int64_t N, int64_t K, const void* x, const GemvNorm& norm, const void* w,
                      const void* bias, Act act, bool swiglu, void* y, bool w_const, cudaStream_t s);

// Registers the CUDA kernel of shardrt.NormLinear (kernels_norm_linear.cpp).
void register_norm_linear_kernel();

}  // namespace shardrt::cuda::gemm
