// shardrt.Linear with activation "swiglu" (a packed gate/up projection) on the CPU kernels,
// against a plain loop in double: W [2N, K] (trans_b 1: gate rows then up rows) or [K, 2N]
// (trans_b 0: gate columns then up columns), optional B [2N]; Y[..., N] = silu(X·Wg + Bg) ·
// (X·Wu + Bu). M = 1, 3, 7 (over the CUDA GEMV's 4 rows) and a 3-D X; N odd and even; fp32,
// fp16, bf16, fp64; the shape rule's checks.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "ir/op_schema.h"
#include "op_test_util.h"

using namespace shardrt;
using namespace shardrt::optest;

namespace {

// The reference in double from the very values the kernel sees (inputs already rounded to
// their dtype by random_tensor's cast).
Tensor reference(const Tensor& X, const Tensor& W, const Tensor* B, bool tb, int64_t N) {
  const int64_t K = X.dim(-1);
  int64_t M = 1;
  for (size_t d = 0; d + 1 < X.dims().size(); ++d) M *= X.dims()[d];
  Dims yd = X.dims();
  yd.back() = N;
  Tensor Y(DType::F64, yd);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double g = B ? B->get_f(j) : 0.0, u = B ? B->get_f(N + j) : 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double x = X.get_f(i * K + k);
        g += x * (tb ? W.get_f(j * K + k) : W.get_f(k * 2 * N + j));
        u += x * (tb ? W.get_f((N + j) * K + k) : W.get_f(k * 2 * N + N + j));
      }
      Y.set_f(i * N + j, g / (1.0 + std::exp(-g)) * u);
    }
  return Y;
}

// Tolerances, relative to each element plus a fraction of the output's largest magnitude:
// - fp64: a K-term double sum in another order: 1e-12.
// - fp32: fp32 sums of K ≤ 40 products (each ≤ 1) in another order, a few ulps of the sum
//   of |terms|, and the kernel's polynomial exp (~1 ulp): 2e-6 relative + 2e-6 of the scale.
// - fp16: the pre-activations are fp32 from the same rounded inputs; the output rounds once
//   to fp16 (2^-11 ≈ 4.9e-4 relative): 1e-3 + 1e-3 of the scale (values near 0 where the
//   fp32 error dominates).
// - bf16: the same with 2^-8 ≈ 3.9e-3: 8e-3 + 8e-3 of the scale.
double tol_of(DType t) {
  switch (t) {
    case DType::F64: return 1e-12;
    case DType::F32: return 2e-6;
    case DType::F16: return 1e-3;
    default: return 8e-3;
  }
}

void check(DType t, const Dims& xd, int64_t N, bool tb, bool bias, unsigned seed) {
  const int64_t K = xd.back();
  Tensor X = random_tensor(t, xd, -1, 1, seed);
  Tensor W = random_tensor(t, tb ? Dims{2 * N, K} : Dims{K, 2 * N}, -1, 1, seed + 1);
  Tensor B = random_tensor(t, {2 * N}, -1, 1, seed + 2);
  std::vector<const Tensor*> ins{&X, &W};
  if (bias) ins.push_back(&B);
  std::vector<Tensor> out =
      run("shardrt.Linear", ins, {{"trans_b", Attr::of(int64_t(tb))}, {"activation", Attr::of(std::string("swiglu"))}});
  const std::string what = std::string(dtype_name(t)) + " K=" + std::to_string(K) + " N=" + std::to_string(N) +
                           " X rows=" + std::to_string(xd.front()) + (tb ? " trans_b" : "") + (bias ? " bias" : "");
  ASSERT_EQ(out.size(), 1u) << what;
  const Tensor& Y = out[0];
  Tensor R = reference(X, W, bias ? &B : nullptr, tb, N);
  ASSERT_EQ(Y.dtype(), t) << what;
  ASSERT_EQ(Y.dims(), R.dims()) << what;
  double scale = 0;
  for (int64_t i = 0; i < R.numel(); ++i) scale = std::max(scale, std::fabs(R.get_f(i)));
  const double tol = tol_of(t);
  int bad = 0;
  for (int64_t i = 0; i < R.numel(); ++i) {
    const double r = R.get_f(i), y = Y.get_f(i);
    if (!(std::fabs(y - r) <= tol * std::fabs(r) + tol * scale) && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " is " << y << ", expected " << r;
  }
  EXPECT_EQ(bad, 0) << what;
}

TEST(LinearSwiglu, MatchesLoopAllDtypesLayouts) {
  // (X dims, N): one row; 3 rows with N odd; 7 rows (over 4: the CUDA GEMM path's size) with
  // K odd; a 3-D X; N = 1.
  const std::vector<std::pair<Dims, int64_t>> cases = {
      {{1, 16}, 8}, {{3, 24}, 5}, {{7, 13}, 11}, {{2, 3, 40}, 6}, {{4, 8}, 1}};
  unsigned seed = 10;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64})
    for (const auto& [xd, n] : cases)
      for (bool tb : {true, false})
        for (bool bias : {false, true}) check(t, xd, n, tb, bias, seed += 3);
}

TEST(LinearSwiglu, EmptyRowsAndKZero) {
  // No rows: an empty output. K = 0: every pre-activation is its bias (or 0).
  for (bool bias : {false, true}) {
    check(DType::F32, {0, 8}, 3, true, bias, 77);
    check(DType::F32, {2, 0}, 3, true, bias, 79);
    check(DType::BF16, {2, 0}, 4, false, bias, 81);
  }
}

TEST(LinearSwiglu, ShapeRule) {
  auto attrs = [](int64_t tb) {
    return std::map<std::string, Attr>{{"trans_b", Attr::of(tb)}, {"activation", Attr::of(std::string("swiglu"))}};
  };
  Tensor X = random_tensor(DType::F32, {2, 8}, -1, 1, 1);
  // Output is half of W's N side.
  Tensor W = random_tensor(DType::F32, {10, 8}, -1, 1, 2);
  std::vector<DType> types;
  std::vector<Dims> dims;
  cpu::infer_concrete(make_node("shardrt.Linear", attrs(1)), {&X, &W}, types, dims);
  ASSERT_EQ(dims.size(), 1u);
  EXPECT_EQ(dims[0], (Dims{2, 5}));
  // An odd N side cannot split into gate and up halves.
  Tensor Wodd = random_tensor(DType::F32, {9, 8}, -1, 1, 3);
  EXPECT_THROW(run("shardrt.Linear", {&X, &Wodd}, attrs(1)), std::exception);
  Tensor Wodd0 = random_tensor(DType::F32, {8, 7}, -1, 1, 4);
  EXPECT_THROW(run("shardrt.Linear", {&X, &Wodd0}, attrs(0)), std::exception);
  // The bias covers both halves: [2N].
  Tensor Bhalf = random_tensor(DType::F32, {5}, -1, 1, 5);
  EXPECT_THROW(run("shardrt.Linear", {&X, &W, &Bhalf}, attrs(1)), std::exception);
  // The schema accepts the activation name (validate).
  const OpSchema* s = find_schema("shardrt.Linear");
  ASSERT_NE(s, nullptr);
  ASSERT_TRUE(s->validate);
  EXPECT_EQ(s->validate(make_node("shardrt.Linear", attrs(1))), "");
}

}  // namespace
