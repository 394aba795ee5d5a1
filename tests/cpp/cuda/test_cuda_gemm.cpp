// CUDA GEMM ops (cuBLASLt; a tiled kernel for integers) against the CPU backend's kernels on
// the same inputs: shardrt.Linear with every activation, trans_b 0/1, with and without bias
// (M = 1, odd M/K/N, the padded odd-N path with N = 1001, K = 4096); MatMul 2-D, batched
// with broadcasting and 1-D operands; Gemm with transA/transB/alpha/beta and every C
// broadcast; fp32, fp16, bf16, fp64 and int32/int64 where the op takes them; empty and K = 0.
#include <cublasLt.h>
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

using Attrs = std::map<std::string, Attr>;

Node node(const std::string& op, Attrs attrs = {}) {
  Node n;
  n.op = op;
  n.name = "t_" + op;
  n.attrs = std::move(attrs);
  return n;
}

// Uniform in [-1, 1) made in fp32 and cast, so every dtype sees the same values rounded once;
// integers uniform in [-10, 10].
Tensor rnd(DType t, Dims d, uint32_t seed) {
  std::mt19937 g(seed);
  if (t == DType::I32 || t == DType::I64) {
    std::uniform_int_distribution<int> u(-10, 10);
    Tensor r(t, d);
    for (int64_t i = 0; i < r.numel(); ++i) r.set_f(i, u(g));
    return r;
  }
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor f(DType::F32, d);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(g);
  return t == DType::F32 ? f : f.cast(t);
}

struct Tol {
  double rtol;       // per element, relative to the reference
  double atol_frac;  // absolute, as a fraction of the largest |reference| in the tensor
};

// Both sides accumulate in fp32 (fp64 for fp64) from identical inputs, in different orders.
// - fp32: K ≤ 64 products summed in another order: a few ulps of the sum of |terms|, which
//   is up to ~10x the output's scale: 1e-5 relative + 3e-5 of the scale.
//   cuBLASLt's tanh-GELU epilogue may use a hardware tanh approximation (~2^-11 relative):
//   gelu_tanh in fp32 gets 1e-3 (see act_tol).
// - fp16: the output rounds to fp16 on each side (2^-11 ≈ 4.9e-4 relative); values straddling
//   a rounding boundary land one ulp apart, and erf-GELU/SiLU round the pre-activation once
//   more on the GPU (activation slopes ≤ 1.13): 2e-3 relative (~4 ulps) + 2e-3 of the scale.
//   With K = 4096 the fp32 sums differ by ~sqrt(K)·2^-24 of their scale: still negligible.
// - bf16: the same with 2^-8 ≈ 3.9e-3 per rounding: 1.6e-2 relative + 8e-3 of the scale.
// - fp64: both in fp64: 1e-10 + 1e-12 of the scale.
Tol gemm_tol(DType t) {
  switch (t) {
    case DType::F16: return {2e-3, 2e-3};
    case DType::BF16: return {1.6e-2, 8e-3};
    case DType::F64: return {1e-10, 1e-12};
    default: return {1e-5, 3e-5};
  }
}

Tol act_tol(DType t, const std::string& act) {
  Tol tol = gemm_tol(t);
  if (t == DType::F32 && act == "gelu_tanh") tol = {1e-3, 1e-3};
  // fp64 tanh-GELU: the CPU computes 0.5x(1 + tanh(u)), the GPU x·sigmoid(2u) with CUDA's
  // exp; for negative x, 1 + tanh(u) cancels and the CPU's result loses ~ε/(1 + tanh(u))
  // relative (≤ ~1e-11 for |x| ≤ 5), and the two libms' transcendentals differ by an ulp or
  // two: 1e-9 relative leaves room for both. (Before the GPU ran fp64 tanh-GELU itself,
  // cuBLASLt's approximate GELU epilogue missed by up to ~5e-9 relative, which this fails.)
  if (t == DType::F64 && act == "gelu_tanh") tol = {1e-9, 1e-12};
  return tol;
}

void expect_close(const Tensor& ref, const Tensor& got, Tol tol, const std::string& what) {
  ASSERT_EQ(ref.dtype(), got.dtype()) << what;
  ASSERT_EQ(ref.dims(), got.dims()) << what;
  if (ref.dtype() == DType::I32 || ref.dtype() == DType::I64) {
    for (int64_t i = 0; i < ref.numel(); ++i)
      ASSERT_EQ(ref.get_i(i), got.get_i(i)) << what << " at " << i;  // integer products are exact
    return;
  }
  double scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::fabs(ref.get_f(i)));
  int bad = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.get_f(i), g = got.get_f(i);
    // Written so that NaN (the 0xff poison of unwritten outputs) fails.
    if (!(std::fabs(g - r) <= tol.rtol * std::fabs(r) + tol.atol_frac * scale)) {
      if (++bad <= 5) ADD_FAILURE() << what << ": element " << i << " is " << g << ", expected " << r;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.numel() << " elements differ";
}

void compare(const Node& n, const std::vector<const Tensor*>& ins, Tol tol, const std::string& what) {
  std::vector<Tensor> ref = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  ASSERT_EQ(ref.size(), got.size());
  for (size_t i = 0; i < ref.size(); ++i) expect_close(ref[i], got[i], tol, what);
}

std::string dims_s(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

// ---- shardrt.Linear ----

struct LinCase {
  Dims x;     // [..., K]
  int64_t n;  // N
};

void run_linear(DType t, const LinCase& lc, int64_t tb, bool bias, const std::string& act, uint32_t seed) {
  const int64_t K = lc.x.back(), N = lc.n;
  Tensor X = rnd(t, lc.x, seed);
  Tensor W = rnd(t, tb ? Dims{N, K} : Dims{K, N}, seed + 1);
  Tensor B = rnd(t, {N}, seed + 2);
  Node n = node("shardrt.Linear", {{"trans_b", Attr::of(tb)}, {"activation", Attr::of(act)}});
  std::vector<const Tensor*> ins{&X, &W};
  if (bias) ins.push_back(&B);
  compare(n, ins, act_tol(t, act),
          std::string("Linear ") + dtype_name(t) + " X" + dims_s(lc.x) + " N=" + std::to_string(N) + " trans_b=" +
              std::to_string(tb) + (bias ? " bias" : "") + " " + act);
}

TEST(CudaGemm, LinearActivationsLayoutsBias) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // M = 1; odd M and K with N not a multiple of 8; a 3-D X; the padded odd-N path
  // (constant W, N = 1001 >= 512, N·2 bytes not 16-aligned) with M = 33.
  const std::vector<LinCase> cases = {{{1, 64}, 48}, {{7, 13}, 24}, {{3, 5, 16}, 20}, {{33, 64}, 1001}};
  uint32_t seed = 1;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const LinCase& lc : cases)
      for (int64_t tb : {0, 1})
        for (bool bias : {false, true})
          for (const char* act : {"none", "relu", "gelu", "gelu_tanh", "silu"}) run_linear(t, lc, tb, bias, act, seed += 3);
}

// The decode GEMV (gemv.cu) takes trans_b 1 with at most 4 rows of X whose rows are
// 16-byte aligned: 1 to 4 rows (3-D X too), N odd and below a warp's 2 outputs, K a single
// vector up to several per lane (K = 4104: 513 fp16 vectors, a partial unrolled step);
// with K·bytes not a multiple of 16 it must leave the case to cuBLASLt. Same tolerances as
// the other Linear cases (fp32 accumulation over K in another order).
TEST(CudaGemm, LinearDecodeRowsGemv) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const std::vector<LinCase> cases = {{{1, 8}, 1},        {{1, 64}, 3},     {{2, 768}, 2305}, {{3, 1, 96}, 77},
                                      {{4, 4104}, 129},   {{1, 1, 3072}, 768}, {{2, 12}, 9}};
  uint32_t seed = 500;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const LinCase& lc : cases)
      for (bool bias : {false, true})
        for (const char* act : {"none", "relu", "gelu", "gelu_tanh", "silu"}) run_linear(t, lc, 1, bias, act, seed += 3);
}

// The GEMV's shape choices (gemv.cu): K split over 1, 2, 4 or 8 warps of a block (a warp
// takes at most one round of 32·U vectors of a row: U = 4 with one X row, 2 with more) and
// 1, 2 or 4 weight rows per warp (fewer when the grid would give the SMs under one block
// each), with partial blocks at the end of N, a ragged last slice of K and slices of
// several rounds. Llama-like widths: K = 4096 (4 warps), 14336 + 8 (8 warps, two
// rounds each), N large enough for 4 rows a warp. Same tolerances as above (fp32 sums of K
// products in another order; ~sqrt(K) growth stays under one fp16/bf16 ulp of the output).
TEST(CudaGemm, LinearDecodeGemvSplitsAndRowsPerWarp) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const std::vector<LinCase> cases = {
      {{1, 64}, 8500},      // K in one warp, 4 rows a warp, last block partial
      {{1, 4096}, 2200},    // 4 warps over K, 4 rows a warp
      {{1, 768}, 2304},     // GPT-2's QKV: 2 rows a warp (fp16 / bf16); fp32 2 warps over K, 4 rows
      {{1, 14344}, 37},     // 8 warps over K, 1793 fp16 vectors: two rounds, a ragged last warp
      {{3, 520}, 5000},     // 3 rows of X through the 4-row kernel, 2 warps over K, 4 rows a warp
      {{2, 1, 3072}, 1531}, // 2 rows, 8 warps over K with U = 2
      {{1, 24}, 2049},      // fp32 6 vectors: most lanes idle; fp16 3 vectors
      {{4, 8}, 70001},      // a single vector per row (fp16), many blocks
  };
  uint32_t seed = 900;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const LinCase& lc : cases) {
      run_linear(t, lc, 1, true, "gelu", seed += 3);
      run_linear(t, lc, 1, false, "none", seed += 3);
    }
}

TEST(CudaGemm, LinearFp64AndLargeK) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // fp64: cuBLASLt may lack the epilogues there; the kernel then applies bias/activation itself.
  for (const char* act : {"none", "relu", "gelu", "gelu_tanh", "silu"}) {
    run_linear(DType::F64, {{7, 13}, 24}, 1, true, act, 100);
    run_linear(DType::F64, {{5, 32}, 601}, 0, true, act, 110);  // 601·8 bytes is not 16-aligned: padded path
  }
  // fp16 with K = 4096 (relative error of the fp32 sums ~sqrt(K)·2^-24: still below one fp16 ulp).
  run_linear(DType::F16, {{64, 4096}, 256}, 1, true, "gelu", 120);
  run_linear(DType::BF16, {{64, 4096}, 256}, 0, true, "silu", 121);
  // A larger odd N in fp32 (N·4 bytes not 16-aligned) through the padded path, 2 row blocks' worth of M.
  run_linear(DType::F32, {{130, 32}, 777}, 1, true, "relu", 122);
}

TEST(CudaGemm, LinearEmptyAndKZero) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  run_linear(DType::F32, {{0, 16}, 8}, 1, true, "relu", 130);   // M = 0: empty output
  run_linear(DType::F16, {{4, 0}, 8}, 0, true, "gelu", 131);    // K = 0: Y = act(B)
  run_linear(DType::F32, {{4, 0}, 8}, 1, false, "none", 132);   // K = 0, no bias: zeros
}

TEST(CudaGemm, LinearIgnoresBadTactics) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // A stored tactic that does not parse or does not check must not break the kernel: it
  // times (or takes the heuristic's choice) instead. The key is the plan's for this problem.
  Tensor X = rnd(DType::F32, {7, 13}, 140), W = rnd(DType::F32, {13, 24}, 141);
  std::string zeros = std::to_string(cublasLtGetVersion());  // this version's form, an all-zero algorithm
  for (int i = 0; i < 8; ++i) zeros += ":0000000000000000";
  for (const std::string& v : {std::string("garbage"), zeros}) {
    Node n = node("shardrt.Linear", {{"trans_b", Attr::of(int64_t(0))},
                                     {"cuda_tactics", Attr::of_strings({std::string("lt.fp32.NN.24x7x13.ld24_13_24.b1_0_0_0.e1.a256=") + v})}});
    compare(n, {&X, &W}, gemm_tol(DType::F32), std::string("Linear with tactic ") + v);
  }
}

// ---- MatMul ----

void run_matmul(DType t, const Dims& a, const Dims& b, uint32_t seed) {
  Tensor A = rnd(t, a, seed), B = rnd(t, b, seed + 1);
  compare(node("MatMul"), {&A, &B}, gemm_tol(t), std::string("MatMul ") + dtype_name(t) + " " + dims_s(a) + "x" + dims_s(b));
}

TEST(CudaGemm, MatMulShapes) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const std::vector<std::pair<Dims, Dims>> shapes = {
      {{5, 7}, {7, 4}},              // 2-D
      {{2, 3, 5, 7}, {7, 4}},        // batch folded into M
      {{2, 1, 5, 7}, {3, 7, 4}},     // both broadcast: groups of strided batches
      {{4, 5, 7}, {4, 7, 6}},        // plain strided batch
      {{1, 5, 7}, {3, 7, 6}},        // A broadcast (stride 0)
      {{3, 5, 7}, {1, 7, 6}},        // B's batch of 1: folds
      {{2, 3, 5, 7}, {1, 3, 7, 4}},  // A batched, B broadcast on the outer dim
      {{7}, {7, 4}},                 // 1-D left
      {{3, 5, 7}, {7}},              // 1-D right
      {{7}, {2, 7, 4}},              // 1-D left, batched right
      {{7}, {7}},                    // dot product: a scalar
      {{1, 9}, {9, 1}},              // M = N = 1
      {{33, 64}, {64, 1001}},        // odd N through the padded path (constant B)
      {{0, 5, 7}, {7, 4}},           // empty batch
      {{5, 0}, {0, 3}},              // K = 0: zeros
  };
  uint32_t seed = 200;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I32, DType::I64})
    for (const auto& [a, b] : shapes) run_matmul(t, a, b, seed += 2);
}

// ---- Gemm ----

void run_gemm(DType t, int64_t M, int64_t N, int64_t K, int64_t ta, int64_t tb, float alpha, float beta,
              const Dims* cdims, uint32_t seed) {
  Tensor A = rnd(t, ta ? Dims{K, M} : Dims{M, K}, seed);
  Tensor B = rnd(t, tb ? Dims{N, K} : Dims{K, N}, seed + 1);
  Tensor C = cdims ? rnd(t, *cdims, seed + 2) : Tensor();
  Node n = node("Gemm", {{"transA", Attr::of(ta)}, {"transB", Attr::of(tb)}, {"alpha", Attr::of(alpha)},
                         {"beta", Attr::of(beta)}});
  std::vector<const Tensor*> ins{&A, &B};
  if (cdims) ins.push_back(&C);
  compare(n, ins, gemm_tol(t),
          std::string("Gemm ") + dtype_name(t) + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
              " K=" + std::to_string(K) + " tA=" + std::to_string(ta) + " tB=" + std::to_string(tb) +
              " alpha=" + std::to_string(alpha) + " beta=" + std::to_string(beta) + " C=" + (cdims ? dims_s(*cdims) : "none"));
}

TEST(CudaGemm, GemmTransposesScalarsAndC) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const int64_t M = 9, N = 13, K = 11;
  const std::vector<Dims> cshapes = {{}, {1}, {N}, {1, N}, {M, 1}, {M, N}, {1, 1}};
  uint32_t seed = 400;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I32, DType::I64}) {
    const bool is_int = t == DType::I32 || t == DType::I64;
    for (int64_t ta : {0, 1})
      for (int64_t tb : {0, 1}) {
        run_gemm(t, M, N, K, ta, tb, 1.f, 1.f, nullptr, seed += 3);
        // Integer Gemm applies the float scalars per element: whole-number scalars keep both sides exact.
        run_gemm(t, M, N, K, ta, tb, is_int ? 2.f : 0.5f, is_int ? 3.f : -1.5f, &cshapes[5], seed += 3);
      }
    for (const Dims& cd : cshapes) {
      run_gemm(t, M, N, K, 0, 1, 1.f, 1.f, &cd, seed += 3);  // beta 1: row-vector C goes through the bias epilogue
      run_gemm(t, M, N, K, 1, 0, is_int ? -1.f : 0.75f, is_int ? 2.f : 0.25f, &cd, seed += 3);
    }
    run_gemm(t, M, N, K, 0, 0, 1.f, 0.f, &cshapes[5], seed += 3);  // beta 0: C ignored
    run_gemm(t, 1, 1, 1, 0, 0, 1.f, 1.f, &cshapes[0], seed += 3);  // 1x1x1
    run_gemm(t, M, N, 0, 0, 0, 1.f, is_int ? 2.f : 0.5f, &cshapes[2], seed += 3);  // K = 0: beta·C
  }
}

}  // namespace
