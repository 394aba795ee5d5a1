// What the CUDA kernels of shardrt.Attention share: the launch parameters (one struct for
// every path), the mask read through broadcast strides, and the two launchers the
// dispatcher in kernels_attention.cu chooses between.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::attn {

// How the optional mask is stored; the kernels branch on it uniformly per launch.
enum MaskKind : int { kNoMask = 0, kBoolMask = 1, kF32Mask = 2, kF16Mask = 3, kBF16Mask = 4 };

struct Params {
  const void* q = nullptr;  // [B, Hq, Sq, D], contiguous
  const void* k = nullptr;  // [B, Hkv, Skv, D]
  const void* v = nullptr;  // [B, Hkv, Skv, Dv]
  void* o = nullptr;        // [B, Hq, Sq, Dv]
  const void* mask = nullptr;
  int mask_kind = kNoMask;
  // Element strides of the mask over [B, Hq, Sq, Skv] (0 on broadcast dims).
  int64_t ms_b = 0, ms_h = 0, ms_i = 0, ms_j = 0;
  int B = 0, Hq = 0, Hkv = 0, Sq = 0, Skv = 0, D = 0, Dv = 0;
  int group = 1;           // Hq / Hkv: query head h reads kv head h / group
  float scale_log2 = 0.f;  // softmax scale times log2(e): scores live in the exp2 domain
  int causal = 0;
  int64_t causal_off = 0;  // Skv - Sq: query i sees keys j <= i + causal_off
};

constexpr float kLog2e = 1.4426950408889634f;

// The mask's contribution to score (b, h, i, j), in the exp2 domain: -inf where a bool mask
// says false, the float mask times log2(e), else 0.
__device__ __forceinline__ float mask_term(const Params& p, int64_t b, int64_t h, int64_t i, int64_t j) {
  const int64_t off = b * p.ms_b + h * p.ms_h + i * p.ms_i + j * p.ms_j;
  switch (p.mask_kind) {
    case kBoolMask: return static_cast<const uint8_t*>(p.mask)[off] ? 0.f : -__int_as_float(0x7f800000);
    case kF32Mask: return static_cast<const float*>(p.mask)[off] * kLog2e;
    case kF16Mask: return __half2float(static_cast<const __half*>(p.mask)[off]) * kLog2e;
    case kBF16Mask: return __bfloat162float(static_cast<const __nv_bfloat16*>(p.mask)[off]) * kLog2e;
    default: return 0.f;
  }
}

// Tensor-core (FlashAttention-2 style) path for fp16/bf16: returns false, launching
// nothing, when the shape, head size or alignment is not one it handles.
bool launch_flash(const Params& p, DType t, cudaStream_t s);

// General path for every float dtype and head size: one warp per (query row, key split),
// splits merged by a second kernel through `workspace` (fp32 partials). `splits` >= 1;
// workspace must hold workspace_floats(p, splits) floats when splits > 1.
void launch_rowwise(const Params& p, DType t, int splits, float* workspace, cudaStream_t s);
inline int64_t workspace_floats(const Params& p, int splits) {
  return int64_t(p.B) * p.Hq * p.Sq * splits * (int64_t(p.Dv) + 2);
}
// Bytes of shared memory one warp of the rowwise kernel uses (q and the accumulator, fp32).
inline int64_t rowwise_smem_per_warp(const Params& p) { return (int64_t(p.D) + p.Dv) * 4; }

}  // namespace shardrt::cuda::attn
