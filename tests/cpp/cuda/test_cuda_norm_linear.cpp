// shardrt.NormLinear(X, [R], Scale, [NormBias], W, [B]) → (Y, Normed, [Sum]) on CUDA against
// the CPU kernel on the same inputs (the CPU kernel composes the norm and Linear kernels,
// which their own tests check against references). Every output is compared: the decode
// path (1 to 4 rows, W as [N, K]: the GEMV with the norm in its prologue, whose block 0 also
// stores Normed and Sum; one row whose K fits a warp's round takes the warp norm prologue,
// more rows or longer ones the block prologue) and the fallback (more rows, trans_b 0, K·bytes not a multiple of
// 16, rows too big for the prologue's shared memory: the norm kernel, then shardrt.Linear),
// LayerNorm with and without its bias, RMSNorm, with and without the residual, Linear bias and
// activations incl. swiglu, fp32 / fp16 / bf16. Outputs are poisoned (0xff) before the run.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/graph.h"

using namespace shardrt;

namespace {

// Uniform in [lo, hi) made in fp32 and cast, so every dtype sees the same values rounded once.
Tensor rnd_nl(DType t, Dims d, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Tensor f(DType::F32, d);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(g);
  return t == DType::F32 ? f : f.cast(t);
}

// Per element: rtol·|ref| + atol_frac·(largest |ref| of the output).
// - Sum: X + R rounded once to the dtype on both sides: identical (0, 0).
// - Normed: both sides round (s - mean)·rstd·scale + shift once; mean and variance are fp32
//   sums in different orders (and 1/sqrt vs the CPU's), so a value may land one rounding
//   step apart: fp32 1e-5 relative + 1e-6 of the scale; fp16 one ulp (2^-10 ≈ 9.8e-4) plus
//   that of the scale; bf16 2^-7 ≈ 7.8e-3 likewise.
// - Y: the K products of those inputs summed in fp32 in different orders, then rounded once,
//   a one-step difference in a Normed input moving Y by |w|·ulp: fp32 1e-5 + 3e-5 of the
//   scale; fp16 4e-3 + 4e-3 (as the Linear tests); bf16 3.2e-2 + 1.6e-2.
struct Tol {
  double rtol, atol_frac;
};
Tol normed_tol(DType t) {
  switch (t) {
    case DType::F16: return {1e-3, 1e-3};
    case DType::BF16: return {8e-3, 8e-3};
    default: return {1e-5, 1e-6};
  }
}
Tol y_tol(DType t) {
  switch (t) {
    case DType::F16: return {4e-3, 4e-3};
    case DType::BF16: return {3.2e-2, 1.6e-2};
    default: return {1e-5, 3e-5};
  }
}

void expect_close(const Tensor& ref, const Tensor& got, Tol tol, const std::string& what) {
  ASSERT_EQ(ref.dtype(), got.dtype()) << what;
  ASSERT_EQ(ref.dims(), got.dims()) << what;
  double scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) scale = std::max(scale, std::fabs(ref.get_f(i)));
  int bad = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    const double r = ref.get_f(i), g = got.get_f(i);
    // Written so that NaN (the poison of unwritten elements) fails.
    if (!(std::fabs(g - r) <= tol.rtol * std::fabs(r) + tol.atol_frac * scale) && ++bad <= 5)
      ADD_FAILURE() << what << ": element " << i << " is " << g << ", expected " << r;
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << ref.numel() << " elements differ";
}

struct Case {
  Dims xd;          // X [..., K]
  int64_t N;        // outputs (W holds 2N rows with swiglu)
  bool rms = false;
  bool shift = true;     // LayerNorm's bias
  bool residual = true;  // R given
  bool bias = true;      // the Linear's bias
  std::string act = "none";
  int64_t tb = 1;
  float offset = 0.f;  // added to X: rows with a large mean (the variance's two passes)
};

std::string dims_str(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

void run_case(DType t, const Case& c, uint32_t seed) {
  const int64_t K = c.xd.back();
  const int64_t WN = c.act == "swiglu" ? 2 * c.N : c.N;
  Tensor X = rnd_nl(t, c.xd, seed, -1.f + c.offset, 1.f + c.offset);
  Tensor R = rnd_nl(t, c.xd, seed + 1, -2.f, 2.f);
  Tensor S = rnd_nl(t, {K}, seed + 2, 0.5f, 1.5f);
  Tensor NB = rnd_nl(t, {K}, seed + 3, -0.5f, 0.5f);
  Tensor W = rnd_nl(t, c.tb ? Dims{WN, K} : Dims{K, WN}, seed + 4, -0.2f, 0.2f);
  Tensor B = rnd_nl(t, {WN}, seed + 5);
  Node n;
  n.op = "shardrt.NormLinear";
  n.name = "t_norm_linear";
  n.attrs = {{"norm", Attr::of(std::string(c.rms ? "rms" : "layer"))},
             {"epsilon", Attr::of(c.rms ? 1e-6f : 1e-5f)},
             {"trans_b", Attr::of(c.tb)},
             {"activation", Attr::of(c.act)}};
  const bool shift = c.shift && !c.rms;
  std::vector<const Tensor*> ins{&X, c.residual ? &R : nullptr, &S, shift ? &NB : nullptr, &W, c.bias ? &B : nullptr};
  const std::string what = std::string("NormLinear ") + dtype_name(t) + " X" + dims_str(c.xd) + " N=" +
                           std::to_string(c.N) + (c.rms ? " rms" : shift ? " layer" : " layer-noshift") +
                           (c.residual ? " residual" : "") + (c.bias ? " bias" : "") + " act=" + c.act +
                           " trans_b=" + std::to_string(c.tb) + (c.offset != 0.f ? " offset" : "");
  std::vector<Tensor> ref = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  ASSERT_EQ(ref.size(), c.residual ? 3u : 2u) << what;
  ASSERT_EQ(got.size(), ref.size()) << what;
  expect_close(ref[0], got[0], y_tol(t), what + " Y");
  expect_close(ref[1], got[1], normed_tol(t), what + " Normed");
  if (c.residual) expect_close(ref[2], got[2], Tol{0, 0}, what + " Sum");
}

// The decode path: GPT-2's and Llama's shapes and small odd ones, 1 to 4 rows.
TEST(CudaNormLinear, DecodeRowsTakeTheFusedGemv) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  std::vector<Case> cases;
  for (const Dims& xd : {Dims{1, 768}, Dims{2, 64}, Dims{3, 1, 96}, Dims{4, 256}, Dims{1, 1, 4096}})
    for (bool rms : {false, true})
      for (bool residual : {true, false}) {
        Case c;
        c.xd = xd;
        c.N = xd.back() == 768 ? 2304 : 77;
        c.rms = rms;
        c.residual = residual;
        cases.push_back(c);
      }
  Case c;
  c.xd = {1, 768};
  c.N = 3072;
  c.act = "gelu_tanh";  // GPT-2's MLP up-projection
  cases.push_back(c);
  c.act = "gelu";
  c.shift = false;
  c.bias = false;
  cases.push_back(c);
  c = Case{};
  c.xd = {4, 4096};  // Llama's MLP at 4 rows: 32 KiB of bf16/fp16 rows in the prologue
  c.N = 300;
  c.rms = true;
  c.act = "swiglu";
  c.bias = false;
  cases.push_back(c);
  c.xd = {1, 64};
  c.N = 5000;  // many blocks, each forming the row itself
  c.act = "silu";
  cases.push_back(c);
  c = Case{};
  c.xd = {2, 512};
  c.N = 40;
  c.offset = 100.f;  // mean 100, spread ~1: the variance must be taken about the mean
  cases.push_back(c);
  c.xd = {1, 512};  // the same through the warp norm prologue (one row)
  cases.push_back(c);
  // One row whose K is one round of a warp's loads (fp16/bf16 K <= 1024, fp32 K <= 512): the
  // warp norm prologue — a partly filled last round (K 200), exactly full (fp16 K 1024; fp32
  // takes the block prologue there), swiglu through it.
  c = Case{};
  c.xd = {1, 1, 1024};
  c.N = 77;
  cases.push_back(c);
  c.xd = {1, 200};
  c.N = 96;
  c.rms = true;
  c.act = "swiglu";
  cases.push_back(c);
  c.residual = false;
  c.bias = false;
  cases.push_back(c);
  uint32_t seed = 1;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const Case& k : cases) run_case(t, k, seed += 7);
}

// The fallback: the norm kernel, then shardrt.Linear (cuBLASLt or the plain GEMV).
TEST(CudaNormLinear, OtherShapesTakeTheNormThenLinear) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  std::vector<Case> cases;
  Case c;
  c.xd = {7, 64};  // more rows than the GEMV takes
  c.N = 48;
  cases.push_back(c);
  c.xd = {2, 5, 128};
  c.rms = true;
  c.act = "swiglu";
  c.N = 24;
  cases.push_back(c);
  c = Case{};
  c.xd = {2, 64};
  c.N = 33;
  c.tb = 0;  // W as [K, N]
  cases.push_back(c);
  c = Case{};
  c.xd = {1, 13};  // K·bytes not a multiple of 16
  c.N = 9;
  cases.push_back(c);
  c = Case{};
  c.xd = {4, 4096};  // fp32: 64 KiB of rows, more than the prologue takes
  c.N = 17;
  cases.push_back(c);
  uint32_t seed = 500;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (const Case& k : cases) run_case(t, k, seed += 7);
}

}  // namespace
