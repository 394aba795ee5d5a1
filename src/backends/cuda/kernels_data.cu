// CUDA kernels of the data family: registration, and the copy engine shared by the family
// (see kernels_data_common.h).
#include <algorithm>
#include <cstring>

#include "backends/copy_layout.h"
#include "backends/cuda/kernels_data_common.h"

namespace shardrt::cuda {

namespace data {

namespace {

// A strided copy's axes, innermost first (so the unrolled loop indexes them statically).
struct StridedArgs {
  int k = 0;
  int64_t dims[kMaxDims];
  int64_t ds[kMaxDims];
  int64_t ss[kMaxDims];
};

// One element per iteration: the flat output index is split into coordinates (innermost
// first); I is int32 when every offset fits, which makes the divisions much cheaper.
template <class T, class I>
__global__ void __launch_bounds__(kThreads)
    strided_kernel(T* __restrict__ dst, const T* __restrict__ src, StridedArgs a, I total) {
  pdl_wait();
  pdl_trigger();
  const I stride = I(gridDim.x) * I(blockDim.x);
  for (I i = I(blockIdx.x) * I(blockDim.x) + I(threadIdx.x); i < total; i += stride) {
    I rem = i, doff = 0, soff = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d >= a.k) break;
      const I n = I(a.dims[d]);
      const I x = rem % n;
      rem /= n;
      doff += x * I(a.ds[d]);
      soff += x * I(a.ss[d]);
    }
    dst[doff] = src[soff];
  }
}

// A transpose: axis q reads contiguously (source stride 1), axis j writes contiguously
// (destination stride 1); 32x32 tiles go through shared memory (+1 column against bank
// conflicts) so both the reads and the writes are coalesced.
struct TransArgs {
  int m = 0;  // outer axes, innermost first
  int64_t odims[kMaxDims], ods[kMaxDims], oss[kMaxDims];
  int64_t nq, nj, dsq, ssj, tiles_q, tiles_j, total_tiles;
};

constexpr int kTile = 32, kTileRows = 8;

template <class T>
__global__ void __launch_bounds__(kTile * kTileRows)
    transpose_kernel(T* __restrict__ dst, const T* __restrict__ src, TransArgs a) {
  pdl_wait();
  pdl_trigger();
  __shared__ T tile[kTile][kTile + 1];
  for (int64_t t = blockIdx.x; t < a.total_tiles; t += gridDim.x) {
    const int64_t tj = t % a.tiles_j;
    int64_t r = t / a.tiles_j;
    const int64_t tq = r % a.tiles_q;
    r /= a.tiles_q;
    int64_t doff = 0, soff = 0;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d >= a.m) break;
      const int64_t x = r % a.odims[d];
      r /= a.odims[d];
      doff += x * a.ods[d];
      soff += x * a.oss[d];
    }
    const int64_t q0 = tq * kTile, j0 = tj * kTile;
    for (int y = threadIdx.y; y < kTile; y += kTileRows) {
      const int64_t q = q0 + threadIdx.x, j = j0 + y;
      if (q < a.nq && j < a.nj) tile[y][threadIdx.x] = src[soff + q + j * a.ssj];
    }
    __syncthreads();
    for (int y = threadIdx.y; y < kTile; y += kTileRows) {
      const int64_t q = q0 + y, j = j0 + threadIdx.x;
      if (q < a.nq && j < a.nj) dst[doff + q * a.dsq + j] = tile[threadIdx.x][y];
    }
    __syncthreads();
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) fill_kernel(T* __restrict__ dst, T v, int64_t n) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = v;
}

using Layout = CopyLayout;

// Whether flat indices and every offset of the layout fit in int32 (with room for the
// grid stride added past the end).
bool fits_i32(const Layout& l, int64_t total) {
  constexpr int64_t lim = int64_t(1) << 30;
  if (total >= lim) return false;
  int64_t dmax = 0, smax = 0;
  for (size_t i = 0; i < l.dims.size(); ++i) {
    dmax += (l.dims[i] - 1) * (l.ds[i] < 0 ? -l.ds[i] : l.ds[i]);
    smax += (l.dims[i] - 1) * (l.ss[i] < 0 ? -l.ss[i] : l.ss[i]);
  }
  return dmax < lim && smax < lim;
}

void launch_strided(const KernelCtx& c, void* dst, const void* src, const Layout& l, size_t es) {
  StridedArgs a;
  a.k = int(l.dims.size());
  if (a.k > kMaxDims) c.fail("a copy over " + std::to_string(a.k) + " axes is beyond the CUDA kernel's " + std::to_string(kMaxDims));
  int64_t total = 1;
  for (int d = 0; d < a.k; ++d) {
    const size_t s = size_t(a.k - 1 - d);
    a.dims[d] = l.dims[s];
    a.ds[d] = l.ds[s];
    a.ss[d] = l.ss[s];
    total *= l.dims[s];
  }
  if (total == 0) return;
  const bool small = fits_i32(l, total);
  with_elem(c, es, [&](auto z) {
    using T = decltype(z);
    if (small)
      launch_pdl(strided_kernel<T, int32_t>, grid_for(c, total), kThreads, 0, c.stream(), static_cast<T*>(dst),
                 static_cast<const T*>(src), a, int32_t(total));
    else
      launch_pdl(strided_kernel<T, int64_t>, grid_for(c, total), kThreads, 0, c.stream(), static_cast<T*>(dst),
                 static_cast<const T*>(src), a, total);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

std::vector<int64_t> strides_of(const Dims& dims) {
  std::vector<int64_t> s(dims.size(), 1);
  for (int64_t i = int64_t(dims.size()) - 2; i >= 0; --i) s[size_t(i)] = s[size_t(i) + 1] * dims[size_t(i) + 1];
  return s;
}

int64_t norm_axis(const KernelCtx& c, int64_t a, int64_t r) {
  if (a < -r || a >= r) c.fail("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(r));
  return a < 0 ? a + r : a;
}

unsigned grid_for(const KernelCtx& c, int64_t n, int threads) {
  const int64_t cap = int64_t(std::max(1, c.res.props().multiProcessorCount)) * 16;
  const int64_t need = (n + threads - 1) / threads;
  return unsigned(std::max<int64_t>(1, std::min(need, cap)));
}

// Copies and fills up to this size run as kernels launched with PDL, so that a chain of small
// kernels (a decode step) keeps overlapping across them; a memcpy/memset node in a CUDA graph
// waits for the previous kernel to complete and makes the next one wait for it. Larger ones
// go to the copy engine / memset as before.
constexpr size_t kKernelCopyMax = size_t(4) << 20;

void copy_bytes(const KernelCtx& c, void* dst, const void* src, size_t n) {
  if (n == 0 || dst == src) return;
  if (n <= kKernelCopyMax) {
    const size_t v = vec_width(1, {int64_t(n)}, {dst, src});
    Layout l;
    l.dims = {int64_t(n / v)};
    l.ds = {1};
    l.ss = {1};
    launch_strided(c, dst, src, l, v);
    return;
  }
  SHARDRT_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, c.stream()));
}

uint64_t elem_bits(const void* p, size_t es) {
  uint64_t v = 0;
  std::memcpy(&v, p, std::min<size_t>(es, 8));
  return v;
}

void fill_elems(const KernelCtx& c, void* dst, int64_t n, uint64_t bits, size_t es) {
  if (n <= 0) return;
  if (es < 8) bits &= (uint64_t(1) << (8 * es)) - 1;
  // Every byte the same (zero, all-ones, or 1-byte elements) and large: a memset.
  bool same = true;
  const uint8_t b0 = uint8_t(bits & 0xff);
  for (size_t i = 1; i < es; ++i) same &= uint8_t(bits >> (8 * i)) == b0;
  if (same && size_t(n) * es > kKernelCopyMax) {
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(dst, b0, size_t(n) * es, c.stream()));
    return;
  }
  // 16 bytes per thread over the aligned bulk, elements for the rest.
  uint64_t pat = bits;
  for (size_t w = es; w < 8; w *= 2) pat |= pat << (8 * w);
  int64_t head = 0;
  if (reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    const int64_t vecs = int64_t(size_t(n) * es / 16);
    if (vecs > 0) {
      uint4 v;
      v.x = uint32_t(pat);
      v.y = uint32_t(pat >> 32);
      v.z = v.x;
      v.w = v.y;
      launch_pdl(fill_kernel<uint4>, grid_for(c, vecs), kThreads, 0, c.stream(), static_cast<uint4*>(dst), v, vecs);
      SHARDRT_CUDA_CHECK(cudaGetLastError());
      head = vecs * 16 / int64_t(es);
    }
  }
  if (head == n) return;
  with_elem(c, es, [&](auto z) {
    using T = decltype(z);
    if constexpr (sizeof(T) <= 8) {
      T v;
      std::memcpy(&v, &bits, sizeof(T));
      launch_pdl(fill_kernel<T>, grid_for(c, n - head), kThreads, 0, c.stream(), static_cast<T*>(dst) + head, v,
                 n - head);
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

size_t vec_width(size_t es, std::initializer_list<int64_t> byte_counts, std::initializer_list<const void*> ptrs) {
  for (size_t v = 16; v > es; v /= 2) {
    bool ok = true;
    for (int64_t b : byte_counts) ok &= b % int64_t(v) == 0;
    for (const void* p : ptrs) ok &= reinterpret_cast<uintptr_t>(p) % v == 0;
    if (ok) return v;
  }
  return es;
}

const Tensor& host_input_or_fail(const KernelCtx& c, size_t i, const char* what) {
  return c.host_value(i, what);
}

void strided_copy(const KernelCtx& c, void* dst, const std::vector<int64_t>& dst_strides, const void* src,
                  const std::vector<int64_t>& src_strides, const Dims& dims, size_t es) {
  for (int64_t d : dims)
    if (d == 0) return;
  Layout l = simplify_copy_layout(dims, dst_strides, src_strides);
  const int k = int(l.dims.size());
  if (k == 0) { copy_bytes(c, dst, src, es); return; }
  const int last = k - 1;
  const int64_t dsl = l.ds[size_t(last)], ssl = l.ss[size_t(last)];

  if (dsl == 1 && ssl == 1) {
    // Contiguous runs: one memcpy, or runs moved as the widest vectors that every run
    // length, row stride and base address allow.
    if (k == 1) { copy_bytes(c, dst, src, size_t(l.dims[0]) * es); return; }
    int64_t run = l.dims[size_t(last)] * int64_t(es);
    size_t v = vec_width(es, {run}, {dst, src});
    for (int a = 0; a < last && v > es; ++a)
      while (v > es && ((l.ds[size_t(a)] * int64_t(es)) % int64_t(v) || (l.ss[size_t(a)] * int64_t(es)) % int64_t(v)))
        v /= 2;
    if (v > es) {
      const int64_t f = int64_t(v / es);
      l.dims[size_t(last)] /= f;
      for (int a = 0; a < last; ++a) {
        l.ds[size_t(a)] /= f;
        l.ss[size_t(a)] /= f;
      }
    }
    launch_strided(c, dst, src, l, v);
    return;
  }

  // A transpose: an axis other than the innermost reads contiguously.
  int q = -1;
  for (int a = 0; a < last; ++a)
    if (l.ss[size_t(a)] == 1) q = a;
  const int64_t nj = l.dims[size_t(last)];
  if (dsl == 1 && q >= 0 && l.dims[size_t(q)] >= 8 && nj >= 8) {
    TransArgs a;
    a.nq = l.dims[size_t(q)];
    a.nj = nj;
    a.dsq = l.ds[size_t(q)];
    a.ssj = ssl;
    a.tiles_q = (a.nq + kTile - 1) / kTile;
    a.tiles_j = (a.nj + kTile - 1) / kTile;
    int64_t outer = 1;
    for (int d = last - 1; d >= 0; --d) {
      if (d == q) continue;
      a.odims[a.m] = l.dims[size_t(d)];
      a.ods[a.m] = l.ds[size_t(d)];
      a.oss[a.m] = l.ss[size_t(d)];
      outer *= l.dims[size_t(d)];
      ++a.m;
    }
    a.total_tiles = outer * a.tiles_q * a.tiles_j;
    const int64_t cap = int64_t(std::max(1, c.res.props().multiProcessorCount)) * 16;
    const unsigned grid = unsigned(std::max<int64_t>(1, std::min(a.total_tiles, cap)));
    with_elem(c, es, [&](auto z) {
      using T = decltype(z);
      if constexpr (sizeof(T) <= 8)
        launch_pdl(transpose_kernel<T>, grid, dim3(kTile, kTileRows), 0, c.stream(), static_cast<T*>(dst),
                   static_cast<const T*>(src), a);
    });
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    return;
  }

  launch_strided(c, dst, src, l, es);
}

}  // namespace data

void register_data_kernels() {
  data::register_data_move_kernels();
  data::register_data_index_kernels();
  data::register_data_create_kernels();
  data::register_data_pad_kernels();
  data::register_data_resize_kernels();
}

}  // namespace shardrt::cuda
