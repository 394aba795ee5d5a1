// CUDA data-movement kernels (kernels_data*.cu) against the CPU kernels: the same node on
// the same inputs must give the same bytes (these ops move bytes; only Resize's linear and
// cubic modes compute, and get a tolerance).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "../op_test_util.h"
#include "backends/cuda/cuda_eval.h"

namespace shardrt {
namespace {

using optest::make;
using optest::make_node;
using optest::random_tensor;

#define NEED_GPU() \
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU"

using Attrs = std::map<std::string, Attr>;

Attr ai(int64_t v) { return Attr::of(v); }
Attr ais(std::vector<int64_t> v) { return Attr::of(std::move(v)); }
Attr as(const char* s) { return Attr::of(std::string(s)); }

// Runs `op` on both backends and compares every output: dtype and dims always; bytes
// exactly when tol == 0, else |a - b| <= tol * (1 + |b|).
void check(const std::string& op, const std::vector<const Tensor*>& ins, Attrs attrs = {}, double tol = 0) {
  Node n = make_node(op, std::move(attrs));
  std::vector<Tensor> ref = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  ASSERT_EQ(ref.size(), got.size()) << op;
  for (size_t o = 0; o < ref.size(); ++o) {
    ASSERT_EQ(ref[o].dtype(), got[o].dtype()) << op << " output " << o;
    ASSERT_EQ(ref[o].dims(), got[o].dims()) << op << " output " << o;
    if (tol == 0) {
      if (ref[o].nbytes() == 0) continue;
      ASSERT_EQ(std::memcmp(ref[o].raw(), got[o].raw(), ref[o].nbytes()), 0)
          << op << " output " << o << " dims " << dims_str(ref[o].dims()) << " dtype " << dtype_name(ref[o].dtype());
    } else {
      for (int64_t i = 0; i < ref[o].numel(); ++i) {
        const double a = got[o].get_f(i), b = ref[o].get_f(i);
        ASSERT_LE(std::fabs(a - b), tol * (1 + std::fabs(b))) << op << " output " << o << " element " << i;
      }
    }
  }
}

// As check, for a node with n_out outputs (Split): a node's output count comes from its
// output values, so it is built in a graph.
void check_multi(const std::string& op, const std::vector<const Tensor*>& ins, int n_out, Attrs attrs = {}) {
  Graph g;
  std::vector<Value*> vals;
  for (size_t i = 0; i < ins.size(); ++i)
    vals.push_back(ins[i] ? g.add_input("x" + std::to_string(i), ins[i]->dtype(), dims_shape(ins[i]->dims())) : nullptr);
  std::vector<std::string> outs;
  for (int i = 0; i < n_out; ++i) outs.push_back("y" + std::to_string(i));
  Node* n = g.add_node(op, "t_" + op, vals, outs, std::move(attrs));
  std::vector<Tensor> ref = cpu::eval_node(*n, ins);
  std::vector<Tensor> got = cuda::eval_node(*n, ins);
  ASSERT_EQ(ref.size(), size_t(n_out)) << op;
  ASSERT_EQ(ref.size(), got.size()) << op;
  for (size_t o = 0; o < ref.size(); ++o) {
    ASSERT_EQ(ref[o].dtype(), got[o].dtype()) << op << " output " << o;
    ASSERT_EQ(ref[o].dims(), got[o].dims()) << op << " output " << o;
    if (ref[o].nbytes() == 0) continue;
    ASSERT_EQ(std::memcmp(ref[o].raw(), got[o].raw(), ref[o].nbytes()), 0)
        << op << " output " << o << " dims " << dims_str(ref[o].dims()) << " dtype " << dtype_name(ref[o].dtype());
  }
}

const DType kTypes[] = {DType::F32, DType::F16, DType::I64, DType::U8, DType::Bool, DType::BF16};

Tensor rnd(DType t, Dims d, unsigned seed) {
  if (t == DType::Bool) return random_tensor(DType::F32, std::move(d), 0, 2, seed).cast(DType::I64).cast(DType::Bool);
  return random_tensor(t, std::move(d), -50, 50, seed);
}

TEST(CudaData, Transpose) {
  NEED_GPU();
  struct Case { Dims d; std::vector<int64_t> perm; };
  const Case cases[] = {
      {{2, 3, 4}, {0, 2, 1}},        {{3, 17, 33}, {0, 2, 1}},       {{2, 5, 4, 8}, {0, 2, 1, 3}},
      {{2, 7, 3, 64}, {0, 2, 1, 3}}, {{2, 3, 4, 5}, {3, 1, 0, 2}},   {{1, 64, 1, 33}, {}},
      {{0, 3}, {1, 0}},              {{65, 40}, {1, 0}},             {{2, 1, 3, 2, 1, 2, 3, 2}, {7, 6, 5, 4, 3, 2, 1, 0}},
      {{4, 9, 40}, {2, 0, 1}},       {{1}, {0}},                     {{3, 1, 100}, {-1, 0, 1}},
  };
  unsigned seed = 1;
  for (DType t : kTypes)
    for (const Case& k : cases) {
      Tensor x = rnd(t, k.d, seed++);
      Attrs a;
      if (!k.perm.empty()) a["perm"] = ais(k.perm);
      check("Transpose", {&x}, a);
    }
}

TEST(CudaData, ConcatSplit) {
  NEED_GPU();
  unsigned seed = 10;
  for (DType t : kTypes) {
    Tensor a = rnd(t, {2, 3, 5}, seed++), b = rnd(t, {2, 4, 5}, seed++), e = rnd(t, {2, 0, 5}, seed++);
    check("Concat", {&a, &b, &e}, {{"axis", ai(1)}});
    check("Concat", {&a, &b}, {{"axis", ai(-2)}});
    Tensor c = rnd(t, {2, 3, 7}, seed++);
    check("Concat", {&a, &c}, {{"axis", ai(-1)}});
    // KV-cache concat [B, H, S, D] along S.
    Tensor k1 = rnd(t, {1, 4, 9, 32}, seed++), k2 = rnd(t, {1, 4, 1, 32}, seed++);
    check("Concat", {&k1, &k2}, {{"axis", ai(2)}});
    Tensor x = rnd(t, {6, 11, 3}, seed++);
    Tensor sp = Tensor::from_i64({2, 5, 4});
    check_multi("Split", {&x, &sp}, 3, {{"axis", ai(1)}});
    check_multi("Split", {&x}, 4, {{"axis", ai(0)}, {"num_outputs", ai(4)}});  // uneven: 2, 2, 2, 0
    check_multi("Split", {&x}, 3, {{"axis", ai(-1)}, {"num_outputs", ai(3)}});
  }
}

TEST(CudaData, Slice) {
  NEED_GPU();
  unsigned seed = 20;
  for (DType t : kTypes) {
    Tensor x = rnd(t, {5, 7, 9}, seed++);
    auto I = [](std::vector<int64_t> v) { return Tensor::from_i64(v); };
    Tensor s1 = I({1, 0}), e1 = I({4, 9}), a1 = I({0, 2});
    check("Slice", {&x, &s1, &e1, &a1, nullptr});
    Tensor s2 = I({-1, 8}), e2 = I({-100, 0}), a2 = I({-3, -1}), st2 = I({-1, -3});  // negative steps
    check("Slice", {&x, &s2, &e2, &a2, &st2});
    Tensor s3 = I({0, 1}), e3 = I({100, 7}), a3 = I({1, 2}), st3 = I({2, 2});
    check("Slice", {&x, &s3, &e3, &a3, &st3});
    Tensor s4 = I({3}), e4 = I({3}), a4 = I({1});  // empty
    check("Slice", {&x, &s4, &e4, &a4, nullptr});
    Tensor s5 = I({0}), e5 = I({8}), a5 = I({2});  // contiguous runs of 8
    Tensor y = rnd(t, {4, 3, 16}, seed++);
    check("Slice", {&y, &s5, &e5, &a5, nullptr});
  }
}

TEST(CudaData, Gather) {
  NEED_GPU();
  unsigned seed = 30;
  for (DType t : kTypes) {
    Tensor emb = rnd(t, {50, 64}, seed++);
    Tensor ids = make(DType::I64, {3, 7}, {0, 1, 49, -1, -50, 7, 7, 3, 2, 1, 0, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18});
    check("Gather", {&emb, &ids}, {{"axis", ai(0)}});
    Tensor x = rnd(t, {3, 5, 7}, seed++);
    Tensor i32 = make(DType::I32, {4}, {4, -1, 0, 2});
    check("Gather", {&x, &i32}, {{"axis", ai(1)}});
    check("Gather", {&x, &i32}, {{"axis", ai(-1)}});
    Tensor sc = make(DType::I64, {}, {-2});  // scalar index drops the axis
    check("Gather", {&x, &sc}, {{"axis", ai(0)}});
    Tensor none(DType::I64, {0});
    check("Gather", {&x, &none}, {{"axis", ai(2)}});
  }
}

TEST(CudaData, GatherElementsND) {
  NEED_GPU();
  unsigned seed = 40;
  for (DType t : kTypes) {
    Tensor x = rnd(t, {4, 5, 3}, seed++);
    Tensor idx = make(DType::I64, {2, 5, 3}, {});
    for (int64_t i = 0; i < idx.numel(); ++i) idx.set_f(i, double(int64_t(i * 7 % 8) - 4));  // in [-4, 3]
    check("GatherElements", {&x, &idx}, {{"axis", ai(0)}});
    Tensor idx2 = make(DType::I32, {4, 2, 3}, {});
    for (int64_t i = 0; i < idx2.numel(); ++i) idx2.set_f(i, double(int64_t(i * 3 % 10) - 5));
    check("GatherElements", {&x, &idx2}, {{"axis", ai(-2)}});
    Tensor nd = make(DType::I64, {3, 2}, {0, 1, -1, 4, 2, -5});
    check("GatherND", {&x, &nd});
    Tensor nd1 = make(DType::I64, {4, 2, 1}, {0, 1, 4, 3, -1, 2, 0, 0});
    check("GatherND", {&x, &nd1}, {{"batch_dims", ai(1)}});
    Tensor nd3 = make(DType::I64, {2, 3}, {0, 0, 0, 3, 4, 2});  // GatherND takes int64 indices only
    check("GatherND", {&x, &nd3});
  }
}

TEST(CudaData, Scatter) {
  NEED_GPU();
  unsigned seed = 50;
  // Whole-number values (for the float types too: random_tensor gives whole numbers only for
  // integer types) so that the reductions over duplicate indices, which the GPU applies with
  // atomics in any order, give the CPU's in-order result exactly: sums and products of at
  // most 4 numbers in [-4, 4] are exact even in bf16.
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::U8, DType::Bool, DType::F64};
  for (DType t : types) {
    auto val = [&](Dims d) {
      if (t == DType::Bool) return rnd(t, d, seed++);
      return random_tensor(DType::I64, std::move(d), t == DType::U8 ? 0 : -4, 5, seed++).cast(t);
    };
    Tensor x = val({4, 5, 3});
    // ScatterND, unique indices (reduction none) and duplicates (reductions).
    Tensor ind = make(DType::I64, {3, 1}, {1, -1, 0});
    Tensor upd = val({3, 5, 3});
    check("ScatterND", {&x, &ind, &upd});
    Tensor dup = make(DType::I64, {4, 2}, {1, 2, 1, 2, -1, 0, 1, 2});
    Tensor upd2 = val({4, 3});
    for (const char* r : {"add", "mul", "max", "min"}) check("ScatterND", {&x, &dup, &upd2}, {{"reduction", as(r)}});
    // ScatterElements: unique along the axis for none; duplicates for reductions.
    Tensor ie = make(DType::I64, {2, 5, 3}, {});
    for (int64_t i = 0; i < ie.numel(); ++i) ie.set_f(i, i < 15 ? 3 : -4);
    Tensor ue = val({2, 5, 3});
    check("ScatterElements", {&x, &ie, &ue}, {{"axis", ai(0)}});
    Tensor id = make(DType::I32, {4, 3, 3}, {});
    for (int64_t i = 0; i < id.numel(); ++i) id.set_f(i, double(i % 2 ? -1 : 2));
    Tensor ud = val({4, 3, 3});
    for (const char* r : {"add", "mul", "max", "min"})
      check("ScatterElements", {&x, &id, &ud}, {{"axis", ai(1)}, {"reduction", as(r)}});
  }
}

TEST(CudaData, ExpandTile) {
  NEED_GPU();
  unsigned seed = 60;
  for (DType t : kTypes) {
    Tensor x = rnd(t, {3, 1, 5}, seed++);
    Tensor s1 = Tensor::from_i64({2, 3, 4, 5});
    check("Expand", {&x, &s1});
    Tensor s2 = Tensor::from_i64({3, 7, 1});
    check("Expand", {&x, &s2});
    Tensor y = rnd(t, {1}, seed++);
    Tensor s3 = Tensor::from_i64({17});
    check("Expand", {&y, &s3});
    Tensor r1 = Tensor::from_i64({2, 3, 1});
    check("Tile", {&x, &r1});
    Tensor z = rnd(t, {2, 0, 3}, seed++);
    Tensor r2 = Tensor::from_i64({1, 4, 2});
    check("Tile", {&z, &r2});
    Tensor w = rnd(t, {3, 8}, seed++);
    Tensor r3 = Tensor::from_i64({5, 2});
    check("Tile", {&w, &r3});
  }
}

TEST(CudaData, Pad) {
  NEED_GPU();
  unsigned seed = 70;
  for (DType t : kTypes) {
    Tensor x = rnd(t, {2, 3, 5}, seed++);
    Tensor p = Tensor::from_i64({0, 2, 1, 1, 0, 3});
    Tensor cv = rnd(t, {}, seed++);
    check("Pad", {&x, &p, &cv}, {{"mode", as("constant")}});
    check("Pad", {&x, &p}, {{"mode", as("constant")}});
    for (const char* m : {"reflect", "edge", "wrap"}) check("Pad", {&x, &p}, {{"mode", as(m)}});
    Tensor neg = Tensor::from_i64({-1, 2, 0, 1});  // crop the start of axis 1
    Tensor axes = Tensor::from_i64({1, -1});
    for (const char* m : {"constant", "reflect", "edge", "wrap"}) check("Pad", {&x, &neg, nullptr, &axes}, {{"mode", as(m)}});
    Tensor big = Tensor::from_i64({0, 0, 7, 0, 0, 9});  // wrap / reflect further than the axis
    for (const char* m : {"reflect", "edge", "wrap"}) check("Pad", {&x, &big}, {{"mode", as(m)}});
  }
}

TEST(CudaData, ResizeNearest) {
  NEED_GPU();
  unsigned seed = 80;
  // The UNet's 2x nearest upsampling (fast path), all element sizes Resize takes (its
  // schema refuses bool).
  for (DType t : {DType::F32, DType::F16, DType::I64, DType::U8, DType::BF16}) {
    Tensor x = rnd(t, {2, 320, 8, 8}, seed++);
    Tensor sc = Tensor::from_f32({4}, {1, 1, 2, 2});
    check("Resize", {&x, nullptr, &sc}, {{"mode", as("nearest")}});
    check("Resize", {&x, nullptr, &sc},
          {{"mode", as("nearest")}, {"coordinate_transformation_mode", as("asymmetric")}, {"nearest_mode", as("floor")}});
  }
  for (DType t : {DType::F32, DType::F16, DType::I64}) {
    Tensor x = rnd(t, {1, 3, 5, 7}, seed++);
    Tensor sc3 = Tensor::from_f32({4}, {1, 1, 3, 4});  // other integer factors
    check("Resize", {&x, nullptr, &sc3}, {{"mode", as("nearest")}});
    Tensor sizes = Tensor::from_i64({1, 3, 9, 4});  // non-integer up and down (general kernel)
    for (const char* ctm : {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel", "half_pixel_symmetric",
                            "tf_half_pixel_for_nn"})
      for (const char* nm : {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"})
        check("Resize", {&x, nullptr, nullptr, &sizes},
              {{"mode", as("nearest")}, {"coordinate_transformation_mode", as(ctm)}, {"nearest_mode", as(nm)}});
    Tensor roi = Tensor::from_f32({8}, {0, 0, 0.2f, 0.1f, 1, 1, 0.9f, 1.3f});
    check("Resize", {&x, &roi, nullptr, &sizes},
          {{"mode", as("nearest")}, {"coordinate_transformation_mode", as("tf_crop_and_resize")},
           {"extrapolation_value", Attr::of(7.f)}});
  }
}

TEST(CudaData, ResizeLinearCubic) {
  NEED_GPU();
  unsigned seed = 90;
  // fp32: the GPU accumulates in fp32 with fp32 weights, the CPU in double: a few ulps of
  // the inputs' magnitude (50). fp16/bf16: one rounding of the output (2^-11 / 2^-8
  // relative) on top.
  struct TT { DType t; double tol; };
  for (TT tt : {TT{DType::F32, 1e-5}, TT{DType::F16, 2e-3}, TT{DType::BF16, 1e-2}}) {
    Tensor x = rnd(tt.t, {2, 3, 6, 9}, seed++);
    Tensor sizes = Tensor::from_i64({2, 3, 12, 5});
    for (const char* ctm : {"half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"}) {
      check("Resize", {&x, nullptr, nullptr, &sizes}, {{"mode", as("linear")}, {"coordinate_transformation_mode", as(ctm)}},
            tt.tol);
      check("Resize", {&x, nullptr, nullptr, &sizes}, {{"mode", as("cubic")}, {"coordinate_transformation_mode", as(ctm)}},
            tt.tol);
    }
    check("Resize", {&x, nullptr, nullptr, &sizes},
          {{"mode", as("cubic")}, {"exclude_outside", ai(1)}, {"cubic_coeff_a", Attr::of(-0.5f)}}, tt.tol);
    Tensor sc = Tensor::from_f32({4}, {1, 1, 2, 2});
    check("Resize", {&x, nullptr, &sc}, {{"mode", as("linear")}}, tt.tol);
  }
}

TEST(CudaData, CreateOps) {
  NEED_GPU();
  unsigned seed = 100;
  for (DType t : kTypes) {
    Tensor x = rnd(t, {2, 5, 6}, seed++);
    check("Trilu", {&x}, {{"upper", ai(1)}});
    Tensor k = Tensor::scalar_i64(-2);
    check("Trilu", {&x, &k}, {{"upper", ai(0)}});
    Tensor k2 = Tensor::scalar_i64(3);
    check("Trilu", {&x, &k2}, {{"upper", ai(1)}});
    Tensor e = rnd(t, {4, 7}, seed++);
    check("EyeLike", {&e}, {{"k", ai(2)}});
    check("EyeLike", {&e}, {{"k", ai(-1)}});
    for (const char* op : {"Identity", "Flatten"}) check(op, {&x});
    Tensor shp = Tensor::from_i64({5, 12});
    check("Reshape", {&x, &shp});
    check("Shape", {&x});
  }
  Tensor st = Tensor::scalar_i64(-3), lim = Tensor::scalar_i64(20), d = Tensor::scalar_i64(4);
  check("Range", {&st, &lim, &d});
  Tensor fs = make(DType::F32, {}, {0.1}), fl = make(DType::F32, {}, {3.0}), fd = make(DType::F32, {}, {0.3});
  check("Range", {&fs, &fl, &fd});
  Tensor shape = Tensor::from_i64({3, 4});
  check("ConstantOfShape", {&shape}, {{"value", Attr::of(make(DType::F16, {1}, {2.5}))}});
  check("ConstantOfShape", {&shape}, {{"value", Attr::of(make(DType::I64, {1}, {-7}))}});
  check("ConstantOfShape", {&shape});
  check("Constant", {}, {{"value", Attr::of(random_tensor(DType::F32, {3, 5}, -1, 1, 7))}});
  check("Constant", {}, {{"value_ints", ais({1, 2, 3})}});
}

TEST(CudaData, IndexOps) {
  NEED_GPU();
  unsigned seed = 110;
  for (DType t : kTypes) {
    Tensor idx = make(DType::I64, {2, 3}, {0, 2, -1, 5, 9, -4});
    Tensor depth = Tensor::scalar_i64(5);
    Tensor vals = make(t, {2}, {0, 1});
    check("OneHot", {&idx, &depth, &vals}, {{"axis", ai(-1)}});
    check("OneHot", {&idx, &depth, &vals}, {{"axis", ai(0)}});
    Tensor x = rnd(t, {4, 3, 5}, seed++);
    Tensor lens = make(DType::I64, {3}, {4, 1, 2});
    check("ReverseSequence", {&x, &lens}, {{"batch_axis", ai(1)}, {"time_axis", ai(0)}});
    Tensor lens2 = make(DType::I64, {4}, {3, 0, 2, 1});
    check("ReverseSequence", {&x, &lens2}, {{"batch_axis", ai(0)}, {"time_axis", ai(1)}});
    Tensor dx = rnd(t, {2, 8, 3, 5}, seed++);
    check("DepthToSpace", {&dx}, {{"blocksize", ai(2)}, {"mode", as("DCR")}});
    check("DepthToSpace", {&dx}, {{"blocksize", ai(2)}, {"mode", as("CRD")}});
    Tensor sx = rnd(t, {2, 3, 6, 4}, seed++);
    check("SpaceToDepth", {&sx}, {{"blocksize", ai(2)}});
  }
  Tensor fidx = make(DType::F32, {4}, {1, 0, -1, 2});
  Tensor depth = Tensor::scalar_i64(3);
  Tensor vals = make(DType::F32, {2}, {-1, 3});
  check("OneHot", {&fidx, &depth, &vals});
}

}  // namespace
}  // namespace shardrt
