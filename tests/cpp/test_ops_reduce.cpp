// Reduction-family ops: shape rules and CPU kernels against plain-loop references in
// double written here (or small cases worked out by hand).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "backends/cpu/cpu_kernels.h"
#include "op_test_util.h"
#include "ir/op_schema.h"

using namespace shardrt;

namespace {

using optest::make;
using optest::make_node;
using optest::random_tensor;
using optest::run;

Attr ints(std::vector<int64_t> v) { return Attr::of(std::move(v)); }
Attr i64(int64_t v) { return Attr::of(v); }

void expect_close(const Tensor& got, const std::vector<double>& want, double rt, double at, const std::string& what) {
  ASSERT_EQ(got.numel(), int64_t(want.size())) << what;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double g = got.get_f(i), w = want[size_t(i)];
    if (std::isnan(w)) { EXPECT_TRUE(std::isnan(g)) << what << " at " << i; continue; }
    if (std::isinf(w)) { EXPECT_EQ(g, w) << what << " at " << i; continue; }
    EXPECT_NEAR(g, w, at + rt * std::abs(w)) << what << " at " << i;
  }
}

// Reference reduction: walks every input element and folds it into its output slot.
std::vector<double> ref_reduce(const Tensor& x, const std::set<int64_t>& axes, const std::string& op) {
  const Dims& d = x.dims();
  Dims od;
  for (size_t i = 0; i < d.size(); ++i) od.push_back(axes.count(int64_t(i)) ? 1 : d[i]);
  int64_t on = numel(od);
  bool is_max = op == "ReduceMax", is_min = op == "ReduceMin", is_prod = op == "ReduceProd";
  double init = is_max ? -INFINITY : is_min ? INFINITY : is_prod ? 1 : 0;
  std::vector<double> acc(size_t(on), init), mx(size_t(on), -INFINITY);
  std::vector<int64_t> cnt(size_t(on), 0);
  auto out_index = [&](int64_t i) {
    int64_t o = 0, stride = 1;
    for (size_t k = d.size(); k-- > 0;) {
      int64_t idx = i % d[k];
      i /= d[k];
      if (!axes.count(int64_t(k))) o += idx * stride;
      stride *= od[k];
    }
    return o;
  };
  for (int64_t i = 0; i < x.numel(); ++i) mx[size_t(out_index(i))] = std::max(mx[size_t(out_index(i))], x.get_f(i));
  for (int64_t i = 0; i < x.numel(); ++i) {
    size_t o = size_t(out_index(i));
    double v = x.get_f(i);
    cnt[o]++;
    if (is_max) acc[o] = std::max(acc[o], v);
    else if (is_min) acc[o] = std::min(acc[o], v);
    else if (is_prod) acc[o] *= v;
    else if (op == "ReduceL1") acc[o] += std::abs(v);
    else if (op == "ReduceL2" || op == "ReduceSumSquare") acc[o] += v * v;
    else if (op == "ReduceLogSumExp") acc[o] += std::exp(v - mx[o]);
    else acc[o] += v;
  }
  for (size_t o = 0; o < acc.size(); ++o) {
    if (op == "ReduceMean") acc[o] /= double(cnt[o]);
    if (op == "ReduceL2") acc[o] = std::sqrt(acc[o]);
    if (op == "ReduceLogSum") acc[o] = std::log(acc[o]);
    if (op == "ReduceLogSumExp") acc[o] = std::log(acc[o]) + mx[o];
  }
  return acc;
}

const std::vector<std::string> kReduceOps = {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd",
                                             "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                                             "ReduceSumSquare"};

}  // namespace

TEST(Reduce, AllOpsAllAxisSets) {
  Dims shape = {3, 4, 5, 2};
  std::vector<std::vector<int64_t>> axis_sets = {{}, {0}, {1}, {2}, {3}, {-1}, {0, 2}, {1, 3}, {0, 1}, {1, 2}, {0, 1, 2, 3}};
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    // Positive inputs near 1 so that LogSum's and Prod's results stay well conditioned.
    Tensor x = random_tensor(t, shape, 0.5, 1.5, 5);
    for (auto& op : kReduceOps) {
      for (auto& axes : axis_sets) {
        for (int64_t keep : {0, 1}) {
          Tensor ax = Tensor::from_i64(axes);
          auto y = run(op, {&x, &ax}, {{"keepdims", i64(keep)}});
          std::set<int64_t> norm;
          for (int64_t a : axes) norm.insert(a < 0 ? a + 4 : a);
          if (axes.empty()) norm = {0, 1, 2, 3};
          Dims want_dims;
          for (int64_t i = 0; i < 4; ++i)
            if (!norm.count(i)) want_dims.push_back(shape[size_t(i)]);
            else if (keep) want_dims.push_back(1);
          ASSERT_EQ(y[0].dims(), want_dims) << op;
          // fp32 accumulation over at most 120 terms: ~120 · 2^-24 relative in the worst
          // case, so 2e-5; fp16/bf16 add one rounding of the result (2^-11, 2^-8).
          double rt = t == DType::F16 ? 2e-3 : t == DType::BF16 ? 1.6e-2 : t == DType::F64 ? 1e-12 : 2e-5;
          expect_close(y[0], ref_reduce(x, norm, op), rt, rt, op + " " + dtype_name(t));
        }
      }
    }
  }
}

TEST(Reduce, NoAxesInputAndNoop) {
  Tensor x = make(DType::F32, {2, 2}, {1, -2, 3, -4});
  auto all = run("ReduceSum", {&x});
  EXPECT_EQ(all[0].dims(), (Dims{1, 1}));
  EXPECT_EQ(all[0].get_f(0), -2);
  Tensor empty = Tensor::from_i64({});
  auto noop = run("ReduceSum", {&x, &empty}, {{"noop_with_empty_axes", i64(1)}});
  expect_close(noop[0], {1, -2, 3, -4}, 0, 0, "noop sum is the identity");
  // With noop each element is reduced alone, so the pre/post transforms still apply.
  auto l2 = run("ReduceL2", {&x, &empty}, {{"noop_with_empty_axes", i64(1)}});
  expect_close(l2[0], {1, 2, 3, 4}, 0, 0, "noop L2 is |x|");
  auto sq = run("ReduceSumSquare", {&x}, {{"noop_with_empty_axes", i64(1)}});
  expect_close(sq[0], {1, 4, 9, 16}, 0, 0, "noop sum square");
}

TEST(Reduce, EmptySet) {
  Tensor x(DType::F32, {2, 0, 4});
  Tensor ax = Tensor::from_i64({1});
  std::map<std::string, double> want = {{"ReduceSum", 0},           {"ReduceProd", 1},
                                        {"ReduceMax", -INFINITY},   {"ReduceMin", INFINITY},
                                        {"ReduceL1", 0},            {"ReduceL2", 0},
                                        {"ReduceLogSum", -INFINITY}, {"ReduceLogSumExp", -INFINITY},
                                        {"ReduceSumSquare", 0}};
  for (auto& [op, v] : want) {
    auto y = run(op, {&x, &ax});
    ASSERT_EQ(y[0].dims(), (Dims{2, 1, 4})) << op;
    expect_close(y[0], std::vector<double>(8, v), 0, 0, op);
  }
}

TEST(Reduce, IntegerAndBool) {
  Tensor x = make(DType::I32, {2, 3}, {1, -2, 7, 4, 5, -6});
  Tensor a1 = Tensor::from_i64({1});
  expect_close(run("ReduceSum", {&x, &a1})[0], {6, 3}, 0, 0, "sum");
  expect_close(run("ReduceProd", {&x, &a1})[0], {-14, -120}, 0, 0, "prod");
  expect_close(run("ReduceMax", {&x, &a1})[0], {7, 5}, 0, 0, "max");
  expect_close(run("ReduceMean", {&x, &a1})[0], {2, 1}, 0, 0, "mean truncates (6/3, 3/3)");
  Tensor i64v = make(DType::I64, {2}, {int64_t(1) << 40, 3});
  Tensor a0 = Tensor::from_i64({0});
  EXPECT_EQ(run("ReduceSum", {&i64v, &a0})[0].get_i(0), (int64_t(1) << 40) + 3);  // exact in int64
  Tensor b = make(DType::Bool, {2, 2}, {1, 0, 0, 0});
  expect_close(run("ReduceMax", {&b, &a1})[0], {1, 0}, 0, 0, "bool max");
  expect_close(run("ReduceMin", {&b, &a1})[0], {0, 0}, 0, 0, "bool min");
}

TEST(Reduce, LongRowsAndHalfAccumulation) {
  // Last-axis rows long enough for the vector lanes and the parallel split.
  Tensor x = random_tensor(DType::F32, {64, 1000}, -1, 1, 11);
  Tensor ax = Tensor::from_i64({-1});
  for (const char* op : {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceSumSquare"}) {
    auto y = run(op, {&x, &ax});
    // 1000 fp32 additions in 16 lanes: error well under 1e-5 of the sum of magnitudes (~500).
    expect_close(y[0], ref_reduce(x, {1}, op), 1e-5, 2e-4, op);
  }
  // Middle axis of [8, 300, 130]: the column path.
  Tensor z = random_tensor(DType::F32, {8, 300, 130}, -1, 1, 12);
  Tensor a1 = Tensor::from_i64({1});
  expect_close(run("ReduceSum", {&z, &a1})[0], ref_reduce(z, {1}, "ReduceSum"), 1e-5, 1e-4, "column sum");
  // fp16: 4096 copies of 0.1 (0.0999755859375 in fp16). An fp16 accumulator stalls at 256
  // (its spacing there is 0.25 > 2·0.1); fp32 accumulation gives 409.5 exactly representable.
  Tensor h(DType::F16, {4096});
  for (int64_t i = 0; i < 4096; ++i) h.set_f(i, 0.1);
  EXPECT_EQ(run("ReduceSum", {&h})[0].get_f(0), 409.5);
}

TEST(Reduce, ArgMaxArgMin) {
  Tensor x = make(DType::F32, {2, 4}, {1, 3, 3, 0, 5, 5, -1, -1});
  auto am = run("ArgMax", {&x}, {{"axis", i64(1)}});
  ASSERT_EQ(am[0].dtype(), DType::I64);
  EXPECT_EQ(am[0].dims(), (Dims{2, 1}));
  expect_close(am[0], {1, 0}, 0, 0, "argmax first");
  expect_close(run("ArgMax", {&x}, {{"axis", i64(1)}, {"select_last_index", i64(1)}})[0], {2, 1}, 0, 0, "argmax last");
  expect_close(run("ArgMin", {&x}, {{"axis", i64(-1)}, {"keepdims", i64(0)}})[0], {3, 2}, 0, 0, "argmin first");
  expect_close(run("ArgMin", {&x}, {{"axis", i64(1)}, {"select_last_index", i64(1)}})[0], {3, 3}, 0, 0, "argmin last");
  auto a0 = run("ArgMax", {&x}, {{"keepdims", i64(0)}});
  EXPECT_EQ(a0[0].dims(), (Dims{4}));
  expect_close(a0[0], {1, 1, 0, 0}, 0, 0, "argmax axis 0");
  Tensor h = make(DType::F16, {3}, {-1, 2, 1});
  expect_close(run("ArgMax", {&h})[0], {1}, 0, 0, "fp16");
}

TEST(Softmax, AxesAndDtypes) {
  for (DType t : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    Dims shape = {3, 5, 37};
    Tensor x = random_tensor(t, shape, -8, 8, 21);
    for (int64_t axis : {-1, 0, 1, 2}) {
      int64_t a = axis < 0 ? axis + 3 : axis;
      int64_t outer = 1, n = shape[size_t(a)], inner = 1;
      for (int64_t i = 0; i < a; ++i) outer *= shape[size_t(i)];
      for (int64_t i = a + 1; i < 3; ++i) inner *= shape[size_t(i)];
      std::vector<double> sm(size_t(x.numel())), lsm(sm.size()), hm(sm.size(), 0.0);
      for (int64_t o = 0; o < outer; ++o)
        for (int64_t i = 0; i < inner; ++i) {
          auto at = [&](int64_t k) { return (o * n + k) * inner + i; };
          double m = -INFINITY, s = 0;
          int64_t best = 0;
          for (int64_t k = 0; k < n; ++k) {
            m = std::max(m, x.get_f(at(k)));
            if (x.get_f(at(k)) > x.get_f(at(best))) best = k;
          }
          for (int64_t k = 0; k < n; ++k) s += std::exp(x.get_f(at(k)) - m);
          for (int64_t k = 0; k < n; ++k) {
            sm[size_t(at(k))] = std::exp(x.get_f(at(k)) - m) / s;
            lsm[size_t(at(k))] = x.get_f(at(k)) - m - std::log(s);
          }
          hm[size_t(at(best))] = 1;
        }
      std::map<std::string, Attr> attrs = {{"axis", i64(axis)}};
      // fp32: fast_expf (~2 ulp) and one division; half types round the result once.
      double rt = t == DType::F16 ? 2e-3 : t == DType::BF16 ? 1.6e-2 : t == DType::F64 ? 1e-12 : 1e-5;
      expect_close(run("Softmax", {&x}, attrs)[0], sm, rt, 1e-7, "Softmax");
      // LogSoftmax values reach ~-16: absolute error from rounding m + log(s) in fp32.
      expect_close(run("LogSoftmax", {&x}, attrs)[0], lsm, rt, rt * 16, "LogSoftmax");
      expect_close(run("Hardmax", {&x}, attrs)[0], hm, 0, 0, "Hardmax");
    }
  }
}

TEST(Softmax, LongRowsAndLargeValues) {
  Tensor x = random_tensor(DType::F32, {48, 1024}, -20, 20, 8);
  x.set_f(5, 1e30);  // one dominating value in row 0
  auto y = run("Softmax", {&x});
  EXPECT_EQ(y[0].get_f(5), 1.0);
  EXPECT_EQ(y[0].get_f(6), 0.0);
  for (int64_t r = 1; r < 48; ++r) {
    double s = 0;
    for (int64_t k = 0; k < 1024; ++k) s += y[0].get_f(r * 1024 + k);
    EXPECT_NEAR(s, 1.0, 1e-5);  // 1024 fp32 terms each within ~2 ulp
  }
  Tensor m = make(DType::F32, {1, 4}, {0, -INFINITY, 1, -INFINITY});  // masked positions
  expect_close(run("Softmax", {&m})[0], {1 / (1 + std::exp(1.0)), 0, std::exp(1.0) / (1 + std::exp(1.0)), 0}, 1e-6,
               0, "masked");
}

TEST(CumSum, Modes) {
  Tensor x = make(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor a1 = Tensor::scalar_i64(1);
  Tensor a0 = make(DType::I32, {}, {0});
  expect_close(run("CumSum", {&x, &a1})[0], {1, 3, 6, 4, 9, 15}, 0, 0, "axis 1");
  expect_close(run("CumSum", {&x, &a0})[0], {1, 2, 3, 5, 7, 9}, 0, 0, "axis 0");
  expect_close(run("CumSum", {&x, &a1}, {{"exclusive", i64(1)}})[0], {0, 1, 3, 0, 4, 9}, 0, 0, "exclusive");
  expect_close(run("CumSum", {&x, &a1}, {{"reverse", i64(1)}})[0], {6, 5, 3, 15, 11, 6}, 0, 0, "reverse");
  expect_close(run("CumSum", {&x, &a1}, {{"reverse", i64(1)}, {"exclusive", i64(1)}})[0], {5, 3, 0, 11, 6, 0}, 0, 0,
               "reverse exclusive");
  Tensor xi = make(DType::I64, {4}, {1, 2, 3, 4});
  Tensor am1 = Tensor::scalar_i64(-1);
  expect_close(run("CumSum", {&xi, &am1})[0], {1, 3, 6, 10}, 0, 0, "int64");
}

TEST(TopK, TiesAndDirections) {
  Tensor x = make(DType::F32, {2, 5}, {3, 1, 3, 5, 1, 0, 0, 0, 2, 2});
  Tensor k3 = Tensor::from_i64({3});
  auto y = run("TopK", {&x, &k3});
  ASSERT_EQ(y[0].dims(), (Dims{2, 3}));
  ASSERT_EQ(y[1].dtype(), DType::I64);
  expect_close(y[0], {5, 3, 3, 2, 2, 0}, 0, 0, "values");
  expect_close(y[1], {3, 0, 2, 3, 4, 0}, 0, 0, "indices: equal values lower index first");
  auto s = run("TopK", {&x, &k3}, {{"largest", i64(0)}});
  expect_close(s[0], {1, 1, 3, 0, 0, 0}, 0, 0, "smallest values");
  expect_close(s[1], {1, 4, 0, 0, 1, 2}, 0, 0, "smallest indices");
  Tensor k1 = Tensor::from_i64({1});
  auto a0 = run("TopK", {&x, &k1}, {{"axis", i64(0)}});
  ASSERT_EQ(a0[0].dims(), (Dims{1, 5}));
  expect_close(a0[0], {3, 1, 3, 5, 2}, 0, 0, "axis 0 values");
  expect_close(a0[1], {0, 0, 0, 0, 1}, 0, 0, "axis 0 indices");
  Tensor k9 = Tensor::from_i64({9});
  EXPECT_THROW(run("TopK", {&x, &k9}), GraphError);
  // Against a full sort on a larger int input.
  Tensor r = random_tensor(DType::I32, {4, 200}, -50, 50, 3);
  Tensor k20 = Tensor::from_i64({20});
  auto t = run("TopK", {&r, &k20});
  for (int64_t row = 0; row < 4; ++row) {
    std::vector<int64_t> idx(200);
    std::iota(idx.begin(), idx.end(), 0);
    std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) { return r.get_f(row * 200 + a) > r.get_f(row * 200 + b); });
    for (int64_t j = 0; j < 20; ++j) EXPECT_EQ(t[1].get_i(row * 20 + j), idx[size_t(j)]);
  }
}

TEST(ReduceSchema, SymbolicAndUnknownAxes) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("batch"), Dim::symbol("seq"), Dim(768)});
  Value* axes = g.add_constant("axes", Tensor::from_i64({-1}));
  Node* m = g.add_node("ReduceMean", "m", {x, axes}, {"y"});
  infer_node(g, *m);
  EXPECT_EQ(shape_str(m->outputs[0]->shape), shape_str({Dim::symbol("batch"), Dim::symbol("seq"), Dim(1)}));
  Value* dyn = g.add_input("dyn_axes", DType::I64, {Dim(1)});
  Node* d = g.add_node("ReduceSum", "d", {x, dyn}, {"z"});
  infer_node(g, *d);
  EXPECT_EQ(d->outputs[0]->shape.size(), 3u);  // rank known, dims not
  // keepdims=0 with run-time axes: the rank follows from the number of axes.
  Node* d0 = g.add_node("ReduceSum", "d0", {x, dyn}, {"z0"}, {{"keepdims", i64(0)}});
  infer_node(g, *d0);
  EXPECT_EQ(d0->outputs[0]->shape.size(), 2u);
  // ... and cannot be known when the number of axes is not.
  Value* dyn_n = g.add_input("dyn_n", DType::I64, {Dim::symbol("n")});
  Node* d1 = g.add_node("ReduceSum", "d1", {x, dyn_n}, {"z1"}, {{"keepdims", i64(0)}});
  EXPECT_THROW(infer_node(g, *d1), GraphError);
  Value* k = g.add_input("k", DType::I64, {Dim(1)});
  Node* tk = g.add_node("TopK", "tk", {x, k}, {"v", "i"});
  infer_node(g, *tk);
  EXPECT_FALSE(tk->outputs[0]->shape[2].known());
  Node* sm = g.add_node("Softmax", "sm", {x}, {"s"}, {{"axis", i64(3)}});
  EXPECT_THROW(infer_node(g, *sm), GraphError);
  Node* am = g.add_node("ArgMax", "am", {x}, {"a"}, {{"axis", i64(2)}, {"keepdims", i64(0)}});
  infer_node(g, *am);
  EXPECT_EQ(am->outputs[0]->dtype, DType::I64);
  EXPECT_EQ(am->outputs[0]->shape.size(), 2u);
}
