// The byte-moving engine behind the shape/data-movement kernels: dtype-agnostic (elements
// are moved by size), contiguous runs copied with memcpy, large work spread over cores.
#pragma once
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cpu/cpu_kernels.h"

namespace shardrt::cpu::shape_k {

// Row-major strides (in elements) of `dims`.
std::vector<int64_t> strides_of(const Dims& dims);

// memcpy of n bytes, split across cores when large.
void copy_bytes(void* dst, const void* src, size_t n);
// Writes n copies of the `es`-byte element `elem` to dst.
void fill_elems(void* dst, int64_t n, const void* elem, size_t es);

// dst[sum i_k*dst_strides[k]] = src[sum i_k*src_strides[k]] for every index i of `dims`
// (strides in elements, may be 0 or negative on the source side). Adjacent axes that stay
// adjacent are merged; innermost contiguous runs go through memcpy, transposes through
// cache-blocked tiles, broadcasts through fills.
void strided_copy(void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const Dims& dims, size_t es);

// Calls f with a zero value of the unsigned integer type of size es (1, 2, 4 or 8), so
// that element copies compile to plain loads and stores.
template <class F>
void with_elem(size_t es, F&& f) {
  switch (es) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    default: break;
  }
}

// Index helper: a possibly negative index into an axis of length n; -1 when out of range.
inline int64_t wrap_index(int64_t i, int64_t n) {
  if (i < 0) i += n;
  return (i < 0 || i >= n) ? -1 : i;
}

// Index tensors (int32/int64) read as int64.
inline int64_t index_at(const Tensor& t, int64_t i) {
  return t.dtype() == DType::I32 ? t.data<int32_t>()[i] : t.data<int64_t>()[i];
}

void register_shape_move_kernels();    // Reshape, Transpose, Concat, Split, Slice, Expand, Tile, ...
void register_shape_index_kernels();   // Gather*, Scatter*, Compress, NonZero, OneHot, ReverseSequence
void register_shape_create_kernels();  // Shape, Size, Range, ConstantOfShape, Constant, EyeLike, Trilu, Dropout, Pad, DepthToSpace, SpaceToDepth

}  // namespace shardrt::cpu::shape_k
