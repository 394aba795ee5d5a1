// The elementwise kernels of shardrt.CachedAttention's prefill paths: rotating the new
// tokens' k into the K cache (v into the V cache) and, for the flash path, q into its
// [B, Hq, S, D] layout; and moving the flash kernel's [B, Hq, S, D] output back into the
// op's [B, S, Hq * D].
#include "backends/cuda/attention_cached.cuh"

namespace shardrt::cuda::cached {

namespace {

// One thread per (token, head, feature) over the q heads (when q_out is set) and the k and
// v heads; each thread reads its feature and, for rotated ones, its partner.
template <class T>
__global__ void __launch_bounds__(256) prep_kernel(const Params p, T* __restrict__ q_out, int h_begin, int64_t total) {
  const T* qkv = static_cast<const T*>(p.qkv);
  T* kc = static_cast<T*>(p.kc);
  T* vc = static_cast<T*>(p.vc);
  const int nh = p.Hq + 2 * p.Hkv - h_begin;  // heads this launch covers
  const int64_t W = int64_t(p.Hq + 2 * p.Hkv) * p.D;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int d = int(idx % p.D);
    const int64_t t = idx / p.D;
    const int hd = h_begin + int(t % nh);
    const int64_t bs = t / nh;  // b * S + s
    const int b = int(bs / p.S), s = int(bs % p.S);
    const int64_t pos = p.past[b] + s;
    const T* x = qkv + bs * W + int64_t(hd) * p.D;
    if (hd < p.Hq) {
      q_out[((int64_t(b) * p.Hq + hd) * p.S + s) * p.D + d] =
          from_f<T>(rotated(x, d, p.half, p.interleaved, p.inv_freq, float(pos)));
      continue;
    }
    if (pos < 0 || pos >= p.max_seq) continue;  // outside the cache: never written
    if (hd < p.Hq + p.Hkv) {
      const int g = hd - p.Hq;
      kc[((int64_t(b) * p.Hkv + g) * p.max_seq + pos) * p.D + d] =
          from_f<T>(rotated(x, d, p.half, p.interleaved, p.inv_freq, float(pos)));
    } else {
      const int g = hd - p.Hq - p.Hkv;
      vc[((int64_t(b) * p.Hkv + g) * p.max_seq + pos) * p.D + d] = x[d];
    }
  }
}

// out[b, s, h, :] = o[b, h, s, :], 16 bytes per thread when the head rows allow it.
template <class T, class V>
__global__ void __launch_bounds__(256) unpermute_kernel(const V* __restrict__ o, V* __restrict__ out, int B, int Hq,
                                                        int S, int cpr /* V units per head row */) {
  const int64_t total = int64_t(B) * Hq * S * cpr;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < total;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(idx % cpr);
    int64_t t = idx / cpr;
    const int s = int(t % S);
    t /= S;
    const int h = int(t % Hq);
    const int64_t b = t / Hq;
    out[((b * S + s) * Hq + h) * cpr + c] = o[idx];
  }
}

unsigned grid_for(int64_t n, int threads) {
  const int64_t b = (n + threads - 1) / threads;
  return unsigned(b < 1 ? 1 : (b > 65536 ? 65536 : b));  // grid-stride loops cover the rest
}

template <class T>
void prep_typed(const Params& p, void* q_out, cudaStream_t st) {
  const int h_begin = q_out ? 0 : p.Hq;
  const int64_t total = int64_t(p.B) * p.S * (p.Hq + 2 * p.Hkv - h_begin) * p.D;
  if (total == 0) return;
  prep_kernel<T><<<grid_for(total, 256), 256, 0, st>>>(p, static_cast<T*>(q_out), h_begin, total);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void unpermute_typed(const Params& p, const void* o, cudaStream_t st) {
  const int64_t rows = int64_t(p.B) * p.Hq * p.S;
  if (rows == 0 || p.D == 0) return;
  const bool vec = (int64_t(p.D) * sizeof(T)) % 16 == 0 && (reinterpret_cast<uintptr_t>(o) & 15) == 0 &&
                   (reinterpret_cast<uintptr_t>(p.out) & 15) == 0;
  if (vec) {
    const int cpr = int(int64_t(p.D) * sizeof(T) / 16);
    unpermute_kernel<T, uint4><<<grid_for(rows * cpr, 256), 256, 0, st>>>(
        static_cast<const uint4*>(o), static_cast<uint4*>(p.out), p.B, p.Hq, p.S, cpr);
  } else {
    unpermute_kernel<T, T><<<grid_for(rows * p.D, 256), 256, 0, st>>>(static_cast<const T*>(o), static_cast<T*>(p.out),
                                                                       p.B, p.Hq, p.S, p.D);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void launch_prep(const Params& p, DType t, void* q_out, cudaStream_t s) {
  switch (t) {
    case DType::F32: prep_typed<float>(p, q_out, s); break;
    case DType::F16: prep_typed<__half>(p, q_out, s); break;
    case DType::BF16: prep_typed<__nv_bfloat16>(p, q_out, s); break;
    default: throw Error(std::string("internal: cached attention prep got dtype ") + dtype_name(t));
  }
}

void launch_unpermute(const Params& p, DType t, const void* o, cudaStream_t s) {
  switch (t) {
    case DType::F32: unpermute_typed<float>(p, o, s); break;
    case DType::F16: unpermute_typed<__half>(p, o, s); break;
    case DType::BF16: unpermute_typed<__nv_bfloat16>(p, o, s); break;
    default: throw Error(std::string("internal: cached attention unpermute got dtype ") + dtype_name(t));
  }
}

}  // namespace shardrt::cuda::cached
