#include "backends/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <map>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "backends/cpu/cpu_kernels.h"
#ifdef SHARDRT_WITH_DNNL
#include <dnnl.h>
#endif

namespace shardrt::cpu {

namespace {

// OpenBLAS runs a GEMM single-threaded below m*n*k = 65536 * GEMM_MULTITHREAD_THRESHOLD (4);
// below that size a batch is better spread over the cores by item.
constexpr int64_t kSmallGemm = 262144;

CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

// Copies op-less storage of a rows x cols matrix with leading dim ld into packed fp32.
void pack_to_f32(DType t, const void* src, int64_t rows, int64_t cols, int64_t ld, float* dst) {
  const size_t es = dtype_size(t);
  for (int64_t r = 0; r < rows; ++r)
    to_f32(t, static_cast<const char*>(src) + size_t(r * ld) * es, dst + r * cols, cols);
}

template <class T>
void gemm_int(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
              const T* B, int64_t ldb, bool accumulate, T* C, int64_t ldc) {
  parallel_for(M, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, N * K)), [&](int64_t b, int64_t e) {
    std::vector<int64_t> acc(static_cast<size_t>(N));
    for (int64_t i = b; i < e; ++i) {
      std::fill(acc.begin(), acc.end(), 0);
      for (int64_t k = 0; k < K; ++k) {
        int64_t a = int64_t(ta ? A[k * lda + i] : A[i * lda + k]);
        if (a == 0) continue;
        if (tb) {
          for (int64_t j = 0; j < N; ++j) acc[size_t(j)] += a * int64_t(B[j * ldb + k]);
        } else {
          const T* brow = B + k * ldb;
          for (int64_t j = 0; j < N; ++j) acc[size_t(j)] += a * int64_t(brow[j]);
        }
      }
      T* crow = C + i * ldc;
      for (int64_t j = 0; j < N; ++j)
        crow[j] = T(uint64_t(acc[size_t(j)]) + (accumulate ? uint64_t(int64_t(crow[j])) : 0));
    }
  });
}

void scale_c(DType t, int64_t M, int64_t N, float beta, void* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    if (t == DType::F32) {
      float* r = static_cast<float*>(C) + i * ldc;
      for (int64_t j = 0; j < N; ++j) r[j] = beta == 0 ? 0.f : r[j] * beta;
    } else if (t == DType::F64) {
      double* r = static_cast<double*>(C) + i * ldc;
      for (int64_t j = 0; j < N; ++j) r[j] = beta == 0 ? 0.0 : r[j] * beta;
    } else {
      std::vector<float> tmp(static_cast<size_t>(N));
      char* r = static_cast<char*>(C) + size_t(i * ldc) * dtype_size(t);
      if (beta != 0) to_f32(t, r, tmp.data(), N);
      for (auto& v : tmp) v = beta == 0 ? 0.f : v * beta;
      from_f32(t, tmp.data(), r, N);
    }
  }
}

}  // namespace

void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) { scale_c(DType::F32, M, N, beta, C, ldc); return; }
#ifdef SHARDRT_WITH_DNNL
  // oneDNN's JIT sgemm uses the CPU's widest vectors (AVX-512 where present) and the
  // OpenMP pool the other kernels use; the distribution's OpenBLAS may be pinned to AVX2
  // kernels (OPENBLAS_CORETYPE) and runs its own thread pool.
  dnnl_status_t st = dnnl_sgemm(trans_a ? 'T' : 'N', trans_b ? 'T' : 'N', M, N, K, alpha, A,
                                std::max<int64_t>(1, lda), B, std::max<int64_t>(1, ldb), beta, C,
                                std::max<int64_t>(1, ldc));
  if (st == dnnl_success) return;
#endif
  cblas_sgemm(CblasRowMajor, tr(trans_a), tr(trans_b), int(M), int(N), int(K), alpha, A,
              int(std::max<int64_t>(1, lda)), B, int(std::max<int64_t>(1, ldb)), beta, C,
              int(std::max<int64_t>(1, ldc)));
}

void gemm_f32_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                       int64_t ldc, const GemmEpilogue& epi) {
  if (M <= 0 || N <= 0) return;
  gemm_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  if (epi)
    parallel_for(M, std::max<int64_t>(1, 16384 / N), [&](int64_t b, int64_t e) { epi(b, e, 0, N); });
}

void gemm_typed(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
                int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  switch (t) {
    case DType::F32:
      gemm_f32(trans_a, trans_b, M, N, K, alpha, static_cast<const float*>(A), lda,
               static_cast<const float*>(B), ldb, beta, static_cast<float*>(C), ldc);
      return;
    case DType::F64:
      if (K <= 0) { scale_c(t, M, N, beta, C, ldc); return; }
      cblas_dgemm(CblasRowMajor, tr(trans_a), tr(trans_b), int(M), int(N), int(K), alpha,
                  static_cast<const double*>(A), int(std::max<int64_t>(1, lda)),
                  static_cast<const double*>(B), int(std::max<int64_t>(1, ldb)), beta,
                  static_cast<double*>(C), int(std::max<int64_t>(1, ldc)));
      return;
    case DType::F16:
    case DType::BF16: {
      if (K <= 0) { scale_c(t, M, N, beta, C, ldc); return; }
      const int64_t ar = trans_a ? K : M, ac = trans_a ? M : K;
      const int64_t br = trans_b ? N : K, bc = trans_b ? K : N;
      std::vector<float> a(static_cast<size_t>(ar * ac)), b(static_cast<size_t>(br * bc)), c(static_cast<size_t>(M * N));
      pack_to_f32(t, A, ar, ac, lda, a.data());
      pack_to_f32(t, B, br, bc, ldb, b.data());
      if (beta != 0) pack_to_f32(t, C, M, N, ldc, c.data());
      gemm_f32(trans_a, trans_b, M, N, K, alpha, a.data(), ac, b.data(), bc, beta, c.data(), N);
      for (int64_t i = 0; i < M; ++i)
        from_f32(t, c.data() + i * N, static_cast<char*>(C) + size_t(i * ldc) * dtype_size(t), N);
      return;
    }
    case DType::I32:
    case DType::I64: {
      if (alpha != 1.f || (beta != 0.f && beta != 1.f))
        throw std::invalid_argument("integer GEMM supports only alpha = 1 and beta in {0, 1}");
      if (t == DType::I32)
        gemm_int(trans_a, trans_b, M, N, K, static_cast<const int32_t*>(A), lda,
                 static_cast<const int32_t*>(B), ldb, beta != 0, static_cast<int32_t*>(C), ldc);
      else
        gemm_int(trans_a, trans_b, M, N, K, static_cast<const int64_t*>(A), lda,
                 static_cast<const int64_t*>(B), ldb, beta != 0, static_cast<int64_t*>(C), ldc);
      return;
    }
    default:
      throw std::invalid_argument(std::string("GEMM does not support dtype ") + dtype_name(t));
  }
}

void gemm_batched(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const void* A, int64_t lda, const int64_t* a_off, const void* B,
                  int64_t ldb, const int64_t* b_off, float beta, void* C, int64_t ldc,
                  const int64_t* c_off, int64_t count) {
  if (count <= 0 || M <= 0 || N <= 0) return;
  const size_t es = dtype_size(t);
  if (t == DType::F16 || t == DType::BF16) {
    if (K <= 0) {
      for (int64_t i = 0; i < count; ++i) scale_c(t, M, N, beta, static_cast<char*>(C) + size_t(c_off[i]) * es, ldc);
      return;
    }
    // Convert each distinct operand matrix once (broadcast operands repeat offsets), run the
    // fp32 batch on packed copies, convert the results back.
    const int64_t ar = trans_a ? K : M, ac = trans_a ? M : K;
    const int64_t br = trans_b ? N : K, bc = trans_b ? K : N;
    auto pack_unique = [&](const void* base, const int64_t* off, int64_t rows, int64_t cols,
                           int64_t ld, std::vector<float>& buf, std::vector<int64_t>& newoff) {
      std::map<int64_t, int64_t> seen;
      newoff.resize(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) {
        auto [it, fresh] = seen.emplace(off[i], int64_t(seen.size()) * rows * cols);
        newoff[size_t(i)] = it->second;
      }
      buf.resize(seen.size() * size_t(rows * cols));
      std::vector<std::pair<int64_t, int64_t>> items(seen.begin(), seen.end());
      parallel_for(int64_t(items.size()), 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          pack_to_f32(t, static_cast<const char*>(base) + size_t(items[size_t(i)].first) * es, rows,
                      cols, ld, buf.data() + items[size_t(i)].second);
      });
    };
    std::vector<float> a, b, c(static_cast<size_t>(count * M * N));
    std::vector<int64_t> ao, bo, co(static_cast<size_t>(count));
    pack_unique(A, a_off, ar, ac, lda, a, ao);
    pack_unique(B, b_off, br, bc, ldb, b, bo);
    for (int64_t i = 0; i < count; ++i) co[size_t(i)] = i * M * N;
    if (beta != 0)
      for (int64_t i = 0; i < count; ++i)
        pack_to_f32(t, static_cast<const char*>(C) + size_t(c_off[i]) * es, M, N, ldc, c.data() + co[size_t(i)]);
    gemm_batched(DType::F32, trans_a, trans_b, M, N, K, alpha, a.data(), ac, ao.data(), b.data(), bc,
                 bo.data(), beta, c.data(), N, co.data(), count);
    parallel_for(count, 1, [&](int64_t bb, int64_t e) {
      for (int64_t i = bb; i < e; ++i)
        for (int64_t r = 0; r < M; ++r)
          from_f32(t, c.data() + co[size_t(i)] + r * N,
                   static_cast<char*>(C) + size_t(c_off[i] + r * ldc) * es, N);
    });
    return;
  }
  auto one = [&](int64_t i) {
    gemm_typed(t, trans_a, trans_b, M, N, K, alpha,
               static_cast<const char*>(A) + size_t(a_off[i]) * es, lda,
               static_cast<const char*>(B) + size_t(b_off[i]) * es, ldb, beta,
               static_cast<char*>(C) + size_t(c_off[i]) * es, ldc);
  };
  const int64_t work = M * N * std::max<int64_t>(K, 1);
  // oneDNN's sgemm runs on the OpenMP pool (single-threaded inside a parallel region): a
  // batch of at least as many items as threads goes item by item over the cores.
  int nt = 1;
#ifdef _OPENMP
  nt = omp_get_max_threads();
#endif
#ifdef SHARDRT_WITH_DNNL
  const bool by_item = t == DType::F32 && count >= nt;
#else
  const bool by_item = false;
#endif
  if (count == 1 || (!by_item && work > kSmallGemm && (t == DType::F32 || t == DType::F64))) {
    for (int64_t i = 0; i < count; ++i) one(i);
  } else {
    parallel_for(count, std::max<int64_t>(1, 32768 / work), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) one(i);
    });
  }
}

bool matmul_dims(const Dims& a, const Dims& b, bool trans_a, bool trans_b, Dims& out,
                 std::string* err) {
  auto bad = [&](const std::string& m) { if (err) *err = m; return false; };
  if (a.empty() || b.empty()) return bad("MatMul operands must have rank >= 1");
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  const int64_t M = a1 ? 1 : (trans_a ? a.back() : a[a.size() - 2]);
  const int64_t Ka = a1 ? a[0] : (trans_a ? a[a.size() - 2] : a.back());
  const int64_t Kb = b1 ? b[0] : (trans_b ? b.back() : b[b.size() - 2]);
  const int64_t N = b1 ? 1 : (trans_b ? b[b.size() - 2] : b.back());
  if (Ka != Kb)
    return bad("inner dimensions differ: " + dims_str(a) + " x " + dims_str(b));
  const size_t ab = a1 ? 0 : a.size() - 2, bb = b1 ? 0 : b.size() - 2;
  const size_t r = std::max(ab, bb);
  out.assign(r, 1);
  for (size_t i = 0; i < r; ++i) {
    int64_t x = i + ab >= r ? a[i + ab - r] : 1, y = i + bb >= r ? b[i + bb - r] : 1;
    if (x != y && x != 1 && y != 1)
      return bad("batch dimensions do not broadcast: " + dims_str(a) + " x " + dims_str(b));
    out[i] = x == 1 ? y : x;
  }
  if (!a1) out.push_back(M);
  if (!b1) out.push_back(N);
  return true;
}

void matmul_nd(const Tensor& A, const Tensor& B, Tensor& Y, bool trans_a, bool trans_b) {
  const Dims& a = A.dims();
  const Dims& b = B.dims();
  Dims yd;
  std::string err;
  if (!matmul_dims(a, b, trans_a, trans_b, yd, &err)) throw std::invalid_argument(err);
  if (yd != Y.dims()) throw std::invalid_argument("matmul output has dims " + dims_str(Y.dims()) + ", expected " + dims_str(yd));
  const DType t = A.dtype();
  if (B.dtype() != t || Y.dtype() != t) throw std::invalid_argument("matmul operands differ in dtype");
  const bool a1 = a.size() == 1, b1 = b.size() == 1;
  if (a1) trans_a = false;
  if (b1) trans_b = false;
  const int64_t arows = a1 ? 1 : a[a.size() - 2], acols = a.back();
  const int64_t brows = b1 ? b[0] : b[b.size() - 2], bcols = b1 ? 1 : b.back();
  const int64_t M = trans_a ? acols : arows, K = trans_a ? arows : acols;
  const int64_t N = trans_b ? brows : bcols;
  const Dims abatch(a.begin(), a.end() - (a1 ? 1 : 2)), bbatch(b.begin(), b.end() - (b1 ? 1 : 2));
  const int64_t na = numel(abatch), nb = numel(bbatch);
  if (Y.numel() == 0) return;
  // B shared by every batch item and A's rows contiguous: one GEMM with the batch folded in M.
  if (nb == 1 && !trans_a) {
    gemm_typed(t, false, trans_b, na * M, N, K, 1.f, A.raw(), acols, B.raw(), bcols, 0.f, Y.raw(), N);
    return;
  }
  const Dims ybatch(yd.begin(), yd.begin() + (yd.size() - (a1 ? 0 : 1) - (b1 ? 0 : 1)));
  const int64_t count = numel(ybatch);
  // Element strides of each operand's batch dims aligned to Y's (0 where broadcast).
  const size_t r = ybatch.size();
  std::vector<int64_t> sa(r, 0), sb(r, 0);
  {
    int64_t s = arows * acols;
    for (size_t i = abatch.size(); i-- > 0;) { if (abatch[i] != 1) sa[r - abatch.size() + i] = s; s *= abatch[i]; }
    s = brows * bcols;
    for (size_t i = bbatch.size(); i-- > 0;) { if (bbatch[i] != 1) sb[r - bbatch.size() + i] = s; s *= bbatch[i]; }
  }
  (void)na;
  std::vector<int64_t> ao(static_cast<size_t>(count)), bo(static_cast<size_t>(count)), co(static_cast<size_t>(count));
  std::vector<int64_t> idx(r, 0);
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < count; ++i) {
    ao[size_t(i)] = oa;
    bo[size_t(i)] = ob;
    co[size_t(i)] = i * M * N;
    for (size_t d = r; d-- > 0;) {
      oa += sa[d];
      ob += sb[d];
      if (++idx[d] < ybatch[d]) break;
      oa -= sa[d] * ybatch[d];
      ob -= sb[d] * ybatch[d];
      idx[d] = 0;
    }
  }
  gemm_batched(t, trans_a, trans_b, M, N, K, 1.f, A.raw(), acols, ao.data(), B.raw(), bcols,
               bo.data(), 0.f, Y.raw(), N, co.data(), count);
}

void to_f32(DType t, const void* src, float* dst, int64_t n) {
  auto run = [&](auto conv) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) dst[i] = conv(i);
    });
  };
  switch (t) {
    case DType::F32: std::copy_n(static_cast<const float*>(src), n, dst); return;
    case DType::F16: { auto p = static_cast<const uint16_t*>(src); run([&](int64_t i) { return half_to_float(p[i]); }); return; }
    case DType::BF16: { auto p = static_cast<const uint16_t*>(src); run([&](int64_t i) { return bf16_to_float(p[i]); }); return; }
    case DType::F64: { auto p = static_cast<const double*>(src); run([&](int64_t i) { return float(p[i]); }); return; }
    case DType::I64: { auto p = static_cast<const int64_t*>(src); run([&](int64_t i) { return float(p[i]); }); return; }
    case DType::I32: { auto p = static_cast<const int32_t*>(src); run([&](int64_t i) { return float(p[i]); }); return; }
    case DType::I8: { auto p = static_cast<const int8_t*>(src); run([&](int64_t i) { return float(p[i]); }); return; }
    case DType::U8:
    case DType::Bool: { auto p = static_cast<const uint8_t*>(src); run([&](int64_t i) { return float(p[i]); }); return; }
    default: throw std::invalid_argument("to_f32: unsupported dtype");
  }
}

void from_f32(DType t, const float* src, void* dst, int64_t n) {
  auto run = [&](auto store) {
    parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) store(i);
    });
  };
  switch (t) {
    case DType::F32: std::copy_n(src, n, static_cast<float*>(dst)); return;
    case DType::F16: { auto p = static_cast<uint16_t*>(dst); run([&](int64_t i) { p[i] = float_to_half(src[i]); }); return; }
    case DType::BF16: { auto p = static_cast<uint16_t*>(dst); run([&](int64_t i) { p[i] = float_to_bf16(src[i]); }); return; }
    case DType::F64: { auto p = static_cast<double*>(dst); run([&](int64_t i) { p[i] = src[i]; }); return; }
    case DType::I64: { auto p = static_cast<int64_t*>(dst); run([&](int64_t i) { p[i] = int64_t(src[i]); }); return; }
    case DType::I32: { auto p = static_cast<int32_t*>(dst); run([&](int64_t i) { p[i] = int32_t(src[i]); }); return; }
    case DType::I8: { auto p = static_cast<int8_t*>(dst); run([&](int64_t i) { p[i] = int8_t(src[i]); }); return; }
    case DType::U8: { auto p = static_cast<uint8_t*>(dst); run([&](int64_t i) { p[i] = uint8_t(src[i]); }); return; }
    case DType::Bool: { auto p = static_cast<uint8_t*>(dst); run([&](int64_t i) { p[i] = src[i] != 0; }); return; }
    default: throw std::invalid_argument("from_f32: unsupported dtype");
  }
}

}  // namespace shardrt::cpu
