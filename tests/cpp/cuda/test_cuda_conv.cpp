// CUDA Conv, ConvTranspose (cuDNN) and pools (own kernels) against the CPU backend's
// kernels on the same inputs: 1-D/2-D/3-D, strides, dilations, groups (depthwise too),
// symmetric and asymmetric pads, auto_pad, bias, output_padding/output_shape, ceil_mode,
// count_include_pad, MaxPool's Indices; fp32, fp16, bf16 (fp64 and int8/uint8 where the
// op takes them), odd sizes, size-1 dims, an empty batch, and one SD-1.5-sized convolution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/conv_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/graph.h"

using namespace shardrt;

namespace {

using Ints = std::vector<int64_t>;
using Attrs = std::map<std::string, Attr>;

Attr ints(Ints v) { return Attr::of(std::move(v)); }
Attr one(int64_t v) { return Attr::of(v); }
Attr str(const char* s) { return Attr::of(std::string(s)); }

// Uniform in [-1, 1), seeded, made in fp32 and cast (so every dtype sees the same values,
// rounded once).
Tensor rnd(Dims d, uint32_t seed, DType t) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  Tensor f(DType::F32, d);
  for (int64_t i = 0; i < f.numel(); ++i) f.data<float>()[i] = u(g);
  return t == DType::F32 ? f : f.cast(t);
}

Tensor rnd_int(Dims d, uint32_t seed, DType t) {
  std::mt19937 g(seed);
  std::uniform_int_distribution<int> u(t == DType::U8 ? 0 : -100, 100);
  Tensor r(t, d);
  for (int64_t i = 0; i < r.numel(); ++i) r.set_f(i, u(g));
  return r;
}

struct Tol {
  double rtol;       // per element, relative to the reference
  double atol_frac;  // absolute, as a fraction of the largest |reference| in the tensor
};

// Convolutions. Both sides accumulate in fp32 (fp64 for fp64 on the GPU) from identical
// inputs, in different orders and, on the GPU, possibly through Winograd/FFT transforms,
// whose error scales with the magnitude of the whole output rather than each element: hence
// an absolute term scaled by max|ref|.
// - fp32: sums of up to ~3000 products in a different order: ~1e-6 of the output scale;
//   Winograd's transforms about 10x that. 1e-4 relative + 2e-5 of the scale.
// - fp16: the output is rounded once to fp16 on each side (2^-11 ≈ 4.9e-4 relative); two
//   fp32 values that straddle a rounding boundary round one ulp apart: 2e-3 relative
//   (~4 ulps) + 2e-3 of the scale for reduced-precision transforms.
// - bf16: the same with 2^-8 ≈ 3.9e-3 per rounding: 1.6e-2 relative + 8e-3 of the scale.
// - fp64: cuDNN computes in fp64, the CPU in fp32: fp32's rounding, 1e-5 + 1e-6 of the scale.
Tol conv_tol(DType t) {
  switch (t) {
    case DType::F16: return {2e-3, 2e-3};
    case DType::BF16: return {1.6e-2, 8e-3};
    case DType::F64: return {1e-5, 1e-6};
    default: return {1e-4, 2e-5};
  }
}

// Pools: max is exact (a selection); averages of a few terms in the CPU's order in fp32, so
// only the final rounding to fp16/bf16 can differ (it should not): one ulp of the dtype.
Tol pool_tol(DType t) {
  switch (t) {
    case DType::F16: return {1e-3, 1e-3};
    case DType::BF16: return {8e-3, 8e-3};
    default: return {2e-6, 2e-6};
  }
}

// Global averages sum up to 10^4 terms in fp32 in a tree order on the GPU, in double on the
// CPU: the sum's error is ~eps·sqrt(terms)·|partial sums| ≈ 1e-8 of the mean's input range,
// while means of U(-1, 1) are ~1e-2: 1e-5 relative + 1e-4 of the largest mean. fp16/bf16:
// one rounding of a mean that differs in its last fp32 bits: one ulp.
Tol global_pool_tol(DType t) {
  switch (t) {
    case DType::F16: return {1e-3, 1e-3};
    case DType::BF16: return {8e-3, 8e-3};
    default: return {1e-5, 1e-4};
  }
}

void expect_close(const Tensor& got, const Tensor& ref, Tol tol, const std::string& what) {
  ASSERT_EQ(got.dtype(), ref.dtype()) << what;
  ASSERT_EQ(got.dims(), ref.dims()) << what;
  double scale = 0;
  for (int64_t i = 0; i < ref.numel(); ++i)
    if (std::isfinite(ref.get_f(i))) scale = std::max(scale, std::fabs(ref.get_f(i)));
  int bad = 0;
  for (int64_t i = 0; i < ref.numel() && bad < 5; ++i) {
    const double r = ref.get_f(i), g = got.get_f(i);
    if (std::isnan(r) && std::isnan(g)) continue;
    if (std::isinf(r) && g == r) continue;
    if (!(std::fabs(g - r) <= tol.atol_frac * scale + tol.rtol * std::fabs(r))) {
      ADD_FAILURE() << what << ": element " << i << " is " << g << ", CPU gives " << r << " (scale " << scale << ")";
      ++bad;
    }
  }
}

// One node in a graph (so optional outputs exist), run on the CPU and the GPU.
struct Both {
  Graph g;
  Node* n = nullptr;
  std::vector<Tensor> cpu, gpu;
  Both(const std::string& op, const std::vector<const Tensor*>& ins, Attrs attrs, size_t n_out = 1) {
    std::vector<Value*> vs;
    for (size_t i = 0; i < ins.size(); ++i)
      vs.push_back(ins[i] ? g.add_input("in" + std::to_string(i), ins[i]->dtype(), dims_shape(ins[i]->dims())) : nullptr);
    std::vector<std::string> outs;
    for (size_t i = 0; i < n_out; ++i) outs.push_back("out" + std::to_string(i));
    n = g.add_node(op, "node", vs, outs, std::move(attrs));
    cpu = cpu::eval_node(*n, ins);
    gpu = cuda::eval_node(*n, ins);
  }
};

class CudaConv : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda::device_available()) GTEST_SKIP() << "no GPU";
    // Until register_all_kernels calls it (idempotent: it replaces the same entries).
    cuda::register_conv_kernels();
  }
};

const DType kFloats[] = {DType::F32, DType::F16, DType::BF16};

std::string label(const std::string& op, DType t, const Tensor& x, const Tensor& w) {
  return op + " " + dtype_name(t) + " x" + dims_str(x.dims()) + " w" + dims_str(w.dims());
}

// Conv of x [xd] with w [wd] (+ bias when `bias`), every float dtype.
void conv_case(const Dims& xd, const Dims& wd, Attrs attrs, bool bias, uint32_t seed,
               std::vector<DType> types = {DType::F32, DType::F16, DType::BF16}, const char* op = "Conv") {
  for (DType t : types) {
    Tensor x = rnd(xd, seed, t), w = rnd(wd, seed + 1, t);
    const int64_t bias_len = std::string(op) == "Conv" ? wd[0] : wd[1] * (attrs.count("group") ? attrs["group"].i : 1);
    Tensor b = rnd({bias_len}, seed + 2, t);
    Both r(op, {&x, &w, bias ? &b : nullptr}, attrs);
    expect_close(r.gpu[0], r.cpu[0], conv_tol(t), label(op, t, x, w));
  }
}

void pool_case(const char* op, const Dims& xd, Attrs attrs, uint32_t seed, size_t n_out = 1,
               std::vector<DType> types = {DType::F32, DType::F16, DType::BF16}) {
  for (DType t : types) {
    Tensor x = is_float(t) ? rnd(xd, seed, t) : rnd_int(xd, seed, t);
    Both r(op, {&x}, attrs, n_out);
    const std::string what = std::string(op) + " " + dtype_name(t) + " x" + dims_str(xd);
    expect_close(r.gpu[0], r.cpu[0], std::string(op) == "GlobalAveragePool" ? global_pool_tol(t) : pool_tol(t), what);
    if (n_out > 1) {
      ASSERT_EQ(r.gpu[1].dtype(), DType::I64) << what;
      ASSERT_EQ(r.gpu[1].dims(), r.cpu[1].dims()) << what;
      for (int64_t i = 0; i < r.cpu[1].numel(); ++i)
        ASSERT_EQ(r.gpu[1].data<int64_t>()[i], r.cpu[1].data<int64_t>()[i]) << what << " Indices element " << i;
    }
  }
}

// ---- Conv ----

TEST_F(CudaConv, Conv3x3Pad1Stride1And2) {
  conv_case({2, 3, 7, 9}, {5, 3, 3, 3}, {{"pads", ints({1, 1, 1, 1})}}, true, 1);
  conv_case({1, 4, 8, 8}, {6, 4, 3, 3}, {{"pads", ints({1, 1, 1, 1})}, {"strides", ints({2, 2})}}, false, 2);
  conv_case({3, 5, 13, 6}, {7, 5, 3, 3}, {{"pads", ints({1, 1, 1, 1})}, {"strides", ints({2, 2})}}, true, 3);
  // No padding, rectangular window, unequal strides.
  conv_case({2, 3, 10, 11}, {4, 3, 2, 5}, {{"strides", ints({3, 1})}}, true, 4);
}

TEST_F(CudaConv, Conv1x1AndSizeOne) {
  conv_case({2, 16, 5, 5}, {8, 16, 1, 1}, {}, true, 10);
  conv_case({1, 1, 1, 1}, {1, 1, 1, 1}, {}, true, 11);
  conv_case({1, 33, 1, 17}, {9, 33, 1, 1}, {}, false, 12);
}

TEST_F(CudaConv, DepthwiseAndGrouped) {
  conv_case({2, 8, 9, 7}, {8, 1, 3, 3}, {{"group", one(8)}, {"pads", ints({1, 1, 1, 1})}}, true, 20);
  // Channel multiplier 2 (16 outputs from 8 channels, one group each).
  conv_case({1, 8, 6, 6}, {16, 1, 3, 3}, {{"group", one(8)}, {"pads", ints({1, 1, 1, 1})}}, false, 21);
  conv_case({1, 6, 5, 5}, {4, 3, 3, 3}, {{"group", one(2)}}, true, 22);
}

TEST_F(CudaConv, Dilation) {
  conv_case({1, 3, 11, 10}, {4, 3, 3, 3}, {{"dilations", ints({2, 2})}, {"pads", ints({2, 2, 2, 2})}}, true, 30);
  conv_case({2, 2, 12, 9}, {3, 2, 3, 2}, {{"dilations", ints({2, 3})}, {"strides", ints({2, 1})}}, false, 31);
}

TEST_F(CudaConv, AsymmetricPadsAndAutoPad) {
  // Explicit begin != end pads go through the padded copy.
  conv_case({1, 3, 7, 8}, {4, 3, 3, 3}, {{"pads", ints({0, 1, 2, 0})}}, true, 40);
  // SAME_UPPER / SAME_LOWER with an even window pad one side more.
  conv_case({2, 3, 7, 6}, {5, 3, 2, 4}, {{"auto_pad", str("SAME_UPPER")}}, true, 41);
  conv_case({2, 3, 9, 8}, {5, 3, 4, 3}, {{"auto_pad", str("SAME_LOWER")}, {"strides", ints({2, 2})}}, false, 42);
  conv_case({1, 2, 9, 9}, {3, 2, 3, 3}, {{"auto_pad", str("VALID")}, {"strides", ints({2, 2})}}, true, 43);
  // SAME with an odd window is symmetric.
  conv_case({1, 2, 6, 6}, {3, 2, 3, 3}, {{"auto_pad", str("SAME_UPPER")}}, true, 44);
}

TEST_F(CudaConv, Conv1dAnd3d) {
  conv_case({2, 3, 17}, {4, 3, 5}, {{"pads", ints({2, 2})}, {"strides", ints({2})}}, true, 50);
  conv_case({1, 4, 10}, {4, 1, 3}, {{"group", one(4)}, {"dilations", ints({3})}, {"pads", ints({1, 2})}}, true, 51);
  conv_case({1, 2, 5, 6, 7}, {3, 2, 3, 3, 3}, {{"pads", ints({1, 1, 1, 1, 1, 1})}}, true, 52);
  conv_case({2, 4, 4, 5, 3}, {4, 2, 2, 3, 1}, {{"group", one(2)}, {"strides", ints({2, 1, 1})}}, false, 53);
}

TEST_F(CudaConv, Fp64AndEmptyBatch) {
  conv_case({2, 3, 6, 5}, {4, 3, 3, 3}, {{"pads", ints({1, 1, 1, 1})}}, true, 60, {DType::F64});
  conv_case({0, 3, 6, 5}, {4, 3, 3, 3}, {{"pads", ints({1, 1, 1, 1})}}, true, 61);
}

// The shape of SD-1.5's first-resolution ResNet convolutions (batch 2 as classifier-free
// guidance runs it): 2880-term sums.
TEST_F(CudaConv, StableDiffusionSized) {
  conv_case({2, 320, 64, 64}, {320, 320, 3, 3}, {{"pads", ints({1, 1, 1, 1})}}, true, 70, {DType::F16, DType::F32});
}

// ---- ConvTranspose ----

TEST_F(CudaConv, ConvTransposeStride2) {
  const char* op = "ConvTranspose";
  // The usual 2x upsampling: kernel 3, stride 2, pads 1, output_padding 1 (5 -> 10).
  conv_case({1, 4, 5, 5}, {4, 3, 3, 3}, {{"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}, {"output_padding", ints({1, 1})}},
            true, 80, {DType::F32, DType::F16, DType::BF16}, op);
  // Kernel 4, stride 2, pads 1 (exactly 2x), odd sizes.
  conv_case({2, 3, 7, 5}, {3, 5, 4, 4}, {{"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}}, false, 81,
            {DType::F32, DType::F16, DType::BF16}, op);
  // No pads: the whole footprint.
  conv_case({1, 2, 3, 4}, {2, 3, 3, 2}, {{"strides", ints({2, 3})}}, true, 82, {DType::F32, DType::F16, DType::BF16}, op);
}

TEST_F(CudaConv, ConvTransposeGroupsDilationsAndShapes) {
  const char* op = "ConvTranspose";
  const std::vector<DType> f32{DType::F32}, all{DType::F32, DType::F16, DType::BF16};
  conv_case({2, 4, 3, 4}, {4, 2, 3, 3}, {{"group", one(2)}, {"strides", ints({2, 2})}}, true, 90, all, op);
  conv_case({1, 3, 4, 4}, {3, 2, 3, 3}, {{"dilations", ints({2, 2})}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}},
            true, 91, all, op);
  // Asymmetric pads: the uncropped output and a crop.
  conv_case({1, 2, 4, 5}, {2, 3, 3, 3}, {{"strides", ints({2, 2})}, {"pads", ints({0, 2, 1, 0})}}, true, 92, all, op);
  // output_shape (with auto_pad SAME_UPPER placing the extra row/column) and SAME_LOWER.
  conv_case({1, 2, 3, 3}, {2, 2, 3, 3}, {{"strides", ints({2, 2})}, {"output_shape", ints({6, 7})}, {"auto_pad", str("SAME_UPPER")}},
            true, 93, all, op);
  conv_case({1, 2, 3, 4}, {2, 2, 2, 2}, {{"strides", ints({2, 2})}, {"auto_pad", str("SAME_LOWER")}}, false, 94, all, op);
  // output_padding larger than the end pad: positions past the footprint hold only the bias.
  conv_case({1, 2, 3, 3}, {2, 2, 3, 3}, {{"strides", ints({3, 3})}, {"output_padding", ints({2, 1})}}, true, 95, all, op);
  // 1-D with dilation, and 3-D.
  conv_case({2, 3, 6}, {3, 2, 3}, {{"strides", ints({3})}, {"dilations", ints({2})}, {"pads", ints({1, 1})}}, true, 96, all, op);
  conv_case({1, 2, 3, 2, 4}, {2, 2, 2, 3, 2}, {{"strides", ints({2, 1, 2})}}, true, 97, f32, op);
  conv_case({0, 2, 3, 3}, {2, 2, 3, 3}, {{"strides", ints({2, 2})}}, true, 98, f32, op);
}

// ---- pools ----

TEST_F(CudaConv, MaxPoolWithIndices) {
  pool_case("MaxPool", {2, 3, 9, 7}, {{"kernel_shape", ints({3, 3})}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}}, 100, 2);
  pool_case("MaxPool", {1, 2, 7, 8}, {{"kernel_shape", ints({2, 2})}, {"strides", ints({2, 2})}, {"ceil_mode", one(1)}}, 101, 2);
  pool_case("MaxPool", {1, 2, 6, 5}, {{"kernel_shape", ints({2, 2})}, {"storage_order", one(1)}}, 102, 2);
  pool_case("MaxPool", {1, 3, 10, 9}, {{"kernel_shape", ints({3, 2})}, {"dilations", ints({2, 3})}}, 103, 1);
  pool_case("MaxPool", {2, 3, 11}, {{"kernel_shape", ints({4})}, {"strides", ints({3})}, {"auto_pad", str("SAME_UPPER")}}, 104, 2);
  pool_case("MaxPool", {1, 2, 4, 5, 6}, {{"kernel_shape", ints({2, 3, 2})}, {"pads", ints({0, 1, 1, 1, 0, 1})}}, 105, 2);
  pool_case("MaxPool", {1, 2, 5, 5}, {{"kernel_shape", ints({3, 3})}, {"pads", ints({1, 1, 1, 1})}}, 106, 2,
            {DType::I8, DType::U8, DType::F64});
}

TEST_F(CudaConv, AveragePool) {
  for (int64_t inc : {0, 1}) {
    pool_case("AveragePool", {2, 3, 9, 7},
              {{"kernel_shape", ints({3, 3})}, {"strides", ints({2, 2})}, {"pads", ints({1, 1, 1, 1})}, {"count_include_pad", one(inc)}},
              110 + uint32_t(inc));
    pool_case("AveragePool", {1, 2, 7, 8},
              {{"kernel_shape", ints({3, 2})}, {"strides", ints({2, 2})}, {"ceil_mode", one(1)}, {"pads", ints({1, 0, 1, 1})},
               {"count_include_pad", one(inc)}},
              112 + uint32_t(inc));
    pool_case("AveragePool", {2, 2, 13}, {{"kernel_shape", ints({4})}, {"auto_pad", str("SAME_LOWER")}, {"count_include_pad", one(inc)}},
              114 + uint32_t(inc));
    pool_case("AveragePool", {1, 2, 5, 4, 6}, {{"kernel_shape", ints({2, 2, 3})}, {"pads", ints({1, 0, 1, 0, 1, 1})},
                                               {"count_include_pad", one(inc)}},
              116 + uint32_t(inc), 1, {DType::F32, DType::F64});
  }
}

TEST_F(CudaConv, GlobalPools) {
  for (const char* op : {"GlobalAveragePool", "GlobalMaxPool"}) {
    pool_case(op, {2, 3, 5, 7}, {}, 120);
    pool_case(op, {1, 5, 1, 1}, {}, 121);
    pool_case(op, {2, 4, 13}, {}, 122);
    pool_case(op, {1, 2, 3, 4, 5}, {}, 123);
    // 64x64 planes (a warp each) and 100x100 (a block each).
    pool_case(op, {2, 320, 64, 64}, {}, 124, 1, {DType::F32, DType::F16});
    pool_case(op, {1, 3, 100, 100}, {}, 125);
    pool_case(op, {0, 3, 4, 4}, {}, 126, 1, {DType::F32});
  }
}

}  // namespace
