// gemm_f32 / gemm_f32_epilogue (oneDNN's sgemm where the build found it, else OpenBLAS)
// against a plain double-precision triple loop: every transpose combination, odd sizes
// around the 8 x 48 register tile and the K slice, padded leading dims, alpha and beta.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <vector>

#include "backends/cpu/gemm.h"

using namespace shardrt;
using namespace shardrt::cpu;

namespace {

struct Case {
  int64_t M, N, K;
  bool ta, tb;
  float alpha, beta;
};

void check(const Case& c, bool with_epilogue) {
  std::mt19937 rng(unsigned(c.M * 131 + c.N * 17 + c.K));
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t lda = (c.ta ? c.M : c.K) + 3, ldb = (c.tb ? c.K : c.N) + 1, ldc = c.N + 2;
  std::vector<float> A(size_t((c.ta ? c.K : c.M) * lda)), B(size_t((c.tb ? c.N : c.K) * ldb)),
      C(size_t(c.M * ldc));
  for (auto& x : A) x = u(rng);
  for (auto& x : B) x = u(rng);
  for (auto& x : C) x = u(rng);
  if (c.beta == 0.f) std::fill(C.begin(), C.end(), std::nanf(""));  // beta 0 must not read C
  const std::vector<float> C0 = C;
  std::atomic<int64_t> covered{0};
  if (with_epilogue) {
    // Epilogue: +1 on each element of the block; blocks must tile C exactly once.
    GemmEpilogue epi = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) C[size_t(i * ldc + j)] += 1.f;
      covered += (i1 - i0) * (j1 - j0);
    };
    gemm_f32_epilogue(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc, epi);
    EXPECT_EQ(covered.load(), c.M * c.N);
  } else {
    gemm_f32(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta, C.data(), ldc);
  }
  double worst = 0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a = c.ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)];
        const double b = c.tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
        s += a * b;
      }
      double ref = c.alpha * s + (c.beta != 0.f ? c.beta * double(C0[size_t(i * ldc + j)]) : 0.0);
      if (with_epilogue) ref += 1.0;
      worst = std::max(worst, std::fabs(ref - double(C[size_t(i * ldc + j)])));
    }
  // fp32 sums of K products of values in [-1, 1]: rounding grows like sqrt(K) * 2^-24 * K
  // at worst; 1e-5 * K covers it with margin for K up to a few thousand.
  EXPECT_LT(worst, 1e-5 * double(c.K) + 1e-6)
      << "M " << c.M << " N " << c.N << " K " << c.K << " ta " << c.ta << " tb " << c.tb;
  // Padding between rows (ldc > N) is never written.
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = c.N; j < ldc; ++j) {
      const float before = C0[size_t(i * ldc + j)], after = C[size_t(i * ldc + j)];
      EXPECT_TRUE(before == after || (std::isnan(before) && std::isnan(after)));
    }
}

}  // namespace

TEST(Gemm, MatchesPlainLoop) {
  const std::vector<Case> cases = {
      {1, 1, 1, false, false, 1.f, 0.f},     {7, 5, 3, false, true, 1.f, 0.f},
      {8, 48, 16, false, false, 1.f, 0.f},   {9, 49, 300, true, false, 0.5f, 1.f},
      {17, 97, 257, true, true, 1.f, -0.7f}, {64, 130, 513, false, true, 2.f, 0.f},
      {130, 200, 70, false, false, 1.f, 1.f}, {33, 1000, 64, true, false, 1.f, 0.f},
      {300, 40, 161, false, false, 1.f, 0.f},
  };
  for (const Case& c : cases) check(c, false);
}

TEST(Gemm, EpilogueCoversEachBlockOnce) {
  const std::vector<Case> cases = {
      {5, 7, 9, false, false, 1.f, 0.f},
      {128, 300, 96, false, true, 1.f, 0.f},
      {40, 1000, 33, false, false, 1.f, 1.f},
  };
  for (const Case& c : cases) check(c, true);
}
