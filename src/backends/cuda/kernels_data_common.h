// The byte-moving engine behind the CUDA data-movement kernels (kernels_data*.cu): element
// copies dispatched on element size (1/2/4/8 bytes, never on dtype), strided copies that
// merge axes, move 16 bytes per thread where the innermost run allows, and tile transposes
// through shared memory. Everything is enqueued on the context's stream; nothing allocates.
// Every kernel of the family (kernels_data*.cu) is launched with programmatic dependent
// launch (launch_pdl.h): it calls pdl_wait() before its first read or write and
// pdl_trigger() right after.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "backends/cuda/cuda_common.h"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda::data {

// Axes a strided copy handles after merging (Tile doubles the rank: 2 x 8).
constexpr int kMaxDims = 16;
constexpr int kThreads = 256;

// Row-major strides (in elements) of `dims`.
std::vector<int64_t> strides_of(const Dims& dims);
// `a` in [-r, r) made non-negative, or fail naming the node.
int64_t norm_axis(const KernelCtx& c, int64_t a, int64_t r);
// Blocks for a grid-stride loop over n items: enough to fill every SM several times over,
// never more than the items need.
unsigned grid_for(const KernelCtx& c, int64_t n, int threads = kThreads);

// Device-to-device copy of n bytes on the stream (nothing when n == 0 or dst == src): a copy
// kernel launched with PDL up to a few MiB, cudaMemcpyAsync beyond.
void copy_bytes(const KernelCtx& c, void* dst, const void* src, size_t n);
// Writes n copies of the es-byte element whose bytes are the low bytes of `bits` (a fill
// kernel launched with PDL; cudaMemsetAsync for large fills of one repeated byte).
void fill_elems(const KernelCtx& c, void* dst, int64_t n, uint64_t bits, size_t es);
// The bytes of a host element (es <= 8) as the low bytes of a uint64.
uint64_t elem_bits(const void* p, size_t es);

// dst[sum i_k*dst_strides[k]] = src[sum i_k*src_strides[k]] for every index i of `dims`
// (strides in elements; source strides may be 0 or negative).
void strided_copy(const KernelCtx& c, void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const Dims& dims, size_t es);

// The host copy of input i, or fail naming the node and input (`what` says what it holds).
const Tensor& host_input_or_fail(const KernelCtx& c, size_t i, const char* what);

// Largest power-of-two vector width in {16, 8, 4, 2, 1} bytes, at least es, dividing every
// value in `byte_counts` and the addresses in `ptrs`.
size_t vec_width(size_t es, std::initializer_list<int64_t> byte_counts, std::initializer_list<const void*> ptrs);

// Calls f(T{}) with T the unsigned type of es bytes (1, 2, 4, 8) or uint4 for 16.
template <class F>
void with_elem(const KernelCtx& c, size_t es, F&& f) {
  switch (es) {
    case 1: f(uint8_t{}); break;
    case 2: f(uint16_t{}); break;
    case 4: f(uint32_t{}); break;
    case 8: f(uint64_t{}); break;
    case 16: f(uint4{}); break;
    default: c.unsupported("element size " + std::to_string(es) + " is not supported on CUDA");
  }
}

void register_data_move_kernels();    // kernels_data_move.cu
void register_data_index_kernels();   // kernels_data_index.cu
void register_data_create_kernels();  // kernels_data_create.cu
void register_data_pad_kernels();     // kernels_data_pad.cu
void register_data_resize_kernels();  // kernels_data_resize.cu

}  // namespace shardrt::cuda::data
