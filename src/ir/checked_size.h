// Overflow-checked sizes for dims read from files (ONNX initializers, engine files, .npy):
// a shape whose element count or byte size does not fit in 63 bits is refused with an
// Error naming `what`, before anything is allocated or indexed with it.
#pragma once
#include <cstddef>
#include <string>

#include "shardrt/dtype.h"
#include "shardrt/tensor.h"

namespace shardrt {

// Element count of `dims`; refuses negative dims and counts over 2^62.
int64_t checked_numel(const Dims& dims, const std::string& what);
// Bytes of a `t` tensor of `dims` (checked_numel times the element size, checked too).
size_t checked_nbytes(DType t, const Dims& dims, const std::string& what);

}  // namespace shardrt
