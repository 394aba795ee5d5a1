// CUDA kernels of the norm family against the CPU backend (cpu::eval_node) on the same
// random inputs: LayerNormalization, shardrt.RMSNorm, shardrt.AddLayerNorm/AddRMSNorm,
// Group/Instance/BatchNormalization, Softmax/LogSoftmax/Hardmax, Reduce*, ArgMax/ArgMin,
// CumSum and shardrt.Rotary. Row widths 1, 7, 768, 1000, 4096, 5000 cover the warp-per-row,
// block-per-row (vectorised and scalar) and generic paths.
//
// Tolerances compare |gpu - cpu| / (1 + |cpu|): both backends compute in fp32 (fp64 for
// fp64) from identical inputs and differ only in summation order and the final rounding:
//  - fp32: reassociated fp32 sums of up to ~5000 terms, ~sqrt(K)·2^-24 ≈ 4e-6 → 2e-5;
//  - fp16: one output rounding each side can differ by 1 ulp (2^-10 relative) → 2e-3;
//  - bf16: 1 ulp is 2^-7 relative → 1.6e-2;
//  - fp64 and integer types: 1e-9 / exact.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "../op_test_util.h"
#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"

using namespace shardrt;
using optest::random_tensor;

namespace {

double tol_for(DType t) {
  switch (t) {
    case DType::F32: return 2e-5;
    case DType::F16: return 2e-3;
    case DType::BF16: return 1.6e-2;
    case DType::F64: return 1e-9;
    default: return 0;
  }
}

// The CPU's LayerNormalization and channel norms compute fp64 inputs in fp32 (the CUDA
// kernels in fp64): fp64 compares at the fp32 level there.
double norm_tol(DType t) { return t == DType::F64 ? 2e-5 : tol_for(t); }

Attr i64(int64_t v) { return Attr::of(v); }
Attr f32(float v) { return Attr::of(v); }

// Runs `n` on both backends and compares every output (NaN matches NaN, inf matches inf).
void compare(const Node& n, const std::vector<const Tensor*>& ins, double tol, const std::string& what) {
  std::vector<Tensor> c, g;
  try {
    c = cpu::eval_node(n, ins);
  } catch (const std::exception& e) {
    FAIL() << what << ": cpu failed: " << e.what();
  }
  try {
    g = cuda::eval_node(n, ins);
  } catch (const std::exception& e) {
    FAIL() << what << ": cuda failed: " << e.what();
  }
  ASSERT_EQ(c.size(), g.size()) << what;
  for (size_t o = 0; o < c.size(); ++o) {
    ASSERT_EQ(c[o].dtype(), g[o].dtype()) << what << " output " << o;
    ASSERT_EQ(c[o].dims(), g[o].dims()) << what << " output " << o;
    double worst = 0;
    int64_t at = -1;
    for (int64_t i = 0; i < c[o].numel(); ++i) {
      const double a = c[o].get_f(i), b = g[o].get_f(i);
      if (std::isnan(a) && std::isnan(b)) continue;
      if (std::isinf(a) && a == b) continue;
      const double d = std::fabs(a - b) / (1.0 + std::fabs(a));
      if (!(d <= worst)) {
        worst = std::isnan(d) ? 1e30 : d;
        at = i;
      }
    }
    EXPECT_LE(worst, tol) << what << " output " << o << " at " << at << ": cpu " << (at >= 0 ? c[o].get_f(at) : 0)
                          << " gpu " << (at >= 0 ? g[o].get_f(at) : 0);
  }
}

Node node(const std::string& op, std::map<std::string, Attr> attrs = {}, int outputs = 1) {
  Node n = optest::make_node(op, std::move(attrs));
  // Optional outputs exist only where the node lists them: give it `outputs` placeholders.
  static std::vector<std::unique_ptr<Value>> keep;
  for (int i = 0; i < outputs; ++i) {
    keep.push_back(std::make_unique<Value>());
    n.outputs.push_back(keep.back().get());
  }
  return n;
}

const DType kHalfTypes[] = {DType::F32, DType::F16, DType::BF16};
const int64_t kWidths[] = {1, 7, 768, 1000, 4096, 5000};

#define NEED_GPU() \
  if (!shardrt::cuda::device_available()) GTEST_SKIP() << "no GPU"

}  // namespace

TEST(CudaNorm, LayerNormalizationLastAxis) {
  NEED_GPU();
  for (DType t : kHalfTypes)
    for (int64_t W : kWidths)
      for (int variant = 0; variant < 3; ++variant) {  // scale+bias, scale only, + Mean/InvStdDev outputs
        Tensor x = random_tensor(t, {3, W}, -2, 2, unsigned(W));
        Tensor s = random_tensor(t, {W}, 0.5, 1.5, 2), b = random_tensor(t, {W}, -1, 1, 3);
        Node n = node("LayerNormalization", {{"axis", i64(-1)}, {"epsilon", f32(1e-5f)}}, variant == 2 ? 3 : 1);
        std::vector<const Tensor*> ins = {&x, &s};
        if (variant != 1) ins.push_back(&b);
        compare(n, ins, tol_for(t), std::string("layernorm ") + dtype_name(t) + " W=" + std::to_string(W) +
                                        " variant " + std::to_string(variant));
      }
}

TEST(CudaNorm, LayerNormalizationOtherAxesAndBroadcastParams) {
  NEED_GPU();
  for (DType t : {DType::F32, DType::F16, DType::F64}) {
    Tensor x = random_tensor(t, {2, 3, 5, 7}, -2, 2, 5);
    Tensor s = random_tensor(t, {5, 1}, 0.5, 1.5, 6);   // broadcast over the last dim
    Tensor b = random_tensor(t, {7}, -1, 1, 7);          // broadcast over dim 2
    Node n = node("LayerNormalization", {{"axis", i64(2)}, {"epsilon", f32(1e-3f)}}, 3);
    compare(n, {&x, &s, &b}, norm_tol(t) * 5, std::string("layernorm axis 2 ") + dtype_name(t));
    Node n1 = node("LayerNormalization", {{"axis", i64(1)}}, 3);
    compare(n1, {&x}, norm_tol(t) * 5, std::string("layernorm axis 1 no params ") + dtype_name(t));
  }
  // fp64 is computed in fp32 by the CPU kernel and in fp64 here: fp32-level tolerance.
  Tensor x = random_tensor(DType::F64, {4, 1000}, -2, 2, 8), s = random_tensor(DType::F64, {1000}, 0.5, 1.5, 9);
  compare(node("LayerNormalization", {}, 3), {&x, &s}, 2e-5, "layernorm fp64 rows");
}

TEST(CudaNorm, RMSNormAndAddFusions) {
  NEED_GPU();
  for (DType t : kHalfTypes)
    for (int64_t W : kWidths) {
      const std::string tag = std::string(dtype_name(t)) + " W=" + std::to_string(W);
      Tensor a = random_tensor(t, {2, 3, W}, -2, 2, unsigned(W) + 1);
      Tensor b = random_tensor(t, {2, 3, W}, -2, 2, unsigned(W) + 2);
      Tensor w = random_tensor(t, {W}, 0.5, 1.5, 3), bias = random_tensor(t, {W}, -1, 1, 4);
      compare(node("shardrt.RMSNorm", {{"epsilon", f32(1e-6f)}}), {&a, &w}, tol_for(t), "rmsnorm " + tag);
      compare(node("shardrt.AddRMSNorm", {{"epsilon", f32(1e-6f)}}, 2), {&a, &b, &w}, tol_for(t), "addrmsnorm " + tag);
      compare(node("shardrt.AddLayerNorm", {{"epsilon", f32(1e-5f)}}, 2), {&a, &b, &w, &bias}, tol_for(t),
              "addlayernorm " + tag);
      compare(node("shardrt.AddLayerNorm", {}, 2), {&a, &b, &w}, tol_for(t), "addlayernorm no bias " + tag);
    }
}

TEST(CudaNorm, GroupInstanceBatchNorm) {
  NEED_GPU();
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    const std::string tag = dtype_name(t);
    // (these CPU kernels widen fp64 to fp32: fp64 compares at fp32 level, see norm_tol)
    Tensor x = random_tensor(t, {2, 6, 5, 7}, -2, 2, 1);
    Tensor sc = random_tensor(t, {6}, 0.5, 1.5, 2), bi = random_tensor(t, {6}, -1, 1, 3);
    Tensor sg = random_tensor(t, {3}, 0.5, 1.5, 4), bg = random_tensor(t, {3}, -1, 1, 5);
    compare(node("GroupNormalization", {{"num_groups", i64(3)}, {"epsilon", f32(1e-5f)}}), {&x, &sc, &bi}, norm_tol(t),
            "groupnorm per-channel " + tag);
    compare(node("GroupNormalization", {{"num_groups", i64(3)}}), {&x, &sg, &bg}, norm_tol(t), "groupnorm per-group " + tag);
    compare(node("GroupNormalization", {{"num_groups", i64(1)}}), {&x, &sc, &bi}, norm_tol(t), "groupnorm 1 group " + tag);
    compare(node("InstanceNormalization", {{"epsilon", f32(1e-4f)}}), {&x, &sc, &bi}, norm_tol(t), "instancenorm " + tag);
    Tensor mean = random_tensor(t, {6}, -1, 1, 6), var = random_tensor(t, {6}, 0.5, 2, 7);
    compare(node("BatchNormalization", {{"epsilon", f32(1e-5f)}}), {&x, &sc, &bi, &mean, &var}, norm_tol(t),
            "batchnorm " + tag);
    Tensor x2 = random_tensor(t, {3, 6}, -2, 2, 8);  // rank 2: S = 1
    compare(node("BatchNormalization"), {&x2, &sc, &bi, &mean, &var}, norm_tol(t), "batchnorm rank 2 " + tag);
  }
  // A big plane (many threads per plane, fp64 statistics on both sides).
  Tensor x = random_tensor(DType::F32, {1, 4, 64, 65}, -2, 2, 9);
  Tensor s = random_tensor(DType::F32, {4}, 0.5, 1.5, 10), b = random_tensor(DType::F32, {4}, -1, 1, 11);
  compare(node("GroupNormalization", {{"num_groups", i64(2)}}), {&x, &s, &b}, 2e-5, "groupnorm big plane");
  compare(node("InstanceNormalization"), {&x, &s, &b}, 2e-5, "instancenorm big plane");
}

TEST(CudaNorm, SoftmaxFamily) {
  NEED_GPU();
  for (const char* op : {"Softmax", "LogSoftmax", "Hardmax"})
    for (DType t : kHalfTypes) {
      for (int64_t W : kWidths) {
        Tensor x = random_tensor(t, {3, W}, -4, 4, unsigned(W) + 3);
        compare(node(op, {{"axis", i64(-1)}}), {&x}, tol_for(t),
                std::string(op) + " last axis " + dtype_name(t) + " W=" + std::to_string(W));
      }
      Tensor x = random_tensor(t, {3, 37, 5}, -4, 4, 1);
      for (int64_t axis : {0, 1, 2, -2})
        compare(node(op, {{"axis", i64(axis)}}), {&x}, tol_for(t),
                std::string(op) + " axis " + std::to_string(axis) + " " + dtype_name(t));
      Tensor big = random_tensor(t, {64, 17, 80}, -4, 4, 2);  // many columns: the thread-per-line path
      compare(node(op, {{"axis", i64(1)}}), {&big}, tol_for(t), std::string(op) + " columns " + dtype_name(t));
    }
  Tensor d = random_tensor(DType::F64, {5, 300}, -4, 4, 3);
  compare(node("Softmax"), {&d}, 1e-12, "softmax fp64");
  compare(node("LogSoftmax", {{"axis", i64(0)}}), {&d}, 1e-12, "logsoftmax fp64 axis 0");
  // Hardmax ties: the first maximum wins.
  Tensor ties = optest::make(DType::F32, {2, 4}, {1, 3, 3, 0, 2, 2, 2, 2});
  compare(node("Hardmax"), {&ties}, 0, "hardmax ties");
}

namespace {

struct RedCase {
  Dims dims;
  std::vector<int64_t> axes;  // empty: no axes input
  bool noop = false;
};

std::vector<RedCase> reduce_cases() {
  std::vector<RedCase> r;
  for (int64_t W : kWidths) r.push_back({{4, W}, {-1}});
  r.push_back({{3, 1000, 5}, {1}});
  r.push_back({{3, 7, 5}, {1}});
  r.push_back({{5000, 6}, {0}});      // few columns, long reduced extent
  r.push_back({{2, 3, 4, 5}, {0, 2}}); // separate reduced dims: the gather path
  r.push_back({{2, 3, 4, 5}, {1, 3}});
  r.push_back({{2, 3, 4, 5}, {}});     // all axes
  r.push_back({{2, 3, 4, 5}, {}, true});  // noop_with_empty_axes: elementwise pre/post only
  r.push_back({{2, 1, 4}, {1}});       // only size-1 dims reduced
  r.push_back({{3, 0}, {1}});          // empty reduced extent: the identity (mean: NaN)
  r.push_back({{0, 5}, {1}});          // empty output
  return r;
}

void run_reduce(const std::string& op, DType t, double lo, double hi, double tol) {
  unsigned seed = 1;
  for (const RedCase& rc : reduce_cases())
    for (int keep : {0, 1}) {
      Tensor x = random_tensor(t, rc.dims, lo, hi, seed++);
      Tensor ax = Tensor::from_i64(rc.axes);
      std::vector<const Tensor*> ins = {&x};
      if (!rc.axes.empty()) ins.push_back(&ax);
      Node n = node(op, {{"keepdims", i64(keep)}, {"noop_with_empty_axes", i64(rc.noop)}});
      std::string axs;
      for (int64_t a : rc.axes) axs += std::to_string(a) + ",";
      compare(n, ins, tol, op + " " + dtype_name(t) + " " + shape_str(dims_shape(rc.dims)) + " axes [" + axs + "] keep " +
                               std::to_string(keep));
    }
}

}  // namespace

TEST(CudaNorm, ReduceFloat) {
  NEED_GPU();
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    const double tol = tol_for(t) == 1e-9 ? 1e-9 : tol_for(t);
    for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2",
                           "ReduceSumSquare", "ReduceLogSumExp"})
      run_reduce(op, t, -2, 2, tol);
    run_reduce("ReduceLogSum", t, 0.1, 2, tol);      // positive sums
    run_reduce("ReduceProd", t, 0.999, 1.001, tol);  // products of 5000 terms stay near 1
  }
}

TEST(CudaNorm, ReduceInt) {
  NEED_GPU();
  for (DType t : {DType::I32, DType::I64}) {
    for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceSumSquare"})
      run_reduce(op, t, -50, 50, 0);
    run_reduce("ReduceProd", t, 1, 2, 0);  // ones (floor of [1,2)): no overflow over long lines
  }
  for (DType t : {DType::I8, DType::U8, DType::Bool})
    for (const char* op : {"ReduceMax", "ReduceMin"}) run_reduce(op, t, t == DType::I8 ? -100 : 0, t == DType::Bool ? 2 : 100, 0);
}

// ONNX: a max over an empty set is -inf, or the lowest value of the type where it has no
// infinity (false for bool); a min the highest. The stored bytes are compared too, so that a
// bool result is 0 or 1, never another byte. The CPU part needs no GPU.
TEST(CudaNorm, ReduceMaxMinOfAnEmptySetIsTheTypesExtreme) {
  struct Want {
    DType t;
    double lo, hi;
  };
  const Want wants[] = {{DType::I64, -9223372036854775808.0, 9223372036854775807.0},
                        {DType::I32, -2147483648.0, 2147483647.0},
                        {DType::I8, -128, 127},
                        {DType::U8, 0, 255},
                        {DType::Bool, 0, 1},
                        {DType::F32, -INFINITY, INFINITY},
                        {DType::F16, -INFINITY, INFINITY}};
  Tensor ax = Tensor::from_i64({1});
  for (const Want& w : wants)
    for (const char* op : {"ReduceMax", "ReduceMin"}) {
      Tensor x(w.t, {3, 0});
      const Node n = node(op, {{"keepdims", i64(0)}});
      const double want = std::string(op) == "ReduceMax" ? w.lo : w.hi;
      const std::string what = std::string(op) + " " + dtype_name(w.t) + " [3,0]";
      std::vector<Tensor> outs = {cpu::eval_node(n, {&x, &ax})[0]};
      if (cuda::device_available()) outs.push_back(cuda::eval_node(n, {&x, &ax})[0]);
      for (size_t b = 0; b < outs.size(); ++b) {
        const Tensor& y = outs[b];
        const char* who = b ? "gpu" : "cpu";
        ASSERT_EQ(y.dims(), (Dims{3})) << what << " " << who;
        for (int64_t i = 0; i < 3; ++i) {
          if (w.t == DType::I64)  // beyond a double's exact integers: compare as int64
            EXPECT_EQ(y.get_i(i), want < 0 ? INT64_MIN : INT64_MAX) << what << " " << who;
          else
            EXPECT_EQ(y.get_f(i), want) << what << " " << who << " at " << i;
          if (w.t == DType::Bool)
            EXPECT_EQ(static_cast<const uint8_t*>(y.raw())[i], uint8_t(want)) << what << " " << who << " byte";
        }
      }
    }
}

TEST(CudaNorm, ArgMaxArgMin) {
  NEED_GPU();
  for (const char* op : {"ArgMax", "ArgMin"})
    for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I32, DType::I64, DType::I8, DType::U8})
      for (int last : {0, 1}) {
        // Integer values from a small range: many ties, so select_last_index matters.
        const double lo = t == DType::U8 ? 0 : -5, hi = 5;
        for (int64_t W : kWidths) {
          Tensor x = random_tensor(t, {3, W}, lo, hi, unsigned(W));
          compare(node(op, {{"axis", i64(-1)}, {"keepdims", i64(1)}, {"select_last_index", i64(last)}}), {&x}, 0,
                  std::string(op) + " " + dtype_name(t) + " W=" + std::to_string(W) + " last " + std::to_string(last));
        }
        // Vocabulary-long rows (split over blocks, then merged): 50,257 and 128,256 entries,
        // with ties in the 8-bit types and in fp16/bf16's coarse values.
        for (int64_t W : {int64_t(50257), int64_t(128256)}) {
          Tensor v = random_tensor(t, {W == 50257 ? 3 : 1, W}, lo, hi, unsigned(W % 1000));
          compare(node(op, {{"axis", i64(-1)}, {"keepdims", i64(0)}, {"select_last_index", i64(last)}}), {&v}, 0,
                  std::string(op) + " " + dtype_name(t) + " W=" + std::to_string(W) + " last " + std::to_string(last));
        }
        Tensor x = random_tensor(t, {4, 300, 6}, lo, hi, 7);
        for (int64_t axis : {0, 1, 2})
          for (int keep : {0, 1})
            compare(node(op, {{"axis", i64(axis)}, {"keepdims", i64(keep)}, {"select_last_index", i64(last)}}), {&x}, 0,
                    std::string(op) + " " + dtype_name(t) + " axis " + std::to_string(axis) + " keep " +
                        std::to_string(keep) + " last " + std::to_string(last));
      }
}

TEST(CudaNorm, CumSum) {
  NEED_GPU();
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I32, DType::I64})
    for (int excl : {0, 1})
      for (int rev : {0, 1}) {
        // Running sums of up to 5000 terms of magnitude 1 reach ~70: reassociation in fp32
        // gives ~1e-5 relative; fp16/bf16 outputs are rounded once each side.
        const double tol = t == DType::F32 ? 5e-5 : tol_for(t);
        const bool is_int = t == DType::I32 || t == DType::I64;
        for (int64_t W : kWidths) {
          Tensor x = random_tensor(t, {3, W}, is_int ? -50 : -1, is_int ? 50 : 1, unsigned(W) + 9);
          Tensor ax = Tensor::from_i64({-1});
          compare(node("CumSum", {{"exclusive", i64(excl)}, {"reverse", i64(rev)}}), {&x, &ax}, tol,
                  std::string("cumsum ") + dtype_name(t) + " W=" + std::to_string(W) + " excl " + std::to_string(excl) +
                      " rev " + std::to_string(rev));
        }
        Tensor x = random_tensor(t, {4, 300, 6}, is_int ? -50 : -1, is_int ? 50 : 1, 3);
        for (int64_t axis : {0, 1, 2}) {
          Tensor ax = Tensor::from_i64({axis});
          compare(node("CumSum", {{"exclusive", i64(excl)}, {"reverse", i64(rev)}}), {&x, &ax}, tol,
                  std::string("cumsum ") + dtype_name(t) + " axis " + std::to_string(axis));
        }
      }
}

TEST(CudaNorm, Rotary) {
  NEED_GPU();
  for (DType t : kHalfTypes)
    for (int inter : {0, 1})
      for (int64_t R : {64, 32, 6}) {  // R = D, R < D, and a small R with an odd pass-through tail
        const int64_t D = R == 6 ? 9 : 64;
        const std::string tag = std::string(dtype_name(t)) + " interleaved " + std::to_string(inter) + " R=" +
                                std::to_string(R) + " D=" + std::to_string(D);
        Tensor x = random_tensor(t, {2, 3, 5, D}, -2, 2, 1);
        Tensor c1 = random_tensor(t, {5, R}, -1, 1, 2), s1 = random_tensor(t, {5, R}, -1, 1, 3);
        // Same-dtype [S, R] Cos/Sin: one rounding of the fp32 result each side.
        compare(node("shardrt.Rotary", {{"interleaved", i64(inter)}}), {&x, &c1, &s1}, tol_for(t), "rotary [S,R] " + tag);
        // fp32 [B, 1, S, R] tables with fp16/bf16 X (mixed dtypes, broadcast over heads).
        Tensor c2 = random_tensor(DType::F32, {2, 1, 5, R}, -1, 1, 4), s2 = random_tensor(DType::F32, {2, 1, 5, R}, -1, 1, 5);
        compare(node("shardrt.Rotary", {{"interleaved", i64(inter)}}), {&x, &c2, &s2}, tol_for(t), "rotary [B,1,S,R] " + tag);
      }
}
