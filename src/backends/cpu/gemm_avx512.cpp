// fp32 GEMM with AVX-512 for CPUs that have it (the rest of the build targets x86-64-v3, so
// this file's functions carry their own target attribute and run only after a CPU check).
//
// Why not OpenBLAS here: the distribution's OpenBLAS picks its Haswell (AVX2) kernels on
// CPUs it does not know (recent AMD EPYC among them), which halves the FMA width, and its
// own thread pool competes with the OpenMP pool the other kernels use. This GEMM runs on
// the OpenMP pool through parallel_for (so a GEMM inside a parallel region, e.g. one item
// of a batch, stays on its thread).
//
// Layout: Goto/BLIS blocking with row-major C and vectors along N. The micro-kernel keeps
// an 8 x 48 tile of C in 24 zmm registers; per k it loads 3 vectors of packed B and
// broadcasts 8 values of packed A. Loops: jc (NC columns) -> pc (KC of K; B block packed,
// ~KC*NC*4 bytes stays in L2) -> ic (MC rows; A block packed) -> ir (one 8-row A
// micro-panel, in L1) -> jr (48-column B micro-panels streamed from L2).
#include "backends/cpu/gemm_avx512.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backends/cpu/cpu_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace shardrt::cpu {

// Everything from here to the pop runs only after have_avx512_gemm() said yes.
#pragma GCC push_options
#pragma GCC target("avx512f")

namespace {

constexpr int64_t MR = 8;
constexpr int64_t NR = 48;
constexpr int64_t KC = 256;  // B micro-panel 48 KiB is streamed; A micro-panel 8 KiB in L1
constexpr int64_t NC = 768;  // B block KC x NC = 768 KiB: within the 1 MiB L2 of one core
constexpr int64_t MC = 192;  // A block MC x KC = 192 KiB

struct AlignedBuf {
  float* p = nullptr;
  size_t cap = 0;
  ~AlignedBuf() { std::free(p); }
  float* get(size_t n) {
    if (n > cap) {
      std::free(p);
      cap = (n + 15) / 16 * 16;
      p = static_cast<float*>(std::aligned_alloc(64, cap * sizeof(float)));
      if (!p) throw std::bad_alloc();
    }
    return p;
  }
};

// Packs op(A)[i0:i0+mc, p0:p0+kc] into MR-row micro-panels: panel r holds, for each k, MR
// consecutive values (rows past mc are zero).
void pack_a(bool ta, const float* A, int64_t lda, int64_t i0, int64_t mc, int64_t p0, int64_t kc, float* dst) {
  for (int64_t r0 = 0; r0 < mc; r0 += MR) {
    const int64_t mr = std::min(MR, mc - r0);
    float* d = dst + r0 * kc;
    if (!ta) {
      for (int64_t i = 0; i < mr; ++i) {
        const float* src = A + (i0 + r0 + i) * lda + p0;
        for (int64_t k = 0; k < kc; ++k) d[k * MR + i] = src[k];
      }
      for (int64_t i = mr; i < MR; ++i)
        for (int64_t k = 0; k < kc; ++k) d[k * MR + i] = 0.f;
    } else {
      // op(A)[i][k] = A[k][i]: each k gives mr consecutive values.
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = A + (p0 + k) * lda + i0 + r0;
        int64_t i = 0;
        for (; i < mr; ++i) d[k * MR + i] = src[i];
        for (; i < MR; ++i) d[k * MR + i] = 0.f;
      }
    }
  }
}

// Packs op(B)[p0:p0+kc, j0:j0+nc] into NR-column micro-panels: panel c holds, for each k,
// NR consecutive values (columns past nc are zero).
void pack_b(bool tb, const float* B, int64_t ldb, int64_t p0, int64_t kc,
                                               int64_t j0, int64_t nc, float* dst) {
  for (int64_t c0 = 0; c0 < nc; c0 += NR) {
    const int64_t nr = std::min(NR, nc - c0);
    float* d = dst + c0 * kc;
    if (!tb) {
      if (nr == NR) {
        for (int64_t k = 0; k < kc; ++k) {
          const float* src = B + (p0 + k) * ldb + j0 + c0;
          _mm512_store_ps(d + k * NR, _mm512_loadu_ps(src));
          _mm512_store_ps(d + k * NR + 16, _mm512_loadu_ps(src + 16));
          _mm512_store_ps(d + k * NR + 32, _mm512_loadu_ps(src + 32));
        }
      } else {
        for (int64_t k = 0; k < kc; ++k) {
          const float* src = B + (p0 + k) * ldb + j0 + c0;
          int64_t j = 0;
          for (; j < nr; ++j) d[k * NR + j] = src[j];
          for (; j < NR; ++j) d[k * NR + j] = 0.f;
        }
      }
    } else {
      // op(B)[k][j] = B[j][k]: read each of the nr rows of B contiguously along k.
      for (int64_t j = 0; j < nr; ++j) {
        const float* src = B + (j0 + c0 + j) * ldb + p0;
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = src[k];
      }
      for (int64_t j = nr; j < NR; ++j)
        for (int64_t k = 0; k < kc; ++k) d[k * NR + j] = 0.f;
    }
  }
}

inline __mmask16 tail_mask(int64_t n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }

// C[0:mr, 0:nr] = alpha * Ap·Bp + beta * C (beta == 0: C is not read). Ap: kc x MR, Bp: kc x NR.
void micro_kernel(int64_t kc, const float* __restrict Ap,
                                                     const float* __restrict Bp, float* C, int64_t ldc,
                                                     int64_t mr, int64_t nr, float alpha, float beta) {
  __m512 c0[MR], c1[MR], c2[MR];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) c0[i] = c1[i] = c2[i] = _mm512_setzero_ps();
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_load_ps(Bp), b1 = _mm512_load_ps(Bp + 16), b2 = _mm512_load_ps(Bp + 32);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(Ap[i]);
      c0[i] = _mm512_fmadd_ps(a, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(a, b1, c1[i]);
      c2[i] = _mm512_fmadd_ps(a, b2, c2[i]);
    }
    Ap += MR;
    Bp += NR;
  }
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  const __mmask16 m0 = tail_mask(nr), m1 = tail_mask(nr - 16), m2 = tail_mask(nr - 32);
  auto store = [&](float* p, __mmask16 m, __m512 acc) {
    __m512 r = _mm512_mul_ps(acc, va);
    if (beta == 1.f) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, p));
    else if (beta != 0.f) r = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, p), r);
    _mm512_mask_storeu_ps(p, m, r);
  };
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    if (i >= mr) break;
    float* row = C + i * ldc;
    store(row, m0, c0[i]);
    store(row + 16, m1, c1[i]);
    store(row + 32, m2, c2[i]);
  }
}

// One thread's share: C[i0:i1, j0:j1].
void gemm_block(bool ta, bool tb, int64_t i0, int64_t i1, int64_t j0, int64_t j1, int64_t K, float alpha,
                const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  static thread_local AlignedBuf abuf, bbuf;
  const int64_t kc_max = std::min(KC, K);
  float* bp = bbuf.get(size_t(kc_max * ((std::min(NC, j1 - j0) + NR - 1) / NR * NR)));
  float* ap = abuf.get(size_t(kc_max * ((std::min(MC, i1 - i0) + MR - 1) / MR * MR)));
  for (int64_t jc = j0; jc < j1; jc += NC) {
    const int64_t nc = std::min(NC, j1 - jc);
    for (int64_t pc = 0; pc < K; pc += KC) {
      const int64_t kc = std::min(KC, K - pc);
      const float b_eff = pc == 0 ? beta : 1.f;
      pack_b(tb, B, ldb, pc, kc, jc, nc, bp);
      for (int64_t ic = i0; ic < i1; ic += MC) {
        const int64_t mc = std::min(MC, i1 - ic);
        pack_a(ta, A, lda, ic, mc, pc, kc, ap);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const float* a = ap + ir * kc;
          for (int64_t jr = 0; jr < nc; jr += NR)
            micro_kernel(kc, a, bp + jr * kc, C + (ic + ir) * ldc + jc + jr, ldc, std::min(MR, mc - ir),
                         std::min(NR, nc - jr), alpha, b_eff);
        }
      }
    }
  }
}

}  // namespace

void gemm_f32_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  // Split the output over the threads: by column ranges (multiples of NR) when N is wide
  // enough, else by row ranges (multiples of MR). Each thread packs its own operands.
  int nt = 1;
#ifdef _OPENMP
  if (!omp_in_parallel()) nt = omp_get_max_threads();
#endif
  const double flops = double(M) * double(N) * double(K);
  if (flops < 2.0e5) nt = 1;  // a parallel region costs a few microseconds
  const int64_t npan = (N + NR - 1) / NR, mpan = (M + MR - 1) / MR;
  int64_t tn = std::min<int64_t>(nt, npan);
  int64_t tm = std::max<int64_t>(1, std::min<int64_t>(nt / std::max<int64_t>(tn, 1), mpan));
  // Few column panels but many rows: rows split better (e.g. N = 64 attention outputs).
  if (npan < 2 * nt && mpan >= 2 * nt) { tn = 1; tm = std::min<int64_t>(nt, mpan); }
  const int64_t tasks = tn * tm;
  if (tasks <= 1) {
    gemm_block(trans_a, trans_b, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  parallel_for(tasks, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) {
      const int64_t ti = t / tn, tj = t % tn;
      const int64_t pj0 = npan * tj / tn, pj1 = npan * (tj + 1) / tn;
      const int64_t pi0 = mpan * ti / tm, pi1 = mpan * (ti + 1) / tm;
      const int64_t j0 = pj0 * NR, j1 = std::min(N, pj1 * NR);
      const int64_t i0 = pi0 * MR, i1 = std::min(M, pi1 * MR);
      if (i0 < i1 && j0 < j1) gemm_block(trans_a, trans_b, i0, i1, j0, j1, K, alpha, A, lda, B, ldb, beta, C, ldc);
    }
  });
}

#pragma GCC pop_options

bool have_avx512_gemm() {
  static const bool ok = [] {
    const char* off = std::getenv("SHARDRT_NO_AVX512_GEMM");
    return __builtin_cpu_supports("avx512f") && !(off && *off && std::strcmp(off, "0") != 0);
  }();
  return ok;
}

}  // namespace shardrt::cpu
