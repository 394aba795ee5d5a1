// shardrt.Linear with activation "swiglu" (packed gate/up weight, Y = silu(X·Wg + Bg) ·
// (X·Wu + Bu)) on CUDA against the CPU kernel on the same inputs (the CPU kernel is checked
// against a plain loop in tests/cpp/test_linear_swiglu.cpp). The decode GEMV's paired-row
// form (trans_b 1, 1 to 4 rows): every K split (1, 2, 4, 8 warps) with 2 and 4 weight rows
// per warp (one or two gate/up pairs), partial last blocks, ragged K slices; the cuBLASLt
// path (7 and 300 rows, trans_b 0, K·bytes not a multiple of 16) with its combine kernel,
// vectorised and not; fp32, fp16, bf16 (fp64 on the GEMM path); K = 0 and no rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/graph.h"

using namespace shardrt;

namespace {

// Uniform in [-1, 1) made in fp32 and cast, so every dtype sees the same values rounded once.
Tensor rnd_sw(DType t, Dims d, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor f(DType::F32, d);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(g);
  return t == DType::F32 ? f : f.cast(t);
}

// Tolerance per element: rtol·|ref| + atol_frac·(largest |ref|). Both sides accumulate the
// K products in fp32 (fp64 for fp64) from identical inputs, in different orders.
// - fp32: a few ulps of the sums (K up to 14344: ~sqrt(K)·2^-24 of the sum of |terms|, far
//   under 1e-5 of the output's scale, the product of two sums): 1e-5 + 3e-5 of the scale.
// - fp16: the CPU rounds once (the output, 2^-11 ≈ 4.9e-4); the GPU's GEMM path rounds the
//   gate and up pre-activations to fp16 in its workspace too (two more roundings, the gate's
//   amplified by silu's log-slope, ≤ ~1.1 for g > 0 and larger only where silu(g) is tiny
//   next to the scale): 4e-3 relative (~8 ulps) + 4e-3 of the scale.
// - bf16: the same with 2^-8 ≈ 3.9e-3 per rounding: 3.2e-2 + 1.6e-2 of the scale.
// - fp64: 1e-10 + 1e-12 of the scale.
struct SwTol {
  double rtol, atol_frac;
};
SwTol sw_tol(DType t) {
  switch (t) {
    case DType::F16: return {4e-3, 4e-3};
    case DType::BF16: return {3.2e-2, 1.6e-2};
    case DType::F64: return {1e-10, 1e-12};
    default: return {1e-5, 3e-5};
  }
}

std::string dims_str(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

// X dims [..., K]; N outputs (W's N side is 2N).
void run_swiglu(DType t, const Dims& xd, int64_t N, int64_t tb, bool bias, uint32_t seed) {
  const int64_t K = xd.back();
  Tensor X = rnd_sw(t, xd, seed);
  Tensor W = rnd_sw(t, tb ? Dims{2 * N, K} : Dims{K, 2 * N}, seed + 1);
  Tensor B = rnd_sw(t, {2 * N}, seed + 2);
  Node n;
  n.op = "shardrt.Linear";
  n.name = "t_swiglu";
  n.attrs = {{"trans_b", Attr::of(tb)}, {"activation", Attr::of(std::string("swiglu"))}};
  std::vector<const Tensor*> ins{&X, &W};
  if (bias) ins.push_back(&B);
  const std::string what = std::string("Linear swiglu ") + dtype_name(t) + " X" + dims_str(xd) + " N=" +
                           std::to_string(N) + " trans_b=" + std::to_string(tb) + (bias ? " bias" : "");
  std::vector<Tensor> ref = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  ASSERT_EQ(ref.size(), 1u) << what;
  ASSERT_EQ(got.size(), 1u) << what;
  ASSERT_EQ(ref[0].dtype(), got[0].dtype()) << what;
  ASSERT_EQ(ref[0].dims(), got[0].dims()) << what;
  const SwTol tol = sw_tol(t);
  double scale = 0;
  for (int64_t i = 0; i < ref[0].numel(); ++i) scale = std::max(scale, std::fabs(ref[0].get_f(i)));
  int bad = 0;
  for (int64_t i = 0; i < ref[0].numel(); ++i) {
    const double r = ref[0].get_f(i), g = got[0].get_f(i);
    // Written so that NaN (the 0xff poison of unwritten outputs) fails.
    if (!(std::fabs(g - r) <= tol.rtol * std::fabs(r) + tol.atol_frac * scale) && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " is " << g << ", expected " << r;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref[0].numel() << " elements differ";
}

// 1 to 4 rows (the GEMV) and 7 (cuBLASLt + combine), 2-D and 3-D X, N odd, with and without
// bias, trans_b 1 and 0 (0 always takes cuBLASLt).
TEST(CudaLinearSwiglu, DecodeRowsAndGemmPath) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const std::vector<std::pair<Dims, int64_t>> cases = {
      {{1, 64}, 48}, {{2, 128}, 77}, {{3, 1, 96}, 5}, {{4, 4096}, 129}, {{7, 64}, 33}, {{1, 1, 256}, 1}};
  uint32_t seed = 1;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const auto& [xd, n] : cases)
      for (int64_t tb : {1, 0})
        for (bool bias : {false, true}) run_swiglu(t, xd, n, tb, bias, seed += 3);
}

// The GEMV's choices with swiglu (gemv.cu): K split over 1, 2, 4 or 8 warps (a warp takes at
// most one round of 32·U vectors of a row: U = 4 with one X row, 2 with more) and 2 or 4
// weight rows per warp (one or two gate/up pairs; 4 once 2N rows still give a block per
// SM), partial last blocks, a ragged last K slice and slices of two rounds. Llama-8B's shape
// at tp 2 (N = 7168, K = 4096) is among them.
TEST(CudaLinearSwiglu, GemvSplitsAndRowsPerWarp) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const std::vector<std::pair<Dims, int64_t>> cases = {
      {{1, 64}, 5000},     // K in one warp, two pairs a warp, last block partial
      {{1, 64}, 37},       // K in one warp, one pair a warp
      {{1, 4096}, 7168},   // 4 warps over K (fp16/bf16), two pairs a warp
      {{2, 4096}, 400},    // 8 warps over K with U = 2, two pairs a warp
      {{1, 14344}, 37},    // 8 warps over K, 1793 fp16 vectors: two rounds, a ragged last warp
      {{3, 520}, 2500},    // 3 rows through the 4-row kernel, 2 warps over K
      {{4, 8}, 30001},     // a single fp16 vector per row, many blocks
      {{1, 24}, 2049},     // fp32 6 vectors: most lanes idle
  };
  uint32_t seed = 700;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const auto& [xd, n] : cases)
      for (bool bias : {true, false}) run_swiglu(t, xd, n, 1, bias, seed += 3);
}

// cuBLASLt + combine: many rows (vectorised combine with N % 8 == 0, scalar with N odd),
// K·bytes not a multiple of 16 (the GEMV refuses it), fp64 (its bias epilogue may be missing:
// the kernel then adds the bias itself).
TEST(CudaLinearSwiglu, GemmPathShapesAndFp64) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  uint32_t seed = 1300;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (bool bias : {false, true}) {
      run_swiglu(t, {300, 64}, 256, 1, bias, seed += 3);
      run_swiglu(t, {2, 150, 40}, 33, 0, bias, seed += 3);
      run_swiglu(t, {1, 13}, 24, 1, bias, seed += 3);  // K = 13: rows of W not 16-byte aligned
      run_swiglu(t, {4, 12}, 9, 1, bias, seed += 3);
    }
  }
  for (bool bias : {false, true})
    for (int64_t tb : {1, 0}) {
      run_swiglu(DType::F64, {1, 64}, 48, tb, bias, seed += 3);
      run_swiglu(DType::F64, {7, 13}, 11, tb, bias, seed += 3);
    }
}

// K = 0: every pre-activation is its bias (or 0); no rows: nothing to write.
TEST(CudaLinearSwiglu, EmptyAndKZero) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (bool bias : {false, true}) {
      run_swiglu(t, {3, 0}, 5, 1, bias, 2000);
      run_swiglu(t, {0, 64}, 8, 1, bias, 2010);
      run_swiglu(t, {2, 0}, 4, 0, bias, 2020);
    }
}

}  // namespace
