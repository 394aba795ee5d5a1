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
// S = X (+ R) and its LayerNorm / RMSNorm over K before the product (in shared memory; one
// row of at most 32·4 16-byte vectors: in every warp's registers, SHARDRT_GEMV_WARP_NORM=0
// keeps it in shared memory); block 0 stores `sum` (when `res`) and `normed`. Refused (false) as launch_gemv refuses, and when the
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

// shardrt.CachedAttention's output projection on the decode path: X is the attention's
// output, which the GEMV's prologue forms itself from the split partials that the attention
// decode kernel left in its workspace (kernels_attention_cached_decode.cu, plan `defer`):
// every block merges them into X's row in shared memory (softmax merge in fp32, rounded to
// the dtype as the attention's output is stored) and block 0 also stores that row to `attn`.
// One row (M = 1, S = 1): head h's partial of split s is row (h / G)·nsplit·qt + s·qt + h % G
// (one query tile of qt >= G rows per kv head); at most 32 splits; no activation.
// gemv_attn_merge_applies says whether launch_gemv_attn_merge takes the case (ask before
// launching the deferred attention: nobody else would merge its partials).
struct GemvAttnMerge {
  const float* acc = nullptr;  // [Hkv · nsplit · qt, D]: unnormalised partial outputs
  const float* ml = nullptr;   // [Hkv · nsplit · qt, 2]: row max (exp2 domain; -inf: no key), row sum
  void* attn = nullptr;        // [1, Hq · D] in the dtype: block 0 stores the merged row
  int nsplit = 0, hq = 0, hkv = 0, qt = 1, d = 0;
};
bool gemv_attn_merge_applies(DType t, int64_t M, int64_t N, int64_t K, const GemvAttnMerge& m, const void* w);
bool launch_gemv_attn_merge(DType t, int64_t M, int64_t N, int64_t K, const GemvAttnMerge& m, const void* w,
                            const void* bias, void* y, bool w_const, cudaStream_t s);

// Registers the CUDA kernel of shardrt.NormLinear (kernels_norm_linear.cpp).
void register_norm_linear_kernel();

}  // namespace shardrt::cuda::gemm
