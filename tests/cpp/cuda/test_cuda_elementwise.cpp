// CUDA elementwise kernels (kernels_elementwise*.cu) against the CPU kernels: the same node
// on the same inputs, for every op of the family, its dtypes, and the broadcast paths
// (same shape with odd sizes, scalar, row, channel, both inputs broadcast, strided
// general path, empty).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "../op_test_util.h"
#include "backends/cuda/cuda_eval.h"
#include "ir/onnx_dtype.h"

namespace shardrt {
namespace {

using optest::make;
using optest::make_node;
using Attrs = std::map<std::string, Attr>;

#define NEED_GPU() \
  if (!cuda::device_available()) GTEST_SKIP() << "no GPU"

Attr ai(int64_t v) { return Attr::of(v); }
Attr af(float v) { return Attr::of(v); }
Attr as(const char* s) { return Attr::of(std::string(s)); }

// Exact: the GPU computes the same correctly rounded operations (+ - * /, sqrt, rounding,
// comparisons, moves, conversions) and must give the same values.
// Math: transcendental formulas, where CUDA's functions (fast math is off) and glibc's / the
// CPU's fast_expf each differ from the true value by up to a few ulp.
enum class Tol { Exact, Math };

struct TolV {
  double rt, at;
};

TolV tol_of(Tol k, DType t) {
  if (k == Tol::Exact) return {0, 0};
  switch (t) {
    // fp32: a few ulp (2^-23 ≈ 1.2e-7 each) per function, compositions (Mish, Softplus,
    // Gelu, Selu) add a few more: 1e-5 relative leaves margin; the absolute part covers
    // results near zero (e.g. sin near pi), where relative error is not meaningful.
    case DType::F32: return {1e-5, 1e-6};
    // fp64: CUDA's double functions are within 2 ulp (2^-52 ≈ 2.2e-16) of glibc's.
    case DType::F64: return {1e-13, 1e-15};
    // fp16/bf16: both sides compute the same fp32 formula on the same inputs and round once;
    // a few-ulp fp32 difference can flip that rounding by one ulp of the result (2^-10 for
    // fp16, 2^-7 for bf16), or the fp32 intermediate sum of Mean differs by such a rounding.
    case DType::F16: return {2e-3, 1e-5};
    case DType::BF16: return {1.6e-2, 1e-4};
    default: return {0, 0};
  }
}

// Runs `op` on both backends and compares every output: dtype and dims always, values
// within the tolerance (NaN matches NaN; ±inf and integers must be equal).
void check(const std::string& op, const std::vector<const Tensor*>& ins, Attrs attrs = {}, Tol k = Tol::Exact) {
  Node n = make_node(op, std::move(attrs));
  std::vector<Tensor> ref = cpu::eval_node(n, ins);
  std::vector<Tensor> got = cuda::eval_node(n, ins);
  std::string what = op + " in:";
  for (const Tensor* t : ins) what += t ? " " + std::string(dtype_name(t->dtype())) + dims_str(t->dims()) : " -";
  ASSERT_EQ(ref.size(), got.size()) << what;
  for (size_t o = 0; o < ref.size(); ++o) {
    ASSERT_EQ(ref[o].dtype(), got[o].dtype()) << what << " output " << o;
    ASSERT_EQ(ref[o].dims(), got[o].dims()) << what << " output " << o;
    TolV tv = tol_of(k, ref[o].dtype());
    bool fl = is_float(ref[o].dtype());
    int bad = 0;
    for (int64_t i = 0; i < ref[o].numel(); ++i) {
      bool ok;
      if (!fl) {
        ok = got[o].get_i(i) == ref[o].get_i(i);
      } else {
        double a = got[o].get_f(i), b = ref[o].get_f(i);
        if (std::isnan(b)) ok = std::isnan(a);
        else if (std::isinf(b) || tv.rt == 0) ok = a == b;
        else ok = std::fabs(a - b) <= tv.at + tv.rt * std::fabs(b);
      }
      if (!ok && ++bad <= 5)
        ADD_FAILURE() << what << " output " << o << " element " << i << ": gpu " << got[o].get_f(i) << " cpu "
                      << ref[o].get_f(i);
    }
    EXPECT_EQ(bad, 0) << what << " output " << o;
  }
}

const std::vector<DType> kFloat = {DType::F32, DType::F16, DType::BF16, DType::F64};
const std::vector<DType> kInt = {DType::I64, DType::I32, DType::I8, DType::U8};
const std::vector<DType> kNumeric = {DType::F32, DType::F16, DType::BF16, DType::F64,
                                     DType::I64, DType::I32, DType::I8, DType::U8};

// Random values in [lo, hi) (whole numbers for integer types, or for any type when
// `whole`, so that comparisons meet equal values); uint8 gets |lo|.. shifted to >= 0.
Tensor rnd(DType t, const Dims& d, double lo, double hi, unsigned seed, bool whole = false) {
  if (t == DType::Bool)
    return optest::random_tensor(DType::F32, d, 0, 2, seed).cast(DType::I64).cast(DType::Bool);
  if (t == DType::U8 && lo < 0) hi -= lo, lo = 0;
  if (whole) return optest::random_tensor(DType::I64, d, lo, hi, seed).cast(t);
  return optest::random_tensor(t, d, lo, hi, seed);
}

std::vector<DType> types_of(char kind) {
  switch (kind) {
    case 'F': return kFloat;
    case 'N': return kNumeric;
    case 'I': return kInt;
    case 'B': return {DType::Bool};
    default: return {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                     DType::I32, DType::I8,  DType::U8,   DType::Bool};
  }
}

// Odd sizes (not multiples of the 4/8/16-element vectors), a single element, empty, and
// one size above a resident wave of 132 SMs x 2048 threads so the grid-stride loops turn.
const std::vector<Dims> kUnaryShapes = {{1023}, {2, 3, 5}, {1}, {0}, {33, 65}, {4, 64}};
const Dims kBig = {3, 100003};

// Values where functions have edges: NaN, ±inf, ±0, outside most domains, halves.
Tensor specials(DType t) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  return make(t, {11}, {nan, inf, -inf, 0.0, -0.0, 100, -100, 0.5, -0.5, 2.5, -1.5});
}

// ---- registry ----

// Needs no device: the registry is filled without CUDA calls.
TEST(CudaElementwise, EveryOpIsRegistered) {
  for (const char* op :
       {"Exp", "Log", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh",
        "Acosh", "Atanh", "Tanh", "Sigmoid", "Erf", "Floor", "Ceil", "Round", "Softplus", "Softsign", "HardSwish",
        "Mish", "Abs", "Neg", "Sign", "Relu", "Not", "BitwiseNot", "LeakyRelu", "Elu", "Selu", "Celu", "HardSigmoid",
        "ThresholdedRelu", "Shrink", "Gelu", "IsNaN", "IsInf", "Add", "Sub", "Mul", "Div", "Mod", "PRelu", "Equal",
        "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor", "BitwiseAnd", "BitwiseOr",
        "BitwiseXor", "BitShift", "Pow", "Max", "Min", "Sum", "Mean", "Cast", "CastLike", "Where", "Clip", "Dropout",
        "shardrt.Silu", "shardrt.SwiGLU"})
    EXPECT_TRUE(cuda::has_kernel(op)) << op;
}

// ---- unary ----

struct UnaryCase {
  const char* op;
  char kind;  // F float types, N numeric, I integer, B bool
  double lo, hi;
  Tol tol;
  Attrs attrs;
};

const std::vector<UnaryCase>& unary_cases() {
  static const std::vector<UnaryCase> c = {
      {"Exp", 'F', -10, 10, Tol::Math, {}},
      {"Log", 'F', 0.01, 100, Tol::Math, {}},
      {"Sqrt", 'F', 0, 100, Tol::Exact, {}},
      {"Reciprocal", 'F', -10, 10, Tol::Exact, {}},
      {"Sin", 'F', -3, 3, Tol::Math, {}},
      {"Cos", 'F', -3, 3, Tol::Math, {}},
      {"Tan", 'F', -1.5, 1.5, Tol::Math, {}},
      {"Asin", 'F', -0.99, 0.99, Tol::Math, {}},
      {"Acos", 'F', -0.99, 0.99, Tol::Math, {}},
      {"Atan", 'F', -10, 10, Tol::Math, {}},
      {"Sinh", 'F', -5, 5, Tol::Math, {}},
      {"Cosh", 'F', -5, 5, Tol::Math, {}},
      {"Asinh", 'F', -10, 10, Tol::Math, {}},
      {"Acosh", 'F', 1.01, 10, Tol::Math, {}},
      {"Atanh", 'F', -0.99, 0.99, Tol::Math, {}},
      {"Tanh", 'F', -5, 5, Tol::Math, {}},
      {"Sigmoid", 'F', -10, 10, Tol::Math, {}},
      {"Erf", 'F', -3, 3, Tol::Math, {}},
      {"Floor", 'F', -10, 10, Tol::Exact, {}},
      {"Ceil", 'F', -10, 10, Tol::Exact, {}},
      {"Round", 'F', -10, 10, Tol::Exact, {}},
      {"Softplus", 'F', -20, 20, Tol::Math, {}},
      {"Softsign", 'F', -10, 10, Tol::Math, {}},
      {"HardSwish", 'F', -5, 5, Tol::Math, {}},
      {"Mish", 'F', -10, 10, Tol::Math, {}},
      {"Abs", 'N', -50, 50, Tol::Exact, {}},
      {"Neg", 'N', -50, 50, Tol::Exact, {}},
      {"Sign", 'N', -50, 50, Tol::Exact, {}},
      {"Relu", 'N', -50, 50, Tol::Exact, {}},
      {"Not", 'B', 0, 2, Tol::Exact, {}},
      {"BitwiseNot", 'I', -100, 100, Tol::Exact, {}},
      {"LeakyRelu", 'F', -5, 5, Tol::Exact, {{"alpha", af(0.1f)}}},
      {"Elu", 'F', -5, 5, Tol::Math, {{"alpha", af(0.7f)}}},
      {"Selu", 'F', -5, 5, Tol::Math, {}},
      {"Celu", 'F', -5, 5, Tol::Math, {{"alpha", af(1.3f)}}},
      {"HardSigmoid", 'F', -5, 5, Tol::Math, {{"alpha", af(0.25f)}, {"beta", af(0.4f)}}},
      {"ThresholdedRelu", 'F', -3, 3, Tol::Exact, {{"alpha", af(0.5f)}}},
      {"Shrink", 'N', -5, 5, Tol::Exact, {{"bias", af(1.5f)}, {"lambd", af(2.0f)}}},
      {"Gelu", 'F', -6, 6, Tol::Math, {}},
      {"Gelu", 'F', -6, 6, Tol::Math, {{"approximate", as("tanh")}}},
      {"shardrt.Silu", 'F', -10, 10, Tol::Math, {}},
      {"IsNaN", 'F', -5, 5, Tol::Exact, {}},
      {"IsInf", 'F', -5, 5, Tol::Exact, {}},
      {"IsInf", 'F', -5, 5, Tol::Exact, {{"detect_negative", ai(0)}}},
      {"IsInf", 'F', -5, 5, Tol::Exact, {{"detect_positive", ai(0)}}},
  };
  return c;
}

TEST(CudaElementwise, Unary) {
  NEED_GPU();
  unsigned seed = 1;
  for (const UnaryCase& u : unary_cases())
    for (DType t : types_of(u.kind)) {
      for (const Dims& d : kUnaryShapes) {
        Tensor x = rnd(t, d, u.lo, u.hi, seed++);
        check(u.op, {&x}, u.attrs, u.tol);
      }
      if (is_float(t)) {
        Tensor s = specials(t);
        check(u.op, {&s}, u.attrs, u.tol);
      }
    }
}

TEST(CudaElementwise, UnaryLargeGridStride) {
  NEED_GPU();
  unsigned seed = 100;
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    Tensor x = rnd(t, kBig, -6, 6, seed++);
    check("Gelu", {&x}, {}, Tol::Math);
    check("Relu", {&x});
    check("IsNaN", {&x});
  }
}

TEST(CudaElementwise, RoundHalvesToEven) {
  NEED_GPU();
  for (DType t : kFloat) {
    Tensor x = make(t, {9}, {-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 0.49, -3.51});
    check("Round", {&x});
  }
}

// ---- binary ----

// Broadcast pairs: same shape (odd), a [4,1,5] vs [3,1] both broadcast (general strided
// path), scalar either side, row [N] and [1,1,N] (vectorisable or not by N), channel
// [C,1,1], column [M,1], [M,1] vs [1,N], five dims strided, empty, single element.
const std::vector<std::pair<Dims, Dims>> kPairs = {
    {{1023}, {1023}},       {{4, 1, 5}, {3, 1}},    {{}, {7, 9}},         {{7, 9}, {}},
    {{7, 9}, {9}},          {{5, 64}, {64}},        {{2, 3, 64}, {1, 1, 64}}, {{2, 8, 3, 4}, {8, 1, 1}},
    {{2, 8, 4, 4}, {8, 1, 1}}, {{3, 1}, {3, 64}},   {{6, 1}, {1, 40}},    {{2, 3, 4, 5, 6}, {2, 1, 4, 1, 6}},
    {{0, 5}, {5}},          {{1}, {1}},             {{1, 1}, {5, 1, 3}},
};

struct BinaryCase {
  const char* op;
  char kind;  // F, N, I, B, A (any)
  double lo, hi;
  Tol tol;
  Attrs attrs;
  bool whole = false;  // whole-number values (comparisons meet equal values)
};

const std::vector<BinaryCase>& binary_cases() {
  static const std::vector<BinaryCase> c = {
      {"Add", 'N', -50, 50, Tol::Exact, {}},
      {"Sub", 'N', -50, 50, Tol::Exact, {}},
      {"Mul", 'N', -20, 20, Tol::Exact, {}},
      // Integer division by zero gives 0 on both backends; floats give ±inf/NaN.
      {"Div", 'N', -10, 10, Tol::Exact, {}},
      {"Mod", 'N', -10, 10, Tol::Exact, {}},
      {"Mod", 'N', -10, 10, Tol::Exact, {{"fmod", ai(1)}}},
      {"PRelu", 'N', -10, 10, Tol::Exact, {}},
      {"Equal", 'A', -3, 3, Tol::Exact, {}, true},
      {"Less", 'N', -3, 3, Tol::Exact, {}, true},
      {"Greater", 'N', -3, 3, Tol::Exact, {}, true},
      {"LessOrEqual", 'N', -3, 3, Tol::Exact, {}, true},
      {"GreaterOrEqual", 'N', -3, 3, Tol::Exact, {}, true},
      {"And", 'B', 0, 2, Tol::Exact, {}},
      {"Or", 'B', 0, 2, Tol::Exact, {}},
      {"Xor", 'B', 0, 2, Tol::Exact, {}},
      {"BitwiseAnd", 'I', -100, 100, Tol::Exact, {}},
      {"BitwiseOr", 'I', -100, 100, Tol::Exact, {}},
      {"BitwiseXor", 'I', -100, 100, Tol::Exact, {}},
  };
  return c;
}

TEST(CudaElementwise, Binary) {
  NEED_GPU();
  unsigned seed = 1000;
  for (const BinaryCase& b : binary_cases())
    for (DType t : types_of(b.kind))
      for (const auto& [da, db] : kPairs) {
        Tensor x = rnd(t, da, b.lo, b.hi, seed++, b.whole);
        Tensor y = rnd(t, db, b.lo, b.hi, seed++, b.whole);
        check(b.op, {&x, &y}, b.attrs, b.tol);
      }
}

TEST(CudaElementwise, BinaryLargeGridStride) {
  NEED_GPU();
  unsigned seed = 1500;
  for (DType t : {DType::F32, DType::F16, DType::I64}) {
    Tensor x = rnd(t, kBig, -50, 50, seed++);
    Tensor y = rnd(t, kBig, -50, 50, seed++);
    Tensor row = rnd(t, {kBig[1]}, -50, 50, seed++);
    Tensor col = rnd(t, {kBig[0], 1}, -50, 50, seed++);
    check("Add", {&x, &y});
    check("Mul", {&x, &row});
    check("Sub", {&col, &x});
    check("Less", {&x, &row});
  }
}

TEST(CudaElementwise, BinarySpecialValues) {
  NEED_GPU();
  for (DType t : kFloat) {
    Tensor s = specials(t);
    Tensor r = make(t, {11}, {1, 2, -3, 0, -0.0, 7, 0, -0.5, 0.25, 3, std::numeric_limits<double>::infinity()});
    for (const char* op : {"Add", "Sub", "Mul", "Div", "Equal", "Less", "GreaterOrEqual"}) check(op, {&s, &r});
    check("Mod", {&s, &r}, {{"fmod", ai(1)}});
    check("Mod", {&s, &r}, {{"fmod", ai(0)}});
  }
  // Integer edge cases: division/modulo by zero and by -1 of the most negative value.
  Tensor a = make(DType::I32, {6}, {7, -7, -2147483648.0, -2147483648.0, 5, -9});
  Tensor b = make(DType::I32, {6}, {0, 2, -1, 3, -1, 4});
  for (const char* op : {"Div", "Mod"}) check(op, {&a, &b});
  check("Mod", {&a, &b}, {{"fmod", ai(1)}});
}

TEST(CudaElementwise, BitShift) {
  NEED_GPU();
  unsigned seed = 2000;
  for (const char* dir : {"LEFT", "RIGHT"})
    for (DType t : kInt)
      for (const auto& [da, db] : kPairs) {
        Tensor x = rnd(t, da, 0, 100, seed++);
        Tensor s = rnd(t, db, 0, 10, seed++);  // amounts of the width or more give 0
        check("BitShift", {&x, &s}, {{"direction", as(dir)}});
      }
}

TEST(CudaElementwise, SwiGLU) {
  NEED_GPU();
  unsigned seed = 2500;
  for (DType t : kFloat)
    for (const Dims& d : {Dims{1023}, Dims{4, 11008}, Dims{2, 3, 5}, Dims{0, 4}}) {
      Tensor g = rnd(t, d, -8, 8, seed++);
      Tensor u = rnd(t, d, -3, 3, seed++);
      check("shardrt.SwiGLU", {&g, &u}, {}, Tol::Math);
    }
}

// ---- Pow ----

TEST(CudaElementwise, Pow) {
  NEED_GPU();
  unsigned seed = 3000;
  // Float bases with exponents of several types (converted on the GPU to the base's
  // compute type), including the broadcast pairs.
  for (DType tb : kFloat)
    for (DType te : {tb, DType::F32, DType::F64, DType::I64, DType::I32})
      for (const auto& [da, db] : kPairs) {
        Tensor x = rnd(tb, da, 0.1, 3, seed++);
        Tensor e = rnd(te, db, -2, 3, seed++);
        check("Pow", {&x, &e}, {}, Tol::Math);
      }
  // Integer bases: computed in double and truncated; whole exponents give exact powers.
  // Results stay within int8/uint8 (out-of-range double -> int conversion is undefined).
  for (DType tb : kInt)
    for (DType te : {tb, DType::I64, DType::F32})
      for (const auto& [da, db] : kPairs) {
        Tensor x = rnd(tb, da, -3, 4, seed++);
        Tensor e = rnd(te, db, 0, 4, seed++, true);
        check("Pow", {&x, &e});
      }
  // Constant exponents with their own kernels (x², x³, x, √x) and one without.
  for (DType tb : kFloat)
    for (double ev : {2.0, 3.0, 1.0, 0.5, -1.5}) {
      Tensor x = rnd(tb, {1023}, -3, 3, seed++);
      Tensor e = make(DType::F32, {}, {ev});
      check("Pow", {&x, &e}, {}, Tol::Math);
    }
}

// ---- variadic ----

TEST(CudaElementwise, Variadic) {
  NEED_GPU();
  const std::vector<std::vector<Dims>> sets = {
      {{5, 7}}, {{1023}, {1023}}, {{3, 4}, {4}, {3, 1}}, {{2, 3, 4}, {}, {3, 1}, {1, 4}}, {{0, 3}, {3}},
  };
  unsigned seed = 4000;
  for (const char* op : {"Sum", "Mean", "Max", "Min"})
    for (DType t : std::string(op) == "Mean" ? kFloat : kNumeric)
      for (const auto& s : sets) {
        std::vector<Tensor> xs;
        for (const Dims& d : s) xs.push_back(rnd(t, d, -20, 20, seed++));
        std::vector<const Tensor*> ins;
        for (const Tensor& x : xs) ins.push_back(&x);
        check(op, ins, {}, Tol::Math);  // exact except Mean's fp16/bf16 (see tol_of)
      }
  // NaN propagates through Max/Min from either side.
  for (DType t : kFloat) {
    Tensor a = specials(t);
    Tensor b = make(t, {11}, {1, std::numeric_limits<double>::quiet_NaN(), 0, -0.0, 0, 3, 4, 5, 6, 7, 8});
    check("Max", {&a, &b});
    check("Min", {&b, &a});
  }
}

// ---- Where ----

TEST(CudaElementwise, Where) {
  NEED_GPU();
  // (condition, X, Y): all one shape; mask broadcast over heads with a scalar fill
  // (attention style); three-way strided; row condition; scalar condition.
  const std::vector<std::vector<Dims>> sets = {
      {{1023}, {1023}, {1023}},   {{2, 1, 1, 8}, {2, 4, 8, 8}, {}},   {{4, 1, 6}, {1, 5, 6}, {}},
      {{8}, {5, 8}, {5, 8}},      {{}, {3, 4}, {4}},                  {{3, 64}, {64}, {3, 1}},
      {{0, 3}, {3}, {1}},
  };
  unsigned seed = 5000;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64, DType::I32, DType::I8, DType::Bool})
    for (const auto& s : sets) {
      Tensor c = rnd(DType::Bool, s[0], 0, 2, seed++);
      Tensor x = rnd(t, s[1], -50, 50, seed++);
      Tensor y = rnd(t, s[2], -50, 50, seed++);
      check("Where", {&c, &x, &y});
    }
}

// ---- Clip ----

TEST(CudaElementwise, Clip) {
  NEED_GPU();
  unsigned seed = 6000;
  for (DType t : kNumeric)
    for (const Dims& d : kUnaryShapes) {
      Tensor x = rnd(t, d, -10, 10, seed++);
      Tensor lo = make(t, {}, {t == DType::U8 ? 3.0 : -2.0});
      Tensor hi = make(t, {}, {6});
      check("Clip", {&x, &lo, &hi});
      check("Clip", {&x, &lo});
      check("Clip", {&x, nullptr, &hi});
      check("Clip", {&x});
      check("Clip", {&x, &hi, &lo});  // min > max: everything becomes max
    }
  for (DType t : kFloat) {
    Tensor s = specials(t);
    Tensor lo = make(t, {1}, {-1});
    Tensor hi = make(t, {1}, {1});
    check("Clip", {&s, &lo, &hi});
  }
}

// ---- Cast ----

TEST(CudaElementwise, Cast) {
  NEED_GPU();
  const std::vector<DType> all = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                                  DType::I32, DType::I8,  DType::U8,   DType::Bool};
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  // Float sources: NaN/inf (to integers: the CPU's x86 result, INT64_MIN, then wrapped),
  // values beyond each narrower type's range, halves and fractions (truncation), values
  // that round differently to fp16/bf16, and fp64 values that would double-round.
  const std::vector<double> fvals = {nan,   inf,    -inf,    0.0,       -0.0,          1.5,      -1.5,
                                     2.5,   -2.7,   127.9,   -128.5,    255.5,         300.0,    -300.7,
                                     3e9,   -3e9,   1e10,    -1e20,     65504.0,       70000.0,  1e-8,
                                     1e30,  0.1,    1.0000000596046448, 1.00048828125 + 1e-12, 3.4e38, 2049.0};
  unsigned seed = 7000;
  for (DType from : all) {
    Tensor special;
    if (is_float(from)) {
      special = make(DType::F64, {int64_t(fvals.size())}, fvals).cast(from);
    } else if (from != DType::Bool) {
      std::vector<double> iv = {0, 1, -1, 127, -128, 255, 256, 65504, 65505, 16777217, -2147483648.0, 2147483647.0,
                                9007199254740993.0};
      // Keep each value representable in the source type (Tensor::set_f converts as C++ does).
      std::vector<double> ok;
      for (double v : iv) {
        double lo = from == DType::U8 ? 0 : from == DType::I8 ? -128 : from == DType::I32 ? -2147483648.0 : -9.2e18;
        double hi = from == DType::U8 ? 255 : from == DType::I8 ? 127 : from == DType::I32 ? 2147483647.0 : 9.2e18;
        if (v >= lo && v <= hi) ok.push_back(v);
      }
      special = make(from, {int64_t(ok.size())}, ok);
    } else {
      special = make(DType::Bool, {2}, {0, 1});
    }
    Tensor random = rnd(from, {1023}, -100, 100, seed++);  // within every source type
    Tensor empty(from, {0, 2});
    for (DType to : all) {
      Attrs a = {{"to", ai(dtype_to_onnx(to))}};
      check("Cast", {&special}, a);
      check("Cast", {&random}, a);
      check("Cast", {&empty}, a);
      Tensor like(to, {1});
      check("CastLike", {&random, &like});
    }
  }
}

// ---- Dropout (inference) ----

TEST(CudaElementwise, Dropout) {
  NEED_GPU();
  unsigned seed = 8000;
  for (DType t : kFloat)
    for (const Dims& d : kUnaryShapes) {
      Tensor x = rnd(t, d, -5, 5, seed++);
      check("Dropout", {&x});  // output and the all-true mask
      Tensor ratio = make(DType::F32, {}, {0.3});
      check("Dropout", {&x, &ratio});
    }
}

}  // namespace
}  // namespace shardrt
