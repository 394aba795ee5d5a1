// Schemas of the reduction family: Reduce* (axes as optional input 1), ArgMax/ArgMin,
// Softmax/LogSoftmax/Hardmax (opset-13: one axis), CumSum and TopK.
#include <algorithm>
#include <set>

#include "ir/op_schema.h"
#include "ir/ops/ops.h"

namespace shardrt {

namespace {

bool is_int(DType t) { return t == DType::I64 || t == DType::I32 || t == DType::I8 || t == DType::U8; }

void need(const InferCtx& c, size_t i, bool ok, const char* what) {
  if (!ok) c.fail(std::string("input ") + std::to_string(i) + " has type " + dtype_name(c.in_types[i]) +
                  ", expected " + what);
}

// Reduce*: data, optional axes (int64 1-D). Empty or omitted axes reduce everything unless
// noop_with_empty_axes, in which case the op is the identity (of its pre-transform).
void reduce(const std::string& name, bool allow_int, bool allow_bool) {
  OpSchema s;
  s.name = name;
  s.min_inputs = 1;
  s.max_inputs = 2;
  s.attrs = {"keepdims", "noop_with_empty_axes"};
  s.infer = [allow_int, allow_bool](InferCtx& c) {
    DType t = c.in_types[0];
    need(c, 0, is_float(t) || (allow_int && is_int(t)) || (allow_bool && t == DType::Bool),
         allow_bool ? "a numeric or bool type" : allow_int ? "a numeric type" : "a floating-point type");
    const Shape& in = c.in_shapes[0];
    int64_t r = int64_t(in.size());
    bool keep = c.node.attr_i("keepdims", 1) != 0;
    bool noop = c.node.attr_i("noop_with_empty_axes", 0) != 0;
    if (c.has(1)) {
      if (c.in_types[1] != DType::I64) c.fail("axes must be int64");
      const Tensor* ax = c.value(1);
      if (!ax) {
        // Axes known only at run time: the rank is still known when keepdims is on, or
        // from the number of axes when it is off (the IR has no shapes of unknown rank).
        if (keep) {
          c.set(0, t, Shape(in.size(), dim_unknown()));
          return;
        }
        const Shape& as = c.in_shapes[1];
        if (as.size() != 1 || !as[0].known())
          c.fail("axes must be a constant, or of known length, when keepdims=0");
        int64_t n = as[0].value;
        if (n == 0) {
          c.set(0, t, noop ? in : Shape{});
          return;
        }
        if (n > r) c.fail("reduces " + std::to_string(n) + " axes of a rank-" + std::to_string(r) + " input");
        c.set(0, t, Shape(size_t(r - n), dim_unknown()));
        return;
      }
      std::vector<int64_t> axes = ax->to_i64_vector();
      if (!axes.empty() || !noop) {
        std::set<int64_t> red;
        for (int64_t a : axes)
          if (!red.insert(c.axis(a, r)).second) c.fail("axis " + std::to_string(a) + " repeats");
        if (axes.empty())
          for (int64_t i = 0; i < r; ++i) red.insert(i);
        Shape out;
        for (int64_t i = 0; i < r; ++i) {
          if (!red.count(i)) out.push_back(in[size_t(i)]);
          else if (keep) out.push_back(Dim(1));
        }
        c.set(0, t, out);
        return;
      }
      c.set(0, t, in);
      return;
    }
    if (noop) { c.set(0, t, in); return; }
    c.set(0, t, keep ? Shape(in.size(), Dim(1)) : Shape{});
  };
  register_schema(std::move(s));
}

void arg(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = {"axis", "keepdims", "select_last_index"};
  s.infer = [](InferCtx& c) {
    DType t = c.in_types[0];
    need(c, 0, is_float(t) || is_int(t), "a numeric type");
    const Shape& in = c.in_shapes[0];
    int64_t r = int64_t(in.size());
    if (r == 0) c.fail("input must have rank >= 1");
    int64_t ax = c.axis(c.node.attr_i("axis", 0), r);
    bool keep = c.node.attr_i("keepdims", 1) != 0;
    Shape out;
    for (int64_t i = 0; i < r; ++i) {
      if (i != ax) out.push_back(in[size_t(i)]);
      else if (keep) out.push_back(Dim(1));
    }
    c.set(0, DType::I64, out);
  };
  register_schema(std::move(s));
}

void softmax_like(const std::string& name) {
  OpSchema s;
  s.name = name;
  s.min_inputs = s.max_inputs = 1;
  s.attrs = {"axis"};
  s.infer = [](InferCtx& c) {
    need(c, 0, is_float(c.in_types[0]), "a floating-point type");
    int64_t r = c.rank(0);
    if (r == 0) c.fail("input must have rank >= 1");
    c.axis(c.node.attr_i("axis", -1), r);
    c.set(0, c.in_types[0], c.in_shapes[0]);
  };
  register_schema(std::move(s));
}

}  // namespace

void register_reduce_schemas() {
  for (const char* op : {"ReduceSum", "ReduceProd", "ReduceSumSquare", "ReduceL1", "ReduceL2"})
    reduce(op, true, false);
  for (const char* op : {"ReduceMax", "ReduceMin"}) reduce(op, true, true);
  // Mean of integers truncates the float mean (as the ONNX reference does).
  reduce("ReduceMean", true, false);
  for (const char* op : {"ReduceLogSum", "ReduceLogSumExp"}) reduce(op, false, false);
  arg("ArgMax");
  arg("ArgMin");
  softmax_like("Softmax");
  softmax_like("LogSoftmax");
  softmax_like("Hardmax");

  {
    OpSchema s;
    s.name = "CumSum";
    s.min_inputs = s.max_inputs = 2;
    s.attrs = {"exclusive", "reverse"};
    s.infer = [](InferCtx& c) {
      DType t = c.in_types[0];
      need(c, 0, is_float(t) || t == DType::I64 || t == DType::I32, "a float, int32 or int64 type");
      need(c, 1, c.in_types[1] == DType::I64 || c.in_types[1] == DType::I32, "int32 or int64");
      if (c.rank(0) == 0) c.fail("input must have rank >= 1");
      if (const Tensor* ax = c.value(1)) {
        if (ax->numel() != 1) c.fail("axis must hold one value");
        c.axis(ax->get_i(0), c.rank(0));
      }
      c.set(0, t, c.in_shapes[0]);
    };
    register_schema(std::move(s));
  }
  {
    OpSchema s;
    s.name = "TopK";
    s.min_inputs = s.max_inputs = 2;
    s.min_outputs = s.max_outputs = 2;
    s.attrs = {"axis", "largest", "sorted"};
    // The output's extent along `axis` is K's value.
    s.data_dependent_shape = true;
    s.infer = [](InferCtx& c) {
      DType t = c.in_types[0];
      need(c, 0, is_float(t) || is_int(t), "a numeric type");
      need(c, 1, c.in_types[1] == DType::I64, "int64");
      int64_t r = c.rank(0);
      if (r == 0) c.fail("input must have rank >= 1");
      int64_t ax = c.axis(c.node.attr_i("axis", -1), r);
      Shape out = c.in_shapes[0];
      if (const Tensor* k = c.value(1)) {
        if (k->numel() != 1) c.fail("K must hold one value");
        int64_t kv = k->get_i(0);
        const Dim& d = out[size_t(ax)];
        if (kv < 0 || (d.known() && kv > d.value))
          c.fail("K=" + std::to_string(kv) + " is out of range for axis size " + d.str());
        out[size_t(ax)] = Dim(kv);
      } else {
        out[size_t(ax)] = dim_unknown("topk");
      }
      c.set(0, t, out);
      c.set(1, DType::I64, out);
    };
    register_schema(std::move(s));
  }
}

}  // namespace shardrt
