// Mapping between ONNX TensorProto data type numbers and shardrt's DType. Shared by the
// importer and by ops whose attributes name a type (Cast's `to`, ...).
#pragma once
#include "shardrt/dtype.h"

namespace shardrt {

// ONNX TensorProto.DataType numbers of the types shardrt has.
namespace onnx_type {
constexpr int FLOAT = 1, UINT8 = 2, INT8 = 3, INT32 = 6, INT64 = 7, BOOL = 9, FLOAT16 = 10,
              DOUBLE = 11, BFLOAT16 = 16;
}

// DType::Undefined for a type shardrt does not have (strings, uint16/32/64, int16, fp8, ...).
inline DType dtype_from_onnx(int t) {
  switch (t) {
    case onnx_type::FLOAT: return DType::F32;
    case onnx_type::UINT8: return DType::U8;
    case onnx_type::INT8: return DType::I8;
    case onnx_type::INT32: return DType::I32;
    case onnx_type::INT64: return DType::I64;
    case onnx_type::BOOL: return DType::Bool;
    case onnx_type::FLOAT16: return DType::F16;
    case onnx_type::DOUBLE: return DType::F64;
    case onnx_type::BFLOAT16: return DType::BF16;
    default: return DType::Undefined;
  }
}

// 0 (ONNX's UNDEFINED) for DType::Undefined.
inline int dtype_to_onnx(DType t) {
  switch (t) {
    case DType::F32: return onnx_type::FLOAT;
    case DType::F16: return onnx_type::FLOAT16;
    case DType::BF16: return onnx_type::BFLOAT16;
    case DType::I64: return onnx_type::INT64;
    case DType::I32: return onnx_type::INT32;
    case DType::I8: return onnx_type::INT8;
    case DType::U8: return onnx_type::UINT8;
    case DType::Bool: return onnx_type::BOOL;
    case DType::F64: return onnx_type::DOUBLE;
    case DType::Undefined: return 0;
  }
  return 0;
}

}  // namespace shardrt
