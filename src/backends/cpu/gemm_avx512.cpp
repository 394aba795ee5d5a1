// fp32 GEMM with AVX-512 for CPUs that have it (the rest of the build targets x86-64-v3, so
// this file compiles its kernels under a target pragma and runs them only after a CPU check).
//
// Why not OpenBLAS here: the distribution's OpenBLAS picks its Haswell (AVX2) kernels on
// CPUs it does not know (recent AMD EPYC among them), which halves the FMA width, and its
// own thread pool competes with the OpenMP pool the other kernels use. This GEMM runs on
// the OpenMP pool (so a GEMM inside a parallel region, e.g. one item
// of a batch, stays on its thread).
//
// Layout: BLIS-style blocking with row-major C and vectors along N. The micro-kernel keeps
// an 8 x 48 tile of C in 24 zmm registers; per k it loads 3 vectors of packed B and
// broadcasts 8 values of packed A. op(A) is packed once per call (all K slices, 8-row
// panels); C is cut into tasks (row range x column range) taken dynamically by the threads.
// In a task: for each K slice (KC), for each 48-column B micro-panel (packed into an
// L1-sized buffer while the next panel's source is prefetched), every 8-row A panel.
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
constexpr int64_t KC = 256;  // B micro-panel KC x NR = 48 KiB, mostly in L1
constexpr int64_t NC = 768;  // widest column range of one task
constexpr int64_t MC = 192;  // rows a task packs itself when op(A) is not packed once

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
    if (!ta && mr == MR) {
      const float* src = A + (i0 + r0) * lda + p0;
      for (int64_t k = 0; k < kc; ++k)
        for (int64_t i = 0; i < MR; ++i) d[k * MR + i] = src[i * lda + k];
    } else if (!ta) {
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
#pragma GCC unroll 4
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

// The plan of one GEMM: C is cut into tasks of (row panels) x (column panels), handed to
// the threads dynamically (a core taken away by another process then costs only its share
// of the unfinished tasks, not a whole static half). op(A) is packed once for all tasks
// when it fits in kSharedA floats; otherwise each task packs its rows per K slice.
constexpr int64_t kSharedA = int64_t(8) << 20;

struct Plan {
  bool ta, tb;
  int64_t M, N, K;
  float alpha, beta;
  const float* A;
  int64_t lda;
  const float* B;
  int64_t ldb;
  float* C;
  int64_t ldc;
  const GemmEpilogue* epi;
  int64_t Mp;               // M rounded up to MR
  const float* a_shared;    // packed op(A), K slice pc at pc * Mp, or null
  int64_t mpan, npan, rows_per, cols_per, mtasks, ntasks;
};

// Prefetches (into L2) part `part` of `parts` of the source lines of op(B)'s micro-panel
// [p0, p0+kc) x [c0, c0+nr): the packing of the next panel then reads from cache instead of
// stalling on DRAM, its load overlapped with the current panel's FMAs.
inline void prefetch_b_part(const Plan& p, int64_t p0, int64_t kc, int64_t c0, int64_t nr, int64_t part,
                            int64_t parts) {
  if (!p.tb) {
    const int64_t r0 = kc * part / parts, r1 = kc * (part + 1) / parts;
    for (int64_t k = r0; k < r1; ++k) {
      const char* row = reinterpret_cast<const char*>(p.B + (p0 + k) * p.ldb + c0);
      for (int64_t off = 0; off < nr * 4; off += 64) _mm_prefetch(row + off, _MM_HINT_T1);
    }
  } else {
    const int64_t r0 = nr * part / parts, r1 = nr * (part + 1) / parts;
    for (int64_t j = r0; j < r1; ++j) {
      const char* row = reinterpret_cast<const char*>(p.B + (c0 + j) * p.ldb + p0);
      for (int64_t off = 0; off < kc * 4; off += 64) _mm_prefetch(row + off, _MM_HINT_T1);
    }
  }
}

// One task: C[i0:i1, j0:j1]. BLIS order inside: for each K slice, for each 48-column B
// micro-panel (packed into an L1-sized buffer), every 8-row A micro-panel of the task.
void run_task(const Plan& p, int64_t t) {
  static thread_local AlignedBuf abuf, bbuf;
  const int64_t ti = t / p.ntasks, tj = t % p.ntasks;
  const int64_t i0 = ti * p.rows_per * MR, i1 = std::min(p.M, (ti + 1) * p.rows_per * MR);
  const int64_t j0 = tj * p.cols_per * NR, j1 = std::min(p.N, (tj + 1) * p.cols_per * NR);
  if (i0 >= i1 || j0 >= j1) return;
  const int64_t kc_max = std::min(KC, p.K);
  float* bp = bbuf.get(size_t(kc_max * NR));
  float* ap_own = p.a_shared ? nullptr : abuf.get(size_t(kc_max * ((i1 - i0 + MR - 1) / MR * MR)));
  const int64_t row_panels = (i1 - i0 + MR - 1) / MR;
  for (int64_t pc = 0; pc < p.K; pc += KC) {
    const int64_t kc = std::min(KC, p.K - pc);
    const float b_eff = pc == 0 ? p.beta : 1.f;
    const float* ap;
    if (p.a_shared) {
      ap = p.a_shared + pc * p.Mp + i0 * kc;
    } else {
      pack_a(p.ta, p.A, p.lda, i0, i1 - i0, pc, kc, ap_own);
      ap = ap_own;
    }
    for (int64_t jr = j0; jr < j1; jr += NR) {
      const int64_t nr = std::min(NR, j1 - jr);
      pack_b(p.tb, p.B, p.ldb, pc, kc, jr, nr, bp);
      // The next panel of this task: the next columns, else the first of the next K slice.
      int64_t np0 = pc, nj = jr + NR, nkc = kc;
      if (nj >= j1) { np0 = pc + KC; nj = j0; nkc = std::min(KC, p.K - np0); }
      const bool pf = np0 < p.K;
      const int64_t nnr = std::min(NR, j1 - nj);
      int64_t part = 0;
      for (int64_t ir = i0; ir < i1; ir += MR, ++part) {
        if (pf) prefetch_b_part(p, np0, nkc, nj, nnr, part, row_panels);
        micro_kernel(kc, ap + (ir - i0) * kc, bp, p.C + ir * p.ldc + jr, p.ldc, std::min(MR, i1 - ir), nr,
                     p.alpha, b_eff);
      }
    }
  }
  if (p.epi && *p.epi) (*p.epi)(i0, i1, j0, j1);
}

}  // namespace

void gemm_f32_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                     const GemmEpilogue* epi) {
  int nt = 1;
#ifdef _OPENMP
  if (!omp_in_parallel()) nt = omp_get_max_threads();
#endif
  const double flops = double(M) * double(N) * double(K);
  if (flops < 4.0e5) nt = 1;  // a parallel region costs a few microseconds
  Plan p{trans_a, trans_b, M, N, K, alpha, beta, A, lda, B, ldb, C, ldc, epi, 0, nullptr, 0, 0, 0, 0, 0, 0};
  p.Mp = (M + MR - 1) / MR * MR;
  p.mpan = p.Mp / MR;
  p.npan = (N + NR - 1) / NR;
  const int64_t max_cols = NC / NR;
  if (nt == 1) {
    p.cols_per = max_cols;
    p.rows_per = p.mpan;
  } else {
    // About 4 tasks per thread: columns first (each task repacks only its B columns).
    const int64_t want = 4 * int64_t(nt);
    p.cols_per = std::clamp<int64_t>(p.npan / want, 1, max_cols);
    const int64_t nch = (p.npan + p.cols_per - 1) / p.cols_per;
    const int64_t mch = nch >= want ? 1 : std::min<int64_t>(p.mpan, (want + nch - 1) / nch);
    p.rows_per = (p.mpan + mch - 1) / mch;
  }
  if (K > KC) {
    // Every K slice rewrites the task's block of C: keep that block (~384 KiB) in L2, or
    // with many rows (M = 512 and a 50k-wide N: a 100 MB C) each slice goes to DRAM again.
    constexpr int64_t c_budget = 96 * 1024;  // floats
    p.cols_per = std::clamp<int64_t>(c_budget / (p.rows_per * MR * NR), 1, p.cols_per);
    if (p.rows_per * MR * p.cols_per * NR > c_budget)
      p.rows_per = std::max<int64_t>(1, c_budget / (p.cols_per * NR * MR));
  }
  const bool share_a = p.Mp * K <= kSharedA;
  if (!share_a) p.rows_per = std::min<int64_t>(p.rows_per, MC / MR);
  p.ntasks = (p.npan + p.cols_per - 1) / p.cols_per;
  p.mtasks = (p.mpan + p.rows_per - 1) / p.rows_per;
  const int64_t tasks = p.ntasks * p.mtasks;

  static thread_local AlignedBuf shared;
  if (share_a) {
    float* ap = shared.get(size_t(p.Mp * K));
    p.a_shared = ap;
    // K slices x row panels; packing is cheap next to the GEMM, split only when large.
    const int64_t kslices = (K + KC - 1) / KC;
    auto pack = [&](int64_t u) {
      const int64_t pc = (u / p.mpan) * KC, r0 = (u % p.mpan) * MR;
      const int64_t kc = std::min(KC, K - pc);
      pack_a(trans_a, A, lda, r0, std::min(MR, M - r0), pc, kc, ap + pc * p.Mp + r0 * kc);
    };
    const int64_t units = kslices * p.mpan;
    if (nt > 1 && p.Mp * K >= (int64_t(1) << 16)) {
#pragma omp parallel for num_threads(nt) schedule(static)
      for (int64_t u = 0; u < units; ++u) pack(u);
    } else {
      for (int64_t u = 0; u < units; ++u) pack(u);
    }
  }
  if (nt == 1 || tasks == 1) {
    for (int64_t t = 0; t < tasks; ++t) run_task(p, t);
    return;
  }
#pragma omp parallel for num_threads(int(std::min<int64_t>(nt, tasks))) schedule(dynamic, 1)
  for (int64_t t = 0; t < tasks; ++t) run_task(p, t);
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
