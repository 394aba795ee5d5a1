// Elementwise ops: shape rules and CPU kernels against references written here as plain
// loops over double (or values worked out by hand / with numpy, noted where used).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "backends/cpu/cpu_kernels.h"
#include "op_test_util.h"
#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"

using namespace shardrt;

namespace {

using optest::make;
using optest::make_node;
using optest::random_tensor;
using optest::run;

// Flat offset in `in` of output element `i` under numpy broadcasting (written
// independently of the kernels' Broadcast helper).
int64_t bcast_offset(const Dims& out, const Dims& in, int64_t i) {
  int64_t off = 0, stride = 1;
  for (size_t k = 0; k < out.size(); ++k) {
    size_t a = out.size() - 1 - k;
    int64_t idx = i % out[a];
    i /= out[a];
    if (k < in.size()) {
      int64_t d = in[in.size() - 1 - k];
      if (d != 1) off += idx * stride;
      stride *= d;
    }
  }
  return off;
}

Dims bcast_dims(const Dims& a, const Dims& b) {
  size_t r = std::max(a.size(), b.size());
  Dims o(r);
  for (size_t k = 0; k < r; ++k) {
    int64_t x = k < a.size() ? a[a.size() - 1 - k] : 1, y = k < b.size() ? b[b.size() - 1 - k] : 1;
    o[r - 1 - k] = x == 1 ? y : x;
  }
  return o;
}

// Relative tolerance for a result in `t`: fp32 kernels use fast_expf (about 2 ulp) and
// libm (<= 1 ulp), so 1e-5 covers one or two roundings of an fp32 computation with some
// condition-number margin; fp16/bf16 results are one rounding of a float value
// (2^-11 / 2^-8 relative) after an fp32 computation on already-rounded inputs.
double rtol(DType t) {
  switch (t) {
    case DType::F16: return 2e-3;
    case DType::BF16: return 1.6e-2;
    case DType::F64: return 1e-12;
    default: return 1e-5;
  }
}

void expect_close(const Tensor& got, const std::vector<double>& want, double rt, double at, const std::string& what) {
  ASSERT_EQ(got.numel(), int64_t(want.size())) << what;
  for (int64_t i = 0; i < got.numel(); ++i) {
    double g = got.get_f(i), w = want[size_t(i)];
    if (std::isnan(w)) { EXPECT_TRUE(std::isnan(g)) << what << " at " << i; continue; }
    if (std::isinf(w)) { EXPECT_EQ(g, w) << what << " at " << i; continue; }
    EXPECT_NEAR(g, w, at + rt * std::abs(w)) << what << " at " << i;
  }
}

}  // namespace

TEST(OnnxDType, RoundTrip) {
  for (int i = 0; i < int(DType::Undefined); ++i) EXPECT_EQ(dtype_from_onnx(dtype_to_onnx(DType(i))), DType(i));
  EXPECT_EQ(dtype_from_onnx(1), DType::F32);
  EXPECT_EQ(dtype_from_onnx(16), DType::BF16);
  EXPECT_EQ(dtype_from_onnx(8), DType::Undefined);  // string
}

struct UnaryCase {
  const char* op;
  double lo, hi;
  std::function<double(double)> ref;
};

TEST(Elementwise, UnaryFloatOps) {
  const double kPi = 3.14159265358979323846;
  std::vector<UnaryCase> cases = {
      {"Exp", -80, 80, [](double x) { return std::exp(x); }},
      {"Log", 1e-3, 100, [](double x) { return std::log(x); }},
      {"Sqrt", 0, 100, [](double x) { return std::sqrt(x); }},
      {"Reciprocal", 0.1, 10, [](double x) { return 1 / x; }},
      {"Sin", -3, 3, [](double x) { return std::sin(x); }},
      {"Cos", -3, 3, [](double x) { return std::cos(x); }},
      {"Tan", -1.2, 1.2, [](double x) { return std::tan(x); }},
      {"Asin", -0.99, 0.99, [](double x) { return std::asin(x); }},
      {"Acos", -0.99, 0.99, [](double x) { return std::acos(x); }},
      {"Atan", -10, 10, [](double x) { return std::atan(x); }},
      {"Sinh", -5, 5, [](double x) { return std::sinh(x); }},
      {"Cosh", -5, 5, [](double x) { return std::cosh(x); }},
      {"Asinh", -5, 5, [](double x) { return std::asinh(x); }},
      {"Acosh", 1.01, 10, [](double x) { return std::acosh(x); }},
      {"Atanh", -0.9, 0.9, [](double x) { return std::atanh(x); }},
      {"Tanh", -6, 6, [](double x) { return std::tanh(x); }},
      {"Sigmoid", -30, 30, [](double x) { return 1 / (1 + std::exp(-x)); }},
      {"Erf", -3, 3, [](double x) { return std::erf(x); }},
      {"Floor", -5, 5, [](double x) { return std::floor(x); }},
      {"Ceil", -5, 5, [](double x) { return std::ceil(x); }},
      {"Softplus", -20, 20, [](double x) { return std::log(1 + std::exp(x)); }},
      {"Softsign", -5, 5, [](double x) { return x / (1 + std::abs(x)); }},
      {"HardSwish", -5, 5, [](double x) { return x * std::min(1.0, std::max(0.0, x / 6 + 0.5)); }},
      {"Mish", -5, 5, [](double x) { return x * std::tanh(std::log(1 + std::exp(x))); }},
      {"Gelu", -6, 6, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }},
  };
  (void)kPi;
  for (DType t : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    for (auto& uc : cases) {
      // 1000 elements: above nothing special; 70000 crosses the kernels' parallel grain.
      for (int64_t n : {7, 70000}) {
        Tensor x = random_tensor(t, {n}, uc.lo, uc.hi, 17);
        auto y = run(uc.op, {&x});
        ASSERT_EQ(y[0].dtype(), t);
        std::vector<double> want(static_cast<size_t>(n));
        // The exact result rounded to the output type (so fp16 overflow gives inf).
        Tensor w(t, {n});
        for (int64_t i = 0; i < n; ++i) w.set_f(i, uc.ref(x.get_f(i)));
        for (int64_t i = 0; i < n; ++i) want[size_t(i)] = w.get_f(i);
        // Absolute 1e-6 (fp32) for results near 0 (e.g. sin near pi, tanh(0)), where the
        // relative bound is meaningless; for half types the absolute term is scaled by
        // their rounding of the input.
        double at = t == DType::F32 ? 1e-6 : t == DType::F64 ? 1e-12 : rtol(t) * 4;
        expect_close(y[0], want, rtol(t), at, std::string(uc.op) + " " + dtype_name(t));
      }
    }
  }
}

TEST(Elementwise, ExpEdgeValues) {
  // fast_expf must behave like expf at the ends of the range.
  Tensor x = make(DType::F32, {6}, {0.0, -200.0, 200.0, -INFINITY, INFINITY, NAN});
  auto y = run("Exp", {&x});
  EXPECT_EQ(y[0].get_f(0), 1.0);
  EXPECT_EQ(y[0].get_f(1), 0.0);
  EXPECT_TRUE(std::isinf(y[0].get_f(2)));
  EXPECT_EQ(y[0].get_f(3), 0.0);
  EXPECT_TRUE(std::isinf(y[0].get_f(4)));
  EXPECT_TRUE(std::isnan(y[0].get_f(5)));
  // Subnormal results: exp(-100) = 3.72e-44, and values just below fp32's max.
  Tensor z = make(DType::F32, {2}, {-100.0, 88.5});
  auto w = run("Exp", {&z});
  EXPECT_NEAR(w[0].get_f(0), std::exp(-100.0), 1.5e-45);  // one subnormal step
  EXPECT_NEAR(w[0].get_f(1), std::exp(88.5), 1e-6 * std::exp(88.5));
}

TEST(Elementwise, RoundHalfToEven) {
  Tensor x = make(DType::F32, {8}, {0.5, 1.5, 2.5, -0.5, -1.5, 2.4, -2.6, 3.0});
  auto y = run("Round", {&x});
  expect_close(y[0], {0, 2, 2, -0.0, -2, 2, -3, 3}, 0, 0, "Round");
}

TEST(Elementwise, ActivationsWithAttributes) {
  Tensor x = random_tensor(DType::F32, {257}, -4, 4, 3);
  auto check = [&](const char* op, std::map<std::string, Attr> attrs, std::function<double(double)> f) {
    auto y = run(op, {&x}, attrs);
    std::vector<double> want;
    for (int64_t i = 0; i < x.numel(); ++i) want.push_back(f(x.get_f(i)));
    expect_close(y[0], want, 1e-5, 1e-6, op);  // fp32 math, see rtol()
  };
  check("LeakyRelu", {}, [](double v) { return v < 0 ? 0.01 * v : v; });
  check("LeakyRelu", {{"alpha", Attr::of(0.2f)}}, [](double v) { return v < 0 ? double(0.2f) * v : v; });
  check("Elu", {{"alpha", Attr::of(2.0f)}}, [](double v) { return v < 0 ? 2 * (std::exp(v) - 1) : v; });
  check("Selu", {}, [](double v) {
    double a = 1.67326319217681884765625, g = 1.05070102214813232421875;
    return v > 0 ? g * v : g * a * (std::exp(v) - 1);
  });
  check("Celu", {{"alpha", Attr::of(1.5f)}}, [](double v) {
    return std::max(0.0, v) + std::min(0.0, 1.5 * (std::exp(v / 1.5) - 1));
  });
  check("HardSigmoid", {{"alpha", Attr::of(0.5f)}, {"beta", Attr::of(0.6f)}},
        [](double v) { return std::max(0.0, std::min(1.0, 0.5 * v + double(0.6f))); });
  check("ThresholdedRelu", {{"alpha", Attr::of(2.0f)}}, [](double v) { return v > 2 ? v : 0; });
  check("Shrink", {{"lambd", Attr::of(1.5f)}, {"bias", Attr::of(0.5f)}},
        [](double v) { return v < -1.5 ? v + 0.5 : v > 1.5 ? v - 0.5 : 0; });
  check("Gelu", {{"approximate", Attr::of(std::string("tanh"))}}, [](double v) {
    return 0.5 * v * (1 + std::tanh(std::sqrt(2 / 3.14159265358979323846) * (v + 0.044715 * v * v * v)));
  });
  check("Relu", {}, [](double v) { return v > 0 ? v : 0; });
  check("Abs", {}, [](double v) { return std::abs(v); });
  check("Neg", {}, [](double v) { return -v; });
  check("Sign", {}, [](double v) { return v > 0 ? 1 : v < 0 ? -1 : 0; });
}

TEST(Elementwise, IntegerUnary) {
  Tensor x = make(DType::I32, {5}, {-7, -1, 0, 3, 100});
  expect_close(run("Abs", {&x})[0], {7, 1, 0, 3, 100}, 0, 0, "Abs");
  expect_close(run("Neg", {&x})[0], {7, 1, 0, -3, -100}, 0, 0, "Neg");
  expect_close(run("Sign", {&x})[0], {-1, -1, 0, 1, 1}, 0, 0, "Sign");
  expect_close(run("Relu", {&x})[0], {0, 0, 0, 3, 100}, 0, 0, "Relu");
  Tensor u = make(DType::U8, {3}, {0, 5, 255});
  expect_close(run("BitwiseNot", {&u})[0], {255, 250, 0}, 0, 0, "BitwiseNot");
  Tensor i8 = make(DType::I8, {3}, {-128, 0, 127});
  expect_close(run("Abs", {&i8})[0], {-128, 0, 127}, 0, 0, "Abs int8 wraps like numpy");
  Tensor b = make(DType::Bool, {3}, {0, 1, 0});
  expect_close(run("Not", {&b})[0], {1, 0, 1}, 0, 0, "Not");
  // Float-only ops refuse integers, naming the node.
  EXPECT_THROW(run("Exp", {&x}), GraphError);
}

TEST(Elementwise, IsNaNIsInf) {
  for (DType t : {DType::F32, DType::F16, DType::F64}) {
    Tensor x = make(t, {5}, {1.0, NAN, INFINITY, -INFINITY, -2.0});
    auto n = run("IsNaN", {&x});
    ASSERT_EQ(n[0].dtype(), DType::Bool);
    expect_close(n[0], {0, 1, 0, 0, 0}, 0, 0, "IsNaN");
    expect_close(run("IsInf", {&x})[0], {0, 0, 1, 1, 0}, 0, 0, "IsInf");
    expect_close(run("IsInf", {&x}, {{"detect_negative", Attr::of(int64_t(0))}})[0], {0, 0, 1, 0, 0}, 0, 0,
                 "IsInf positive");
    expect_close(run("IsInf", {&x}, {{"detect_positive", Attr::of(int64_t(0))}})[0], {0, 0, 0, 1, 0}, 0, 0,
                 "IsInf negative");
  }
}

struct BinCase {
  const char* op;
  std::function<double(double, double)> ref;
};

TEST(Elementwise, BinaryBroadcastShapes) {
  std::vector<BinCase> ops = {
      {"Add", [](double a, double b) { return a + b; }},
      {"Sub", [](double a, double b) { return a - b; }},
      {"Mul", [](double a, double b) { return a * b; }},
      {"Div", [](double a, double b) { return a / b; }},
  };
  std::vector<std::pair<Dims, Dims>> shapes = {
      {{2, 3, 4}, {2, 3, 4}}, {{2, 3, 4}, {4}},       {{2, 3, 4}, {}},        {{}, {2, 3, 4}},
      {{2, 1, 4}, {3, 1}},    {{5, 1}, {1, 7}},       {{1, 3, 1}, {2, 1, 5}}, {{300, 257}, {257}},
      {{300, 257}, {300, 1}}, {{70000}, {70000}},     {{3, 0, 2}, {2}},       {{1}, {1, 1}},
      {{4, 1, 3, 1, 2}, {4, 5, 3, 6, 1}},
  };
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::F64}) {
    for (auto& [da, db] : shapes) {
      Tensor a = random_tensor(t, da, -3, 3, 1);
      Tensor b = random_tensor(t, db, 0.5, 3, 2);  // positive: Div stays well conditioned
      Dims dout = bcast_dims(da, db);
      for (auto& bc : ops) {
        auto y = run(bc.op, {&a, &b});
        ASSERT_EQ(y[0].dims(), dout) << bc.op;
        std::vector<double> want;
        for (int64_t i = 0; i < numel(dout); ++i)
          want.push_back(bc.ref(a.get_f(bcast_offset(dout, da, i)), b.get_f(bcast_offset(dout, db, i))));
        // One rounding of an exact-in-double operation; absolute term for sums near 0.
        expect_close(y[0], want, rtol(t), rtol(t) * 4, std::string(bc.op) + " " + dtype_name(t) + " " +
                                                       dims_str(da) + " " + dims_str(db));
      }
    }
  }
}

TEST(Elementwise, IntegerArithmetic) {
  Tensor a = make(DType::I32, {4}, {-7, 7, -7, 7});
  Tensor b = make(DType::I32, {4}, {2, -2, -2, 2});
  // Truncating division, as C and ONNX (numpy's // would give -4, -4, 3, 3).
  expect_close(run("Div", {&a, &b})[0], {-3, -3, 3, 3}, 0, 0, "Div");
  // numpy: np.mod([-7,7,-7,7],[2,-2,-2,2]) = [1,-1,-1,1]; np.fmod = [-1,1,-1,1].
  expect_close(run("Mod", {&a, &b})[0], {1, -1, -1, 1}, 0, 0, "Mod");
  expect_close(run("Mod", {&a, &b}, {{"fmod", Attr::of(int64_t(1))}})[0], {-1, 1, -1, 1}, 0, 0, "fmod");
  Tensor z = make(DType::I32, {4}, {0, 0, 1, 1});
  expect_close(run("Div", {&a, &z})[0], {0, 0, -7, 7}, 0, 0, "Div by zero gives 0, no trap");
  Tensor i8a = make(DType::I8, {2}, {100, -100});
  Tensor i8b = make(DType::I8, {2}, {100, 100});
  expect_close(run("Add", {&i8a, &i8b})[0], {-56, 0}, 0, 0, "int8 wraps");
  Tensor fa = make(DType::F32, {4}, {-4.3, 4.3, 5.5, -5.5});
  Tensor fb = make(DType::F32, {4}, {2.1, -2.1, 2.0, 2.0});
  // C fmod of the fp32 values (sign of the dividend).
  expect_close(run("Mod", {&fa, &fb}, {{"fmod", Attr::of(int64_t(1))}})[0],
               {std::fmod(double(-4.3f), double(2.1f)), std::fmod(double(4.3f), double(-2.1f)), 1.5, -1.5}, 1e-6, 1e-6,
               "float fmod");
}

TEST(Elementwise, PowMixedTypes) {
  Tensor base = make(DType::F32, {2, 3}, {1, 2, 3, 4, 0.5, -2});
  Tensor e64 = make(DType::I64, {3}, {2, 3, -1});
  auto y = run("Pow", {&base, &e64});
  ASSERT_EQ(y[0].dtype(), DType::F32);
  expect_close(y[0], {1, 8, 1.0 / 3, 16, 0.125, -0.5}, 1e-6, 0, "f32^i64");  // one fp32 rounding
  Tensor ib = make(DType::I32, {3}, {2, 3, -2});
  Tensor ie = make(DType::I32, {3}, {10, 3, 3});
  expect_close(run("Pow", {&ib, &ie})[0], {1024, 27, -8}, 0, 0, "i32^i32");
  Tensor fe = make(DType::F32, {3}, {0.5, 2, 1});
  auto yi = run("Pow", {&ib, &fe});
  ASSERT_EQ(yi[0].dtype(), DType::I32);
  expect_close(yi[0], {1, 9, -2}, 0, 0, "i32^f32 truncates sqrt(2)");
  // Scalar exponents take the fast path.
  Tensor x = random_tensor(DType::F32, {1000}, 0, 5, 9);
  for (double e : {2.0, 3.0, 0.5, 1.0, 1.7}) {
    Tensor et = make(DType::F32, {}, {e});
    auto p = run("Pow", {&x, &et});
    std::vector<double> want;
    for (int64_t i = 0; i < x.numel(); ++i) want.push_back(std::pow(x.get_f(i), e));
    expect_close(p[0], want, 1e-5, 1e-6, "pow scalar exponent");  // fp32 libm pow ~1 ulp
  }
}

TEST(Elementwise, ComparisonsAndLogic) {
  Tensor a = make(DType::F32, {2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = make(DType::F32, {3}, {2, 2, 7});
  auto eq = run("Equal", {&a, &b});
  ASSERT_EQ(eq[0].dtype(), DType::Bool);
  expect_close(eq[0], {0, 1, 0, 0, 0, 0}, 0, 0, "Equal");
  expect_close(run("Less", {&a, &b})[0], {1, 0, 1, 0, 0, 1}, 0, 0, "Less");
  expect_close(run("Greater", {&a, &b})[0], {0, 0, 0, 1, 1, 0}, 0, 0, "Greater");
  expect_close(run("LessOrEqual", {&a, &b})[0], {1, 1, 1, 0, 0, 1}, 0, 0, "LessOrEqual");
  expect_close(run("GreaterOrEqual", {&a, &b})[0], {0, 1, 0, 1, 1, 0}, 0, 0, "GreaterOrEqual");
  Tensor p = make(DType::Bool, {4}, {0, 0, 1, 1});
  Tensor q = make(DType::Bool, {4}, {0, 1, 0, 1});
  expect_close(run("And", {&p, &q})[0], {0, 0, 0, 1}, 0, 0, "And");
  expect_close(run("Or", {&p, &q})[0], {0, 1, 1, 1}, 0, 0, "Or");
  expect_close(run("Xor", {&p, &q})[0], {0, 1, 1, 0}, 0, 0, "Xor");
  expect_close(run("Equal", {&p, &q})[0], {1, 0, 0, 1}, 0, 0, "Equal bool");
  Tensor ia = make(DType::I64, {2}, {int64_t(1) << 40, 5});
  Tensor ib = make(DType::I64, {2}, {(int64_t(1) << 40) + 1, 5});
  expect_close(run("Equal", {&ia, &ib})[0], {0, 1}, 0, 0, "Equal int64 beyond 2^24");
}

TEST(Elementwise, BitOps) {
  Tensor a = make(DType::U8, {4}, {16, 4, 1, 255});
  Tensor s = make(DType::U8, {4}, {1, 2, 3, 9});
  expect_close(run("BitShift", {&a, &s}, {{"direction", Attr::of(std::string("RIGHT"))}})[0], {8, 1, 0, 0}, 0, 0,
               "shift right");
  expect_close(run("BitShift", {&a, &s}, {{"direction", Attr::of(std::string("LEFT"))}})[0], {32, 16, 8, 0}, 0, 0,
               "shift left");
  Tensor x = make(DType::I32, {3}, {12, -1, 5});
  Tensor y = make(DType::I32, {3}, {10, 7, 3});
  expect_close(run("BitwiseAnd", {&x, &y})[0], {8, 7, 1}, 0, 0, "and");
  expect_close(run("BitwiseOr", {&x, &y})[0], {14, -1, 7}, 0, 0, "or");
  expect_close(run("BitwiseXor", {&x, &y})[0], {6, -8, 6}, 0, 0, "xor");
}

TEST(Elementwise, PRelu) {
  Tensor x = make(DType::F32, {2, 3}, {-1, 2, -3, 4, -5, 6});
  Tensor slope = make(DType::F32, {3}, {0.1, 0.2, 0.3});
  expect_close(run("PRelu", {&x, &slope})[0], {-0.1, 2, -0.9, 4, -1.0, 6}, 1e-6, 0, "PRelu");  // fp32 products
}

TEST(Elementwise, Variadic) {
  Tensor a = make(DType::F32, {3}, {3, 2, 1});
  Tensor b = make(DType::F32, {2, 1}, {1, 5});
  Tensor c = make(DType::F32, {}, {2});
  expect_close(run("Max", {&a, &b, &c})[0], {3, 2, 2, 5, 5, 5}, 0, 0, "Max");
  expect_close(run("Min", {&a, &b, &c})[0], {1, 1, 1, 2, 2, 1}, 0, 0, "Min");
  expect_close(run("Sum", {&a, &b, &c})[0], {6, 5, 4, 10, 9, 8}, 0, 0, "Sum");
  expect_close(run("Mean", {&a, &b, &c})[0], {2, 5.0 / 3, 4.0 / 3, 10.0 / 3, 3, 8.0 / 3}, 1e-6, 0, "Mean");
  expect_close(run("Sum", {&a})[0], {3, 2, 1}, 0, 0, "Sum of one");
  Tensor n = make(DType::F32, {3}, {NAN, 0, 9});
  expect_close(run("Max", {&a, &n})[0], {NAN, 2, 9}, 0, 0, "Max propagates NaN");
  Tensor i = make(DType::I32, {3}, {5, -5, 0});
  Tensor j = make(DType::I32, {3}, {4, -4, 1});
  expect_close(run("Max", {&i, &j})[0], {5, -4, 1}, 0, 0, "Max int");
  EXPECT_THROW(run("Mean", {&i, &j}), GraphError);
}

TEST(Elementwise, Where) {
  Tensor cond = make(DType::Bool, {2, 1}, {1, 0});
  Tensor x = make(DType::F32, {3}, {1, 2, 3});
  Tensor y = make(DType::F32, {2, 3}, {-1, -2, -3, -4, -5, -6});
  expect_close(run("Where", {&cond, &x, &y})[0], {1, 2, 3, -4, -5, -6}, 0, 0, "Where");
  Tensor c2 = make(DType::Bool, {4}, {1, 0, 0, 1});
  Tensor xs = make(DType::I64, {}, {7});
  Tensor ys = make(DType::I64, {4}, {1, 2, 3, 4});
  expect_close(run("Where", {&c2, &xs, &ys})[0], {7, 2, 3, 7}, 0, 0, "Where scalar X");
  // Large: mask [1,1,S,S] against scores [1,4,S,S] and a scalar, as in causal attention.
  int64_t S = 64;
  Tensor m(DType::Bool, {1, 1, S, S});
  for (int64_t i = 0; i < S * S; ++i) m.data<uint8_t>()[i] = (i % S) <= (i / S);
  Tensor sc = random_tensor(DType::F32, {1, 4, S, S}, -1, 1, 4);
  Tensor ninf = make(DType::F32, {}, {-1e9});
  auto w = run("Where", {&m, &sc, &ninf});
  for (int64_t i = 0; i < w[0].numel(); ++i) {
    int64_t p = i % (S * S);
    ASSERT_EQ(w[0].get_f(i), (p % S) <= (p / S) ? sc.get_f(i) : double(-1e9f)) << i;
  }
}

TEST(Elementwise, Cast) {
  Tensor f = make(DType::F32, {6}, {1.7, -1.7, 300.5, -0.2, 0, 65504});
  expect_close(run("Cast", {&f}, {{"to", Attr::of(int64_t(7))}})[0], {1, -1, 300, 0, 0, 65504}, 0, 0, "f32->i64");
  expect_close(run("Cast", {&f}, {{"to", Attr::of(int64_t(9))}})[0], {1, 1, 1, 1, 0, 1}, 0, 0, "f32->bool");
  auto h = run("Cast", {&f}, {{"to", Attr::of(int64_t(10))}});
  ASSERT_EQ(h[0].dtype(), DType::F16);
  // fp16 neighbours of these values (spacing 2^-10 near 1, 0.25 near 300).
  expect_close(h[0], {1.7001953125, -1.7001953125, 300.5, -0.199951171875, 0, 65504}, 0, 0, "f32->f16");
  // double -> fp16 must round once: 1 + 2^-11 + 2^-40 lies above the halfway point
  // between 1 and 1 + 2^-10; going through fp32 first would drop 2^-40 and tie to 1.
  Tensor d = make(DType::F64, {1}, {1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40)});
  EXPECT_EQ(run("Cast", {&d}, {{"to", Attr::of(int64_t(10))}})[0].get_f(0), 1.0 + std::ldexp(1.0, -10));
  Tensor b = make(DType::Bool, {2}, {1, 0});
  expect_close(run("Cast", {&b}, {{"to", Attr::of(int64_t(1))}})[0], {1, 0}, 0, 0, "bool->f32");
  Tensor i = make(DType::I32, {3}, {-1, 256, 7});
  expect_close(run("Cast", {&i}, {{"to", Attr::of(int64_t(2))}})[0], {255, 0, 7}, 0, 0, "i32->u8 wraps");
  auto bf = run("Cast", {&f}, {{"to", Attr::of(int64_t(16))}});
  ASSERT_EQ(bf[0].dtype(), DType::BF16);
  for (int64_t k = 0; k < 6; ++k) EXPECT_EQ(bf[0].get_f(k), bf16_to_float(float_to_bf16(float(f.get_f(k)))));
  Tensor like = make(DType::F64, {1}, {0});
  auto cl = run("CastLike", {&f, &like});
  ASSERT_EQ(cl[0].dtype(), DType::F64);
  EXPECT_EQ(cl[0].get_f(0), double(1.7f));
  Node bad = make_node("Cast", {{"to", Attr::of(int64_t(8))}});
  EXPECT_NE(find_schema("Cast")->validate(bad), "");
}

TEST(Elementwise, Clip) {
  Tensor x = make(DType::F32, {5}, {-3, -1, 0, 1, 3});
  Tensor lo = make(DType::F32, {}, {-1.5});
  Tensor hi = make(DType::F32, {}, {2});
  expect_close(run("Clip", {&x, &lo, &hi})[0], {-1.5, -1, 0, 1, 2}, 0, 0, "Clip");
  expect_close(run("Clip", {&x, nullptr, &hi})[0], {-3, -1, 0, 1, 2}, 0, 0, "Clip max only");
  expect_close(run("Clip", {&x, &lo})[0], {-1.5, -1, 0, 1, 3}, 0, 0, "Clip min only");
  expect_close(run("Clip", {&x})[0], {-3, -1, 0, 1, 3}, 0, 0, "Clip none");
  Tensor lo2 = make(DType::F32, {}, {2}), hi2 = make(DType::F32, {}, {1});
  expect_close(run("Clip", {&x, &lo2, &hi2})[0], {1, 1, 1, 1, 1}, 0, 0, "min > max gives max");
  Tensor xi = make(DType::I8, {3}, {-128, 5, 127});
  Tensor li = make(DType::I8, {}, {0});
  expect_close(run("Clip", {&xi, &li})[0], {0, 5, 127}, 0, 0, "Clip int8");
}

TEST(ElementwiseSchema, SymbolicBroadcastAndTypes) {
  Graph g;
  Value* a = g.add_input("a", DType::F32, {Dim::symbol("batch"), Dim(1), Dim(768)});
  Value* b = g.add_input("b", DType::F32, {Dim(12), Dim(1)});
  Value* i = g.add_input("i", DType::I64, {Dim(768)});
  Node* add = g.add_node("Add", "add", {a, b}, {"y"});
  infer_node(g, *add);
  EXPECT_EQ(shape_str(add->outputs[0]->shape), shape_str({Dim::symbol("batch"), Dim(12), Dim(768)}));
  Node* lt = g.add_node("Less", "lt", {a, b}, {"z"});
  infer_node(g, *lt);
  EXPECT_EQ(lt->outputs[0]->dtype, DType::Bool);
  Node* mixed = g.add_node("Add", "mixed", {a, i}, {"w"});
  EXPECT_THROW(infer_node(g, *mixed), GraphError);
  Node* ex = g.add_node("Exp", "ex", {i}, {"e"});
  EXPECT_THROW(infer_node(g, *ex), GraphError);
  Node* cast = g.add_node("Cast", "cast", {a}, {"c"}, {{"to", Attr::of(int64_t(10))}});
  infer_node(g, *cast);
  EXPECT_EQ(cast->outputs[0]->dtype, DType::F16);
  Value* c5 = g.add_input("c5", DType::F32, {Dim(5), Dim(1)});
  Node* bad = g.add_node("Add", "bad", {b, c5}, {"bb"});
  EXPECT_THROW(infer_node(g, *bad), GraphError);  // 12 against 5
}
