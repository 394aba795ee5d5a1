// The layout of a strided copy (dims, destination strides, source strides in elements),
// shared by the CPU and CUDA copy kernels (Transpose, Slice, Concat, Expand, ...).
#pragma once
#include <cstdint>
#include <vector>

#include "shardrt/tensor.h"

namespace shardrt {

struct CopyLayout {
  Dims dims;
  std::vector<int64_t> ds, ss;
};

// Drops size-1 axes and merges neighbours that are adjacent on both sides, so that the
// copy walks as few axes as possible.
inline CopyLayout simplify_copy_layout(const Dims& dims, const std::vector<int64_t>& ds,
                                       const std::vector<int64_t>& ss) {
  CopyLayout m;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == 1) continue;
    if (!m.dims.empty() && m.ds.back() == ds[i] * dims[i] && m.ss.back() == ss[i] * dims[i]) {
      m.dims.back() *= dims[i];
      m.ds.back() = ds[i];
      m.ss.back() = ss[i];
    } else {
      m.dims.push_back(dims[i]);
      m.ds.push_back(ds[i]);
      m.ss.push_back(ss[i]);
    }
  }
  return m;
}

}  // namespace shardrt
