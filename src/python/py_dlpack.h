// DLPack pieces shared by the host bridge (bindings_tensor.cpp) and the CUDA one
// (bindings_device.cpp): dtype codes, contiguity, the producer's device, capsule export.
#pragma once
#include <memory>
#include <utility>

#include "dlpack.h"
#include "py_common.h"
#include "shardrt/engine.h"

namespace shardrt::py {

// shardrt's dtype of a DLPack dtype (TypeError naming `what` for one it lacks), and back.
DType dtype_from_dl(DLDataType t, const std::string& what);
DLDataType dl_from_dtype(DType t);
// Row-major contiguity, ignoring the strides of dims of size 1 (as every framework does);
// `elem_stride_unit` is 1 for DLPack strides (in elements), the item size for buffer strides.
bool is_contiguous(const int64_t* shape, const int64_t* strides, int ndim, int64_t elem_stride_unit);
// (device type, device id) from the object's __dlpack_device__; (kDLCPU, 0) without one.
std::pair<int, int> dlpack_device_of(const pyb::handle& obj);

// Takes a producer's "dltensor" capsule (from __dlpack__): renames it "used_dltensor" so
// that it does not free the tensor too, and returns the tensor with `owner` set to call
// its deleter (under the GIL; skipped at interpreter exit) when the last user lets go.
DLManagedTensor* consume_dltensor(const pyb::object& cap, std::shared_ptr<void>& owner);

// A capsule ("dltensor", or "dltensor_versioned" when `versioned`) over `dims` elements of
// `dt` at `data` on `dev`, contiguous; the capsule (then its consumer) holds `keep`.
pyb::capsule export_dlpack(void* data, DLDevice dev, DType dt, const Dims& dims, std::shared_ptr<void> keep,
                           bool versioned, bool is_copy);

// ---- CUDA (bindings_device.cpp) ----

// Whether `obj` is a CUDA array: __dlpack_device__ says CUDA (or managed memory), or it is
// a shardrt DeviceTensor.
bool is_cuda_array(const pyb::handle& obj);
// A caller's CUDA stream as DLPack encodes it: None → 1 (the legacy default stream, as the
// DLPack protocol reads None), an int (a cudaStream_t value, as torch's
// `Stream.cuda_stream` gives; 0, the default stream, → 1), or an object with a
// `cuda_stream` attribute (torch.cuda.Stream). The same value, cast to a pointer, is the
// cudaStream_t the C++ API takes (cudaStreamLegacy is 1, cudaStreamPerThread 2).
int64_t stream_from_py(const pyb::handle& stream);
inline void* stream_ptr(int64_t s) { return reinterpret_cast<void*>(static_cast<intptr_t>(s)); }
// A DeviceTensor over a CUDA array's memory, without a copy: __dlpack__(stream=`stream`) so
// that the producer orders its work before that stream; contiguous only (ValueError
// naming `what` otherwise). The array stays alive as long as the result's owner.
DeviceTensor borrow_device_tensor(const pyb::handle& obj, const std::string& what, int64_t stream);
// The Python object (`shardrt._C.DeviceTensor`) over a DeviceTensor whose contents are ready
// on CUDA stream `stream` (DLPack encoding); its __dlpack__ orders a consumer's stream after it.
pyb::object wrap_device_tensor(DeviceTensor t, int64_t stream);

void init_device(pyb::module_& m);

}  // namespace shardrt::py
