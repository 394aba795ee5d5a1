// shardrt.CachedAttention's split-K ("flash-decoding") kernel, built for the decode step
// (S = 1) but correct for any S. One CTA of 128 threads per (batch row b, kv head g, key
// split, query tile): it serves all the q heads of kv group g and the query tile's tokens
// (a tile holds up to QT (token, head) rows), so each K/V row it loads serves all of them.
//
// - Lengths are read on the device (PastLens), so a captured decode step replays with new
//   lengths: the split count is fixed by the shapes and the GPU; each CTA computes its key
//   range [c0, c1) from the row's length, and CTAs past the length only report "empty".
// - Keys stream through shared memory in tiles of up to 64 rows (cp.async, double-buffered,
//   or one buffer loaded tile after tile where two do not fit; only the rows of the CTA's
//   range are loaded). On request (SHARDRT_ATTN_RESIDENT=1, measured slower: see
//   plan_decode) a "resident" plan gives every tile of the range its own buffer and
//   requests all of them at once. Scores: thread = key (two threads per key,
//   each half of the rows); the softmax runs online per row in fp32 (exp2 domain);
//   P·V: thread = (8-feature slice, key group).
// - fused = 1 (decode): keys at positions >= PastLens[b] are this run's tokens: the CTA
//   rotates them from QKV itself instead of reading the cache, and the CTAs share the
//   cache writes of those tokens (nobody reads those cache rows in this launch), so a
//   decode step is one launch.
// - Launched with programmatic dependent launch (launch_pdl.h): it waits for the previous
//   kernel before touching QKV, the output, the workspace or the counters. With `early`
//   (fused, and the launcher knows PastLens is a graph input or constant: written by a copy
//   before the run's first kernel, never by a kernel of the run) it reads PastLens and issues
//   the first tile's cache rows (positions below PastLens[b], written by earlier runs) BEFORE
//   the wait, so those two memory round trips overlap the previous kernel's tail. Otherwise
//   the first tile's cp.async loads are issued right after the wait, before the q rows are
//   read and this run's k/v written, so those latencies overlap.
// - Each CTA's partial (row max, row sum, unnormalised output) is merged into the output
//   without a second launch, in one of two ways:
//     cluster (sm_90, at most 16 splits; chosen by plan_decode where the global merge
//       would be long and the whole grid is resident at once): the splits of one
//       (b, g, tile) are one thread-block cluster; each CTA leaves its partial in its
//       shared memory, and after a cluster
//       barrier every CTA merges a share of the output chunks reading the others' partials
//       through distributed shared memory (one round trip), then a second barrier keeps
//       every CTA's shared memory alive until all reads are done;
//     global: partials go to the workspace; the last CTA of a (b, g, tile) to finish (a
//       counter, reset by that CTA) merges them, its lanes reading four splits at a time.
//   or not at all (`defer`, plan_decode_deferred): partials go to the workspace and the
//   kernel ends; the output projection's GEMV merges them in its prologue (gemv.cu), which
//   saves the counter's round trips and the merging CTA's pass (GPT-2's decode step,
//   bench/RESULTS.md).
#include <cooperative_groups.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <tuple>

#include "backends/cuda/attention_cached.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda::cached {

namespace {

constexpr int kTK = 64;          // keys per tile
constexpr int kThreads = 128;    // 4 warps
constexpr int kMaxSplits = 64;   // splits per (row, kv head, tile): the merging CTA reads them all
constexpr int kMaxCluster = 16;  // the largest (non-portable) cluster Hopper runs
// Resident plans (SHARDRT_ATTN_RESIDENT=1, see plan_decode): at most this many splits
// unless SHARDRT_ATTN_SPLITS sets the count.
constexpr int kResidentSplits = 8;

struct Args {
  Params p;
  int dp;      // head size rounded up to 8
  int ldk;     // shared row stride of K/V tiles in elements (dp + 16 bytes: conflict-free)
  int nsplit, ntile, nrows;
  int fused, vec, stages;
  int resident; // 1: `stages` buffers hold every tile of the CTA's range; all are loaded at once
  int early;    // PastLens and the cache rows below it may be read before pdl_wait (see above)
  int cluster;  // 1: the splits are one cluster and merge through distributed shared memory
  int defer;    // 1: partials to the workspace, no merge (the consumer merges)
  float* acc_part;  // [units * nsplit * QT][dp]
  float* ml_part;   // [units * nsplit * QT][2] (max in the exp2 domain, sum)
  int* counters;    // [units], units = B * Hkv * ntile
};

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// 16-byte global->shared copy; valid == false zero-fills and reads nothing.
__device__ __forceinline__ void cp_async16(void* dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// 8 consecutive elements (16-byte aligned for 2-byte types, 32 for fp32) as floats.
__device__ __forceinline__ void ld8(const float* p, float (&f)[8]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0], b = reinterpret_cast<const float4*>(p)[1];
  f[0] = a.x; f[1] = a.y; f[2] = a.z; f[3] = a.w; f[4] = b.x; f[5] = b.y; f[6] = b.z; f[7] = b.w;
}
__device__ __forceinline__ void ld8(const __half* p, float (&f)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __half22float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
__device__ __forceinline__ void ld8(const __nv_bfloat16* p, float (&f)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(p);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x;
    f[2 * i + 1] = v.y;
  }
}
// 8 floats rounded to T, stored at a 16-byte aligned (32 for fp32) global address.
__device__ __forceinline__ void st8(float* p, const float (&f)[8]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(f[0], f[1], f[2], f[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(f[4], f[5], f[6], f[7]);
}
__device__ __forceinline__ void st8(__half* p, const float (&f)[8]) {
  uint4 u;
  __half2* h = reinterpret_cast<__half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2half2_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}
__device__ __forceinline__ void st8(__nv_bfloat16* p, const float (&f)[8]) {
  uint4 u;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(f[2 * i], f[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = u;
}

// Shared memory, in bytes from the start (every region 16-byte aligned):
//   [0, region0)   K tiles (stages x 64 x ldk T), V tiles (same); after the key loop the
//                  same bytes hold the cross-group reduction of the accumulators
//   sQ             QT x dp floats: the tile's q rows, rotated, times scale·log2(e); after
//                  the key loop, the cluster merge's partial accumulators
//   sP             64 x QT floats: this tile's probabilities, [key][row]
//   sMax           2 x QT floats: per key half-tile row maxima; after the key loop, the
//                  cluster merge's partial (max, sum) per row
//   sL             4 x 4 floats: per warp row sums
//   sFlag          16 bytes: "this CTA merges"
struct Layout {
  size_t kv, region0, q, pr, mx, l, flag, total;
};
__host__ __device__ inline size_t align16(size_t x) { return (x + 15) / 16 * 16; }
__host__ __device__ inline Layout layout(int qt, int dp, int ldk, size_t tsize, int stages) {
  Layout L{};
  L.kv = size_t(stages) * kTK * ldk * tsize;  // one of K or V
  const int ns = dp / 8, kg = kThreads / ns;
  const size_t red = size_t(kg) * qt * dp * 4;
  L.region0 = align16(2 * L.kv > red ? 2 * L.kv : red);
  L.q = L.region0;
  L.pr = L.q + align16(size_t(qt) * dp * 4);
  L.mx = L.pr + align16(size_t(kTK) * qt * 4);
  L.l = L.mx + align16(size_t(2) * qt * 4);
  L.flag = L.l + align16(16 * 4);
  L.total = L.flag + 16;
  return L;
}

template <class T, int QT>
__global__ void __launch_bounds__(kThreads) decode_kernel(const Args a) {
  constexpr int QTH = (QT + 1) / 2;  // rows per thread in the score phase (rows rh, rh + 2, ...)
  extern __shared__ __align__(16) unsigned char smem[];
  const Params& p = a.p;
  const Layout lay = layout(QT, a.dp, a.ldk, sizeof(T), a.stages);
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = reinterpret_cast<T*>(smem + lay.kv);
  float* sRed = reinterpret_cast<float*>(smem);
  float* sQ = reinterpret_cast<float*>(smem + lay.q);
  float* sP = reinterpret_cast<float*>(smem + lay.pr);
  float* sMax = reinterpret_cast<float*>(smem + lay.mx);
  float* sL = reinterpret_cast<float*>(smem + lay.l);
  int* sFlag = reinterpret_cast<int*>(smem + lay.flag);

  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int bg = blockIdx.x, split = blockIdx.y, qt = blockIdx.z;
  const int b = bg / p.Hkv, g = bg % p.Hkv;
  const int D = p.D, dp = a.dp, ldk = a.ldk;
  const int64_t W = int64_t(p.Hq + 2 * p.Hkv) * D;  // QKV row width
  const T* qkv = static_cast<const T*>(p.qkv);
  T* kc = static_cast<T*>(p.kc);
  T* vc = static_cast<T*>(p.vc);
  const int64_t crow0 = (int64_t(b) * p.Hkv + g) * p.max_seq;  // cache row of position 0
  // Launched with programmatic dependent launch: QKV, the output, the workspace and the
  // counters are touched only after the previous kernel has completed; PastLens and the
  // cache rows below it too, unless `early` (see the top of the file).
  if (!a.early) {
    pdl_wait();
    pdl_trigger();
  }
  const int64_t praw = p.past[b];
  // Lengths are clamped so that bad ones (the CPU kernel refuses them) never touch memory
  // outside the cache or QKV.
  const int64_t peff = praw < 0 ? 0 : (praw > p.max_seq ? int64_t(p.max_seq) : praw);

  // ---- the query tile: rows (token s, head g*G + hh), row = s * G + hh ----
  const int row0 = qt * QT;
  const int nq = min(QT, a.nrows - row0);
  const int s_last = (row0 + nq - 1) / p.G;
  // Row r sees keys j <= min(peff + s_r, max_seq - 1); the tile's last row sees the most.
  const int64_t L = min(peff + s_last + 1, int64_t(p.max_seq));
  // Ranges of whole tiles when a split spans several (no tile straddles two ranges);
  // otherwise as even as the count allows, so that every split has keys to do.
  // (Resident: always as even as the count allows; plan_decode sized the buffers for
  // ceil(max_seq / nsplit) keys.)
  int64_t chunk = (L + a.nsplit - 1) / a.nsplit;
  if (chunk > kTK && !a.resident) chunk = (chunk + kTK - 1) / kTK * kTK;
  const int64_t c0 = int64_t(split) * chunk;
  const int64_t c1 = min(c0 + chunk, L);
  const int ntl = c0 < c1 ? int((c1 - c0 + kTK - 1) / kTK) : 0;
  // Keys below `pread` come from the cache; from it on (fused only), from QKV.
  const int64_t pread = a.fused ? peff : L;

  // Tile loader, cache part: rows [t0, min(t0 + 64, c1)) below `pread` by cp.async (16-byte
  // path) or plain loads. Rows from c1 on are left as they are: their scores are masked and
  // P·V stops at c1, so they are never used.
  auto load_cache = [&](int64_t t0, int buf) {
    T* dK = sK + size_t(buf) * kTK * ldk;
    T* dV = sV + size_t(buf) * kTK * ldk;
    const int rows = int(min(int64_t(kTK), min(c1, pread) - t0));
    if (rows <= 0) return;
    if (a.vec) {
      const int ch = dp / 8;  // 16-byte chunks per row (fp32: 8 floats = two chunks, below)
      for (int c = tid; c < rows * ch; c += kThreads) {
        const int r = c / ch, cc = c % ch;
        const T* gk = kc + (crow0 + t0 + r) * D + cc * 8;
        const T* gv = vc + (crow0 + t0 + r) * D + cc * 8;
        T* sk = dK + r * ldk + cc * 8;
        T* sv = dV + r * ldk + cc * 8;
        cp_async16(sk, gk, true);
        cp_async16(sv, gv, true);
        if (sizeof(T) == 4) {  // 8 floats are 32 bytes
          cp_async16(sk + 4, gk + 4, true);
          cp_async16(sv + 4, gv + 4, true);
        }
      }
    } else {
      for (int e = tid; e < rows * dp; e += kThreads) {
        const int r = e / dp, d = e % dp;
        T kv = from_f<T>(0.f), vv = from_f<T>(0.f);  // the padding features [D, dp) are zeros
        if (d < D) {
          kv = kc[(crow0 + t0 + r) * D + d];
          vv = vc[(crow0 + t0 + r) * D + d];
        }
        dK[r * ldk + d] = kv;
        dV[r * ldk + d] = vv;
      }
    }
  };
  // Tile loader, this run's tokens (positions pread <= j < c1, fused only): rotated from QKV.
  auto load_new = [&](int64_t t0, int buf) {
    T* dK = sK + size_t(buf) * kTK * ldk;
    T* dV = sV + size_t(buf) * kTK * ldk;
    const int64_t f0 = max(t0, pread), f1 = min(t0 + kTK, c1);
    for (int64_t e = tid; e < (f1 - f0) * dp; e += kThreads) {
      const int64_t j = f0 + e / dp;
      const int d = int(e % dp), r = int(j - t0);
      const int s = int(j - peff);  // 0 <= s < S: j < L <= peff + S
      float kf = 0.f, vf = 0.f;
      if (d < D) {
        const T* xk = qkv + (int64_t(b) * p.S + s) * W + int64_t(p.Hq + g) * D;
        kf = rotated(xk, d, p.half, p.interleaved, p.inv_freq, float(j));
        vf = to_f(xk[int64_t(p.Hkv) * D + d]);
      }
      dK[r * ldk + d] = from_f<T>(kf);
      dV[r * ldk + d] = from_f<T>(vf);
    }
  };
  auto load_tile = [&](int64_t t0, int buf) {
    load_cache(t0, buf);
    load_new(t0, buf);
  };

  // The first tile's cache rows are in flight (cp.async) while this CTA reads its q rows and
  // writes its share of this run's k/v: their latencies overlap instead of adding up. (The
  // tile's cache rows are positions below PastLens[b]; the writes go to PastLens[b] on.)
  // With `early` they were issued before the wait (rows written by earlier runs only).
  // Resident: every tile of the range has its own buffer (plan_decode sized them from
  // max_seq), so all of the range's cache rows are requested here in one go: one memory
  // round trip for the whole range instead of one per tile.
  const int nfirst = a.resident ? ntl : min(ntl, 1);
  for (int it = 0; it < nfirst; ++it) load_cache(c0 + int64_t(it) * kTK, it);
  if (a.early) {
    pdl_wait();
    pdl_trigger();
  }
  for (int it = 0; it < nfirst; ++it) load_new(c0 + int64_t(it) * kTK, it);
  cp_async_commit();
  for (int e = tid; e < QT * dp; e += kThreads) {
    const int r = e / dp, d = e % dp;
    float v = 0.f;
    if (r < nq && d < D) {
      const int row = row0 + r, s = row / p.G, h = g * p.G + row % p.G;
      const T* x = qkv + (int64_t(b) * p.S + s) * W + int64_t(h) * D;
      // The op rounds rotated q to the dtype before the scores.
      v = to_f(from_f<T>(rotated(x, d, p.half, p.interleaved, p.inv_freq, float(praw + s)))) * p.scale_log2;
    }
    sQ[e] = v;
  }

  // ---- this CTA's share of the cache writes (fused) ----
  if (a.fused) {
    const int writers = a.nsplit * a.ntile, me = qt * a.nsplit + split;
    for (int s = me; s < p.S; s += writers) {
      const int64_t pos = praw + s;
      if (pos < 0 || pos >= p.max_seq) continue;
      const T* xk = qkv + (int64_t(b) * p.S + s) * W + int64_t(p.Hq + g) * D;
      const T* xv = xk + int64_t(p.Hkv) * D;
      T* dk = kc + (crow0 + pos) * D;
      T* dv = vc + (crow0 + pos) * D;
      for (int d = tid; d < D; d += kThreads) {
        dk[d] = from_f<T>(rotated(xk, d, p.half, p.interleaved, p.inv_freq, float(pos)));
        dv[d] = xv[d];
      }
    }
  }

  // Score phase mapping: key kk of the tile, rows rh, rh + 2, ...
  const int kk = tid & (kTK - 1), rh = tid >> 6;
  // P·V mapping: feature slice vsl (8 features), key group vkg (keys vkg, vkg + KG, ...).
  const int ns = dp / 8, KG = kThreads / ns;
  const int vsl = tid % ns, vkg = tid / ns;
  const bool vact = vkg < KG;

  float m[QT], acc[QT][8], lpart[QTH];
#pragma unroll
  for (int r = 0; r < QT; ++r) {
    m[r] = neg_inf();
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[r][e] = 0.f;
  }
#pragma unroll
  for (int i = 0; i < QTH; ++i) lpart[i] = 0.f;

  for (int it = 0; it < ntl; ++it) {
    const int buf = a.resident ? it : a.stages == 2 ? (it & 1) : 0;
    const int64_t t0 = c0 + int64_t(it) * kTK;
    if (a.resident) {
      if (it == 0) cp_async_wait<0>();  // every tile was requested at once
    } else {
      if (a.stages == 2 && it + 1 < ntl) load_tile(t0 + kTK, buf ^ 1);
      // One buffer: tile `it` loads only now (the previous iteration's last barrier freed it).
      if (a.stages == 1 && it > 0) load_tile(t0, 0);
      cp_async_commit();
      if (a.stages == 2) cp_async_wait<1>();  // all but the newest group: tile `it` landed
      else cp_async_wait<0>();
    }
    __syncthreads();
    const T* tK = sK + size_t(buf) * kTK * ldk;
    const T* tV = sV + size_t(buf) * kTK * ldk;

    // Scores of key kk for rows rh + 2i.
    float sc[QTH];
#pragma unroll
    for (int i = 0; i < QTH; ++i) sc[i] = 0.f;
    {
      const T* kr = tK + kk * ldk;
      for (int d = 0; d < dp; d += 8) {
        float kf[8];
        ld8(kr + d, kf);
#pragma unroll
        for (int i = 0; i < QTH; ++i) {
          const int r = rh + 2 * i;
          if (r < QT) {
            float q8[8];
            ld8(sQ + r * dp + d, q8);
            float s = sc[i];
#pragma unroll
            for (int e = 0; e < 8; ++e) s = fmaf(q8[e], kf[e], s);
            sc[i] = s;
          }
        }
      }
    }
    const int64_t j = t0 + kk;
#pragma unroll
    for (int i = 0; i < QTH; ++i) {
      const int r = rh + 2 * i;
      const int64_t lim = min(peff + (row0 + r) / p.G, int64_t(p.max_seq) - 1);
      if (r >= nq || j >= c1 || j > lim) sc[i] = neg_inf();
      float mx = sc[i];
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
      if (lane == 0 && r < QT) sMax[(warp & 1) * QT + r] = mx;
    }
    __syncthreads();
    float alpha[QT], base[QT];
#pragma unroll
    for (int r = 0; r < QT; ++r) {
      const float mnew = fmaxf(m[r], fmaxf(sMax[r], sMax[QT + r]));
      // A row with nothing visible yet keeps max -inf; subtracting 0 keeps exp2 at 0, not NaN.
      base[r] = mnew == neg_inf() ? 0.f : mnew;
      alpha[r] = exp2f(m[r] - base[r]);
      m[r] = mnew;
    }
#pragma unroll
    for (int i = 0; i < QTH; ++i) {
      if (rh + 2 * i < QT) {
        // rh is 0 or 1: select with constant indices (no local-memory indexing).
        const float bs = rh ? base[(2 * i + 1) % QT] : base[2 * i];
        const float al = rh ? alpha[(2 * i + 1) % QT] : alpha[2 * i];
        const float pr = exp2f(sc[i] - bs);  // 0 for masked keys
        sP[kk * QT + rh + 2 * i] = pr;
        lpart[i] = lpart[i] * al + pr;
      }
    }
    __syncthreads();

    // acc[r][:] = acc[r][:] * alpha[r] + sum over this thread's keys of p[key][r] * V[key][slice].
    if (vact) {
#pragma unroll
      for (int r = 0; r < QT; ++r)
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[r][e] *= alpha[r];
      const int nvalid = int(min(int64_t(kTK), c1 - t0));
      for (int key = vkg; key < nvalid; key += KG) {
        float v8[8];
        ld8(tV + key * ldk + vsl * 8, v8);
        const float* pk = sP + key * QT;
#pragma unroll
        for (int r = 0; r < QT; ++r) {
          const float pr = pk[r];
#pragma unroll
          for (int e = 0; e < 8; ++e) acc[r][e] = fmaf(pr, v8[e], acc[r][e]);
        }
      }
    }
    __syncthreads();  // every reader of this buffer is done before it is refilled
  }
  cp_async_wait<0>();
  __syncthreads();

  // ---- reduce across key groups and threads; write this CTA's partial ----
  if (vact) {
#pragma unroll
    for (int r = 0; r < QT; ++r)
#pragma unroll
      for (int e = 0; e < 8; ++e) sRed[(vkg * QT + r) * dp + vsl * 8 + e] = acc[r][e];
  }
#pragma unroll
  for (int i = 0; i < QTH; ++i) {
    float l = lpart[i];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) l += __shfl_xor_sync(0xffffffffu, l, o);
    if (lane == 0) sL[warp * 4 + i] = l;  // QTH <= 4
  }
  __syncthreads();
  T* out = static_cast<T*>(p.out);
  const int ch = dp / 8;
  // Output chunk c (8 features) of tile row r, already normalised, into the op's layout.
  auto store_chunk = [&](int r, int c, const float (&o)[8]) {
    const int row = row0 + r, s = row / p.G, h = g * p.G + row % p.G;
    T* dst = out + (int64_t(b) * p.S + s) * (int64_t(p.Hq) * D) + int64_t(h) * D + c * 8;
    if (a.vec) {
      st8(dst, o);
    } else {
      for (int k = 0; k < 8 && c * 8 + k < D; ++k) dst[k] = from_f<T>(o[k]);
    }
  };
  // This CTA's row maximum (exp2 domain) and sum of row r (the same m in every thread).
  auto row_ml = [&](int r, float& mr, float& lr) {
    const int i = r >> 1, w0 = (r & 1) * 2;  // rows of parity r&1 live in warps w0, w0+1
    mr = m[0];
#pragma unroll
    for (int q = 1; q < QT; ++q)
      if (q == r) mr = m[q];
    lr = sL[w0 * 4 + i] + sL[(w0 + 1) * 4 + i];
  };

  // Merges output chunks e = first, first + stride, ... (chunk e: row e / ch, features
  // 8 (e % ch) ...) over the nsplit partials that fetch(sp, r, c, m, l, x0, x1) reads.
  // `tpi` neighbouring lanes share a chunk, each combining every tpi-th split online, four
  // splits' reads in flight at once; then the lanes combine by shuffles.
  const int nsp = a.nsplit;
  auto merge_chunks = [&](int first, int stride, auto fetch) {
    const int items = nq * ch;
    const int mine = items > first ? (items - first + stride - 1) / stride : 0;
    int tpi = 1;
    while (tpi < nsp && tpi < 32 && tpi * 2 * mine <= kThreads) tpi *= 2;
    const int sub = tid % tpi;
    for (int base = 0; base < mine; base += kThreads / tpi) {  // the same trip count in every thread
      const int i = base + tid / tpi;
      const bool valid = i < mine;
      const int e = first + i * stride;
      const int r = valid ? e / ch : 0, c = valid ? e % ch : 0;
      float M = neg_inf(), Ls = 0.f;
      float o[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
      if (valid) {
        for (int sp0 = sub; sp0 < nsp; sp0 += 4 * tpi) {
          float ms[4], ls[4];
          float4 x0[4], x1[4];
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            const int sp = sp0 + u * tpi;
            if (sp < nsp) {
              fetch(sp, r, c, ms[u], ls[u], x0[u], x1[u]);
            } else {
              ms[u] = neg_inf();
              ls[u] = 0.f;
              x0[u] = x1[u] = make_float4(0.f, 0.f, 0.f, 0.f);
            }
          }
#pragma unroll
          for (int u = 0; u < 4; ++u) {
            if (ms[u] == neg_inf()) continue;  // an empty split (its sum and accumulators are 0)
            const float Mn = fmaxf(M, ms[u]);
            const float so = M == neg_inf() ? 0.f : exp2f(M - Mn), sn = exp2f(ms[u] - Mn);
            M = Mn;
            Ls = Ls * so + ls[u] * sn;
            o[0] = o[0] * so + x0[u].x * sn; o[1] = o[1] * so + x0[u].y * sn;
            o[2] = o[2] * so + x0[u].z * sn; o[3] = o[3] * so + x0[u].w * sn;
            o[4] = o[4] * so + x1[u].x * sn; o[5] = o[5] * so + x1[u].y * sn;
            o[6] = o[6] * so + x1[u].z * sn; o[7] = o[7] * so + x1[u].w * sn;
          }
        }
      }
      for (int off = tpi / 2; off > 0; off >>= 1) {
        const float M2 = __shfl_xor_sync(0xffffffffu, M, off);
        const float L2 = __shfl_xor_sync(0xffffffffu, Ls, off);
        const float Mn = fmaxf(M, M2);
        const float s1 = M == neg_inf() ? 0.f : exp2f(M - Mn), s2 = M2 == neg_inf() ? 0.f : exp2f(M2 - Mn);
        M = Mn;
        Ls = Ls * s1 + L2 * s2;
#pragma unroll
        for (int k = 0; k < 8; ++k) o[k] = o[k] * s1 + __shfl_xor_sync(0xffffffffu, o[k], off) * s2;
      }
      if (!valid || sub != 0) continue;
      const float inv = Ls > 0.f ? 1.f / Ls : 0.f;  // a row that saw nothing gives zeros
#pragma unroll
      for (int k = 0; k < 8; ++k) o[k] *= inv;
      store_chunk(r, c, o);
    }
  };

  // Partial rows of this CTA in the workspace (global merge and defer).
  const int64_t unit = int64_t(bg) * a.ntile + qt;
  const int64_t prow0 = (unit * a.nsplit + split) * QT;
  auto store_partial = [&]() {
    for (int e = tid; e < nq * dp; e += kThreads) {
      const int r = e / dp, d = e % dp;
      float sum = 0.f;
      for (int k = 0; k < KG; ++k) sum += sRed[(k * QT + r) * dp + d];
      a.acc_part[(prow0 + r) * dp + d] = sum;
    }
    if (tid < nq) {
      float mr, lr;
      row_ml(tid, mr, lr);
      a.ml_part[(prow0 + tid) * 2] = mr;
      a.ml_part[(prow0 + tid) * 2 + 1] = lr;
    }
  };
  if (a.defer) {
    store_partial();
    return;
  }

  if (a.cluster || nsp == 1) {
    // ---- cluster merge: the partial stays in this CTA's shared memory (sQ's QT x dp floats
    // for the accumulators, sMax's 2 x QT for (max, sum): neither is read after the key loop).
    // A single split takes the same route within the CTA: nothing to wait for, nothing to
    // read back from global memory. ----
    namespace cg = cooperative_groups;
    float* sAcc = sQ;
    float* sML = sMax;
    for (int e = tid; e < nq * dp; e += kThreads) {
      const int r = e / dp, d = e % dp;
      float sum = 0.f;
      for (int k = 0; k < KG; ++k) sum += sRed[(k * QT + r) * dp + d];
      sAcc[r * dp + d] = sum;
    }
    if (tid < nq) {
      float mr, lr;
      row_ml(tid, mr, lr);
      sML[2 * tid] = mr;
      sML[2 * tid + 1] = lr;
    }
    if (!a.cluster) {
      __syncthreads();
      merge_chunks(0, 1, [&](int, int r, int c, float& ms, float& ls, float4& x0, float4& x1) {
        const float4* acc4 = reinterpret_cast<const float4*>(sAcc + r * dp + c * 8);
        ms = sML[2 * r];
        ls = sML[2 * r + 1];
        x0 = acc4[0];
        x1 = acc4[1];
      });
      return;
    }
    cg::cluster_group cluster = cg::this_cluster();
    cluster.sync();  // every split's partial is written and visible cluster-wide
    // This CTA is rank `split` of the cluster (the cluster spans the split dimension): it
    // merges chunks split, split + nsplit, ..., reading the partials by distributed shared memory.
    merge_chunks(split, nsp, [&](int sp, int r, int c, float& ms, float& ls, float4& x0, float4& x1) {
      const float* rml = cluster.map_shared_rank(sML, sp);
      const float4* racc = reinterpret_cast<const float4*>(cluster.map_shared_rank(sAcc, sp) + r * dp + c * 8);
      ms = rml[2 * r];
      ls = rml[2 * r + 1];
      x0 = racc[0];
      x1 = racc[1];
    });
    cluster.sync();  // no CTA exits (freeing its shared memory) while another still reads it
    return;
  }

  // ---- global merge: partials to the workspace ----
  store_partial();

  // The last CTA of this (b, g, tile) to finish merges the splits.
  __threadfence();
  __syncthreads();
  if (tid == 0) {
    const int prev = atomicAdd(a.counters + unit, 1);
    *sFlag = prev == a.nsplit - 1;
  }
  __syncthreads();
  if (!*sFlag) return;
  __threadfence();
  const int64_t urow0 = unit * a.nsplit * QT;  // partial rows of split 0
  merge_chunks(0, 1, [&](int sp, int r, int c, float& ms, float& ls, float4& x0, float4& x1) {
    const int64_t row = urow0 + int64_t(sp) * QT + r;
    const float4* src = reinterpret_cast<const float4*>(a.acc_part + row * dp + c * 8);
    ms = __ldcg(a.ml_part + row * 2);
    ls = __ldcg(a.ml_part + row * 2 + 1);
    x0 = __ldcg(src);
    x1 = __ldcg(src + 1);
  });
  if (tid == 0) a.counters[unit] = 0;  // ready for the next launch (a replayed graph too)
}

// Opts decode_kernel<T, QT> in to more than 48 KiB of dynamic shared memory, once per device
// (the eager run that precedes every capture makes the call; capture makes none).
template <class T, int QT>
void opt_in_smem(size_t smem) {
  static std::atomic<uint64_t> opted{0};
  int dev = 0;
  SHARDRT_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t(1) << dev : 0;
  if (smem > 48 * 1024 && (!bit || !(opted.load() & bit))) {
    int optin = 0;
    SHARDRT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    SHARDRT_CUDA_CHECK(cudaFuncSetAttribute(decode_kernel<T, QT>, cudaFuncAttributeMaxDynamicSharedMemorySize, optin));
    opted.fetch_or(bit);
  }
}

// How many clusters of `csize` CTAs of decode_kernel<T, QT> using `smem` bytes each the GPU
// holds at once (0: none, or the query failed). Asked once per (device, kernel, size,
// smem): the eager run that precedes every capture asks first.
template <class T, int QT>
int clusters_resident(int csize, size_t smem) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, size_t>, int> memo;
  int dev = 0;
  SHARDRT_CUDA_CHECK(cudaGetDevice(&dev));
  std::lock_guard<std::mutex> lock(mu);
  const auto key = std::make_tuple(dev, csize, smem);
  if (auto it = memo.find(key); it != memo.end()) return it->second;
  opt_in_smem<T, QT>(smem);
  bool ok = true;
  int n = 0;
  if (csize > 8)  // beyond the portable cluster size: Hopper allows 16 on request
    ok = cudaFuncSetAttribute(decode_kernel<T, QT>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) == cudaSuccess;
  if (ok) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(1, unsigned(csize), 1);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 1;
    at[0].val.clusterDim.y = unsigned(csize);
    at[0].val.clusterDim.z = 1;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    ok = cudaOccupancyMaxActiveClusters(&n, decode_kernel<T, QT>, &cfg) == cudaSuccess;
  }
  if (!ok) {
    (void)cudaGetLastError();  // a refused query is an answer, not an error to report later
    n = 0;
  }
  memo[key] = n;
  return n;
}

template <class T, int QT>
void launch_qt(const Args& a, dim3 grid, size_t smem, cudaStream_t st) {
  opt_in_smem<T, QT>(smem);
  if (!a.cluster) {
    launch_pdl(decode_kernel<T, QT>, grid, dim3(kThreads), smem, st, a);
    return;
  }
  // launch_pdl's attribute plus the cluster shape: the splits of one (b, g, tile).
  cudaLaunchAttribute attr[2];
  unsigned n = 0;
  if (pdl_enabled()) {
    attr[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[n].val.programmaticStreamSerializationAllowed = 1;
    ++n;
  }
  attr[n].id = cudaLaunchAttributeClusterDimension;
  attr[n].val.clusterDim.x = 1;
  attr[n].val.clusterDim.y = grid.y;
  attr[n].val.clusterDim.z = 1;
  ++n;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = smem;
  cfg.stream = st;
  cfg.attrs = attr;
  cfg.numAttrs = n;
  SHARDRT_CUDA_CHECK(cudaLaunchKernelEx(&cfg, decode_kernel<T, QT>, a));
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_typed(const Args& a, int qt, dim3 grid, size_t smem, cudaStream_t st) {
  switch (qt) {
    case 1: launch_qt<T, 1>(a, grid, smem, st); break;
    case 2: launch_qt<T, 2>(a, grid, smem, st); break;
    case 4: launch_qt<T, 4>(a, grid, smem, st); break;
    default: launch_qt<T, 8>(a, grid, smem, st); break;
  }
}

template <class T>
int clusters_resident_qt(int qt, int csize, size_t smem) {
  switch (qt) {
    case 1: return clusters_resident<T, 1>(csize, smem);
    case 2: return clusters_resident<T, 2>(csize, smem);
    case 4: return clusters_resident<T, 4>(csize, smem);
    default: return clusters_resident<T, 8>(csize, smem);
  }
}
int clusters_resident_any(DType t, int qt, int csize, size_t smem) {
  switch (t) {
    case DType::F32: return clusters_resident_qt<float>(qt, csize, smem);
    case DType::F16: return clusters_resident_qt<__half>(qt, csize, smem);
    case DType::BF16: return clusters_resident_qt<__nv_bfloat16>(qt, csize, smem);
    default: return 0;
  }
}

// SHARDRT_ATTN_CLUSTER=N (1..15) merges through clusters of at most N CTAs wherever the
// grid is resident at once (capping the split count at N); 0 always merges through global
// memory; unset or 16: clusters of up to 16 where the global merge would be long (see
// plan_decode). SHARDRT_ATTN_EARLY=0 keeps every read after pdl_wait.
// Both exist for comparison and as a way out; read at each plan/launch (the eager run and
// the capture), never by a replay.
int max_cluster() {
  const char* e = std::getenv("SHARDRT_ATTN_CLUSTER");
  if (!e || !*e) return kMaxCluster;
  return std::clamp(std::atoi(e), 0, kMaxCluster);
}
// SHARDRT_ATTN_SPLITS=N caps the split count at N (for experiments; unset: kMaxSplits).
int max_splits() {
  const char* e = std::getenv("SHARDRT_ATTN_SPLITS");
  const int v = e && *e ? std::atoi(e) : 0;
  return v >= 1 ? std::min(v, kMaxSplits) : kMaxSplits;
}
// SHARDRT_ATTN_RESIDENT=1 loads each CTA's whole key range at once wherever it fits in
// shared memory (SHARDRT_ATTN_SPLITS choosing the split count); unset or 0: never (it
// measured slower, see plan_decode). For experiments; read at plan time only.
bool resident_requested() {
  const char* e = std::getenv("SHARDRT_ATTN_RESIDENT");
  return e && *e && std::atoi(e) != 0;
}
bool splits_forced() {
  const char* e = std::getenv("SHARDRT_ATTN_SPLITS");
  return e && *e && std::atoi(e) >= 1;
}
bool early_enabled() {
  const char* e = std::getenv("SHARDRT_ATTN_EARLY");
  return !(e && e[0] == '0' && e[1] == '\0');
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

DecodePlan plan_decode(const Params& p, DType t, const cudaDeviceProp& props) {
  DecodePlan pl;
  const size_t tsize = dtype_size(t);
  const int64_t nrows = int64_t(p.G) * p.S;
  pl.qt = nrows >= 5 ? 8 : nrows >= 3 ? 4 : nrows == 2 ? 2 : 1;
  pl.ntile = int((nrows + pl.qt - 1) / pl.qt);
  pl.dp = (p.D + 7) / 8 * 8;
  if (pl.dp / 8 > kThreads) return pl;  // head sizes above 1024: no plan (smem = 0)
  // 16-byte accesses need head rows that are whole 16-byte chunks (8 features) at aligned
  // addresses: the caches come from cudaMalloc (256-aligned); QKV and the output are checked.
  pl.vec = p.D % 8 == 0 && aligned16(p.qkv) && aligned16(p.out) && aligned16(p.kc) && aligned16(p.vc);
  const int ldk = pl.dp + int(16 / tsize);
  const size_t optin = size_t(props.sharedMemPerBlockOptin);
  pl.stages = 2;
  size_t smem = layout(pl.qt, pl.dp, ldk, tsize, 2).total;
  if (smem > optin) {
    pl.stages = 1;
    smem = layout(pl.qt, pl.dp, ldk, tsize, 1).total;
    if (smem > optin) return pl;
  }
  // Splits: enough CTAs to give every SM several (8 per SM over the whole grid), but at
  // least 32 cache positions per split and at most kMaxSplits; depends on the shapes and
  // the GPU only, so a captured graph replays with any lengths.
  const int64_t units = int64_t(p.B) * p.Hkv * pl.ntile;
  const int64_t target = int64_t(std::max(props.multiProcessorCount, 1)) * 8;
  int64_t ns = (target + units - 1) / units;
  ns = std::min<int64_t>(ns, kMaxSplits);
  ns = std::min<int64_t>(ns, (int64_t(p.max_seq) + 31) / 32);
  ns = std::min<int64_t>(ns, max_splits());
  pl.nsplit = int(std::max<int64_t>(ns, 1));
  const int64_t units_ = int64_t(p.B) * p.Hkv * pl.ntile;
  // Resident plan (only on request, SHARDRT_ATTN_RESIDENT=1): at most kResidentSplits
  // splits, each holding its whole key range (ceil(max_seq / splits) keys: shapes only) in
  // shared memory, all of it requested at once (before the PDL wait with `early`); splits
  // double until the range fits. Merged by a cluster (2..8 splits), within the CTA (1), or
  // globally. Measured on an H100 (CUDA graph step, same binary), it does not pay:
  //  - GPT-2 fp16 b1, 512 cached, max_seq 528: today's 17 one-tile splits 0.402 ms; resident
  //    1 / 2 / 4 / 8 splits 0.490 / 0.440 / 0.421 / 0.421 ms (8 through the workspace
  //    0.420, 4 through the workspace 0.424); 17 resident splits 0.400 (the same work);
  //  - max_seq 1024: today's 32 splits 0.408 ms, resident 4 / 8 splits (clusters) 0.411 /
  //    0.421 ms;
  //  - Llama-3-8B dims 4L bf16 b1: 1.07 ms today, 1.06 resident (8 or 16 splits): noise.
  // More, smaller CTAs beat fewer CTAs that each hold a longer range, even when all of its
  // loads are in flight at once.
  if (resident_requested()) {
    const size_t budget = optin;
    int64_t rs = splits_forced() ? pl.nsplit : std::min<int64_t>(pl.nsplit, kResidentSplits);
    size_t rsmem = 0;
    int tiles = 0;
    for (;;) {
      const int64_t chunk = (int64_t(p.max_seq) + rs - 1) / rs;
      tiles = int((chunk + kTK - 1) / kTK);
      rsmem = layout(pl.qt, pl.dp, ldk, tsize, tiles).total;
      if (rsmem <= budget || rs >= pl.nsplit) break;
      rs = std::min<int64_t>(rs * 2, pl.nsplit);
    }
    if (rsmem <= budget) {
      pl.resident = 1;
      pl.stages = tiles;
      pl.nsplit = int(rs);
      const int mc = max_cluster();
      if (props.major >= 9 && rs >= 2 && rs <= 8 && mc >= rs &&
          clusters_resident_any(t, pl.qt, int(rs), rsmem) >= units_)
        pl.cluster = 1;
      pl.ws_floats = size_t(units_) * pl.nsplit * pl.qt * (pl.dp + 2);
      pl.counters = units_;
      pl.smem = rsmem;
      return pl;
    }
  }
  // One cluster per (b, g, tile) (at most kMaxCluster splits then: fewer, fatter splits,
  // merged without global round trips) when the global merge would be long and the whole
  // grid is resident at once. Measured on an H100 (decode step, CUDA graph):
  //  - a merging lane of the global path reads ceil(nsplit / tpi) splits, four at a time;
  //    GPT-2 at batch 1 (32 splits, 2 per lane) is faster with it (0.303 vs 0.307 ms per
  //    step; a cluster of 16 waits for room in one GPC while the previous kernel still
  //    runs), Llama-3-8B dims at batch 1 (64 splits x 4 rows x 128 features, 32 per lane)
  //    is faster with clusters (1.06 vs 1.08 ms per 4-layer step);
  //  - with several waves a cluster holds its SMs until its slowest CTA is done: Llama-3-8B
  //    dims at batch 32 took 1.62 instead of 1.52 ms.
  const int mc = max_cluster();
  const int items = int(std::min<int64_t>(pl.qt, nrows)) * (pl.dp / 8);  // output chunks to merge
  int tpi = 1;
  while (tpi < pl.nsplit && tpi < 32 && tpi * 2 * items <= kThreads) tpi *= 2;
  // (SHARDRT_ATTN_CLUSTER below 16 asks for clusters wherever they fit.)
  const bool long_merge = (pl.nsplit + tpi - 1) / tpi > 8 || mc < kMaxCluster;
  if (props.major >= 9 && mc >= 1 && long_merge) {
    // The largest that fits: 16 needs a GPC with room for 16 CTAs; 8 is the portable size.
    for (int cs = std::min(pl.nsplit, mc); cs >= 1; cs = cs > 8 ? 8 : 0) {
      if (clusters_resident_any(t, pl.qt, cs, smem) >= units) {
        pl.cluster = 1;
        pl.nsplit = cs;
        break;
      }
    }
  }
  pl.ws_floats = size_t(units) * pl.nsplit * pl.qt * (pl.dp + 2);
  pl.counters = units;
  pl.smem = smem;
  return pl;
}

DecodePlan plan_decode_deferred(const Params& p, DType t, const cudaDeviceProp& props) {
  DecodePlan pl;
  if (p.S != 1) return pl;
  const int64_t nrows = p.G;
  pl.qt = nrows >= 5 ? 8 : nrows >= 3 ? 4 : nrows == 2 ? 2 : 1;
  if (nrows > pl.qt) return pl;  // one query tile per (row, kv head)
  pl.ntile = 1;
  pl.dp = (p.D + 7) / 8 * 8;
  if (pl.dp != p.D || pl.dp / 8 > kThreads) return pl;  // whole 16-byte chunks (the merge reads 8 features)
  pl.vec = aligned16(p.qkv) && aligned16(p.out) && aligned16(p.kc) && aligned16(p.vc);
  if (!pl.vec) return pl;
  // One tile per split (two tiles per split, so half the partials: 0.295-0.297 against
  // 0.280-0.282 ms for GPT-2's step on an H100, bench/RESULTS.md).
  const int ns = (p.max_seq + kTK - 1) / kTK;
  if (ns > kMaxDeferSplits) return pl;
  // Every block of the projection's GEMV reads all of the partials: only where they are few.
  // On an H100 GPT-2 at max_seq 528 (12 heads of 64, 9 splits: 28.5 KB) gains; Llama-3-8B
  // dims at max_seq 512 (32 heads of 128, 8 splits: 133 KB) generated 156 instead of 170
  // tokens/s (bench/RESULTS.md, runs of 19:20 and 19:27).
  if (size_t(p.Hq) * ns * (pl.dp + 2) * sizeof(float) > kMaxDeferBytes) return pl;
  const size_t tsize = dtype_size(t);
  const int ldk = pl.dp + int(16 / tsize);
  pl.stages = 1;
  const size_t smem = layout(pl.qt, pl.dp, ldk, tsize, 1).total;
  if (smem > size_t(props.sharedMemPerBlockOptin)) return pl;
  pl.nsplit = ns;
  pl.defer = 1;
  const int64_t units = int64_t(p.B) * p.Hkv;
  pl.ws_floats = size_t(units) * pl.nsplit * pl.qt * (pl.dp + 2);
  pl.counters = 0;
  pl.smem = smem;
  return pl;
}

void launch_decode(const Params& p, DType t, const DecodePlan& pl, int fused, bool past_settled, float* ws,
                   int* counters, cudaStream_t s) {
  Args a;
  a.p = p;
  a.dp = pl.dp;
  a.ldk = pl.dp + int(16 / dtype_size(t));
  a.nsplit = pl.nsplit;
  a.ntile = pl.ntile;
  a.nrows = p.G * p.S;
  a.fused = fused;
  a.vec = pl.vec;
  a.stages = pl.stages;
  a.resident = pl.resident;
  a.early = fused && past_settled && early_enabled();
  a.cluster = pl.cluster;
  a.defer = pl.defer;
  const size_t units = size_t(p.B) * p.Hkv * pl.ntile;
  a.acc_part = ws;
  a.ml_part = ws + units * pl.nsplit * pl.qt * pl.dp;
  a.counters = counters;
  const dim3 grid(unsigned(int64_t(p.B) * p.Hkv), unsigned(pl.nsplit), unsigned(pl.ntile));
  switch (t) {
    case DType::F32: launch_typed<float>(a, pl.qt, grid, pl.smem, s); break;
    case DType::F16: launch_typed<__half>(a, pl.qt, grid, pl.smem, s); break;
    case DType::BF16: launch_typed<__nv_bfloat16>(a, pl.qt, grid, pl.smem, s); break;
    default: throw Error(std::string("internal: cached attention decode got dtype ") + dtype_name(t));
  }
}

}  // namespace shardrt::cuda::cached
