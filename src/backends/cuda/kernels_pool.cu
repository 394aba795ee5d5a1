// MaxPool (with the optional Indices output, storage_order 0/1; also int8/uint8),
// AveragePool (count_include_pad), GlobalMaxPool and GlobalAveragePool: own kernels for 1 to
// 3 spatial dims (no cuDNN descriptor limits, and Indices come for free). Window geometry is
// the schema's (nn_ops_window.h), so pads, auto_pad, dilations and ceil_mode resolve exactly as
// on the CPU; sums and comparisons run in fp32 in the CPU's order, so outputs match it.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backends/cuda/conv_kernels.h"
#include "backends/cuda/cuda_common.h"
#include "ir/ops/nn_ops_window.h"

namespace shardrt::cuda {

namespace {

// Spatial axes padded to three at the front (size 1, window 1, no padding).
struct PoolArgs {
  int64_t total;  // planes × P
  int64_t P, I;   // outputs and inputs per plane
  int64_t in[3], out[3], k[3], s[3], d[3], pb[3], pe[3];
  int include_pad, col_major;
};

template <class T>
__device__ inline float lowest_f() {
  return -INFINITY;
}
template <> __device__ inline float lowest_f<int8_t>() { return -128.f; }
template <> __device__ inline float lowest_f<uint8_t>() { return 0.f; }

template <class T, bool kMax>
__global__ void __launch_bounds__(256) pool_kernel(PoolArgs a, const T* __restrict__ x, T* __restrict__ y,
                                                   int64_t* __restrict__ ind) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < a.total; idx += step) {
    const int64_t plane = idx / a.P;
    int64_t p = idx % a.P;
    const int64_t o2 = p % a.out[2];
    p /= a.out[2];
    const int64_t o1 = p % a.out[1];
    const int64_t o0 = p / a.out[1];
    const int64_t b0 = o0 * a.s[0] - a.pb[0], b1 = o1 * a.s[1] - a.pb[1], b2 = o2 * a.s[2] - a.pb[2];
    const T* xp = x + plane * a.I;
    float best = -INFINITY, sum = 0.f;
    int64_t best_off = -1, best_cm = 0, count = 0;
    for (int64_t k0 = 0; k0 < a.k[0]; ++k0) {
      const int64_t i0 = b0 + k0 * a.d[0];
      if (i0 < 0 || i0 >= a.in[0]) continue;
      for (int64_t k1 = 0; k1 < a.k[1]; ++k1) {
        const int64_t i1 = b1 + k1 * a.d[1];
        if (i1 < 0 || i1 >= a.in[1]) continue;
        for (int64_t k2 = 0; k2 < a.k[2]; ++k2) {
          const int64_t i2 = b2 + k2 * a.d[2];
          if (i2 < 0 || i2 >= a.in[2]) continue;
          const int64_t off = (i0 * a.in[1] + i1) * a.in[2] + i2;
          const float v = to_f(xp[off]);
          if (kMax) {
            // The CPU's rule: the first element, then strictly greater ones (a NaN first stays).
            if (v > best || best_off < 0) {
              best = v;
              best_off = off;
              best_cm = i0 + i1 * a.in[0] + i2 * a.in[0] * a.in[1];  // column-major offset
            }
          } else {
            sum += v;
            ++count;
          }
        }
      }
    }
    if (kMax) {
      y[idx] = from_f<T>(best_off < 0 ? lowest_f<T>() : best);
      if (ind) ind[idx] = plane * a.I + (a.col_major ? best_cm : best_off);
    } else {
      int64_t div = count;
      if (a.include_pad) {
        // Window positions inside the padded extent [-pad_begin, in + pad_end), per axis.
        div = 1;
        const int64_t base[3] = {b0, b1, b2};
        for (int ax = 0; ax < 3; ++ax) {
          int64_t n = 0;
          for (int64_t kk = 0; kk < a.k[ax]; ++kk) {
            const int64_t ic = base[ax] + kk * a.d[ax];
            n += (ic >= -a.pb[ax] && ic < a.in[ax] + a.pe[ax]) ? 1 : 0;
          }
          div *= n;
        }
      }
      y[idx] = from_f<T>(div > 0 ? sum / float(div) : 0.f);
    }
  }
}

// One warp (kThreads 32) or one block (256) per plane: max or mean over I elements.
template <class T, bool kMax, int kThreads>
__global__ void __launch_bounds__(256) global_pool_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t planes,
                                                          int64_t I) {
  __shared__ float part[8];
  const int per_block = 256 / kThreads;
  const int lane = threadIdx.x % kThreads;
  const int64_t first = int64_t(blockIdx.x) * per_block + threadIdx.x / kThreads;
  const int64_t step = int64_t(gridDim.x) * per_block;
  // Every thread of a block runs the same number of iterations (the block barrier below).
  const int64_t rounds = (planes + step - 1) / step;
  for (int64_t r = 0; r < rounds; ++r) {
    const int64_t plane = first + r * step;
    float acc = kMax ? -INFINITY : 0.f;
    if (plane < planes) {
      const T* xp = x + plane * I;
      for (int64_t i = lane; i < I; i += kThreads) {
        const float v = to_f(xp[i]);
        acc = kMax ? fmaxf(acc, v) : acc + v;  // fmaxf skips NaN, as std::max(m, NaN) on the CPU keeps m
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float other = __shfl_xor_sync(0xffffffffu, acc, o);
      acc = kMax ? fmaxf(acc, other) : acc + other;
    }
    if (kThreads == 256) {
      if (threadIdx.x % 32 == 0) part[threadIdx.x / 32] = acc;
      __syncthreads();
      if (threadIdx.x == 0)
        for (int w = 1; w < 8; ++w) acc = kMax ? fmaxf(acc, part[w]) : acc + part[w];
      __syncthreads();
    }
    if (lane == 0 && plane < planes) y[plane] = from_f<T>(kMax ? acc : (I > 0 ? acc / float(I) : 0.f));
  }
}

template <class T>
void launch_pool(const PoolArgs& a, bool is_max, const void* x, void* y, int64_t* ind, cudaStream_t s) {
  const int threads = 256;
  const unsigned blocks = std::min(blocks_for(a.total, threads), 132u * 64u);
  if (is_max)
    pool_kernel<T, true><<<blocks, threads, 0, s>>>(a, static_cast<const T*>(x), static_cast<T*>(y), ind);
  else
    pool_kernel<T, false><<<blocks, threads, 0, s>>>(a, static_cast<const T*>(x), static_cast<T*>(y), nullptr);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T>
void launch_global(bool is_max, const void* x, void* y, int64_t planes, int64_t I, cudaStream_t s) {
  // Large planes get a block each; small ones a warp (8 planes per block).
  const bool big = I >= 8192;
  const int64_t per_block = big ? 1 : 8;
  const unsigned blocks = unsigned(std::min<int64_t>((planes + per_block - 1) / per_block, 132 * 64));
  const T* xs = static_cast<const T*>(x);
  T* ys = static_cast<T*>(y);
  if (big) {
    if (is_max) global_pool_kernel<T, true, 256><<<blocks, 256, 0, s>>>(xs, ys, planes, I);
    else global_pool_kernel<T, false, 256><<<blocks, 256, 0, s>>>(xs, ys, planes, I);
  } else {
    if (is_max) global_pool_kernel<T, true, 32><<<blocks, 256, 0, s>>>(xs, ys, planes, I);
    else global_pool_kernel<T, false, 32><<<blocks, 256, 0, s>>>(xs, ys, planes, I);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void pool(KernelCtx& c, bool is_max) {
  const DevTensor& X = *c.in[0];
  const DevTensor& Y = *c.out[0];
  DevTensor* Ind = c.out.size() > 1 ? c.out[1] : nullptr;
  const size_t ns = size_t(X.rank()) - 2;
  if (X.rank() < 3 || ns > 3) c.fail("pools take 1 to 3 spatial dims on CUDA, the input is " + dims_str(X.dims));
  if (!is_max && Ind) c.fail("AveragePool has one output");
  const std::vector<int64_t> in(X.dims.begin() + 2, X.dims.end());
  WindowGeom g;
  if (auto e = window_geom(c.node, in, c.node.attr_ints("kernel_shape"), c.node.attr_i("ceil_mode", 0) != 0, g);
      !e.empty())
    c.fail(e);
  if (g.out != std::vector<int64_t>(Y.dims.begin() + 2, Y.dims.end())) c.fail("output dims disagree with the shape rule");
  if (Ind && Ind->dtype != DType::I64) c.fail("Indices must be int64");
  PoolArgs a{};
  a.P = 1;
  a.I = 1;
  for (int ax = 0; ax < 3; ++ax) {
    a.in[ax] = a.out[ax] = a.k[ax] = a.s[ax] = a.d[ax] = 1;
    a.pb[ax] = a.pe[ax] = 0;
  }
  for (size_t i = 0; i < ns; ++i) {
    const size_t ax = 3 - ns + i;
    a.in[ax] = g.in[i];
    a.out[ax] = g.out[i];
    a.k[ax] = g.kernel[i];
    a.s[ax] = g.strides[i];
    a.d[ax] = g.dilations[i];
    a.pb[ax] = g.pad_begin[i];
    a.pe[ax] = g.pad_end[i];
    a.P *= g.out[i];
    a.I *= g.in[i];
  }
  a.total = X.dim(0) * X.dim(1) * a.P;
  a.include_pad = c.node.attr_i("count_include_pad", 0) != 0;
  a.col_major = c.node.attr_i("storage_order", 0) != 0;
  if (a.total == 0) return;
  int64_t* ind = Ind ? Ind->as<int64_t>() : nullptr;
  switch (X.dtype) {
    case DType::I8:
    case DType::U8:
      if (!is_max) c.unsupported(std::string("dtype ") + dtype_name(X.dtype) + " is not supported by AveragePool");
      if (X.dtype == DType::I8) launch_pool<int8_t>(a, true, X.data, Y.data, ind, c.stream());
      else launch_pool<uint8_t>(a, true, X.data, Y.data, ind, c.stream());
      break;
    default:
      SHARDRT_CUDA_FLOAT_DISPATCH(c, X.dtype, launch_pool<T>(a, is_max, X.data, Y.data, ind, c.stream()));
  }
}

void global_pool(KernelCtx& c, bool is_max) {
  const DevTensor& X = *c.in[0];
  const DevTensor& Y = *c.out[0];
  if (X.rank() < 3) c.fail("input must have rank >= 3 (N, C, spatial...), got " + dims_str(X.dims));
  const int64_t planes = X.dim(0) * X.dim(1);
  if (planes == 0) return;
  const int64_t I = X.numel() / planes;
  SHARDRT_CUDA_FLOAT_DISPATCH(c, X.dtype, launch_global<T>(is_max, X.data, Y.data, planes, I, c.stream()));
}

}  // namespace

void register_pool_kernels() {
  register_kernel("MaxPool", [](KernelCtx& c) { pool(c, true); });
  register_kernel("AveragePool", [](KernelCtx& c) { pool(c, false); });
  register_kernel("GlobalMaxPool", [](KernelCtx& c) { global_pool(c, true); });
  register_kernel("GlobalAveragePool", [](KernelCtx& c) { global_pool(c, false); });
}

}  // namespace shardrt::cuda
