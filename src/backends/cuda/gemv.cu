// The decode GEMV: Y[M, N] = act(X[M, K] · W[N, K]^T + bias) for a handful of rows (a
// decode step's tokens), where the weight read is the whole cost and a general GEMM's
// tiling leaves most of the GPU idle (a 768-wide output is a dozen cuBLASLt tiles).
//
// A block of 8 warps computes RG·R outputs: the warps form RG row groups of KS warps; each
// warp takes R weight rows and one KS-th of K, its lanes streaming 16-byte vectors, U per
// lane and row in flight, together with the matching pieces of every X row (X is tiny and
// stays in L1/L2). Sums are fp32: across the warp by shuffles, across the KS warps of a row
// group through shared memory. The split of K (KS) is picked so that a warp's slice is about
// one round of loads (the latency of a small GEMV is one memory round trip, not several);
// R so that the grid still gives every SM a block.
//
// Linear's activation "swiglu" (launch_gemv_swiglu): a warp's R rows are R/2 gate rows and
// the up rows of the same outputs (W [2N, K] packs gate then up), so the thread that stores
// an output holds both sums and writes silu(g)·u once: no [M, 2N] intermediate.
//
// The norm prologue (shardrt.NormLinear, launch_gemv_norm): every block forms X's rows
// itself — S = X (+ R, rounded to the dtype as the unfused Add stores it), LayerNorm or
// RMSNorm over K with [K] scale (and shift), rounded to the dtype — into shared memory, and
// the product reads them from there; block 0 also stores S and the normalised rows (the
// op's Sum and Normed outputs). A row of a decode step is a few KB, so recomputing its
// statistics in every block costs less than the kernel boundary it saves. One row whose K is
// a single round of a warp's loads (K split over no warps) takes the warp norm prologue
// instead: every warp forms the whole row in its registers (each lane the vectors it
// multiplies), its statistics by warp shuffles, with no shared memory or block barrier.
//
// The attention-merge prologue (shardrt.CachedAttention's output projection,
// launch_gemv_attn_merge; the kProMerge kernels, one X row): X is the attention's output, which the
// decode attention kernel left as split-K partials. Every block merges them into X's row in
// shared memory (the softmax merge in fp32, rounded to the dtype as the attention kernel
// stores its output) and block 0 stores that row. The attention kernel then needs no
// completion counter and no merging CTA: on an H100 GPT-2's attention went from 8.4 to 4.8 µs
// of a decode step's critical path and its out-projection GEMV from 1.6 to 4.4 µs
// (bench/RESULTS.md, runs of 19:20 and 19:27).
//
// Launched with programmatic dependent launch (launch_pdl.h): the first round of weight
// loads is issued before the wait for the previous kernel (weights are constant; the
// launcher says whether W is one), so a GEMV's weight stream overlaps the tail of the kernel
// before it. The kernel lets the next one be scheduled first thing (pdl_trigger before its
// loads, not after its wait): the next kernel's blocks then take the SM room this grid
// leaves as soon as all of its blocks run, and issue their own weight loads a kernel
// earlier. GPT-2's decode step (H100, bench/RESULTS.md): 0.289 ms instead of 0.298.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "backends/cuda/gemm_act.cuh"
#include "backends/cuda/gemv.h"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda::gemm {

namespace {

constexpr int kWarps = 8;  // per block

// fp32 products of a 16-byte vector of T with another.
__device__ inline float dot16(const uint4& a, const uint4& b, float) {
  const float* x = reinterpret_cast<const float*>(&a);
  const float* y = reinterpret_cast<const float*>(&b);
  return x[0] * y[0] + x[1] * y[1] + x[2] * y[2] + x[3] * y[3];
}
__device__ inline float dot16(const uint4& a, const uint4& b, __half) {
  const __half2* x = reinterpret_cast<const __half2*>(&a);
  const __half2* y = reinterpret_cast<const __half2*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __half22float2(x[i]), q = __half22float2(y[i]);
    s = fmaf(p.x, q.x, fmaf(p.y, q.y, s));
  }
  return s;
}
__device__ inline float dot16(const uint4& a, const uint4& b, __nv_bfloat16) {
  const __nv_bfloat162* x = reinterpret_cast<const __nv_bfloat162*>(&a);
  const __nv_bfloat162* y = reinterpret_cast<const __nv_bfloat162*>(&b);
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 p = __bfloat1622float2(x[i]), q = __bfloat1622float2(y[i]);
    s = fmaf(p.x, q.x, fmaf(p.y, q.y, s));
  }
  return s;
}

// A weight vector read once: bypass L1 so that it does not evict X.
__device__ inline uint4 load_stream(const uint4* p) {
  uint4 r;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// The norm prologue's arguments (pointers to T; mode 0: no prologue).
struct NormArgs {
  const void* res = nullptr;     // R [M, K] or null
  const void* scale = nullptr;   // [K]
  const void* shift = nullptr;   // [K] or null (LayerNorm's bias)
  void* sum = nullptr;           // S [M, K], stored by block 0 when res
  void* normed = nullptr;        // [M, K], stored by block 0
  float eps = 0.f;
  int mode = 0;                  // 0 none, 1 LayerNorm, 2 RMSNorm
  int params_const = 0;          // scale and shift are engine constants (no kernel writes them)
};

// Pulls the norm's [K] scale and shift into this SM's L1 before the wait for the previous
// kernel (constants only: L1 is not coherent with later writes), so the prologue's last pass
// does not wait on L2 for them.
template <class T> __device__ inline void prefetch_norm_params(const NormArgs& a, int64_t kv) {
  const uint4* g = reinterpret_cast<const uint4*>(a.scale);
  const uint4* b = reinterpret_cast<const uint4*>(a.shift);
  for (int64_t c = threadIdx.x; c < kv; c += blockDim.x) {
    asm volatile("prefetch.global.L1 [%0];" ::"l"(g + c));
    if (b) asm volatile("prefetch.global.L1 [%0];" ::"l"(b + c));
  }
}

template <class T> constexpr int kVecElems = int(16 / sizeof(T));

template <class T> __device__ inline void unpack(const uint4& u, float (&f)[kVecElems<T>]) {
  const T* p = reinterpret_cast<const T*>(&u);
#pragma unroll
  for (int e = 0; e < kVecElems<T>; ++e) f[e] = to_f(p[e]);
}
template <class T> __device__ inline uint4 pack(const float (&f)[kVecElems<T>]) {
  uint4 u;
  T* p = reinterpret_cast<T*>(&u);
#pragma unroll
  for (int e = 0; e < kVecElems<T>; ++e) p[e] = from_f<T>(f[e]);
  return u;
}

// Sums over the block of MM per-row partials; every thread gets the totals. `buf`: kWarps·MM
// floats of shared memory that no other reduction of this launch uses.
template <int MM> __device__ inline void block_sum(float (&v)[MM], float* buf) {
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
#pragma unroll
  for (int m = 0; m < MM; ++m) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v[m] += __shfl_xor_sync(0xffffffffu, v[m], off);
    if (lane == 0) buf[warp * MM + m] = v[m];
  }
  __syncthreads();
#pragma unroll
  for (int m = 0; m < MM; ++m) {
    float t = 0.f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) t += buf[w * MM + m];
    v[m] = t;
  }
}

// Forms the M normalised rows of X (kv 16-byte vectors each) in shared memory `xs`. Each
// thread keeps to the vectors i ≡ tid (mod block size) in all three passes, so only the
// reductions and the final barrier synchronise.
template <class T, int MM>
__device__ void norm_prologue(const T* x, const NormArgs& a, int M, int64_t kv, int64_t K, uint4* xs) {
  __shared__ float red_sum[kWarps * MM], red_sq[kWarps * MM];
  constexpr int E = kVecElems<T>;
  const int64_t total = int64_t(M) * kv;
  const bool store = blockIdx.x == 0;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  const uint4* rv = reinterpret_cast<const uint4*>(a.res);
  const bool rms = a.mode == 2;
  float s1[MM];
#pragma unroll
  for (int m = 0; m < MM; ++m) s1[m] = 0.f;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    uint4 v = __ldg(xv + i);
    float f[E];
    unpack<T>(v, f);
    if (rv) {
      float r[E];
      unpack<T>(__ldg(rv + i), r);
#pragma unroll
      for (int e = 0; e < E; ++e) f[e] += r[e];
      v = pack<T>(f);
      unpack<T>(v, f);  // the sum as the dtype stores it
      if (store) reinterpret_cast<uint4*>(a.sum)[i] = v;
    }
    xs[i] = v;
    float t = 0.f;
#pragma unroll
    for (int e = 0; e < E; ++e) t += rms ? f[e] * f[e] : f[e];
    const int row = int(i / kv);
#pragma unroll
    for (int m = 0; m < MM; ++m)
      if (row == m) s1[m] += t;
  }
  block_sum<MM>(s1, red_sum);
  const float inv_k = 1.f / float(K);
  float mean[MM], rstd[MM];
#pragma unroll
  for (int m = 0; m < MM; ++m) {
    mean[m] = rms ? 0.f : s1[m] * inv_k;
    rstd[m] = rms ? 1.f / sqrtf(s1[m] * inv_k + a.eps) : 0.f;
  }
  if (!rms) {  // variance about the mean (two passes, as the LayerNorm kernels do)
    float s2[MM];
#pragma unroll
    for (int m = 0; m < MM; ++m) s2[m] = 0.f;
    for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
      float f[E];
      unpack<T>(xs[i], f);
      const int row = int(i / kv);
#pragma unroll
      for (int m = 0; m < MM; ++m)
        if (row == m) {
#pragma unroll
          for (int e = 0; e < E; ++e) s2[m] = fmaf(f[e] - mean[m], f[e] - mean[m], s2[m]);
        }
    }
    block_sum<MM>(s2, red_sq);
#pragma unroll
    for (int m = 0; m < MM; ++m) rstd[m] = 1.f / sqrtf(s2[m] * inv_k + a.eps);
  }
  const uint4* gv = reinterpret_cast<const uint4*>(a.scale);
  const uint4* bv = reinterpret_cast<const uint4*>(a.shift);
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int row = int(i / kv);
    const int64_t col = i - int64_t(row) * kv;
    float mu = 0.f, rs = 0.f;
#pragma unroll
    for (int m = 0; m < MM; ++m)
      if (row == m) {
        mu = mean[m];
        rs = rstd[m];
      }
    float f[E], g[E], b[E];
    unpack<T>(xs[i], f);
    unpack<T>(__ldg(gv + col), g);
    if (bv) unpack<T>(__ldg(bv + col), b);
#pragma unroll
    for (int e = 0; e < E; ++e) f[e] = (f[e] - mu) * rs * g[e] + (bv ? b[e] : 0.f);
    const uint4 y = pack<T>(f);
    xs[i] = y;
    if (store) reinterpret_cast<uint4*>(a.normed)[i] = y;
  }
  __syncthreads();
}

// The norm prologue for one row whose K fits a warp's first round (kv <= 32·U vectors; K
// split over no warps, KS 1): every warp forms the whole normalised row itself, in
// registers — lane l holds vectors l, l + 32, ... (the ones its GEMV round multiplies) — with
// the row's statistics from warp shuffles alone: no shared memory and no block barrier
// between the X reads and the product. The scale and shift vectors come from L1 (prefetched
// before the wait for the previous kernel when they are constants). Warp 0 of block 0 stores
// S and the normalised row. X and R reads are 8 times redundant within a block (L2 hits of a few KB).
__device__ inline float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}
template <class T, int U>
__device__ void warp_norm(const T* x, const NormArgs& a, int64_t kv, int64_t K, uint4 (&xr)[U]) {
  constexpr int E = kVecElems<T>;
  const int lane = int(threadIdx.x) & 31;
  const bool store = blockIdx.x == 0 && threadIdx.x < 32;
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  const uint4* rv = reinterpret_cast<const uint4*>(a.res);
  const bool rms = a.mode == 2;
  uint4 rin[U];
#pragma unroll
  for (int u = 0; u < U; ++u) {  // every read in flight at once
    const int64_t i = lane + int64_t(u) * 32;
    xr[u] = i < kv ? __ldg(xv + i) : make_uint4(0, 0, 0, 0);
    rin[u] = (rv && i < kv) ? __ldg(rv + i) : make_uint4(0, 0, 0, 0);
  }
  float f[U][E];
  float s1 = 0.f;
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t i = lane + int64_t(u) * 32;
    unpack<T>(xr[u], f[u]);
    if (rv) {
      float r[E];
      unpack<T>(rin[u], r);
#pragma unroll
      for (int e = 0; e < E; ++e) f[u][e] += r[e];
      const uint4 v = pack<T>(f[u]);
      unpack<T>(v, f[u]);  // the sum as the dtype stores it
      if (store && i < kv) reinterpret_cast<uint4*>(a.sum)[i] = v;
    }
#pragma unroll
    for (int e = 0; e < E; ++e) s1 += rms ? f[u][e] * f[u][e] : f[u][e];  // padding vectors are zeros
  }
  s1 = warp_sum(s1);
  const float inv_k = 1.f / float(K);
  const float mean = rms ? 0.f : s1 * inv_k;
  float rstd;
  if (rms) {
    rstd = 1.f / sqrtf(s1 * inv_k + a.eps);
  } else {  // variance about the mean (two passes, as the LayerNorm kernels do)
    float s2 = 0.f;
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (lane + int64_t(u) * 32 < kv)
#pragma unroll
        for (int e = 0; e < E; ++e) s2 = fmaf(f[u][e] - mean, f[u][e] - mean, s2);
    rstd = 1.f / sqrtf(warp_sum(s2) * inv_k + a.eps);
  }
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int64_t i = lane + int64_t(u) * 32;
    float g[E], b[E];
    unpack<T>(i < kv ? __ldg(reinterpret_cast<const uint4*>(a.scale) + i) : make_uint4(0, 0, 0, 0), g);
    unpack<T>((a.shift && i < kv) ? __ldg(reinterpret_cast<const uint4*>(a.shift) + i) : make_uint4(0, 0, 0, 0), b);
#pragma unroll
    for (int e = 0; e < E; ++e) f[u][e] = (f[u][e] - mean) * rstd * g[e] + b[e];
    xr[u] = i < kv ? pack<T>(f[u]) : make_uint4(0, 0, 0, 0);
    if (store && i < kv) reinterpret_cast<uint4*>(a.normed)[i] = xr[u];
  }
}

// The attention-merge prologue's arguments (kProMerge kernels): gemv.h's GemvAttnMerge, by value.
using MergeArgs = GemvAttnMerge;

// Shared memory of the attention-merge prologue after X's row: one float2 per (head, split).
__host__ __device__ inline size_t merge_ml_offset(int64_t K, size_t es) { return (size_t(K) * es + 15) / 16 * 16; }
// The prologue's dynamic shared memory in all: X's row, then those pairs.
inline size_t merge_prologue_bytes(int64_t K, size_t es, int hq, int nsplit) {
  return merge_ml_offset(K, es) + size_t(hq) * size_t(nsplit) * sizeof(float2);
}

// Forms X's one row (hq heads of d features) in shared memory `xs` from the attention's
// partials. Item (head h, 8-feature chunk c) is summed by `tpi` neighbouring lanes, each over
// every tpi-th split. Each lane's first accumulator reads (up to 8 splits) are issued first;
// meanwhile the block reads every (head, split)'s (max, sum) once into shared memory and turns
// them into the splits' weights 2^(m - M) / L (M the head's max, L its total sum); then the
// lanes sum weight · accumulator and combine by shuffles. Block 0 also stores the row.
template <class T>
__device__ void merge_prologue(const MergeArgs& a, int64_t K, uint4* xs_raw) {
  constexpr int IF = 8;  // splits' reads in flight per lane
  T* xs = reinterpret_cast<T*>(xs_raw);
  float2* sw = reinterpret_cast<float2*>(reinterpret_cast<unsigned char*>(xs_raw) + merge_ml_offset(K, sizeof(T)));
  const float kNegInf = -__int_as_float(0x7f800000);
  const int ch = a.d / 8, items = a.hq * ch, nsp = a.nsplit, g = a.hq / a.hkv;
  const int nt = int(blockDim.x), tid = int(threadIdx.x);
  int tpi = 1;
  while (tpi < nsp && tpi < 32 && tpi * 2 * items <= nt) tpi *= 2;
  const int sub = tid % tpi;
  auto acc_row = [&](int h, int sp) { return int64_t(h / g) * nsp * a.qt + int64_t(sp) * a.qt + h % g; };
  // The first round's accumulators, in flight during the (max, sum) pass below.
  float4 x0[IF], x1[IF];
  {
    const int i = tid / tpi;
    const bool valid = i < items;
    const int h = valid ? i / ch : 0, c = valid ? i % ch : 0;
#pragma unroll
    for (int u = 0; u < IF; ++u) {
      const int sp = sub + u * tpi;
      if (valid && sp < nsp) {
        const float4* src = reinterpret_cast<const float4*>(a.acc + acc_row(h, sp) * a.d + c * 8);
        x0[u] = __ldcg(src);
        x1[u] = __ldcg(src + 1);
      }
    }
  }
  for (int p = tid; p < a.hq * nsp; p += nt) {
    const int64_t row = acc_row(p / nsp, p % nsp);
    sw[p] = make_float2(__ldcg(a.ml + row * 2), __ldcg(a.ml + row * 2 + 1));
  }
  __syncthreads();
  // A warp per head, a lane per split (at most 32: gemv_attn_merge_applies).
  const int lane = tid & 31;
  for (int h = tid >> 5; h < a.hq; h += nt >> 5) {
    float2* w = sw + int64_t(h) * nsp;
    const float m = lane < nsp ? w[lane].x : kNegInf;
    float M = m;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off));
    const float e = m == kNegInf ? 0.f : exp2f(m - M);  // empty splits (max -inf) weigh nothing
    float L = lane < nsp ? w[lane].y * e : 0.f;
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
    const float inv = L > 0.f ? 1.f / L : 0.f;  // a row that saw nothing gives zeros
    if (lane < nsp) w[lane].x = e * inv;
  }
  __syncthreads();
  for (int base = 0; base < items; base += nt / tpi) {  // the same trip count in every thread
    const int i = base + tid / tpi;
    const bool valid = i < items;
    const int h = valid ? i / ch : 0, c = valid ? i % ch : 0;
    float o[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (valid) {
      for (int sp0 = sub; sp0 < nsp; sp0 += IF * tpi) {
        if (base != 0 || sp0 != sub) {  // later rounds load now
#pragma unroll
          for (int u = 0; u < IF; ++u) {
            const int sp = sp0 + u * tpi;
            if (sp < nsp) {
              const float4* src = reinterpret_cast<const float4*>(a.acc + acc_row(h, sp) * a.d + c * 8);
              x0[u] = __ldcg(src);
              x1[u] = __ldcg(src + 1);
            }
          }
        }
#pragma unroll
        for (int u = 0; u < IF; ++u) {
          const int sp = sp0 + u * tpi;
          if (sp < nsp) {
            const float w = sw[int64_t(h) * nsp + sp].x;
            o[0] = fmaf(w, x0[u].x, o[0]); o[1] = fmaf(w, x0[u].y, o[1]);
            o[2] = fmaf(w, x0[u].z, o[2]); o[3] = fmaf(w, x0[u].w, o[3]);
            o[4] = fmaf(w, x1[u].x, o[4]); o[5] = fmaf(w, x1[u].y, o[5]);
            o[6] = fmaf(w, x1[u].z, o[6]); o[7] = fmaf(w, x1[u].w, o[7]);
          }
        }
      }
    }
    for (int off = tpi / 2; off > 0; off >>= 1)
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] += __shfl_xor_sync(0xffffffffu, o[k], off);
    if (!valid || sub != 0) continue;
    // 8 values of T: one 16-byte store (two for fp32) into X's row and, in block 0, the output.
    constexpr int E = kVecElems<T>, NV = 8 / E;
    const int64_t off = int64_t(h) * a.d + c * 8;
#pragma unroll
    for (int q = 0; q < NV; ++q) {
      float f[E];
#pragma unroll
      for (int k = 0; k < E; ++k) f[k] = o[q * E + k];
      const uint4 u = pack<T>(f);
      *reinterpret_cast<uint4*>(xs + off + q * E) = u;
      if (blockIdx.x == 0) *reinterpret_cast<uint4*>(static_cast<T*>(a.attn) + off + q * E) = u;
    }
  }
  __syncthreads();
}

// Vectors per lane and weight row in flight: fewer with 4 X rows (their vectors take registers too).
template <int MM> constexpr int unroll_for() { return MM == 1 ? 4 : 2; }

// The kernel's prologue (template argument PRO): X's rows read from global memory, or formed
// by the block norm prologue in shared memory (nrm.mode, decided at run time); the
// attention-merge prologue; the warp norm prologue (registers).
constexpr int kProPlain = 0, kProMerge = 1, kProWarpNorm = 2;

// MM: X rows the kernel is built for (1, or up to 4 with M of them real); R weight rows per
// warp; KS warps sharing one row group's K. SW (swiglu): W is [2N, K], gate rows then up
// rows; a warp's R rows are P = R/2 gate rows j and the up rows N + j of the same outputs,
// and output j is silu(gate_j + bias_j) · (up_j + bias_{N+j}) (bias [2N]). Otherwise P = R
// outputs, one per weight row.
// PRO: the prologue (kProPlain, kProMerge: X's one row from the attention partials, MM 1, no
// norm; kProWarpNorm: MM 1, KS 1, kv <= 32·U).
template <class T, int MM, int R, int KS, bool SW, int PRO>
__global__ void __launch_bounds__(kWarps * 32, 2) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                            const T* __restrict__ bias, T* __restrict__ y, int64_t N,
                                                            int64_t K, int M, int act, int w_const, NormArgs nrm,
                                                            MergeArgs mrg) {
  static_assert(PRO == kProPlain || MM == 1, "the merge and warp norm prologues form one row");
  static_assert(PRO != kProWarpNorm || KS == 1, "the warp norm prologue gives each warp the whole row");
  static_assert(!SW || R % 2 == 0, "swiglu pairs a gate row with an up row");
  constexpr int RG = kWarps / KS;
  constexpr int P = SW ? R / 2 : R;  // outputs per warp
  constexpr int U = unroll_for<MM>();
  __shared__ float red[KS > 1 ? kWarps * MM * R : 1];
  const int warp = int(threadIdx.x) >> 5, lane = int(threadIdx.x) & 31;
  const int rg = warp / KS, ks = warp % KS;
  const int64_t n0 = (int64_t(blockIdx.x) * RG + rg) * P;  // first output; may be >= N: such rows load row N-1, store nothing
  const int64_t kv = K / (16 / int64_t(sizeof(T)));         // 16-byte vectors per row
  const int64_t chunk = (kv + KS - 1) / KS;
  const int64_t c0 = int64_t(ks) * chunk;
  const int64_t c1 = c0 + chunk < kv ? c0 + chunk : kv;  // this warp's vectors [c0, c1) (may be empty)
  const uint4* wr[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int64_t j = n0 + r % P;
    const int64_t row = (j < N ? j : N - 1) + (SW && r >= P ? N : 0);
    wr[r] = reinterpret_cast<const uint4*>(w + row * K);
  }

  // The thread that stores output (row group og, X row om, output orr of the warp's P).
  constexpr int kOuts = RG * MM * P;
  const int ot = KS > 1 ? int(threadIdx.x) : lane;  // KS == 1: the warp's own lanes store
  const int og = KS > 1 ? ot / (MM * P) : rg, om = (ot / P) % MM, orr = ot % P;
  const int64_t on = (int64_t(blockIdx.x) * RG + og) * P + orr;
  const bool ostore = (KS > 1 ? ot < kOuts : lane < MM * P) && on < N && om < M;

  float acc[MM][R];
#pragma unroll
  for (int m = 0; m < MM; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r) acc[m][r] = 0.f;

  uint4 wv[U][R];
  auto load_w = [&](int64_t b0) {
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = b0 + lane + int64_t(u) * 32;
#pragma unroll
      for (int r = 0; r < R; ++r) wv[u][r] = i < c1 ? load_stream(wr[r] + i) : make_uint4(0, 0, 0, 0);
    }
  };
  // The next kernel may be scheduled from now on (see the top of the file). A constant
  // weight is in flight before the previous kernel has finished; any other input is read
  // only after the wait (from there on X, W and bias are complete and Y free to write).
  pdl_trigger();
  if (w_const) load_w(c0);
  if (nrm.mode && nrm.params_const) prefetch_norm_params<T>(nrm, kv);
  pdl_wait();
  if (!w_const) load_w(c0);
  const float ob = (ostore && bias) ? to_f(bias[on]) : 0.f;
  const float obu = (SW && ostore && bias) ? to_f(bias[N + on]) : 0.f;  // the up half's bias

  // X's rows: from global memory, or (norm prologue) formed in shared memory first.
  extern __shared__ __align__(16) unsigned char xs_raw[];
  uint4* xs = reinterpret_cast<uint4*>(xs_raw);
  [[maybe_unused]] uint4 xr[U];  // kProWarpNorm: this lane's vectors of the normalised row
  if constexpr (PRO == kProMerge) merge_prologue<T>(mrg, K, xs);
  else if constexpr (PRO == kProWarpNorm) warp_norm<T, U>(x, nrm, kv, K, xr);
  else if (nrm.mode) norm_prologue<T, MM>(x, nrm, M, kv, K, xs);
  const bool from_smem = PRO == kProMerge || (PRO == kProPlain && nrm.mode != 0);
  const uint4* xv = reinterpret_cast<const uint4*>(x);
  for (int64_t b0 = c0; b0 < c1; b0 += 32 * U) {  // warp-uniform rounds
    if (b0 != c0) load_w(b0);
    uint4 xm[U][MM];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t i = b0 + lane + int64_t(u) * 32;
      if constexpr (PRO == kProWarpNorm) {
        xm[u][0] = xr[u];  // one round (kv <= 32·U): vector i = lane + 32u, zeros past kv
      } else {
#pragma unroll
        for (int m = 0; m < MM; ++m)
          xm[u][m] = (i < c1 && m < M) ? (from_smem ? xs[int64_t(m) * kv + i] : __ldg(xv + int64_t(m) * kv + i))
                                       : make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
#pragma unroll
      for (int m = 0; m < MM; ++m)
#pragma unroll
        for (int r = 0; r < R; ++r) acc[m][r] += dot16(xm[u][m], wv[u][r], T());
  }
#pragma unroll
  for (int m = 0; m < MM; ++m)
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) acc[m][r] += __shfl_xor_sync(0xffffffffu, acc[m][r], off);

  float v = 0.f, vu = 0.f;  // vu: the up row's sum (swiglu)
  if constexpr (KS == 1) {
    // Every lane holds every sum: lane m·P + p stores (m, p) (constant indices: no local memory).
#pragma unroll
    for (int m = 0; m < MM; ++m)
#pragma unroll
      for (int p = 0; p < P; ++p)
        if (lane == m * P + p) {
          v = acc[m][p];
          if constexpr (SW) vu = acc[m][p + P];
        }
  } else {
    if (lane == 0) {
#pragma unroll
      for (int m = 0; m < MM; ++m)
#pragma unroll
        for (int r = 0; r < R; ++r) red[(warp * MM + m) * R + r] = acc[m][r];
    }
    __syncthreads();
    if (ostore) {
#pragma unroll
      for (int k = 0; k < KS; ++k) {
        v += red[((og * KS + k) * MM + om) * R + orr];
        if constexpr (SW) vu += red[((og * KS + k) * MM + om) * R + orr + P];
      }
    }
  }
  if (ostore) {
    if constexpr (SW) y[int64_t(om) * N + on] = from_f<T>(act_fn<float>(int(Act::Silu), v + ob) * (vu + obu));
    else y[int64_t(om) * N + on] = from_f<T>(act_fn<float>(act, v + ob));
  }
}

int sm_count() {
  static int cached[64] = {};
  int dev = 0;
  SHARDRT_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= 64) return 132;
  if (!cached[dev]) {
    int n = 0;
    SHARDRT_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cached[dev] = n > 0 ? n : 132;
  }
  return cached[dev];
}

// Dynamic shared memory of the norm or attention-merge prologue: X's M rows in the dtype.
size_t prologue_bytes(bool prologue, int64_t M, int64_t K, size_t es) { return prologue ? size_t(M * K) * es : 0; }

template <class T, int MM, int R, int KS, bool SW, int PRO>
void launch_shape(int64_t M, int64_t N, int64_t K, const T* x, const T* w, const T* b, int act, T* y, int wc,
                  const NormArgs& nrm, const MergeArgs& mrg, cudaStream_t s) {
  const int64_t outs_per_block = int64_t(kWarps / KS) * (SW ? R / 2 : R);
  const unsigned blocks = unsigned((N + outs_per_block - 1) / outs_per_block);
  const size_t smem = PRO == kProMerge      ? merge_prologue_bytes(K, sizeof(T), mrg.hq, mrg.nsplit)
                      : PRO == kProWarpNorm ? 0
                                            : prologue_bytes(nrm.mode != 0, M, K, sizeof(T));
  launch_pdl(gemv_kernel<T, MM, R, KS, SW, PRO>, dim3(blocks), dim3(kWarps * 32), smem, s, x, w, b, y, N, K, int(M), act,
             wc, nrm, mrg);
}

template <class T, int MM, int R, bool SW, int PRO>
void launch_ks(int ks, int64_t M, int64_t N, int64_t K, const T* x, const T* w, const T* b, int act, T* y, int wc,
               const NormArgs& nrm, const MergeArgs& mrg, cudaStream_t s) {
  if constexpr (PRO == kProWarpNorm) {  // KS 1 only (launch_typed's check)
    launch_shape<T, MM, R, 1, SW, PRO>(M, N, K, x, w, b, act, y, wc, nrm, mrg, s);
  } else {
    switch (ks) {
      case 1: launch_shape<T, MM, R, 1, SW, PRO>(M, N, K, x, w, b, act, y, wc, nrm, mrg, s); break;
      case 2: launch_shape<T, MM, R, 2, SW, PRO>(M, N, K, x, w, b, act, y, wc, nrm, mrg, s); break;
      case 4: launch_shape<T, MM, R, 4, SW, PRO>(M, N, K, x, w, b, act, y, wc, nrm, mrg, s); break;
      default: launch_shape<T, MM, R, 8, SW, PRO>(M, N, K, x, w, b, act, y, wc, nrm, mrg, s); break;
    }
  }
}

// The K split over warps: the fewest warps per row group (a power of two up to 8) that
// leave each warp at most one round (32·U vectors) of a row.
template <class T, int MM>
int pick_ks(int64_t K) {
  const int64_t kv = K / (16 / int64_t(sizeof(T)));
  const int64_t round = 32 * unroll_for<MM>();
  int ks = 1;
  while (ks < kWarps && (kv + ks - 1) / ks > round) ks *= 2;
  return ks;
}

// Weight rows per warp: the most (4, 2, 1; swiglu 4 or 2, a gate/up pair per output) that
// still give the grid a block per SM (more rows a warp, more loads in flight; on an H100
// GPT-2's decode step took 0.287 ms against 0.293 with two blocks per SM and 0.294 with
// three, bench/RESULTS.md). `rows`: weight rows in all (2N with swiglu).
int pick_r(int64_t rows, int ks, bool sw) {
  const int64_t want = int64_t(sm_count());
  const int64_t rg = kWarps / ks;
  const int rmin = sw ? 2 : 1;
  int r = 4;
  while (r > rmin && (rows + rg * r - 1) / (rg * r) < want) r /= 2;
  return r;
}

template <class T, int MM, int PRO = kProPlain>
void launch_mm(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act, void* y,
               int wc, const NormArgs& nrm, cudaStream_t s, const MergeArgs& mrg = MergeArgs{}) {
  const int ks = pick_ks<T, MM>(K);
  const int r = pick_r(N, ks, false);
  const T* xp = static_cast<const T*>(x);
  const T* wp = static_cast<const T*>(w);
  const T* bp = static_cast<const T*>(bias);
  T* yp = static_cast<T*>(y);
  switch (r) {
    case 4: launch_ks<T, MM, 4, false, PRO>(ks, M, N, K, xp, wp, bp, int(act), yp, wc, nrm, mrg, s); break;
    case 2: launch_ks<T, MM, 2, false, PRO>(ks, M, N, K, xp, wp, bp, int(act), yp, wc, nrm, mrg, s); break;
    default: launch_ks<T, MM, 1, false, PRO>(ks, M, N, K, xp, wp, bp, int(act), yp, wc, nrm, mrg, s); break;
  }
}

// swiglu: N outputs from 2N weight rows.
template <class T, int MM, int PRO = kProPlain>
void launch_mm_swiglu(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, void* y, int wc,
                      const NormArgs& nrm, cudaStream_t s) {
  const int ks = pick_ks<T, MM>(K);
  const int r = pick_r(2 * N, ks, true);
  const T* xp = static_cast<const T*>(x);
  const T* wp = static_cast<const T*>(w);
  const T* bp = static_cast<const T*>(bias);
  T* yp = static_cast<T*>(y);
  if (r == 4) launch_ks<T, MM, 4, true, PRO>(ks, M, N, K, xp, wp, bp, int(Act::Silu), yp, wc, nrm, MergeArgs{}, s);
  else launch_ks<T, MM, 2, true, PRO>(ks, M, N, K, xp, wp, bp, int(Act::Silu), yp, wc, nrm, MergeArgs{}, s);
}

bool warp_norm_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SHARDRT_GEMV_WARP_NORM");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

template <class T>
void launch_typed(int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act, void* y,
                  int wc, bool swiglu, const NormArgs& nrm, cudaStream_t s) {
  // One row whose K is one round of a warp's loads: the warp norm prologue (SHARDRT_GEMV_WARP_NORM=0:
  // the block prologue, for comparison).
  const bool wn = M == 1 && nrm.mode && pick_ks<T, 1>(K) == 1 && warp_norm_enabled();
  if (swiglu) {
    if (wn) launch_mm_swiglu<T, 1, kProWarpNorm>(M, N, K, x, w, bias, y, wc, nrm, s);
    else if (M == 1) launch_mm_swiglu<T, 1>(M, N, K, x, w, bias, y, wc, nrm, s);
    else launch_mm_swiglu<T, 4>(M, N, K, x, w, bias, y, wc, nrm, s);
    return;
  }
  if (wn) launch_mm<T, 1, kProWarpNorm>(M, N, K, x, w, bias, act, y, wc, nrm, s);
  else if (M == 1) launch_mm<T, 1>(M, N, K, x, w, bias, act, y, wc, nrm, s);
  else launch_mm<T, 4>(M, N, K, x, w, bias, act, y, wc, nrm, s);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }


}  // namespace

bool gemv_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("SHARDRT_GEMV");
    return !(e && std::strcmp(e, "0") == 0);
  }();
  return on;
}

namespace {

bool launch_any(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act,
                void* y, bool w_const, bool swiglu, const NormArgs& nrm, cudaStream_t s) {
  if (M < 1 || M > kGemvMaxRows || N < 1 || K < 1) return false;
  const int64_t es = int64_t(dtype_size(t));
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16) return false;
  // Rows of X and W start on 16-byte boundaries: K·es a multiple of 16, bases aligned.
  if ((K * es) % 16 != 0 || !aligned16(x) || !aligned16(w)) return false;
  if (N > INT32_MAX) return false;  // grid size (at least one output per block)
  if (nrm.mode) {
    // The prologue's rows fit the default 48 KiB of shared memory; its vectors are aligned.
    if (prologue_bytes(true, M, K, size_t(es)) > kGemvNormMaxBytes) return false;
    for (const void* p : {nrm.res, nrm.scale, nrm.shift, static_cast<const void*>(nrm.sum),
                          static_cast<const void*>(nrm.normed)})
      if (p && !aligned16(p)) return false;
    if (!nrm.scale || !nrm.normed || (nrm.res && !nrm.sum)) return false;
  }
  switch (t) {
    case DType::F32: launch_typed<float>(M, N, K, x, w, bias, act, y, w_const, swiglu, nrm, s); break;
    case DType::F16: launch_typed<__half>(M, N, K, x, w, bias, act, y, w_const, swiglu, nrm, s); break;
    default: launch_typed<__nv_bfloat16>(M, N, K, x, w, bias, act, y, w_const, swiglu, nrm, s); break;
  }
  return true;
}

}  // namespace

bool launch_gemv(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias, Act act,
                 void* y, bool w_const, cudaStream_t s) {
  return launch_any(t, M, N, K, x, w, bias, act, y, w_const, false, NormArgs{}, s);
}

bool launch_gemv_swiglu(DType t, int64_t M, int64_t N, int64_t K, const void* x, const void* w, const void* bias,
                        void* y, bool w_const, cudaStream_t s) {
  return launch_any(t, M, N, K, x, w, bias, Act::Silu, y, w_const, true, NormArgs{}, s);
}

bool gemv_attn_merge_applies(DType t, int64_t M, int64_t N, int64_t K, const GemvAttnMerge& m, const void* w) {
  if (!gemv_enabled() || M != 1 || N < 1 || N > INT32_MAX || K < 1) return false;
  if (t != DType::F32 && t != DType::F16 && t != DType::BF16) return false;
  const int64_t es = int64_t(dtype_size(t));
  if ((K * es) % 16 != 0 || !aligned16(w) || !m.acc || !m.ml || !m.attn) return false;
  if (m.d < 8 || m.d % 8 != 0 || m.hq < 1 || m.hkv < 1 || m.hq % m.hkv != 0 || m.nsplit < 1 || m.qt < m.hq / m.hkv)
    return false;
  if (int64_t(m.hq) * m.d != K || m.nsplit > 32 ||
      merge_prologue_bytes(K, size_t(es), m.hq, m.nsplit) > kGemvNormMaxBytes)
    return false;  // 32: a warp's lanes take a head's splits
  // 16-byte partial rows and attention output (8 features of the dtype: 16 bytes and up).
  return aligned16(m.acc) && aligned16(m.attn) && (reinterpret_cast<uintptr_t>(m.ml) & 7) == 0;
}

bool launch_gemv_attn_merge(DType t, int64_t M, int64_t N, int64_t K, const GemvAttnMerge& m, const void* w,
                            const void* bias, void* y, bool w_const, cudaStream_t s) {
  if (!gemv_attn_merge_applies(t, M, N, K, m, w)) return false;
  const int wc = w_const ? 1 : 0;
  switch (t) {
    case DType::F32: launch_mm<float, 1, kProMerge>(1, N, K, nullptr, w, bias, Act::None, y, wc, NormArgs{}, s, m); break;
    case DType::F16: launch_mm<__half, 1, kProMerge>(1, N, K, nullptr, w, bias, Act::None, y, wc, NormArgs{}, s, m); break;
    default:
      launch_mm<__nv_bfloat16, 1, kProMerge>(1, N, K, nullptr, w, bias, Act::None, y, wc, NormArgs{}, s, m);
      break;
  }
  return true;
}

bool launch_gemv_norm(DType t, int64_t M, int64_t N, int64_t K, const void* x, const GemvNorm& norm, const void* w,
                      const void* bias, Act act, bool swiglu, void* y, bool w_const, cudaStream_t s) {
  NormArgs a;
  a.res = norm.res;
  a.scale = norm.scale;
  a.shift = norm.shift;
  a.sum = norm.sum;
  a.normed = norm.normed;
  a.eps = norm.eps;
  a.mode = norm.rms ? 2 : 1;
  a.params_const = norm.params_const ? 1 : 0;
  return launch_any(t, M, N, K, x, w, bias, swiglu ? Act::Silu : act, y, w_const, swiglu, a, s);
}

}  // namespace shardrt::cuda::gemm
