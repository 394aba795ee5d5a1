// Tests of the shape/data-movement family: shape rules (symbolic at build time, exact at
// run time) and CPU kernels. Expected values come from numpy (pasted, with the expression
// that produced them) or from plain index loops written here.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <numeric>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ir/op_schema.h"

using namespace shardrt;

namespace {

Tensor i64(Dims d, std::vector<int64_t> v) {
  Tensor t(DType::I64, std::move(d));
  std::copy(v.begin(), v.end(), t.data<int64_t>());
  return t;
}
Tensor vec64(const std::vector<int64_t>& v) { return i64({int64_t(v.size())}, v); }
Tensor f32(Dims d, std::vector<float> v) { return Tensor::from_f32(std::move(d), v); }
// 0, 1, 2, ... in the given type.
Tensor iota(DType t, Dims d) {
  Tensor x(t, std::move(d));
  for (int64_t i = 0; i < x.numel(); ++i) x.set_f(i, double(t == DType::Bool ? i % 2 : i));
  return x;
}
std::vector<double> values(const Tensor& t) {
  std::vector<double> r;
  for (int64_t i = 0; i < t.numel(); ++i) r.push_back(t.get_f(i));
  return r;
}
std::vector<double> dbl(std::vector<double> v) { return v; }

// Runs one node on concrete inputs (null: omitted input).
std::vector<Tensor> run(const std::string& op, std::vector<const Tensor*> ins,
                        std::map<std::string, Attr> attrs = {}, int n_out = 1) {
  Graph g;
  std::vector<Value*> vals;
  for (size_t i = 0; i < ins.size(); ++i)
    vals.push_back(ins[i] ? g.add_input("x" + std::to_string(i), ins[i]->dtype(), dims_shape(ins[i]->dims())) : nullptr);
  std::vector<std::string> outs;
  for (int i = 0; i < n_out; ++i) outs.push_back("y" + std::to_string(i));
  Node* n = g.add_node(op, "n", vals, outs, std::move(attrs));
  return cpu::eval_node(*n, ins);
}
Tensor run1(const std::string& op, std::vector<const Tensor*> ins, std::map<std::string, Attr> attrs = {}) {
  return run(op, std::move(ins), std::move(attrs))[0];
}

Shape sym(std::initializer_list<const char*> names, std::initializer_list<int64_t> tail = {}) {
  Shape s;
  for (auto* n : names) s.push_back(Dim::symbol(n));
  for (auto v : tail) s.push_back(Dim(v));
  return s;
}

// Naive transpose by index arithmetic: the obviously right reference.
Tensor naive_transpose(const Tensor& x, const std::vector<int64_t>& perm) {
  Dims od;
  for (auto p : perm) od.push_back(x.dim(p));
  Tensor y(x.dtype(), od);
  size_t es = dtype_size(x.dtype());
  int64_t r = x.rank();
  std::vector<int64_t> idx(static_cast<size_t>(r));
  for (int64_t o = 0; o < y.numel(); ++o) {
    int64_t rem = o;
    for (int64_t a = r - 1; a >= 0; --a) { idx[size_t(a)] = rem % od[size_t(a)]; rem /= od[size_t(a)]; }
    int64_t src = 0;
    for (int64_t a = 0; a < r; ++a) {
      int64_t stride = 1;
      for (int64_t b = perm[size_t(a)] + 1; b < r; ++b) stride *= x.dim(b);
      src += idx[size_t(a)] * stride;
    }
    std::memcpy(static_cast<char*>(y.raw()) + o * int64_t(es), static_cast<const char*>(x.raw()) + src * int64_t(es), es);
  }
  return y;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dims() == b.dims() && a.dtype() == b.dtype() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

}  // namespace

// ---------------------------------------------------------------- Reshape family

TEST(ShapeOps, ReshapeMinusOneAndZero) {
  Tensor x = iota(DType::F32, {2, 3, 4});
  Tensor s = vec64({0, -1, 2});
  Tensor y = run1("Reshape", {&x, &s});
  EXPECT_EQ(y.dims(), (Dims{2, 6, 2}));
  EXPECT_EQ(values(y), values(x));
  // allowzero=1: a 0 is a real zero-size dim.
  Tensor z(DType::F32, {0, 3, 4});
  Tensor s2 = vec64({3, 4, 0});
  EXPECT_EQ(run1("Reshape", {&z, &s2}, {{"allowzero", Attr::of(int64_t(1))}}).dims(), (Dims{3, 4, 0}));
  Tensor bad = vec64({5, -1});
  EXPECT_THROW(run1("Reshape", {&x, &bad}), GraphError);
  Tensor two = vec64({-1, -1});
  EXPECT_THROW(run1("Reshape", {&x, &two}), GraphError);
}

TEST(ShapeOps, ReshapeKeepsBytesForEveryDType) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I8, DType::U8, DType::Bool,
                  DType::F64}) {
    Tensor x = iota(t, {4, 6});
    Tensor s = vec64({3, -1});
    Tensor y = run1("Reshape", {&x, &s});
    EXPECT_EQ(y.dims(), (Dims{3, 8}));
    EXPECT_EQ(std::memcmp(y.raw(), x.raw(), x.nbytes()), 0) << dtype_name(t);
  }
}

// The exporter pattern: Shape -> Gather -> Unsqueeze -> Concat -> Reshape with dynamic
// batch and sequence. The symbols must survive to the Reshape's output.
TEST(ShapeOps, SymbolicShapeChainReachesReshape) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, sym({"batch", "seq"}, {768}));
  Value* shp = g.add_node("Shape", "shape", {x}, {"shp"})->outputs[0];
  Value* i0 = g.add_constant("i0", Tensor::scalar_i64(0));
  Value* i1 = g.add_constant("i1", Tensor::scalar_i64(1));
  Value* ax = g.add_constant("ax", vec64({0}));
  Value* b = g.add_node("Gather", "g0", {shp, i0}, {"b"}, {{"axis", Attr::of(int64_t(0))}})->outputs[0];
  Value* s = g.add_node("Gather", "g1", {shp, i1}, {"s"}, {{"axis", Attr::of(int64_t(0))}})->outputs[0];
  Value* bu = g.add_node("Unsqueeze", "u0", {b, ax}, {"bu"})->outputs[0];
  Value* su = g.add_node("Unsqueeze", "u1", {s, ax}, {"su"})->outputs[0];
  Value* tail = g.add_constant("tail", vec64({12, -1}));
  Value* cat = g.add_node("Concat", "cat", {bu, su, tail}, {"cat"}, {{"axis", Attr::of(int64_t(0))}})->outputs[0];
  Node* rs = g.add_node("Reshape", "rs", {x, cat}, {"y"});
  // Then back: [batch, seq, 12, 64] -> [0, 0, -1] and to 2-D [-1, 768].
  Value* back = g.add_constant("back", vec64({0, 0, -1}));
  Node* rb = g.add_node("Reshape", "rb", {rs->outputs[0], back}, {"z"});
  Value* flat = g.add_constant("flat", vec64({-1, 768}));
  Node* rf = g.add_node("Reshape", "rf", {rb->outputs[0], flat}, {"w"});
  Value* unflat = g.add_node("Concat", "cat2", {bu, su, g.add_constant("c768", vec64({768}))}, {"uf"},
                             {{"axis", Attr::of(int64_t(0))}})->outputs[0];
  Node* ru = g.add_node("Reshape", "ru", {rf->outputs[0], unflat}, {"v"});
  infer_graph(g);
  EXPECT_EQ(shp->shape, (Shape{Dim(3)}));
  EXPECT_EQ(shape_str(rs->outputs[0]->shape), "[batch,seq,12,64]");
  EXPECT_EQ(shape_str(rb->outputs[0]->shape), "[batch,seq,768]");
  EXPECT_EQ(shape_str(rf->outputs[0]->shape), "[batch*seq,768]");
  EXPECT_EQ(shape_str(ru->outputs[0]->shape), "[batch,seq,768]");
}

TEST(ShapeOps, ReshapeUnknownShapeKeepsRank) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, sym({"batch"}, {8}));
  Value* s = g.add_input("s", DType::I64, {Dim(3)});
  Node* n = g.add_node("Reshape", "rs", {x, s}, {"y"});
  infer_graph(g);
  EXPECT_EQ(n->outputs[0]->shape.size(), 3u);
  EXPECT_FALSE(n->outputs[0]->shape[0].known());
}

TEST(ShapeOps, SqueezeUnsqueezeFlatten) {
  Tensor x = iota(DType::F16, {1, 3, 1, 2});
  Tensor ax = vec64({0, -2});
  EXPECT_EQ(run1("Squeeze", {&x, &ax}).dims(), (Dims{3, 2}));
  EXPECT_EQ(run1("Squeeze", {&x}).dims(), (Dims{3, 2}));
  Tensor bad = vec64({1});
  EXPECT_THROW(run1("Squeeze", {&x, &bad}), GraphError);
  Tensor y = iota(DType::I32, {3, 4});
  Tensor uax = vec64({-1, 0, 2});  // output rank 5: axes 0, 2, 4
  Tensor u = run1("Unsqueeze", {&y, &uax});
  EXPECT_EQ(u.dims(), (Dims{1, 3, 1, 4, 1}));
  EXPECT_EQ(values(u), values(y));
  Tensor z = iota(DType::F32, {2, 3, 4, 5});
  EXPECT_EQ(run1("Flatten", {&z}, {{"axis", Attr::of(int64_t(2))}}).dims(), (Dims{6, 20}));
  EXPECT_EQ(run1("Flatten", {&z}, {{"axis", Attr::of(int64_t(0))}}).dims(), (Dims{1, 120}));
  EXPECT_EQ(run1("Flatten", {&z}, {{"axis", Attr::of(int64_t(-1))}}).dims(), (Dims{24, 5}));
  EXPECT_EQ(run1("Flatten", {&z}, {{"axis", Attr::of(int64_t(4))}}).dims(), (Dims{120, 1}));
  EXPECT_TRUE(same_bytes(run1("Identity", {&z}), z));
}

TEST(ShapeOps, SymbolicSqueezeUnsqueezeFlattenTranspose) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, sym({"batch", "seq"}, {12, 64}));
  Node* t = g.add_node("Transpose", "t", {x}, {"t"}, {{"perm", Attr::of(std::vector<int64_t>{0, 2, 1, 3})}});
  Node* u = g.add_node("Unsqueeze", "u", {x, g.add_constant("a", vec64({1}))}, {"u"});
  Node* s = g.add_node("Squeeze", "s", {u->outputs[0], g.add_constant("b", vec64({1}))}, {"s"});
  Node* f = g.add_node("Flatten", "f", {x}, {"f"}, {{"axis", Attr::of(int64_t(2))}});
  infer_graph(g);
  EXPECT_EQ(shape_str(t->outputs[0]->shape), "[batch,12,seq,64]");
  EXPECT_EQ(shape_str(u->outputs[0]->shape), "[batch,1,seq,12,64]");
  EXPECT_EQ(shape_str(s->outputs[0]->shape), "[batch,seq,12,64]");
  EXPECT_EQ(shape_str(f->outputs[0]->shape), "[batch*seq,768]");
}

// ---------------------------------------------------------------- Transpose

TEST(ShapeOps, TransposeAllPermsRank4AllDTypes) {
  std::vector<int64_t> perm{0, 1, 2, 3};
  for (DType t : {DType::F32, DType::F16, DType::I64, DType::I8, DType::Bool}) {
    Tensor x = iota(t, {2, 3, 4, 5});
    std::sort(perm.begin(), perm.end());
    do {
      Tensor y = run1("Transpose", {&x}, {{"perm", Attr::of(perm)}});
      ASSERT_TRUE(same_bytes(y, naive_transpose(x, perm))) << dtype_name(t) << " perm " << dims_str(perm);
    } while (std::next_permutation(perm.begin(), perm.end()));
  }
  Tensor x = iota(DType::F32, {2, 3, 4});
  EXPECT_TRUE(same_bytes(run1("Transpose", {&x}), naive_transpose(x, {2, 1, 0})));  // default: reversed
}

// Large enough to take the parallel and tiled paths (odd sizes exercise partial tiles).
TEST(ShapeOps, TransposeLargeMatchesNaive) {
  Tensor x = iota(DType::F32, {3, 37, 129, 65});
  for (std::vector<int64_t> perm : {std::vector<int64_t>{0, 2, 1, 3}, {0, 1, 3, 2}, {3, 0, 2, 1}, {0, 3, 1, 2}}) {
    Tensor y = run1("Transpose", {&x}, {{"perm", Attr::of(perm)}});
    ASSERT_TRUE(same_bytes(y, naive_transpose(x, perm))) << dims_str(perm);
  }
  Tensor h = iota(DType::BF16, {513, 1031});
  ASSERT_TRUE(same_bytes(run1("Transpose", {&h}), naive_transpose(h, {1, 0})));
}

// ---------------------------------------------------------------- Concat / Split / Slice

TEST(ShapeOps, ConcatAxes) {
  Tensor a = iota(DType::F32, {2, 2, 3});
  Tensor b = iota(DType::F32, {2, 1, 3});
  Tensor y = run1("Concat", {&a, &b}, {{"axis", Attr::of(int64_t(-2))}});
  EXPECT_EQ(y.dims(), (Dims{2, 3, 3}));
  // numpy: np.concatenate([a, b], axis=1).flatten()
  EXPECT_EQ(values(y), dbl({0, 1, 2, 3, 4, 5, 0, 1, 2, 6, 7, 8, 9, 10, 11, 3, 4, 5}));
  Tensor c = vec64({1, 2}), d = vec64({}), e = vec64({3});
  EXPECT_EQ(values(run1("Concat", {&c, &d, &e}, {{"axis", Attr::of(int64_t(0))}})), dbl({1, 2, 3}));
  // Large: many rows, checked against a plain loop.
  Tensor p = iota(DType::F32, {64, 100, 33}), q = iota(DType::F32, {64, 7, 33});
  Tensor r = run1("Concat", {&p, &q}, {{"axis", Attr::of(int64_t(1))}});
  for (int64_t i = 0; i < 64; ++i)
    for (int64_t j = 0; j < 107; ++j)
      for (int64_t k = 0; k < 33; ++k) {
        float want = j < 100 ? float((i * 100 + j) * 33 + k) : float((i * 7 + j - 100) * 33 + k);
        ASSERT_EQ(r.data<float>()[(i * 107 + j) * 33 + k], want);
      }
}

TEST(ShapeOps, ConcatSymbolic) {
  Graph g;
  Value* past = g.add_input("past", DType::F16, sym({"batch"}, {8}));
  past->shape.insert(past->shape.begin() + 1, Dim::symbol("past"));
  Value* cur = g.add_input("cur", DType::F16, sym({"batch", "seq"}, {8}));
  Node* n = g.add_node("Concat", "c", {past, cur}, {"y"}, {{"axis", Attr::of(int64_t(1))}});
  infer_graph(g);
  EXPECT_EQ(shape_str(n->outputs[0]->shape), "[batch,past+seq,8]");
}

TEST(ShapeOps, SplitVariants) {
  Tensor x = iota(DType::I64, {2, 7});
  auto eq = run("Split", {&x}, {{"axis", Attr::of(int64_t(1))}, {"num_outputs", Attr::of(int64_t(3))}}, 3);
  ASSERT_EQ(eq.size(), 3u);
  // ONNX 18: ceil(7/3) = 3, last is smaller.
  EXPECT_EQ(eq[0].dims(), (Dims{2, 3}));
  EXPECT_EQ(eq[2].dims(), (Dims{2, 1}));
  EXPECT_EQ(values(eq[1]), dbl({3, 4, 5, 10, 11, 12}));
  EXPECT_EQ(values(eq[2]), dbl({6, 13}));
  Tensor sp = vec64({1, 0, 6});
  auto v = run("Split", {&x, &sp}, {{"axis", Attr::of(int64_t(-1))}}, 3);
  EXPECT_EQ(v[1].dims(), (Dims{2, 0}));
  EXPECT_EQ(values(v[2]), dbl({1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13}));
  Tensor bad = vec64({1, 2, 3});
  EXPECT_THROW(run("Split", {&x, &bad}, {{"axis", Attr::of(int64_t(1))}}, 3), GraphError);
}

TEST(ShapeOps, SliceNegativeStepsAndClamping) {
  Tensor a = iota(DType::F32, {2, 3, 4});
  const int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
  // numpy: a[::-1, 2:0:-1, ::-2] -> shape (2,2,2), [23, 21, 19, 17, 11, 9, 7, 5]
  Tensor st = vec64({-1, 2, kMax}), en = vec64({kMin, 0, kMin}), ax = vec64({0, 1, 2}), sp = vec64({-1, -1, -2});
  Tensor y = run1("Slice", {&a, &st, &en, &ax, &sp});
  EXPECT_EQ(y.dims(), (Dims{2, 2, 2}));
  EXPECT_EQ(values(y), dbl({23, 21, 19, 17, 11, 9, 7, 5}));
  // numpy: a[:, -100:100, 1:-1:2] -> shape (2,3,1), [1, 5, 9, 13, 17, 21]; axes negative.
  Tensor st2 = vec64({-100, 1}), en2 = vec64({100, -1}), ax2 = vec64({-2, -1}), sp2 = vec64({1, 2});
  Tensor y2 = run1("Slice", {&a, &st2, &en2, &ax2, &sp2});
  EXPECT_EQ(y2.dims(), (Dims{2, 3, 1}));
  EXPECT_EQ(values(y2), dbl({1, 5, 9, 13, 17, 21}));
  // Default axes and steps; empty result when start is past the end.
  Tensor st3 = vec64({5}), en3 = vec64({10});
  EXPECT_EQ(run1("Slice", {&a, &st3, &en3}).dims(), (Dims{0, 3, 4}));
  Tensor zero = vec64({0});
  EXPECT_THROW(run1("Slice", {&a, &st3, &en3, &zero, &zero}), GraphError);  // step 0
}

TEST(ShapeOps, SliceSymbolic) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, sym({"batch", "seq"}, {64}));
  const int64_t kMax = std::numeric_limits<int64_t>::max();
  Node* whole = g.add_node("Slice", "s0", {x, g.add_constant("a", vec64({0, 0})), g.add_constant("b", vec64({kMax, 32})),
                                           g.add_constant("c", vec64({1, 2}))}, {"y0"});
  Node* last = g.add_node("Slice", "s1", {x, g.add_constant("d", vec64({-1})), g.add_constant("e", vec64({kMax})),
                                          g.add_constant("f", vec64({1}))}, {"y1"});
  infer_graph(g);
  EXPECT_EQ(shape_str(whole->outputs[0]->shape), "[batch,seq,32]");
  EXPECT_EQ(last->outputs[0]->shape.size(), 3u);
  EXPECT_EQ(last->outputs[0]->shape[0].str(), "batch");
  EXPECT_FALSE(last->outputs[0]->shape[1].known());
}

// ---------------------------------------------------------------- Gather / Scatter

TEST(ShapeOps, GatherNegativeIndicesAndAxes) {
  Tensor x = iota(DType::F32, {3, 4});
  Tensor idx = i64({2, 2}, {0, -1, 1, 2});
  Tensor y = run1("Gather", {&x, &idx}, {{"axis", Attr::of(int64_t(1))}});
  EXPECT_EQ(y.dims(), (Dims{3, 2, 2}));
  // numpy: np.take(x, [[0,-1],[1,2]], axis=1).flatten()
  EXPECT_EQ(values(y), dbl({0, 3, 1, 2, 4, 7, 5, 6, 8, 11, 9, 10}));
  Tensor s = Tensor::scalar_i64(-1);
  Tensor r = run1("Gather", {&x, &s});
  EXPECT_EQ(r.dims(), (Dims{4}));
  EXPECT_EQ(values(r), dbl({8, 9, 10, 11}));
  Tensor i32(DType::I32, {1});
  i32.data<int32_t>()[0] = 2;
  Tensor h = iota(DType::F16, {3, 4});
  EXPECT_EQ(values(run1("Gather", {&h, &i32})), dbl({8, 9, 10, 11}));
  Tensor oob = vec64({3});
  EXPECT_THROW(run1("Gather", {&x, &oob}), GraphError);
  // Embedding-sized lookup against a plain loop.
  Tensor emb = iota(DType::F32, {1000, 256});
  Tensor tok = vec64({5, 999, 0, -3, 42});
  Tensor e = run1("Gather", {&emb, &tok});
  for (int64_t t = 0; t < 5; ++t) {
    int64_t row = tok.data<int64_t>()[t] < 0 ? tok.data<int64_t>()[t] + 1000 : tok.data<int64_t>()[t];
    for (int64_t j = 0; j < 256; ++j) ASSERT_EQ(e.data<float>()[t * 256 + j], float(row * 256 + j));
  }
}

TEST(ShapeOps, GatherElementsAndND) {
  // ONNX spec example: data [[1,2],[3,4]], indices [[0,0],[1,0]], axis 1 -> [[1,1],[4,3]]
  Tensor d = f32({2, 2}, {1, 2, 3, 4});
  Tensor idx = i64({2, 2}, {0, 0, -1, 0});
  EXPECT_EQ(values(run1("GatherElements", {&d, &idx}, {{"axis", Attr::of(int64_t(1))}})), dbl({1, 1, 4, 3}));
  // ONNX spec example (axis 0, smaller indices): data 3x3 1..9, indices [[1,2,0],[2,0,0]]
  Tensor d3 = f32({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor i3 = i64({2, 3}, {1, 2, 0, 2, 0, 0});
  EXPECT_EQ(values(run1("GatherElements", {&d3, &i3})), dbl({4, 8, 3, 7, 2, 3}));
  // GatherND, ONNX spec example 5: batch_dims=1, data [[[0,1],[2,3]],[[4,5],[6,7]]],
  // indices [[1],[0]] -> [[2,3],[4,5]]
  Tensor dn = iota(DType::I32, {2, 2, 2});
  Tensor in = i64({2, 1}, {1, 0});
  Tensor g = run1("GatherND", {&dn, &in}, {{"batch_dims", Attr::of(int64_t(1))}});
  EXPECT_EQ(g.dims(), (Dims{2, 2}));
  EXPECT_EQ(values(g), dbl({2, 3, 4, 5}));
  // Example 3: indices [[[0,1]],[[1,0]]] on the same data -> [[[2,3]],[[4,5]]]
  Tensor in3 = i64({2, 1, 2}, {0, 1, 1, 0});
  Tensor g3 = run1("GatherND", {&dn, &in3});
  EXPECT_EQ(g3.dims(), (Dims{2, 1, 2}));
  EXPECT_EQ(values(g3), dbl({2, 3, 4, 5}));
}

TEST(ShapeOps, ScatterNDReductions) {
  // ONNX spec example 1: data [1..8], indices [[4],[3],[1],[7]], updates [9,10,11,12]
  Tensor d = f32({8}, {1, 2, 3, 4, 5, 6, 7, 8});
  Tensor idx = i64({4, 1}, {4, 3, 1, 7});
  Tensor u = f32({4}, {9, 10, 11, 12});
  EXPECT_EQ(values(run1("ScatterND", {&d, &idx, &u})), dbl({1, 11, 3, 10, 9, 6, 7, 12}));
  // Duplicate index 1 with reductions; numpy loop: out[1] op= 2 then op= 3.
  Tensor dup = i64({2, 1}, {1, -7});  // -7 wraps to 1
  Tensor u2 = f32({2}, {2, 3});
  auto with = [&](const char* r) {
    return values(run1("ScatterND", {&d, &dup, &u2}, {{"reduction", Attr::of(std::string(r))}}))[1];
  };
  EXPECT_EQ(with("add"), 7);
  EXPECT_EQ(with("mul"), 12);
  EXPECT_EQ(with("max"), 3);
  EXPECT_EQ(with("min"), 2);
  // Slice updates on int64 rows.
  Tensor m = iota(DType::I64, {3, 2});
  Tensor ri = i64({1, 1}, {2});
  Tensor ru = i64({1, 2}, {-1, -2});
  EXPECT_EQ(values(run1("ScatterND", {&m, &ri, &ru}, {{"reduction", Attr::of(std::string("add"))}})),
            dbl({0, 1, 2, 3, 3, 3}));
}

TEST(ShapeOps, ScatterElementsReductions) {
  // ONNX spec: data [[1,2,3,4,5]], indices [[1,1]], updates [[1.1,2.1]], axis 1, add
  // -> [[1, 5.2, 3, 4, 5]]
  Tensor d = f32({1, 5}, {1, 2, 3, 4, 5});
  Tensor idx = i64({1, 2}, {1, 1});
  Tensor u = f32({1, 2}, {1.1f, 2.1f});
  Tensor y = run1("ScatterElements", {&d, &idx, &u}, {{"axis", Attr::of(int64_t(1))}, {"reduction", Attr::of(std::string("add"))}});
  EXPECT_NEAR(y.data<float>()[1], 5.2f, 1e-6f);  // fp32 sum of 2 + 1.1 + 2.1: a few ulps
  Tensor idx2 = i64({1, 2}, {1, -2});
  Tensor y2 = run1("ScatterElements", {&d, &idx2, &u}, {{"axis", Attr::of(int64_t(1))}});
  EXPECT_EQ(values(y2), values(f32({1, 5}, {1, 1.1f, 3, 2.1f, 5})));
  Tensor y3 = run1("ScatterElements", {&d, &idx, &u}, {{"axis", Attr::of(int64_t(1))}, {"reduction", Attr::of(std::string("max"))}});
  EXPECT_EQ(values(y3)[1], 2.1f);
  // fp16 data: the reduction happens in float and rounds once per update.
  Tensor h = d.cast(DType::F16);
  Tensor hu = f32({1, 2}, {3, 4}).cast(DType::F16);
  Tensor y4 = run1("ScatterElements", {&h, &idx, &hu}, {{"axis", Attr::of(int64_t(1))}, {"reduction", Attr::of(std::string("mul"))}});
  EXPECT_EQ(values(y4), dbl({1, 24, 3, 4, 5}));
  Tensor oob = i64({1, 2}, {5, 0});
  EXPECT_THROW(run1("ScatterElements", {&d, &oob, &u}, {{"axis", Attr::of(int64_t(1))}}), GraphError);
}

// ---------------------------------------------------------------- Expand / Tile / Pad

TEST(ShapeOps, ExpandAndTile) {
  Tensor x = f32({3, 1}, {1, 2, 3});
  Tensor s = vec64({2, 1, 4});
  Tensor y = run1("Expand", {&x, &s});
  EXPECT_EQ(y.dims(), (Dims{2, 3, 4}));
  // numpy: np.broadcast_to(x, (2,3,4)).flatten()
  EXPECT_EQ(values(y), dbl({1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  Tensor s2 = vec64({1, 1});  // shape smaller than the input keeps the input's dims
  EXPECT_EQ(run1("Expand", {&x, &s2}).dims(), (Dims{3, 1}));
  Tensor bad = vec64({2, 2});
  EXPECT_THROW(run1("Expand", {&x, &bad}), GraphError);
  Tensor t = iota(DType::I8, {2, 3});
  Tensor r = vec64({2, 2});
  Tensor ty = run1("Tile", {&t, &r});
  EXPECT_EQ(ty.dims(), (Dims{4, 6}));
  // numpy: np.tile(np.arange(6).reshape(2,3), (2,2)).flatten()
  EXPECT_EQ(values(ty), dbl({0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5, 0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5}));
  // Large broadcast of a mask [B,1,S,S] -> [B,H,S,S] against a loop.
  Tensor m = iota(DType::F32, {2, 1, 50, 50});
  Tensor ms = vec64({2, 8, 50, 50});
  Tensor my = run1("Expand", {&m, &ms});
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 8; ++h)
      for (int64_t i = 0; i < 2500; ++i) ASSERT_EQ(my.data<float>()[(b * 8 + h) * 2500 + i], float(b * 2500 + i));
}

TEST(ShapeOps, ExpandSymbolic) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(1), Dim(1), Dim::symbol("seq")});
  Value* y = g.add_input("y", DType::F32, sym({"batch", "heads", "seq"}));
  Value* shp = g.add_node("Shape", "s", {y}, {"shp"})->outputs[0];
  Node* e = g.add_node("Expand", "e", {x, shp}, {"z"});
  infer_graph(g);
  EXPECT_EQ(shape_str(e->outputs[0]->shape), "[batch,heads,seq]");
}

TEST(ShapeOps, PadModes) {
  Tensor x = iota(DType::F32, {3, 4});
  Tensor pads = vec64({1, 3, 2, 1});
  auto pad = [&](const char* m, const Tensor* cv = nullptr) {
    return run1("Pad", {&x, &pads, cv}, {{"mode", Attr::of(std::string(m))}});
  };
  // numpy: np.pad(np.arange(12).reshape(3,4), ((1,2),(3,1)), mode=M).flatten()
  EXPECT_EQ(values(pad("reflect")), dbl({7, 6, 5, 4, 5, 6, 7, 6, 3, 2, 1, 0, 1, 2, 3, 2, 7, 6, 5, 4, 5, 6, 7, 6,
                                        11, 10, 9, 8, 9, 10, 11, 10, 7, 6, 5, 4, 5, 6, 7, 6, 3, 2, 1, 0, 1, 2, 3, 2}));
  EXPECT_EQ(values(pad("edge")), dbl({0, 0, 0, 0, 1, 2, 3, 3, 0, 0, 0, 0, 1, 2, 3, 3, 4, 4, 4, 4, 5, 6, 7, 7,
                                     8, 8, 8, 8, 9, 10, 11, 11, 8, 8, 8, 8, 9, 10, 11, 11, 8, 8, 8, 8, 9, 10, 11, 11}));
  EXPECT_EQ(values(pad("wrap")), dbl({9, 10, 11, 8, 9, 10, 11, 8, 1, 2, 3, 0, 1, 2, 3, 0, 5, 6, 7, 4, 5, 6, 7, 4,
                                     9, 10, 11, 8, 9, 10, 11, 8, 1, 2, 3, 0, 1, 2, 3, 0, 5, 6, 7, 4, 5, 6, 7, 4}));
  Tensor cv = f32({}, {-1});
  Tensor c = pad("constant", &cv);
  EXPECT_EQ(c.dims(), (Dims{6, 8}));
  EXPECT_EQ(values(c)[0], -1);
  EXPECT_EQ(values(c)[1 * 8 + 3], 0);
  EXPECT_EQ(values(c)[3 * 8 + 6], 11);
  // Negative pads crop first: numpy np.pad(x[:, 1:], ((2,0),(0,2)), mode='reflect')
  Tensor crop = vec64({2, -1, 0, 2});
  EXPECT_EQ(values(run1("Pad", {&x, &crop, nullptr}, {{"mode", Attr::of(std::string("reflect"))}})),
            dbl({9, 10, 11, 10, 9, 5, 6, 7, 6, 5, 1, 2, 3, 2, 1, 5, 6, 7, 6, 5, 9, 10, 11, 10, 9}));
  // axes input: pad only the last axis of an int32 tensor by (1, 0).
  Tensor xi = iota(DType::I32, {2, 2});
  Tensor p2 = vec64({1, 0}), ax = vec64({-1});
  Tensor ci(DType::I32, {});
  ci.data<int32_t>()[0] = 7;
  EXPECT_EQ(values(run1("Pad", {&xi, &p2, &ci, &ax})), dbl({7, 0, 1, 7, 2, 3}));
}

// ---------------------------------------------------------------- creation ops

TEST(ShapeOps, ShapeSizeRangeConstantOfShape) {
  Tensor x = iota(DType::F32, {2, 3, 4});
  EXPECT_EQ(values(run1("Shape", {&x})), dbl({2, 3, 4}));
  EXPECT_EQ(values(run1("Shape", {&x}, {{"start", Attr::of(int64_t(-2))}})), dbl({3, 4}));
  EXPECT_EQ(values(run1("Shape", {&x}, {{"start", Attr::of(int64_t(1))}, {"end", Attr::of(int64_t(-1))}})), dbl({3}));
  EXPECT_EQ(run1("Shape", {&x}, {{"start", Attr::of(int64_t(2))}, {"end", Attr::of(int64_t(1))}}).dims(), (Dims{0}));
  EXPECT_EQ(run1("Size", {&x}).data<int64_t>()[0], 24);
  // numpy: np.arange(10, 4, -3) -> [10, 7]; np.arange(1.0, 2.0, 0.25) -> 4 values
  Tensor a = Tensor::scalar_i64(10), b = Tensor::scalar_i64(4), d = Tensor::scalar_i64(-3);
  EXPECT_EQ(values(run1("Range", {&a, &b, &d})), dbl({10, 7}));
  Tensor fa = f32({}, {1}), fb = f32({}, {2}), fd = f32({}, {0.25f});
  EXPECT_EQ(values(run1("Range", {&fa, &fb, &fd})), dbl({1, 1.25, 1.5, 1.75}));
  Tensor shp = vec64({2, 3});
  EXPECT_EQ(values(run1("ConstantOfShape", {&shp})), dbl({0, 0, 0, 0, 0, 0}));
  Tensor val(DType::I32, {1});
  val.data<int32_t>()[0] = 5;
  Tensor c = run1("ConstantOfShape", {&shp}, {{"value", Attr::of(val)}});
  EXPECT_EQ(c.dtype(), DType::I32);
  EXPECT_EQ(values(c), dbl({5, 5, 5, 5, 5, 5}));
  EXPECT_EQ(values(run1("Constant", {}, {{"value_ints", Attr::of(std::vector<int64_t>{4, 5})}})), dbl({4, 5}));
  EXPECT_EQ(run1("Constant", {}, {{"value_float", Attr::of(2.5f)}}).data<float>()[0], 2.5f);
  Tensor cv = iota(DType::F16, {2, 2});
  EXPECT_TRUE(same_bytes(run1("Constant", {}, {{"value", Attr::of(cv)}}), cv));
}

TEST(ShapeOps, TriluEyeLikeOneHot) {
  Tensor x = iota(DType::F32, {2, 3, 4});
  Tensor k = Tensor::scalar_i64(-1);
  Tensor lo = run1("Trilu", {&x, &k}, {{"upper", Attr::of(int64_t(0))}});
  // numpy: np.tril(np.arange(24).reshape(2,3,4), -1)[1].flatten()
  std::vector<double> lv = values(lo);
  std::vector<double> l1(lv.begin() + 12, lv.end());
  EXPECT_EQ(l1, dbl({0, 0, 0, 0, 16, 0, 0, 0, 20, 21, 0, 0}));
  Tensor k1 = Tensor::scalar_i64(1);
  // numpy: np.triu(np.arange(24).reshape(2,3,4), 1)[0].flatten()
  std::vector<double> up = values(run1("Trilu", {&x, &k1}));
  EXPECT_EQ(std::vector<double>(up.begin(), up.begin() + 12), dbl({0, 1, 2, 3, 0, 0, 6, 7, 0, 0, 0, 11}));
  Tensor e = iota(DType::I32, {3, 4});
  Tensor eye = run1("EyeLike", {&e}, {{"k", Attr::of(int64_t(1))}, {"dtype", Attr::of(int64_t(1))}});
  EXPECT_EQ(eye.dtype(), DType::F32);
  EXPECT_EQ(values(eye), dbl({0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}));
  // OneHot: indices [1, -1, 5], depth 3, values [0, 9], axis -1; 5 is out of range.
  Tensor idx = vec64({1, -1, 5});
  Tensor depth = f32({}, {3});
  Tensor vals = f32({2}, {0, 9});
  Tensor oh = run1("OneHot", {&idx, &depth, &vals});
  EXPECT_EQ(oh.dims(), (Dims{3, 3}));
  EXPECT_EQ(values(oh), dbl({0, 9, 0, 0, 0, 9, 0, 0, 0}));
  Tensor oh0 = run1("OneHot", {&idx, &depth, &vals}, {{"axis", Attr::of(int64_t(0))}});
  EXPECT_EQ(values(oh0), dbl({0, 0, 0, 9, 0, 0, 0, 9, 0}));
}

TEST(ShapeOps, NonZeroCompressDropout) {
  Tensor x = f32({2, 3}, {0, 1, 0, -2, 0, 0.5f});
  Tensor nz = run1("NonZero", {&x});
  EXPECT_EQ(nz.dims(), (Dims{2, 3}));
  EXPECT_EQ(values(nz), dbl({0, 1, 1, 1, 0, 2}));  // numpy: np.array(np.nonzero(x))
  Tensor cond(DType::Bool, {2});
  cond.data<uint8_t>()[1] = 1;
  Tensor c = run1("Compress", {&x, &cond}, {{"axis", Attr::of(int64_t(0))}});
  EXPECT_EQ(values(c), dbl({-2, 0, 0.5}));
  Tensor flat = run1("Compress", {&x, &cond});  // no axis: flattened, only the first 2 entries judged
  EXPECT_EQ(values(flat), dbl({1}));
  auto d = run("Dropout", {&x}, {}, 2);
  EXPECT_TRUE(same_bytes(d[0], x));
  EXPECT_EQ(values(d[1]), dbl({1, 1, 1, 1, 1, 1}));
  Tensor ratio = f32({}, {0.5f});
  Tensor train(DType::Bool, {});
  train.data<uint8_t>()[0] = 1;
  EXPECT_THROW(run("Dropout", {&x, &ratio, &train}, {}, 2), GraphError);
}

TEST(ShapeOps, DepthToSpaceSpaceToDepthReverseSequence) {
  Tensor x = iota(DType::F32, {2, 8, 2, 3});
  Tensor dcr = run1("DepthToSpace", {&x}, {{"blocksize", Attr::of(int64_t(2))}});
  EXPECT_EQ(dcr.dims(), (Dims{2, 2, 4, 6}));
  // numpy: x.reshape(n,b,b,c//4,h,w).transpose(0,3,4,1,5,2).reshape(n,c//4,h*b,w*b), first 24
  std::vector<double> v = values(dcr);
  EXPECT_EQ(std::vector<double>(v.begin(), v.begin() + 24),
            dbl({0, 12, 1, 13, 2, 14, 24, 36, 25, 37, 26, 38, 3, 15, 4, 16, 5, 17, 27, 39, 28, 40, 29, 41}));
  Tensor crd = run1("DepthToSpace", {&x}, {{"blocksize", Attr::of(int64_t(2))}, {"mode", Attr::of(std::string("CRD"))}});
  v = values(crd);
  // numpy: x.reshape(n,c//4,b,b,h,w).transpose(0,1,4,2,5,3).reshape(...), first 24
  EXPECT_EQ(std::vector<double>(v.begin(), v.begin() + 24),
            dbl({0, 6, 1, 7, 2, 8, 12, 18, 13, 19, 14, 20, 3, 9, 4, 10, 5, 11, 15, 21, 16, 22, 17, 23}));
  // SpaceToDepth inverts DCR DepthToSpace.
  Tensor back = run1("SpaceToDepth", {&dcr}, {{"blocksize", Attr::of(int64_t(2))}});
  EXPECT_TRUE(same_bytes(back, x));
  // ReverseSequence, ONNX spec example (time_axis 0, batch_axis 1), lens [4,3,2,1].
  Tensor rs = iota(DType::F32, {4, 4});
  Tensor lens = vec64({4, 3, 2, 1});
  Tensor r = run1("ReverseSequence", {&rs, &lens}, {{"time_axis", Attr::of(int64_t(0))}, {"batch_axis", Attr::of(int64_t(1))}});
  EXPECT_EQ(values(r), dbl({12, 9, 6, 3, 8, 5, 2, 7, 4, 1, 10, 11, 0, 13, 14, 15}));
}

TEST(ShapeOps, ImportValidation) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2)});
  Node* p = g.add_node("Pad", "p", {x, g.add_constant("p", vec64({1, 1}))}, {"y"}, {{"mode", Attr::of(std::string("symmetric"))}});
  EXPECT_NE(find_schema("Pad")->validate(*p), "");
  Node* s = g.add_node("ScatterND", "s", {x, x, x}, {"z"}, {{"reduction", Attr::of(std::string("avg"))}});
  EXPECT_NE(find_schema("ScatterND")->validate(*s), "");
  Node* c = g.add_node("Constant", "c", {}, {"w"});
  EXPECT_NE(find_schema("Constant")->validate(*c), "");
}
