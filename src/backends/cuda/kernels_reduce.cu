// ReduceSum/Mean/Max/Min/Prod/L1/L2/LogSum/LogSumExp/SumSquare. As on the CPU, the input
// is viewed as [O, R, I] after dropping size-1 dims and merging neighbours reduced alike;
// reduced dims that stay apart are first gathered to the end (one permuting copy into the
// workspace), so two kernels cover everything:
//  - I == 1 (rows): one thread (R <= 8), one warp (R <= 256) or one block per row;
//  - I > 1 (columns): 32 columns per block, the reduced extent split over the block's
//    y-threads and combined through shared memory (a warp reads 32 neighbours: coalesced).
// fp32/fp16/bf16 accumulate in fp32, fp64 in fp64, integers in int64. LogSumExp takes the
// max first, then log(sum(exp(x - max))) + max.
// Every kernel here is launched with programmatic dependent launch (launch_pdl.h): it calls
// pdl_wait() before its first read or write and pdl_trigger() right after.
#include <algorithm>
#include <limits>

#include "backends/cuda/kernels_norm_util.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda {

namespace {

using namespace normk;

enum Op { kSum, kMean, kMax, kMin, kProd, kL1, kL2, kLogSum, kLSE, kSumSq, kSumExp /* LSE's second phase */ };

template <class T> struct racc { using type = int64_t; };
template <> struct racc<float> { using type = float; };
template <> struct racc<__half> { using type = float; };
template <> struct racc<__nv_bfloat16> { using type = float; };
template <> struct racc<double> { using type = double; };

// Bool elements (one byte, 0 or 1), distinct from uint8 so that Min's identity is 1, not 255.
struct rbool {
  uint8_t v;
};

template <class T, class A> __device__ __forceinline__ A rld(T v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) return to_f(v);
  else if constexpr (std::is_same_v<T, rbool>) return A(v.v);
  else return A(v);
}
template <class T, class A> __device__ __forceinline__ T rst(A v) {
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) return from_f<T>(v);
  else if constexpr (std::is_same_v<T, rbool>) return rbool{uint8_t(v != A(0) ? 1 : 0)};
  else return T(v);
}

template <int OP, class A> __device__ __forceinline__ A r_init() {
  constexpr bool fl = std::is_floating_point_v<A>;
  if constexpr (OP == kMax) return fl ? A(-INFINITY) : A(INT64_MIN);
  else if constexpr (OP == kMin) return fl ? A(INFINITY) : A(INT64_MAX);
  else if constexpr (OP == kProd) return A(1);
  else return A(0);
}
// The identity a reduction over T starts from: as r_init, but Max/Min of integers start from
// the extremes of T's own range (ONNX: a max over an empty set is the lowest value of the type,
// e.g. INT32_MIN, false for bool), which survive the store into T as the int64 ones do not.
template <int OP, class T, class A> __device__ __forceinline__ A r_init_t() {
  if constexpr (std::is_floating_point_v<A> || (OP != kMax && OP != kMin)) {
    return r_init<OP, A>();
  } else if constexpr (std::is_same_v<T, rbool>) {
    return OP == kMax ? A(0) : A(1);
  } else {
    return OP == kMax ? A(std::numeric_limits<T>::lowest()) : A(std::numeric_limits<T>::max());
  }
}
template <int OP, class A> __device__ __forceinline__ A r_pre(A x, A shift) {
  if constexpr (OP == kSumSq || OP == kL2) return x * x;
  else if constexpr (OP == kL1) return x < A(0) ? A(-x) : x;
  else if constexpr (OP == kSumExp) return exp(x - shift);
  else return x;
}
template <int OP, class A> __device__ __forceinline__ A r_comb(A a, A b) {
  if constexpr (OP == kMax) return b > a ? b : a;
  else if constexpr (OP == kMin) return b < a ? b : a;
  else if constexpr (OP == kProd) return a * b;
  else return a + b;
}
template <int OP, class A> __device__ __forceinline__ A r_post(A v, int64_t R, A shift) {
  constexpr bool fl = std::is_floating_point_v<A>;
  if constexpr (OP == kMean) {
    if constexpr (fl) return v / A(R);
    else return R ? A(v / A(R)) : A(0);
  } else if constexpr (OP == kL2) {
    return A(sqrt(double(v)));
  } else if constexpr (OP == kLogSum) {
    return A(log(double(v)));
  } else if constexpr (OP == kSumExp) {
    return isinf(double(shift)) ? shift : A(log(v) + shift);  // all -inf (or empty) gives -inf
  } else {
    return v;
  }
}

// Partial over r = start, start+step, ... < R of pre(x[r*stride]).
template <int OP, class T, class A>
__device__ __forceinline__ A partial(const T* x, int64_t R, int64_t stride, int64_t start, int64_t step, A shift) {
  A a = r_init_t<OP, T, A>();
  for (int64_t r = start; r < R; r += step) a = r_comb<OP, A>(a, r_pre<OP, A>(rld<T, A>(x[r * stride]), shift));
  return a;
}

// Combines the partials of the tpr threads (threadIdx.x) of one row: every thread gets it.
// tpr is 1, 32, or a multiple of 32 with blockDim.y == 1.
template <int OP, class A> __device__ __forceinline__ A row_combine(A v, A* sh) {
  const int tpr = blockDim.x;
  if (tpr == 1) return v;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = r_comb<OP, A>(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (tpr == 32) return v;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = tpr >> 5;
  __syncthreads();
  if (lane == 0) sh[warp] = v;
  __syncthreads();
  A t = lane < nw ? sh[lane] : r_init<OP, A>();
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) t = r_comb<OP, A>(t, __shfl_xor_sync(0xffffffffu, t, o));
  return t;
}

template <class T, int OP> __global__ void __launch_bounds__(512) reduce_rows(const T* __restrict__ x, T* __restrict__ y, int64_t O, int64_t R) {
  pdl_wait();
  pdl_trigger();
  using A = typename racc<T>::type;
  __shared__ A sh[32];
  const int tid = threadIdx.x, tpr = blockDim.x, rpb = blockDim.y;
  for (int64_t o = int64_t(blockIdx.x) * rpb + threadIdx.y; o < O; o += int64_t(gridDim.x) * rpb) {
    const T* xr = x + o * R;
    A out;
    if constexpr (OP == kLSE) {
      if constexpr (std::is_floating_point_v<A>) {
        const A m = row_combine<kMax, A>(partial<kMax, T, A>(xr, R, 1, tid, tpr, A(0)), sh);
        const A s = row_combine<kSumExp, A>(partial<kSumExp, T, A>(xr, R, 1, tid, tpr, m), sh);
        out = r_post<kSumExp, A>(s, R, m);
      }
    } else {
      out = r_post<OP, A>(row_combine<OP, A>(partial<OP, T, A>(xr, R, 1, tid, tpr, A(0)), sh), R, A(0));
    }
    if (tid == 0) y[o] = rst<T, A>(out);
  }
}

// blockDim (32, ny): x over 32 neighbouring columns, y splits the reduced extent.
template <int OP, class A> __device__ __forceinline__ A col_combine(A v, A (*sh)[33]) {
  __syncthreads();
  sh[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  A t = sh[0][threadIdx.x];
  for (int k = 1; k < int(blockDim.y); ++k) t = r_comb<OP, A>(t, sh[k][threadIdx.x]);
  return t;
}

template <class T, int OP> __global__ void __launch_bounds__(1024) reduce_cols(const T* __restrict__ x, T* __restrict__ y, int64_t O, int64_t R, int64_t I) {
  pdl_wait();
  pdl_trigger();
  using A = typename racc<T>::type;
  __shared__ A sh[32][33];
  const int64_t tiles_i = (I + 31) / 32;
  for (int64_t t = blockIdx.x; t < O * tiles_i; t += gridDim.x) {
    const int64_t o = t / tiles_i, i = (t % tiles_i) * 32 + threadIdx.x;
    const bool ok = i < I;
    const T* xc = x + o * R * I + (ok ? i : 0);
    const int64_t Rv = ok ? R : 0;  // out-of-range columns contribute the identity
    A out;
    if constexpr (OP == kLSE) {
      if constexpr (std::is_floating_point_v<A>) {
        const A m = col_combine<kMax, A>(partial<kMax, T, A>(xc, Rv, I, threadIdx.y, blockDim.y, A(0)), sh);
        const A s = col_combine<kSumExp, A>(partial<kSumExp, T, A>(xc, Rv, I, threadIdx.y, blockDim.y, m), sh);
        out = r_post<kSumExp, A>(s, R, m);
      }
    } else {
      out = r_post<OP, A>(col_combine<OP, A>(partial<OP, T, A>(xc, Rv, I, threadIdx.y, blockDim.y, A(0)), sh), R, A(0));
    }
    if (threadIdx.y == 0 && ok) y[o * I + i] = rst<T, A>(out);
  }
}

// Permuting copy: element k of the output walks `d` (sizes in output order, strides of the
// source).
template <class E> __global__ void gather_perm(const E* __restrict__ x, E* __restrict__ y, int64_t n, Dims8 d) {
  pdl_wait();
  pdl_trigger();
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = k, off = 0;
    for (int j = d.n - 1; j >= 0; --j) {
      off += (rem % d.size[j]) * d.stride[j];
      rem /= d.size[j];
    }
    y[k] = x[off];
  }
}

template <class T, int OP> void run(const T* x, T* y, int64_t O, int64_t R, int64_t I, cudaStream_t st) {
  if (O * I == 0) return;
  if (I == 1) {
    if (R <= 8) {
      launch_pdl(reduce_rows<T, OP>, grid_for(O, 256), dim3(1, 256), 0, st, x, y, O, R);
    } else if (R <= 256) {
      launch_pdl(reduce_rows<T, OP>, grid_for(O, 8), dim3(32, 8), 0, st, x, y, O, R);
    } else {
      int64_t tpr = ((R + 7) / 8 + 31) / 32 * 32;
      if (tpr > 512) tpr = 512;
      launch_pdl(reduce_rows<T, OP>, grid_for(O, 1), unsigned(tpr), 0, st, x, y, O, R);
    }
  } else {
    const int64_t tiles = O * ((I + 31) / 32);
    // Few tiles: more y-threads per tile so that the reduced extent is split wider.
    const unsigned ny = tiles < 264 && R >= 256 ? 32 : (R >= 8 ? 8 : 1);
    launch_pdl(reduce_cols<T, OP>, grid_for(tiles, 1), dim3(32, ny), 0, st, x, y, O, R, I);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <int OP> constexpr bool int_ok() { return OP != kLogSum && OP != kLSE; }
template <int OP> constexpr bool byte_ok() { return OP == kMax || OP == kMin; }

template <int OP> void dispatch(KernelCtx& c, DType t, const void* x, void* y, int64_t O, int64_t R, int64_t I) {
  auto st = c.stream();
  auto bad = [&] { c.unsupported(std::string("dtype ") + dtype_name(t) + " is not supported on CUDA for " + c.node.op); };
  switch (t) {
    case DType::F32: return run<float, OP>(static_cast<const float*>(x), static_cast<float*>(y), O, R, I, st);
    case DType::F16: return run<__half, OP>(static_cast<const __half*>(x), static_cast<__half*>(y), O, R, I, st);
    case DType::BF16:
      return run<__nv_bfloat16, OP>(static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(y), O, R, I, st);
    case DType::F64: return run<double, OP>(static_cast<const double*>(x), static_cast<double*>(y), O, R, I, st);
    case DType::I64:
      if constexpr (int_ok<OP>()) return run<int64_t, OP>(static_cast<const int64_t*>(x), static_cast<int64_t*>(y), O, R, I, st);
      break;
    case DType::I32:
      if constexpr (int_ok<OP>()) return run<int32_t, OP>(static_cast<const int32_t*>(x), static_cast<int32_t*>(y), O, R, I, st);
      break;
    case DType::I8:
      if constexpr (byte_ok<OP>()) return run<int8_t, OP>(static_cast<const int8_t*>(x), static_cast<int8_t*>(y), O, R, I, st);
      break;
    case DType::U8:
      if constexpr (byte_ok<OP>()) return run<uint8_t, OP>(static_cast<const uint8_t*>(x), static_cast<uint8_t*>(y), O, R, I, st);
      break;
    case DType::Bool:  // bool is one byte 0/1: max/min of bytes is the logical or/and
      if constexpr (byte_ok<OP>()) return run<rbool, OP>(static_cast<const rbool*>(x), static_cast<rbool*>(y), O, R, I, st);
      break;
    default: break;
  }
  bad();
}

template <int OP> void reduce_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  const int64_t r = x.rank();
  const bool noop = c.node.attr_i("noop_with_empty_axes", 0) != 0;
  std::vector<int64_t> ax;
  if (c.input(1)) {
    ax = c.host_value(1, "axes").to_i64_vector();
  }
  std::vector<bool> red(size_t(r), false);
  for (int64_t v : ax) {
    if (v < -r || v >= r) c.fail("axis " + std::to_string(v) + " is out of range for rank " + std::to_string(r));
    red[size_t(v < 0 ? v + r : v)] = true;
  }
  if (ax.empty() && !noop) std::fill(red.begin(), red.end(), true);
  // Merge adjacent dims reduced alike; size-1 dims do not matter either way.
  std::vector<int64_t> sz;
  std::vector<bool> rd;
  for (int64_t i = 0; i < r; ++i) {
    const int64_t d = x.dims[size_t(i)];
    if (d == 1) continue;
    if (!sz.empty() && rd.back() == red[size_t(i)]) sz.back() *= d;
    else {
      sz.push_back(d);
      rd.push_back(red[size_t(i)]);
    }
  }
  int64_t O = 1, R = 1, I = 1;
  const void* src = x.data;
  const int groups = int(std::count(rd.begin(), rd.end(), true));
  if (groups == 0) {
    O = x.numel();
  } else if (groups == 1) {
    const size_t k = size_t(std::find(rd.begin(), rd.end(), true) - rd.begin());
    for (size_t i = 0; i < sz.size(); ++i) {
      if (i < k) O *= sz[i];
      else if (i == k) R = sz[i];
      else I *= sz[i];
    }
  } else {
    // Gather to [kept..., reduced...] in the workspace, then reduce rows.
    if (sz.size() > size_t(kMaxDims)) c.fail("more than 8 separate dims to reduce");
    std::vector<int64_t> stride(sz.size());
    int64_t s = 1;
    for (size_t i = sz.size(); i-- > 0;) {
      stride[i] = s;
      s *= sz[i];
    }
    Dims8 d;
    for (int pass = 0; pass < 2; ++pass)
      for (size_t i = 0; i < sz.size(); ++i)
        if (bool(rd[i]) == (pass == 1)) {
          d.size[d.n] = sz[i];
          d.stride[d.n] = stride[i];
          ++d.n;
          (pass ? R : O) *= sz[i];
        }
    const int64_t n = x.numel();
    const size_t es = dtype_size(x.dtype);
    void* ws = c.res.workspace(size_t(n) * es);
    const unsigned g = grid_for(n, 256);
    switch (es) {
      case 1:
        launch_pdl(gather_perm<uint8_t>, g, 256, 0, c.stream(), x.as<uint8_t>(), static_cast<uint8_t*>(ws), n, d);
        break;
      case 2:
        launch_pdl(gather_perm<uint16_t>, g, 256, 0, c.stream(), x.as<uint16_t>(), static_cast<uint16_t*>(ws), n, d);
        break;
      case 4:
        launch_pdl(gather_perm<uint32_t>, g, 256, 0, c.stream(), x.as<uint32_t>(), static_cast<uint32_t*>(ws), n, d);
        break;
      default:
        launch_pdl(gather_perm<uint64_t>, g, 256, 0, c.stream(), x.as<uint64_t>(), static_cast<uint64_t*>(ws), n, d);
        break;
    }
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    src = ws;
  }
  if (O * I != c.out[0]->numel()) c.fail("output size does not match the reduction");
  dispatch<OP>(c, x.dtype, src, c.out[0]->data, O, R, I);
}

}  // namespace

void register_reduce_kernels() {
  register_kernel("ReduceSum", reduce_kernel<kSum>);
  register_kernel("ReduceMean", reduce_kernel<kMean>);
  register_kernel("ReduceMax", reduce_kernel<kMax>);
  register_kernel("ReduceMin", reduce_kernel<kMin>);
  register_kernel("ReduceProd", reduce_kernel<kProd>);
  register_kernel("ReduceL1", reduce_kernel<kL1>);
  register_kernel("ReduceL2", reduce_kernel<kL2>);
  register_kernel("ReduceLogSum", reduce_kernel<kLogSum>);
  register_kernel("ReduceLogSumExp", reduce_kernel<kLSE>);
  register_kernel("ReduceSumSquare", reduce_kernel<kSumSq>);
}

}  // namespace shardrt::cuda
