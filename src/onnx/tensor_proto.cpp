// TensorProto → Tensor: raw_data, the typed repeated fields, or external data.
#include <cstring>

#include "ir/checked_size.h"
#include "ir/onnx_dtype.h"
#include "onnx/import_internal.h"
#include "onnx/importer.h"
#include "onnx/onnx.pb.h"
#include "shardrt/engine.h"

namespace shardrt {
namespace onnx_detail {

std::string onnx_type_name(int t) {
  static const char* names[] = {"undefined", "float", "uint8", "int8", "uint16", "int16", "int32",
                                "int64", "string", "bool", "float16", "double", "uint32", "uint64",
                                "complex64", "complex128", "bfloat16", "float8e4m3fn", "float8e4m3fnuz",
                                "float8e5m2", "float8e5m2fnuz", "uint4", "int4", "float4e2m1",
                                "float8e8m0", "uint2", "int2"};
  if (t >= 0 && size_t(t) < sizeof(names) / sizeof(names[0])) return names[t];
  return "type #" + std::to_string(t);
}

namespace {

template <class Field, class T>
void copy_typed(const Field& f, Tensor& r, const std::string& name, const char* field) {
  if (int64_t(f.size()) != r.numel())
    throw GraphError("initializer '" + name + "': " + field + " holds " + std::to_string(f.size()) +
                     " values, dims " + dims_str(r.dims()) + " need " + std::to_string(r.numel()));
  T* d = r.data<T>();
  for (int i = 0; i < f.size(); ++i) d[i] = static_cast<T>(f.Get(i));
}

}  // namespace

Tensor tensor_from_proto(const onnx::TensorProto& t, ExternalDataFiles& ext) {
  const std::string& name = t.name();
  DType dt = dtype_from_onnx(t.data_type());
  if (dt == DType::Undefined) {
    std::string msg = "tensor '" + name + "': data type " + onnx_type_name(t.data_type()) + " is not supported";
    throw UnsupportedModelError(msg, {{"", msg}});
  }
  if (t.has_segment())
    throw UnsupportedModelError("tensor '" + name + "': segmented tensors are not supported",
                                {{"", "segmented tensor '" + name + "'"}});
  Dims dims;
  for (int64_t d : t.dims()) {
    if (d < 0) throw GraphError("tensor '" + name + "': negative dimension in its dims");
    dims.push_back(d);
  }
  // Sizes are checked against the data the proto holds before anything is allocated: dims
  // alone can ask for any amount of memory.
  size_t need;
  try {
    need = checked_nbytes(dt, dims, "tensor '" + name + "'");
  } catch (const Error& e) {
    throw GraphError(e.what());
  }
  if (t.data_location() == onnx::TensorProto::EXTERNAL) return ext.load(t, dt, dims);

  if (t.has_raw_data()) {
    if (t.raw_data().size() != need)
      throw GraphError("tensor '" + name + "': raw_data has " + std::to_string(t.raw_data().size()) +
                       " bytes, " + dtype_name(dt) + dims_str(dims) + " needs " + std::to_string(need));
    Tensor r(dt, dims);
    if (need) std::memcpy(r.raw(), t.raw_data().data(), need);
    return r;
  }
  size_t have = 0;  // values in the typed field this dtype uses
  const char* field = "int32_data";
  switch (dt) {
    case DType::F32: have = size_t(t.float_data_size()); field = "float_data"; break;
    case DType::F64: have = size_t(t.double_data_size()); field = "double_data"; break;
    case DType::I64: have = size_t(t.int64_data_size()); field = "int64_data"; break;
    default: have = size_t(t.int32_data_size()); break;
  }
  if (have != need / dtype_size(dt))
    throw GraphError("initializer '" + name + "': " + field + " holds " + std::to_string(have) + " values, dims " +
                     dims_str(dims) + " need " + std::to_string(need / dtype_size(dt)));
  Tensor r(dt, dims);
  switch (dt) {
    case DType::F32: copy_typed<decltype(t.float_data()), float>(t.float_data(), r, name, "float_data"); break;
    case DType::F64: copy_typed<decltype(t.double_data()), double>(t.double_data(), r, name, "double_data"); break;
    case DType::I64: copy_typed<decltype(t.int64_data()), int64_t>(t.int64_data(), r, name, "int64_data"); break;
    case DType::I32: copy_typed<decltype(t.int32_data()), int32_t>(t.int32_data(), r, name, "int32_data"); break;
    case DType::I8: copy_typed<decltype(t.int32_data()), int8_t>(t.int32_data(), r, name, "int32_data"); break;
    case DType::U8: copy_typed<decltype(t.int32_data()), uint8_t>(t.int32_data(), r, name, "int32_data"); break;
    case DType::Bool: copy_typed<decltype(t.int32_data()), uint8_t>(t.int32_data(), r, name, "int32_data"); break;
    // fp16 and bf16 keep their bit patterns in the low 16 bits of int32_data.
    case DType::F16:
    case DType::BF16: copy_typed<decltype(t.int32_data()), uint16_t>(t.int32_data(), r, name, "int32_data"); break;
    case DType::Undefined: break;
  }
  if (dt == DType::Bool) {  // normalise to 0/1
    uint8_t* b = r.data<uint8_t>();
    for (int64_t i = 0; i < r.numel(); ++i) b[i] = b[i] ? 1 : 0;
  }
  return r;
}

}  // namespace onnx_detail

Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& base_dir) {
  onnx_detail::ExternalDataFiles ext(base_dir);
  return onnx_detail::tensor_from_proto(t, ext);
}

}  // namespace shardrt
