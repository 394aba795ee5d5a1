// The tensor-core shardrt.Attention path for fp16/bf16 (FlashAttention-2 style): one CTA
// per (64 query rows, head, batch), 4 warps of 16 query rows each. K and V tiles of 64 keys
// stream through shared memory with cp.async double buffering, in one pass; S = Q·K^T and
// O += P·V run as mma.sync m16n8k16 (operands through ldmatrix, fp32 accumulators), with
// the online softmax (running max and sum per row) in fp32 registers. With `causal`, tiles
// no row of the block can see are never loaded, and blocks with the most tiles start first.
#include <atomic>
#include <cstdint>

#include "backends/cuda/attention_common.cuh"

namespace shardrt::cuda::attn {

namespace {

constexpr int kBr = 64;        // query rows per CTA
constexpr int kBc = 64;        // keys per tile
constexpr int kThreads = 128;  // 4 warps x 16 rows

// Shared-memory rows are padded by 8 elements (16 bytes): the 8 row addresses one ldmatrix
// reads then fall on 8 different 16-byte bank groups instead of one.
template <int D> constexpr int row_ld() { return D + 8; }
static_assert(kBr == kBc, "load_tile moves 64-row tiles of Q, K and V alike");
template <int D> constexpr size_t smem_bytes() { return size_t(kBr + 4 * kBc) * row_ld<D>() * 2; }  // Q, 2K, 2V

__device__ __forceinline__ float neg_inf() { return -__int_as_float(0x7f800000); }

// 2^x with the hardware approximation (relative error ~2^-22; 2^-inf = 0), what exp2f
// becomes under fast-math, without exp2f's denormal range handling.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy; with valid == false the destination is zero-filled and
// nothing is read (src-size 0).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool valid) {
  const int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c (16x8 fp32) += a (16x16) * b (16x8).
template <class T> __device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one 32-bit register of T pairs (lo: the lower column).
template <class T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Rows [row0, row0 + 64) of a [rows, dr] matrix into a padded shared tile of D columns
// (dr <= D, a multiple of 8: the head size; columns past it are zeros, which leave Q·K^T and
// the first dr columns of P·V unchanged); rows >= limit become zeros (keys past Skv must
// not bring garbage into P·V: 0 * NaN is NaN).
template <class T, int D>
__device__ __forceinline__ void load_tile(T* dst, const T* src, int row0, int limit, int dr) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per shared row
  const int real = dr / 8;        // of which the matrix has
  for (int c = threadIdx.x; c < kBr * kChunks; c += kThreads) {
    const int r = c / kChunks, cc = c % kChunks;
    const bool valid = row0 + r < limit && cc < real;
    const T* g = valid ? src + int64_t(row0 + r) * dr + cc * 8 : src;
    cp_async16(smem_addr(dst + r * row_ld<D>() + cc * 8), g, valid);
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) flash_kernel(const Params p) {
  static_assert(D % 16 == 0 && D <= 256, "head size must be a multiple of 16");
  constexpr int LD = row_ld<D>();
  constexpr int KC = D / 16;  // 16-wide slices of the head
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + kBr * LD;
  T* sV = sK + 2 * kBc * LD;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  // Reversed: under causal the last query blocks carry the most tiles; start them first.
  const int q0 = int(gridDim.x - 1 - blockIdx.x) * kBr;
  const int h = blockIdx.y, b = blockIdx.z;
  const int64_t bh = int64_t(b) * p.Hq + h;
  const int64_t kvh = int64_t(b) * p.Hkv + h / p.group;
  const int dr = p.D;  // the head size in memory (<= D, the compute width)
  const T* Q = static_cast<const T*>(p.q) + bh * p.Sq * dr;
  const T* K = static_cast<const T*>(p.k) + kvh * p.Skv * dr;
  const T* V = static_cast<const T*>(p.v) + kvh * p.Skv * dr;
  T* O = static_cast<T*>(p.o) + bh * p.Sq * dr;

  int n_tiles = (p.Skv + kBc - 1) / kBc;
  if (p.causal) {
    // The highest key the block's last real row may see.
    const int64_t last_row = (q0 + kBr < p.Sq ? q0 + kBr : p.Sq) - 1;
    const int64_t lim = last_row + p.causal_off;
    if (lim < 0) n_tiles = 0;
    else if (lim / kBc + 1 < n_tiles) n_tiles = int(lim / kBc + 1);
  }
  if (n_tiles == 0) {  // no row of the block sees a key: zeros (block-uniform exit)
    constexpr int kChunks = D / 8;
    for (int c = tid; c < kBr * kChunks; c += kThreads) {
      const int r = c / kChunks, cc = c % kChunks;
      if (q0 + r < p.Sq && cc < dr / 8) *reinterpret_cast<uint4*>(O + int64_t(q0 + r) * dr + cc * 8) = make_uint4(0, 0, 0, 0);
    }
    return;
  }

  load_tile<T, D>(sQ, Q, q0, p.Sq, dr);
  load_tile<T, D>(sK, K, 0, p.Skv, dr);
  cp_async_commit();
  load_tile<T, D>(sV, V, 0, p.Skv, dr);
  cp_async_commit();
  cp_async_wait<1>();  // Q and K tile 0 landed (V tile 0 may be in flight)
  __syncthreads();

  // This warp's 16 query rows as A fragments, kept in registers for the whole pass.
  uint32_t qf[KC][4];
#pragma unroll
  for (int kc = 0; kc < KC; ++kc)
    ldmatrix_x4(qf[kc], smem_addr(sQ + (warp * 16 + (lane & 15)) * LD + kc * 16 + (lane >> 4) * 8));

  float o[D / 8][4];
#pragma unroll
  for (int db = 0; db < D / 8; ++db) o[db][0] = o[db][1] = o[db][2] = o[db][3] = 0.f;
  float m[2] = {neg_inf(), neg_inf()};  // running max (exp2 domain) of rows ra and ra + 8
  float l[2] = {0.f, 0.f};              // this thread's share of the running sums
  const int64_t ra = q0 + warp * 16 + (lane >> 2);  // accumulator rows: ra (c0, c1), ra + 8 (c2, c3)
  const int cq = 2 * (lane & 3);                    // accumulator columns cq, cq + 1 within an 8-block

  for (int kt = 0; kt < n_tiles; ++kt) {
    const int buf = kt & 1;
    const T* cK = sK + buf * kBc * LD;
    const T* cV = sV + buf * kBc * LD;
    // Next K tile into the other buffer (its last readers passed the previous iteration's
    // barriers). Always commit, possibly an empty group, so the wait counts stay fixed.
    if (kt + 1 < n_tiles) load_tile<T, D>(sK + (buf ^ 1) * kBc * LD, K, (kt + 1) * kBc, p.Skv, dr);
    cp_async_commit();

    // S = Q K^T: 16 rows x 64 keys per warp, as 8 blocks of 8 keys.
    float s[8][4];
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) s[nb][0] = s[nb][1] = s[nb][2] = s[nb][3] = 0.f;
#pragma unroll
    for (int np = 0; np < 4; ++np)
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) {
        // Matrices: keys np*16+[0,8) x d [0,8) and [8,16), then keys np*16+[8,16) likewise:
        // B fragments (b0, b1) of key blocks 2np and 2np+1.
        uint32_t kb[4];
        ldmatrix_x4(kb, smem_addr(cK + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kc * 16 + ((lane >> 3) & 1) * 8));
        mma16816<T>(s[2 * np], qf[kc], kb[0], kb[1]);
        mma16816<T>(s[2 * np + 1], qf[kc], kb[2], kb[3]);
      }

    // Scale into the exp2 domain; mask keys past Skv, past the causal limit, or by Mask.
    const int k0 = kt * kBc;
#pragma unroll
    for (int nb = 0; nb < 8; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] *= p.scale_log2;
    const bool edge = k0 + kBc > p.Skv || (p.causal && k0 + kBc - 1 > q0 + p.causal_off);
    if (edge || p.mask_kind != kNoMask) {
#pragma unroll
      for (int nb = 0; nb < 8; ++nb)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t i = e < 2 ? ra : ra + 8;
          const int64_t j = k0 + nb * 8 + cq + (e & 1);
          if (j >= p.Skv || (p.causal && j > i + p.causal_off)) s[nb][e] = neg_inf();
          else if (p.mask_kind != kNoMask && i < p.Sq) s[nb][e] += mask_term(p, b, h, i, j);
        }
    }

    // Online softmax: new row maxima over the quad that shares each row.
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      mx[0] = fmaxf(mx[0], fmaxf(s[nb][0], s[nb][1]));
      mx[1] = fmaxf(mx[1], fmaxf(s[nb][2], s[nb][3]));
    }
    float base[2], alpha[2], rs[2] = {0.f, 0.f};
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      // A row with nothing visible yet keeps max -inf; subtracting 0 keeps exp2 at 0, not NaN.
      base[r] = mx[r] == neg_inf() ? 0.f : mx[r];
      alpha[r] = fast_exp2(m[r] - base[r]);
      m[r] = mx[r];
    }
#pragma unroll
    for (int nb = 0; nb < 8; ++nb) {
      s[nb][0] = fast_exp2(s[nb][0] - base[0]);
      s[nb][1] = fast_exp2(s[nb][1] - base[0]);
      s[nb][2] = fast_exp2(s[nb][2] - base[1]);
      s[nb][3] = fast_exp2(s[nb][3] - base[1]);
      rs[0] += s[nb][0] + s[nb][1];
      rs[1] += s[nb][2] + s[nb][3];
    }
    l[0] = l[0] * alpha[0] + rs[0];
    l[1] = l[1] * alpha[1] + rs[1];
#pragma unroll
    for (int db = 0; db < D / 8; ++db) {
      o[db][0] *= alpha[0];
      o[db][1] *= alpha[0];
      o[db][2] *= alpha[1];
      o[db][3] *= alpha[1];
    }
    // P as A fragments: the accumulators of key blocks 2kc and 2kc+1 are exactly the A
    // layout of keys [16kc, 16kc+16) (rounded to T, as FlashAttention does).
    uint32_t pf[4][4];
#pragma unroll
    for (int kc = 0; kc < 4; ++kc) {
      pf[kc][0] = pack2<T>(s[2 * kc][0], s[2 * kc][1]);
      pf[kc][1] = pack2<T>(s[2 * kc][2], s[2 * kc][3]);
      pf[kc][2] = pack2<T>(s[2 * kc + 1][0], s[2 * kc + 1][1]);
      pf[kc][3] = pack2<T>(s[2 * kc + 1][2], s[2 * kc + 1][3]);
    }

    cp_async_wait<1>();  // V tile kt landed (K tile kt+1 may be in flight)
    __syncthreads();
    if (kt + 1 < n_tiles) load_tile<T, D>(sV + (buf ^ 1) * kBc * LD, V, (kt + 1) * kBc, p.Skv, dr);
    cp_async_commit();

    // O += P V: V is [key][d] in shared memory; ldmatrix.trans gives the B fragments.
#pragma unroll
    for (int kc = 0; kc < 4; ++kc)
#pragma unroll
      for (int dp = 0; dp < D / 16; ++dp) {
        // Matrices: keys kc*16+[0,8) and [8,16) x d dp*16+[0,8), then the same keys x d +8.
        uint32_t vb[4];
        ldmatrix_x4_trans(vb, smem_addr(cV + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8));
        mma16816<T>(o[2 * dp], pf[kc], vb[0], vb[1]);
        mma16816<T>(o[2 * dp + 1], pf[kc], vb[2], vb[3]);
      }

    cp_async_wait<1>();  // K tile kt+1 landed (V tile kt+1 may be in flight)
    __syncthreads();
  }

  // Row sums over the quad; rows that saw nothing (l == 0) give zeros.
  float inv[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    inv[r] = l[r] > 0.f ? 1.f / l[r] : 0.f;
  }
  // Stage the warp's 16 output rows in its own rows of sQ (only this warp read them), then
  // store 16-byte chunks, coalesced.
  T* sO = sQ + warp * 16 * LD;
  const int rr = lane >> 2;
#pragma unroll
  for (int db = 0; db < D / 8; ++db) {
    *reinterpret_cast<uint32_t*>(sO + rr * LD + db * 8 + cq) = pack2<T>(o[db][0] * inv[0], o[db][1] * inv[0]);
    *reinterpret_cast<uint32_t*>(sO + (rr + 8) * LD + db * 8 + cq) = pack2<T>(o[db][2] * inv[1], o[db][3] * inv[1]);
  }
  __syncwarp();
  constexpr int kChunks = D / 8;
  for (int c = lane; c < 16 * kChunks; c += 32) {
    const int r = c / kChunks, cc = c % kChunks;
    const int64_t row = q0 + warp * 16 + r;
    if (row < p.Sq && cc < dr / 8)
      *reinterpret_cast<uint4*>(O + row * dr + cc * 8) = *reinterpret_cast<const uint4*>(sO + r * LD + cc * 8);
  }
}

template <class T, int D>
void launch_typed(const Params& p, cudaStream_t st) {
  constexpr size_t smem = smem_bytes<D>();
  // Above 48 KiB of dynamic shared memory needs the opt-in, once per device (the eager run
  // that precedes every graph capture sets it, so capture makes no such call).
  static std::atomic<uint64_t> opted_in{0};
  int dev = 0;
  SHARDRT_CUDA_CHECK(cudaGetDevice(&dev));
  const uint64_t bit = dev >= 0 && dev < 64 ? uint64_t(1) << dev : 0;
  if (!bit || !(opted_in.load() & bit)) {
    SHARDRT_CUDA_CHECK(cudaFuncSetAttribute(flash_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    opted_in.fetch_or(bit);
  }
  dim3 grid(unsigned((p.Sq + kBr - 1) / kBr), unsigned(p.Hq), unsigned(p.B));
  flash_kernel<T, D><<<grid, kThreads, smem, st>>>(p);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T>
bool launch_dims(const Params& p, cudaStream_t st) {
  // Head sizes between the compiled widths run at the next one up, zero-padded in shared
  // memory (Stable Diffusion's 40 and 160, for instance).
  if (p.D % 8 != 0) return false;
  if (p.D <= 32) launch_typed<T, 32>(p, st);
  else if (p.D <= 48) launch_typed<T, 48>(p, st);
  else if (p.D <= 64) launch_typed<T, 64>(p, st);
  else if (p.D <= 80) launch_typed<T, 80>(p, st);
  else if (p.D <= 96) launch_typed<T, 96>(p, st);
  else if (p.D <= 128) launch_typed<T, 128>(p, st);
  else if (p.D <= 160) launch_typed<T, 160>(p, st);
  else return false;
  return true;
}

bool aligned16(const void* ptr) { return (reinterpret_cast<uintptr_t>(ptr) & 15) == 0; }

}  // namespace

bool launch_flash(const Params& p, DType t, cudaStream_t s) {
  if (t != DType::F16 && t != DType::BF16) return false;
  if (p.D != p.Dv || p.Sq <= 0 || p.Skv <= 0) return false;
  if (p.Hq > 65535 || p.B > 65535) return false;  // grid y / z limits
  if (!aligned16(p.q) || !aligned16(p.k) || !aligned16(p.v) || !aligned16(p.o)) return false;
  return t == DType::F16 ? launch_dims<__half>(p, s) : launch_dims<__nv_bfloat16>(p, s);
}

}  // namespace shardrt::cuda::attn
