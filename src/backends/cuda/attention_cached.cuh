// What the CUDA kernels of shardrt.CachedAttention share: the launch parameters, the rotary
// embedding of one element (exactly as the op defines it: fp32, accurate sincosf, rounded
// to the dtype by the caller), and the launchers of kernels_attention_cached_*.cu.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::cached {

struct Params {
  const void* qkv = nullptr;       // [B, S, (Hq + 2 Hkv) * D]
  const int64_t* past = nullptr;   // [B], on the device
  const float* inv_freq = nullptr; // [half], null without rotary
  void* kc = nullptr;              // K cache [max_batch, Hkv, max_seq, D]
  void* vc = nullptr;              // V cache, same
  void* out = nullptr;             // [B, S, Hq * D]
  int B = 0, S = 0, Hq = 0, Hkv = 0, D = 0;
  int G = 1;           // Hq / Hkv
  int half = 0;        // R / 2: features [0, 2 half) of each q/k head rotate
  int interleaved = 0; // 0: rotate-half pairs (j, j + half); 1: pairs (2j, 2j + 1)
  int max_seq = 0;
  float scale_log2 = 0.f;  // softmax scale times log2(e): scores live in the exp2 domain
};

constexpr float kLog2e = 1.4426950408889634f;

// Element i of head row x rotated at position `pos`, in fp32 (not yet rounded). Products
// and sums are explicitly rounded (no FMA contraction) so that the result is what the
// op's formula gives step by step: x[i]·c − x[partner]·sn or x[i]·c + x[partner]·sn.
template <class T>
__device__ __forceinline__ float rotated(const T* x, int i, int half, int inter, const float* inv_freq, float pos) {
  const float xi = to_f(x[i]);
  if (i >= 2 * half) return xi;
  int j, partner;
  bool first;
  if (inter) {
    j = i >> 1;
    first = (i & 1) == 0;
    partner = i ^ 1;
  } else {
    first = i < half;
    j = first ? i : i - half;
    partner = first ? i + half : i - half;
  }
  float sn, cs;
  sincosf(__fmul_rn(pos, inv_freq[j]), &sn, &cs);  // accurate (no fast-math): as the CPU's cos/sin
  const float xp = to_f(x[partner]);
  return first ? __fsub_rn(__fmul_rn(xi, cs), __fmul_rn(xp, sn)) : __fadd_rn(__fmul_rn(xi, cs), __fmul_rn(xp, sn));
}

// Writes the rotated k and the v of every token into the caches at position
// PastLens[b] + s (skipping positions outside [0, max_seq)), and, when q_out is not null,
// the rotated q (rounded to the dtype) as [B, Hq, S, D] (the flash kernel's layout).
void launch_prep(const Params& p, DType t, void* q_out, cudaStream_t s);

// [B, Hq, S, D] -> out [B, S, Hq * D] (the flash path's output back into the op's layout).
void launch_unpermute(const Params& p, DType t, const void* o_bhsd, cudaStream_t s);

// The split-K decode kernel (kernels_attention_cached_decode.cu). One CTA per
// (batch row, kv head, key split, query tile); see that file.
struct DecodePlan {
  int qt = 1;       // query rows (head, token) per CTA: 1, 2, 4 or 8
  int ntile = 1;    // query tiles per (row, kv head)
  int nsplit = 1;   // key splits: fixed for the shapes and the GPU, never for PastLens
  int dp = 0;       // head size rounded up to 8 (shared-memory width)
  int vec = 0;      // 16-byte global loads and stores
  int stages = 2;   // K/V tile buffers (2: the next tile loads during this one's math)
  int resident = 0; // 1: `stages` buffers hold a split's whole key range (ceil(max_seq / nsplit)
                    // keys), all requested at once (before the PDL wait where allowed)
  int cluster = 0;  // 1: the nsplit CTAs of a (row, kv head, tile) are a cluster (merge in shared memory)
  size_t smem = 0;  // dynamic shared memory per CTA; 0: no plan fits the GPU
  size_t ws_floats = 0;  // workspace (partials) in floats
  int64_t counters = 0;  // completion counters needed (one per (row, kv head, tile))
  int defer = 0;    // 1: every CTA leaves its partial in the workspace and nobody merges
                    // (the output projection's GEMV merges them: plan_decode_deferred)
};
DecodePlan plan_decode(const Params& p, DType t, const cudaDeviceProp& props);
// A plan whose merge is left to the consumer (the output projection's GEMV prologue,
// gemv.h's GemvAttnMerge): one key tile per split (ceil(max_seq / 64) splits, at most
// kMaxDeferSplits), one query tile, no cluster. smem = 0 when the shapes do not suit it
// (S > 1, more q heads per kv head than a tile holds, too many splits, or more than
// kMaxDeferBytes of partials for every GEMV block to read).
inline constexpr int kMaxDeferSplits = 16;
inline constexpr size_t kMaxDeferBytes = 32 * 1024;
DecodePlan plan_decode_deferred(const Params& p, DType t, const cudaDeviceProp& props);
// fused = 1: keys at positions >= PastLens[b] are taken (rotated) from QKV and this launch
// also writes the caches (one launch per decode step); fused = 0: launch_prep already
// wrote the caches and every key is read from them. past_settled: PastLens is written by no
// kernel of this run (a graph input or a constant), so that (with fused = 1) it and the
// cache rows below it may be read before the PDL wait. `counters` must be zero (they are
// left zero; unused with plan.defer); `ws` holds plan.ws_floats floats, the partials first
// ([units · nsplit · qt, dp] accumulators, then [units · nsplit · qt, 2] (max, sum)).
void launch_decode(const Params& p, DType t, const DecodePlan& plan, int fused, bool past_settled, float* ws,
                   int* counters, cudaStream_t s);

}  // namespace shardrt::cuda::cached
