// The general shardrt.Attention path (every float dtype, any head size, and the decode
// shapes with few query rows): one warp per (query row, key split) runs an online softmax
// over its keys in fp32; when a row's keys are split over several warps (flash-decoding),
// each writes its partial (max, sum, unnormalised output) to the workspace and a second
// kernel merges them. Keys go four at a time so that their loads and warp reductions
// overlap.
#include <cmath>

#include "backends/cuda/attention_common.cuh"

namespace shardrt::cuda::attn {

namespace {

constexpr int kKeysPerStep = 4;

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// Shared memory per warp: q (pre-scaled into the exp2 domain) then the fp32 accumulator;
// lane l owns elements l, l+32, ... of both, so the warp needs only __syncwarp.
template <class T>
__global__ void __launch_bounds__(128) rowwise_kernel(const Params p, int splits, int keys_per_split, float* ws,
                                                      int64_t total_warps) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31;
  const int wib = threadIdx.x >> 5;
  const int wpb = blockDim.x >> 5;
  float* qs = smem + int64_t(wib) * (p.D + p.Dv);
  float* acc = qs + p.D;
  const int64_t wstride = int64_t(gridDim.x) * wpb;
  for (int64_t w = int64_t(blockIdx.x) * wpb + wib; w < total_warps; w += wstride) {
    const int64_t row = w / splits;  // ((b * Hq + h) * Sq + i)
    const int split = int(w % splits);
    const int64_t i = row % p.Sq;
    const int64_t bh = row / p.Sq;
    const int64_t h = bh % p.Hq;
    const int64_t b = bh / p.Hq;
    const int64_t kvh = b * p.Hkv + h / p.group;
    const T* q = static_cast<const T*>(p.q) + row * p.D;
    const T* kb = static_cast<const T*>(p.k) + kvh * p.Skv * p.D;
    const T* vb = static_cast<const T*>(p.v) + kvh * p.Skv * p.Dv;

    __syncwarp();  // the previous row's readers of qs/acc are done
    for (int d = lane; d < p.D; d += 32) qs[d] = to_f(q[d]) * p.scale_log2;
    for (int d = lane; d < p.Dv; d += 32) acc[d] = 0.f;
    __syncwarp();

    const int64_t j0 = int64_t(split) * keys_per_split;
    int64_t j1 = j0 + keys_per_split;
    if (j1 > p.Skv) j1 = p.Skv;
    if (p.causal && j1 > i + p.causal_off + 1) j1 = i + p.causal_off + 1;  // may leave nothing

    float m = neg_inf(), l = 0.f;
    for (int64_t jb = j0; jb < j1; jb += kKeysPerStep) {
      float s[kKeysPerStep];
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
        s[u] = 0.f;
        if (jb + u < j1) {
          const T* kr = kb + (jb + u) * p.D;
          for (int d = lane; d < p.D; d += 32) s[u] += qs[d] * to_f(kr[d]);
        }
      }
      // xor butterflies leave the bit-identical sum in every lane (a+b == b+a), so the
      // branches below are warp-uniform.
#pragma unroll
      for (int o = 16; o > 0; o >>= 1)
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u) s[u] += __shfl_xor_sync(0xffffffffu, s[u], o);
      float mx = m;
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
        if (jb + u < j1) {
          if (p.mask_kind != kNoMask) s[u] += mask_term(p, b, h, i, jb + u);
        } else {
          s[u] = neg_inf();
        }
        mx = fmaxf(mx, s[u]);
      }
      if (mx == neg_inf()) continue;  // every key so far masked out: nothing to add
      const float alpha = exp2f(m - mx);  // 0 when m is still -inf
      float pu[kKeysPerStep];
      float ps = 0.f;
#pragma unroll
      for (int u = 0; u < kKeysPerStep; ++u) {
        pu[u] = exp2f(s[u] - mx);  // 0 for masked keys
        ps += pu[u];
      }
      l = l * alpha + ps;
      m = mx;
      for (int d = lane; d < p.Dv; d += 32) {
        float a = acc[d] * alpha;
#pragma unroll
        for (int u = 0; u < kKeysPerStep; ++u)
          if (jb + u < j1) a += pu[u] * to_f(vb[(jb + u) * p.Dv + d]);
        acc[d] = a;
      }
    }

    if (splits == 1) {
      // A row that saw no key has l == 0: the op defines zeros.
      const float inv = l > 0.f ? 1.f / l : 0.f;
      T* o = static_cast<T*>(p.o) + row * p.Dv;
      for (int d = lane; d < p.Dv; d += 32) o[d] = from_f<T>(acc[d] * inv);
    } else {
      float* part = ws + (row * splits + split) * (int64_t(p.Dv) + 2);
      if (lane == 0) {
        part[0] = m;
        part[1] = l;
      }
      for (int d = lane; d < p.Dv; d += 32) part[2 + d] = acc[d];
    }
  }
}

// Merges a row's split partials: weights 2^(m_s - M) over the splits' maxima M.
template <class T>
__global__ void __launch_bounds__(128) combine_kernel(const Params p, int splits, const float* ws, int64_t rows) {
  const int lane = threadIdx.x & 31;
  const int wpb = blockDim.x >> 5;
  const int64_t wstride = int64_t(gridDim.x) * wpb;
  const int64_t stride = int64_t(p.Dv) + 2;
  for (int64_t row = int64_t(blockIdx.x) * wpb + (threadIdx.x >> 5); row < rows; row += wstride) {
    const float* part = ws + row * splits * stride;
    float M = neg_inf();
    for (int s = 0; s < splits; ++s) M = fmaxf(M, part[s * stride]);
    T* o = static_cast<T*>(p.o) + row * p.Dv;
    if (M == neg_inf()) {  // no split saw a key
      for (int d = lane; d < p.Dv; d += 32) o[d] = from_f<T>(0.f);
      continue;
    }
    float L = 0.f;
    for (int s = 0; s < splits; ++s) L += part[s * stride + 1] * exp2f(part[s * stride] - M);
    const float inv = 1.f / L;  // L >= 1: the split holding M contributes 2^0 at least
    for (int d = lane; d < p.Dv; d += 32) {
      float a = 0.f;
      for (int s = 0; s < splits; ++s) a += part[s * stride + 2 + d] * exp2f(part[s * stride] - M);
      o[d] = from_f<T>(a * inv);
    }
  }
}

template <class T>
void launch_typed(const Params& p, int splits, float* ws, cudaStream_t st) {
  const int64_t per_warp = rowwise_smem_per_warp(p);
  int wpb = 4;
  while (wpb > 1 && per_warp * wpb > 48 * 1024) wpb /= 2;  // the dispatcher keeps per_warp <= 48 KiB
  const int64_t rows = int64_t(p.B) * p.Hq * p.Sq;
  const int64_t total = rows * splits;
  const int keys_per_split = int((int64_t(p.Skv) + splits - 1) / splits);
  const unsigned grid = blocks_for(total, wpb);
  rowwise_kernel<T><<<grid, wpb * 32, size_t(per_warp * wpb), st>>>(p, splits, keys_per_split, ws, total);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
  if (splits > 1) {
    combine_kernel<T><<<blocks_for(rows, 4), 128, 0, st>>>(p, splits, ws, rows);
    SHARDRT_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace

void launch_rowwise(const Params& p, DType t, int splits, float* ws, cudaStream_t s) {
  switch (t) {
    case DType::F32: launch_typed<float>(p, splits, ws, s); break;
    case DType::F16: launch_typed<__half>(p, splits, ws, s); break;
    case DType::BF16: launch_typed<__nv_bfloat16>(p, splits, ws, s); break;
    default: throw Error(std::string("internal: attention rowwise path got dtype ") + dtype_name(t));
  }
}

}  // namespace shardrt::cuda::attn
