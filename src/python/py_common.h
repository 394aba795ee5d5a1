// Shared pieces of the `shardrt._C` extension: dtype names as Python spells them, and the
// conversions between Python arrays (DLPack / buffer protocol) and shardrt host tensors.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "shardrt/dtype.h"
#include "shardrt/tensor.h"

namespace shardrt::py {
namespace pyb = pybind11;

// "float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8", "bool".
const char* py_dtype_name(DType t);
// A dtype from a Python name (the names above, shardrt's own "fp32"/"fp16"/..., or a
// `torch.dtype`/numpy dtype whose str() ends in one of them). Throws TypeError otherwise.
DType dtype_from_py(const pyb::handle& h);

// A shardrt tensor over the memory of a Python array: through __dlpack__ (CPU or pinned
// host memory) or else the buffer protocol. The producer stays alive as long as the tensor
// (its deleter takes the GIL). Non-contiguous or device arrays are refused with a
// TypeError/ValueError naming `what`.
Tensor borrow_tensor(const pyb::handle& obj, const std::string& what);

// The Python object that exposes a shardrt tensor through __dlpack__ / __dlpack_device__
// (class `shardrt._C.HostTensor`); shares the tensor's buffer.
pyb::object wrap_tensor(Tensor t);

void init_tensor(pyb::module_& m);
void init_network(pyb::module_& m);
void init_engine(pyb::module_& m);
void init_dist(pyb::module_& m);

}  // namespace shardrt::py
