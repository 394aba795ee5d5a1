// shardrt.Attention on the GPU against the CPU kernel (cpu::eval_node) on the same inputs:
// the flash path (fp16/bf16, D 32/64/80/96/128, Sq >= 16), the rowwise path (fp32, other
// head sizes, D != Dv) and its split-key decode form (few query rows), with causal
// alignment, GQA, bool and float masks, rows that see nothing, and empty sizes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "../op_test_util.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"

using namespace shardrt;
using optest::make_node;
using optest::random_tensor;

namespace {

enum MaskMode { kNone = 0, kBoolRows = 1, kFloatKeys = 2 };

struct Case {
  int64_t B, Hq, Hkv, Sq, Skv, D;
  int causal = 0;
  int mask = kNone;  // kBoolRows: bool [B, 1, Sq, Skv]; kFloatKeys: float [1, 1, 1, Skv]
  float scale = 0.f;
  int64_t Dv = -1;  // -1: D
  std::string str() const {
    return "B" + std::to_string(B) + " Hq" + std::to_string(Hq) + " Hkv" + std::to_string(Hkv) + " Sq" +
           std::to_string(Sq) + " Skv" + std::to_string(Skv) + " D" + std::to_string(D) + " Dv" +
           std::to_string(Dv < 0 ? D : Dv) + " causal" + std::to_string(causal) + " mask" + std::to_string(mask) +
           " scale" + std::to_string(scale);
  }
};

// Absolute and relative tolerance per dtype, for outputs that are convex combinations of
// V's values in [-1, 1):
// - fp32: both sides accumulate in fp32 in different orders (and exp2f vs the CPU's
//   fast_expf, ~1 ulp): ~1e-6 relative, growing ~sqrt(Skv); 2e-5 leaves margin.
// - fp16: the GPU rounds the softmax probabilities to fp16 before P·V (2^-11 relative, so
//   <= 4.9e-4 absolute on a convex combination) and both sides round the output to fp16
//   (2^-11 each, one ulp apart at worst): ~1.5e-3; 3e-3.
// - bf16: the same with bf16's 2^-8 unit: ~1.2e-2 at worst; 1.6e-2.
struct Tol { double atol, rtol; };
Tol tol_for(DType t) {
  switch (t) {
    case DType::F16: return {3e-3, 3e-3};
    case DType::BF16: return {1.6e-2, 1e-2};
    default: return {2e-5, 2e-5};
  }
}

void expect_close(const Tensor& got, const Tensor& want, Tol tol, const std::string& what) {
  ASSERT_EQ(got.dims(), want.dims()) << what;
  Tensor g = got.cast(DType::F32), w = want.cast(DType::F32);
  int bad = 0;
  for (int64_t i = 0; i < g.numel(); ++i) {
    const double a = g.get_f(i), b = w.get_f(i);
    // Written so that NaN (the 0xff poison of unwritten outputs) fails.
    if (!(std::fabs(a - b) <= tol.atol + tol.rtol * std::fabs(b))) {
      if (++bad <= 5) ADD_FAILURE() << what << ": element " << i << " got " << a << " want " << b;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.numel() << " elements differ";
}

Tensor make_mask(const Case& c, unsigned seed) {
  if (c.mask == kBoolRows) {
    // About 1 in 4 keys hidden; never a whole row here (the fully masked rows have their own test).
    Tensor m(DType::Bool, {c.B, 1, c.Sq, c.Skv});
    uint8_t* p = m.data<uint8_t>();
    for (int64_t i = 0; i < m.numel(); ++i) p[i] = ((i * 2654435761u + seed) >> 7) % 4 != 0;
    for (int64_t r = 0; r < c.B * c.Sq; ++r)
      if (c.Skv) p[r * c.Skv] = 1;
    return m;
  }
  Tensor m = random_tensor(DType::F32, {1, 1, 1, c.Skv}, -2.0, 2.0, seed);
  for (int64_t j = 3; j < c.Skv; j += 7) m.data<float>()[j] = -std::numeric_limits<float>::infinity();
  return m;
}

// Runs the case on the CPU and the GPU with the same inputs of dtype t; returns the GPU output.
Tensor check(const Case& c, DType t, unsigned seed = 1) {
  const int64_t Dv = c.Dv < 0 ? c.D : c.Dv;
  // Q in [-2, 2) makes scores spread enough that the softmax is far from uniform.
  Tensor q = random_tensor(t, {c.B, c.Hq, c.Sq, c.D}, -2.0, 2.0, seed);
  Tensor k = random_tensor(t, {c.B, c.Hkv, c.Skv, c.D}, -1.0, 1.0, seed + 1);
  Tensor v = random_tensor(t, {c.B, c.Hkv, c.Skv, Dv}, -1.0, 1.0, seed + 2);
  std::vector<const Tensor*> ins = {&q, &k, &v};
  Tensor mask;
  if (c.mask != kNone) {
    mask = make_mask(c, seed + 3);
    ins.push_back(&mask);
  }
  Node n = make_node("shardrt.Attention", {{"scale", Attr::of(c.scale)}, {"causal", Attr::of(int64_t(c.causal))}});
  std::vector<Tensor> want = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  EXPECT_EQ(got.size(), 1u);
  if (got.empty()) return Tensor();
  expect_close(got[0], want[0], tol_for(t), c.str() + " " + dtype_name(t));
  return got[0];
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16};

}  // namespace

TEST(CudaAttention, SquareShapesHeadSizes64And128) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (int64_t D : {64, 128})
    for (int64_t S : {1, 17, 64, 130, 512})
      for (int causal : {0, 1})
        for (DType t : kTypes) check(Case{2, 3, 3, S, S, D, causal}, t);
}

TEST(CudaAttention, OtherHeadSizes) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  // 32/80/96: flash instantiations; 40 and 256: the rowwise fallback; 8: tiny heads.
  for (int64_t D : {32, 80, 96, 40, 256, 8})
    for (DType t : kTypes) check(Case{1, 2, 2, 130, 130, D, 1}, t);
  // V's head size differs from Q/K's (the schema allows it): rowwise path.
  for (DType t : kTypes) {
    Case c{2, 2, 1, 70, 70, 64, 1};
    c.Dv = 32;
    check(c, t);
  }
}

TEST(CudaAttention, DecodeSplitKeys) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : kTypes) {
    check(Case{1, 12, 12, 1, 1000, 64, 0}, t);
    check(Case{4, 8, 2, 1, 1000, 128, 1}, t);   // GQA; causal with Sq = 1 sees every key
    check(Case{32, 12, 12, 1, 777, 64, 1}, t);  // batch 32
    check(Case{2, 4, 4, 5, 300, 64, 1}, t);     // a few rows, bottom-right causal, split
    Case m{2, 4, 2, 1, 1000, 128, 0, kFloatKeys};
    check(m, t);
  }
}

TEST(CudaAttention, CausalBottomRightAndGQA) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : kTypes) {
    check(Case{2, 4, 4, 17, 130, 64, 1}, t);    // Sq < Skv: row i sees keys <= i + 113
    check(Case{1, 2, 2, 100, 257, 128, 1}, t);  // Skv not a multiple of 64
    check(Case{1, 2, 2, 130, 64, 64, 1}, t);    // Sq > Skv: the first 66 rows see nothing
    check(Case{2, 8, 2, 130, 130, 64, 1}, t);   // GQA 8 -> 2
    check(Case{2, 8, 2, 130, 130, 128, 0}, t);
    check(Case{1, 8, 1, 64, 200, 128, 1}, t);   // MQA
  }
}

TEST(CudaAttention, MasksAndScale) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : kTypes) {
    check(Case{2, 4, 4, 130, 130, 64, 0, kBoolRows}, t);
    check(Case{2, 4, 2, 130, 130, 128, 1, kBoolRows}, t);
    check(Case{2, 4, 4, 64, 64, 64, 0, kFloatKeys}, t);
    check(Case{1, 4, 4, 33, 100, 128, 1, kFloatKeys, 0.3f}, t);
    check(Case{1, 2, 2, 17, 17, 40, 0, kBoolRows, 0.5f}, t);  // rowwise path with a mask
    check(Case{2, 3, 3, 64, 64, 64, 1, kNone, 0.05f}, t);
  }
}

TEST(CudaAttention, RowsThatSeeNothingAreZero) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  const int64_t S = 70, D = 64;
  for (int64_t Dh : {D, int64_t(40)})  // flash (fp16/bf16) and rowwise paths
    for (DType t : kTypes) {
      Tensor q = random_tensor(t, {1, 2, S, Dh}, -2.0, 2.0, 5);
      Tensor k = random_tensor(t, {1, 2, S, Dh}, -1.0, 1.0, 6);
      Tensor v = random_tensor(t, {1, 2, S, Dh}, -1.0, 1.0, 7);
      Tensor bm(DType::Bool, {1, 1, S, S});
      Tensor fm(DType::F32, {1, 1, S, S});
      for (int64_t i = 0; i < S; ++i)
        for (int64_t j = 0; j < S; ++j) {
          const bool see = i != 3 && i != 66 && (i + j) % 5 != 0;
          bm.data<uint8_t>()[i * S + j] = see;
          fm.data<float>()[i * S + j] = see ? 0.25f * float(j % 3) : -std::numeric_limits<float>::infinity();
        }
      for (const Tensor* m : {&bm, &fm}) {
        Node n = make_node("shardrt.Attention");  // scale 0: 1/sqrt(D)
        std::vector<const Tensor*> ins = {&q, &k, &v, m};
        Tensor want = cpu::eval_node(n, ins)[0];
        Tensor got = cuda::eval_node(n, ins)[0];
        const std::string what = std::string("zero rows ") + dtype_name(t) + " D" + std::to_string(Dh) +
                                 (m == &bm ? " bool" : " float");
        expect_close(got, want, tol_for(t), what);
        for (int64_t h = 0; h < 2; ++h)
          for (int64_t i : {3, 66})
            for (int64_t d = 0; d < Dh; ++d) EXPECT_EQ(got.get_f((h * S + i) * Dh + d), 0.0) << what;
      }
    }
}

TEST(CudaAttention, EmptySizes) {
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU";
  for (DType t : kTypes) {
    check(Case{1, 2, 2, 5, 0, 64, 0}, t);   // no keys: zeros
    check(Case{1, 2, 2, 0, 9, 64, 1}, t);   // no queries: empty output
    check(Case{0, 2, 2, 4, 4, 64, 0}, t);   // empty batch
  }
}
