// Schemas of the elementwise family: unary maps, broadcasting binary ops, variadic
// Max/Min/Sum/Mean, Where, Cast/CastLike and Clip.
#include <functional>
#include <limits>

#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

bool is_int(DType t) { return t == DType::I64 || t == DType::I32 || t == DType::I8 || t == DType::U8; }

// Which element types an op accepts; checked in the shape rule so that an unsupported
// type fails at build time, naming the node.
enum class Types { Float, Numeric, Integer, Bool, Any, IntOrBool };

bool accepts(Types k, DType t) {
  switch (k) {
    case Types::Float: return is_float(t);
    case Types::Numeric: return is_float(t) || is_int(t);
    case Types::Integer: return is_int(t);
    case Types::Bool: return t == DType::Bool;
    case Types::IntOrBool: return is_int(t) || t == DType::Bool;
    case Types::Any: return t != DType::Undefined;
  }
  return false;
}

const char* types_str(Types k) {
  switch (k) {
    case Types::Float: return "a floating-point type";
    case Types::Numeric: return "a numeric (non-bool) type";
    case Types::Integer: return "an integer type";
    case Types::Bool: return "bool";
    case Types::IntOrBool: return "an integer or bool type";
    case Types::Any: return "any type";
  }
  return "?";
}

void check_type(const InferCtx& c, size_t i, Types k) {
  if (!accepts(k, c.in_types[i]))
    c.fail(std::string("input ") + std::to_string(i) + " has type " + dtype_name(c.in_types[i]) +
           ", expected " + types_str(k));
}

void unary(const std::string& name, Types k, std::vector<std::string> attrs = {},
           DType out = DType::Undefined, std::function<std::string(const Node&)> validate = {}) {
  OpSchema s;
  s.validate = std::move(validate);
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = std::move(attrs);
  s.infer = [k, out](InferCtx& c) {
    check_type(c, 0, k);
    c.set(0, out == DType::Undefined ? c.in_types[0] : out, c.in_shapes[0]);
  };
  register_schema(std::move(s));
}

// Binary op with numpy broadcasting. `out` Undefined: the output has input 0's type.
// Both inputs must have one type (Pow, whose types may differ, has its own rule).
void binary(const std::string& name, Types k, DType out = DType::Undefined,
            std::vector<std::string> attrs = {}, std::function<std::string(const Node&)> validate = {}) {
  OpSchema s;
  s.validate = std::move(validate);
  s.name = name;
  s.min_inputs = s.max_inputs = 2;
  s.attrs = std::move(attrs);
  s.infer = [k, out](InferCtx& c) {
    check_type(c, 0, k);
    if (c.in_types[0] != c.in_types[1])
      c.fail(std::string("inputs have different types (") + dtype_name(c.in_types[0]) + " and " +
             dtype_name(c.in_types[1]) + ")");
    c.set(0, out == DType::Undefined ? c.in_types[0] : out,
          broadcast_shapes(c, c.in_shapes[0], c.in_shapes[1]));
  };
  register_schema(std::move(s));
}

void variadic(const std::string& name, Types k) {
  OpSchema s;
  s.name = name;
  s.min_inputs = 1;
  s.max_inputs = std::numeric_limits<int>::max();
  s.infer = [k](InferCtx& c) {
    Shape sh = c.in_shapes[0];
    for (size_t i = 0; i < c.num_inputs(); ++i) {
      if (!c.has(i)) c.fail("input " + std::to_string(i) + " is missing");
      check_type(c, i, k);
      if (c.in_types[i] != c.in_types[0]) c.fail("inputs have different types");
      if (i) sh = broadcast_shapes(c, sh, c.in_shapes[i]);
    }
    c.set(0, c.in_types[0], sh);
  };
  register_schema(std::move(s));
}

}  // namespace

void register_elementwise_schemas() {
  // Unary maps.
  for (const char* op : {"Exp", "Log", "Sqrt", "Reciprocal", "Sin", "Cos", "Tan", "Asin", "Acos",
                         "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Tanh", "Sigmoid", "Erf",
                         "Floor", "Ceil", "Round", "Softplus", "Softsign", "HardSwish", "Mish"})
    unary(op, Types::Float);
  for (const char* op : {"Abs", "Neg", "Sign", "Relu"}) unary(op, Types::Numeric);
  unary("Not", Types::Bool);
  unary("BitwiseNot", Types::Integer);
  unary("IsNaN", Types::Float, {}, DType::Bool);
  unary("IsInf", Types::Float, {"detect_negative", "detect_positive"}, DType::Bool);
  unary("LeakyRelu", Types::Float, {"alpha"});
  unary("Elu", Types::Float, {"alpha"});
  unary("Selu", Types::Float, {"alpha", "gamma"});
  unary("Celu", Types::Float, {"alpha"});
  unary("HardSigmoid", Types::Float, {"alpha", "beta"});
  unary("ThresholdedRelu", Types::Float, {"alpha"});
  unary("Shrink", Types::Numeric, {"bias", "lambd"});
  unary("Gelu", Types::Float, {"approximate"}, DType::Undefined, [](const Node& n) -> std::string {
    std::string a = n.attr_s("approximate", "none");
    return a == "none" || a == "tanh" ? "" : "Gelu approximate='" + a + "' is not supported (none|tanh)";
  });

  // Binary ops with numpy broadcasting.
  for (const char* op : {"Add", "Sub", "Mul", "Div"}) binary(op, Types::Numeric);
  binary("Mod", Types::Numeric, DType::Undefined, {"fmod"}, [](const Node& n) -> std::string {
    return n.attr_i("fmod", 0) == 0 || n.attr_i("fmod", 0) == 1 ? "" : "Mod fmod must be 0 or 1";
  });
  // Pow: base and exponent types may differ; the output has the base's type.
  {
    OpSchema s;
    s.name = "Pow";
    s.min_inputs = s.max_inputs = 2;
    s.infer = [](InferCtx& c) {
      check_type(c, 0, Types::Numeric);
      check_type(c, 1, Types::Numeric);
      c.set(0, c.in_types[0], broadcast_shapes(c, c.in_shapes[0], c.in_shapes[1]));
    };
    register_schema(std::move(s));
  }
  binary("Equal", Types::Any, DType::Bool);
  for (const char* op : {"Less", "Greater", "LessOrEqual", "GreaterOrEqual"})
    binary(op, Types::Numeric, DType::Bool);
  for (const char* op : {"And", "Or", "Xor"}) binary(op, Types::Bool, DType::Bool);
  for (const char* op : {"BitwiseAnd", "BitwiseOr", "BitwiseXor"}) binary(op, Types::Integer);
  binary("BitShift", Types::Integer, DType::Undefined, {"direction"}, [](const Node& n) -> std::string {
    std::string d = n.attr_s("direction", "");
    return d == "LEFT" || d == "RIGHT" ? "" : "BitShift direction must be LEFT or RIGHT, got '" + d + "'";
  });
  binary("PRelu", Types::Numeric);
  for (const char* op : {"Max", "Min", "Sum"}) variadic(op, Types::Numeric);
  variadic("Mean", Types::Float);

  {
    OpSchema s;
    s.name = "Where";
    s.min_inputs = s.max_inputs = 3;
    s.infer = [](InferCtx& c) {
      check_type(c, 0, Types::Bool);
      if (c.in_types[1] != c.in_types[2]) c.fail("X and Y have different types");
      Shape sh = broadcast_shapes(c, c.in_shapes[0], c.in_shapes[1]);
      c.set(0, c.in_types[1], broadcast_shapes(c, sh, c.in_shapes[2]));
    };
    register_schema(std::move(s));
  }
  {
    OpSchema s;
    s.name = "Cast";
    s.min_inputs = s.max_inputs = 1;
    s.attrs = {"to", "saturate", "round_mode"};
    s.validate = [](const Node& n) -> std::string {
      if (!n.has_attr("to")) return "Cast needs attribute 'to'";
      int64_t to = n.attr_i("to");
      if (dtype_from_onnx(int(to)) == DType::Undefined)
        return "Cast to ONNX data type " + std::to_string(to) + " is not supported";
      return "";
    };
    s.infer = [](InferCtx& c) {
      DType to = dtype_from_onnx(int(c.node.attr_i("to", 0)));
      if (to == DType::Undefined)
        c.fail("Cast to ONNX data type " + std::to_string(c.node.attr_i("to", 0)) + " is not supported");
      check_type(c, 0, Types::Any);
      c.set(0, to, c.in_shapes[0]);
    };
    register_schema(std::move(s));
  }
  {
    OpSchema s;
    s.name = "CastLike";
    s.min_inputs = s.max_inputs = 2;
    s.attrs = {"saturate", "round_mode"};
    s.infer = [](InferCtx& c) {
      check_type(c, 0, Types::Any);
      check_type(c, 1, Types::Any);
      c.set(0, c.in_types[1], c.in_shapes[0]);
    };
    register_schema(std::move(s));
  }
  {
    OpSchema s;
    s.name = "Clip";
    s.min_inputs = 1;
    s.max_inputs = 3;
    s.infer = [](InferCtx& c) {
      check_type(c, 0, Types::Numeric);
      for (size_t i = 1; i < 3; ++i) {
        if (!c.has(i)) continue;
        if (c.in_types[i] != c.in_types[0]) c.fail("min/max must have the input's type");
        for (const Dim& d : c.in_shapes[i])
          if (d.known() && d.value != 1) c.fail("min/max must be scalars");
      }
      c.set(0, c.in_types[0], c.in_shapes[0]);
    };
    register_schema(std::move(s));
  }
}

}  // namespace shardrt
