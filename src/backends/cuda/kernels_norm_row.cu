// Last-axis (row) norms: LayerNormalization, shardrt.RMSNorm and the residual fusions
// shardrt.AddLayerNorm / shardrt.AddRMSNorm (Sum = A + B written once, Y = norm(Sum)).
//
// Fast path (fp32/fp16/bf16, row fits): a row lives in registers, loaded with 16-byte
// vectors when the row width and every pointer allow it; one warp per row for rows of at
// most 128 vectors, else one block per row. Statistics are two-level fp32 sums: the mean
// first, then the squared deviations from registers (exact two-pass, no Welford drift).
// Every kernel here is launched with programmatic dependent launch (launch_pdl.h).
// Generic path (fp64, very wide rows): one block per row, re-reading the row from global
// memory (L2-resident) for each pass.
#include "backends/cuda/kernels_norm_util.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda {

namespace {

using namespace normk;

constexpr int kWarpItems = 4;    // vectors per lane in warp-per-row mode
constexpr int kWarpRows = 4;     // rows per 128-thread block in warp-per-row mode
constexpr int kBlockItems = 8;   // vectors per thread in block-per-row mode
constexpr int kBlockMax = 512;   // threads per row in block-per-row mode

struct RowArgs {
  const void* a;      // X (or A)
  const void* b;      // B of the Add fusions, else null
  const void* scale;  // [D] or null
  const void* bias;   // [D] or null
  void* y;
  void* sum;          // Sum output of the Add fusions, else null
  float* mean;        // optional LayerNormalization outputs
  float* inv;
  int64_t rows;
  int64_t D;
  float eps;
};

// Row reduce: a warp (WARP) or the whole block (blockDim.y == 1).
template <bool WARP> __device__ __forceinline__ float row_sum(float v, float* sh) {
  if constexpr (WARP) return warp_sum(v);
  else return block_sum(v, sh);
}

template <class T, int VEC, int ITEMS, bool WARP, bool RMS, bool ADD>
__global__ void __launch_bounds__(WARP ? 32 * kWarpRows : kBlockMax) row_norm_fast(RowArgs p) {
  __shared__ float sh[32];
  using V = Vec<T, VEC>;
  const int tid = threadIdx.x, tpr = blockDim.x;
  const int rpb = WARP ? blockDim.y : 1;
  const int64_t nch = p.D / VEC;
  const float invD = 1.f / float(p.D);
  // Launched with programmatic dependent launch: nothing is read before the previous kernel
  // has completed (scale and bias may be computed tensors too).
  pdl_wait();
  pdl_trigger();
  const V* sc = static_cast<const V*>(p.scale);
  const V* bi = static_cast<const V*>(p.bias);
  for (int64_t row = int64_t(blockIdx.x) * rpb + (WARP ? threadIdx.y : 0); row < p.rows;
       row += int64_t(gridDim.x) * rpb) {
    const V* xa = reinterpret_cast<const V*>(static_cast<const T*>(p.a) + row * p.D);
    // Scale and bias are loaded with the row (one memory round trip for all of them, not a
    // second one after the statistics), where registers allow (up to 4 vectors a thread).
    constexpr bool kPre = ITEMS <= 4;
    V w[kPre ? ITEMS : 1], bb[kPre ? ITEMS : 1];
    if constexpr (kPre) {
#pragma unroll
      for (int k = 0; k < ITEMS; ++k) {
        const int64_t c = int64_t(k) * tpr + tid;
        if (c < nch) {
          if (sc) w[k] = sc[c];
          if (bi) bb[k] = bi[c];
        }
      }
    }
    float v[ITEMS][VEC];
    float s = 0.f;
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      const int64_t c = int64_t(k) * tpr + tid;
      if (c < nch) {
        V va = xa[c];
        if constexpr (ADD) {
          const V vb = reinterpret_cast<const V*>(static_cast<const T*>(p.b) + row * p.D)[c];
          // Round the sum to T first: Y must equal the unfused LayerNorm of the stored Sum.
#pragma unroll
          for (int j = 0; j < VEC; ++j) va.v[j] = from_f<T>(to_f(va.v[j]) + to_f(vb.v[j]));
          reinterpret_cast<V*>(static_cast<T*>(p.sum) + row * p.D)[c] = va;
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          v[k][j] = to_f(va.v[j]);
          s += RMS ? v[k][j] * v[k][j] : v[k][j];
        }
      } else {
#pragma unroll
        for (int j = 0; j < VEC; ++j) v[k][j] = 0.f;
      }
    }
    s = row_sum<WARP>(s, sh);
    float mean = 0.f, inv;
    if constexpr (RMS) {
      inv = 1.f / sqrtf(s * invD + p.eps);
    } else {
      mean = s * invD;
      float q = 0.f;
#pragma unroll
      for (int k = 0; k < ITEMS; ++k) {
        if (int64_t(k) * tpr + tid < nch) {
#pragma unroll
          for (int j = 0; j < VEC; ++j) {
            const float d = v[k][j] - mean;
            q += d * d;
          }
        }
      }
      q = row_sum<WARP>(q, sh);
      inv = 1.f / sqrtf(q * invD + p.eps);
    }
    V* yo = reinterpret_cast<V*>(static_cast<T*>(p.y) + row * p.D);
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) {
      const int64_t c = int64_t(k) * tpr + tid;
      if (c < nch) {
        V o;
        V wk, bk;
        if constexpr (kPre) {
          wk = w[k];
          bk = bb[k];
        } else {
          if (sc) wk = sc[c];
          if (bi) bk = bi[c];
        }
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
          float r = RMS ? v[k][j] * inv : (v[k][j] - mean) * inv;
          if (sc) r *= to_f(wk.v[j]);
          if (bi) r += to_f(bk.v[j]);
          o.v[j] = from_f<T>(r);
        }
        yo[c] = o;
      }
    }
    if (tid == 0) {
      if (p.mean) p.mean[row] = mean;
      if (p.inv) p.inv[row] = inv;
    }
  }
}

// Any T (fp64 included), any width and alignment: one block per row, three passes over
// global memory (the Add fusions read the stored Sum back in passes 2 and 3).
template <class T, bool RMS, bool ADD>
__global__ void __launch_bounds__(512) row_norm_generic(RowArgs p) {
  pdl_wait();
  pdl_trigger();
  using A = typename acc_of<T>::type;
  __shared__ A sh[32];
  const T* sc = static_cast<const T*>(p.scale);
  const T* bi = static_cast<const T*>(p.bias);
  for (int64_t row = blockIdx.x; row < p.rows; row += gridDim.x) {
    const T* xa = static_cast<const T*>(p.a) + row * p.D;
    const T* src = xa;
    A s = 0;
    if constexpr (ADD) {
      const T* xb = static_cast<const T*>(p.b) + row * p.D;
      T* so = static_cast<T*>(p.sum) + row * p.D;
      for (int64_t i = threadIdx.x; i < p.D; i += blockDim.x) {
        const T r = st_acc<T>(ld_acc(xa[i]) + ld_acc(xb[i]));
        so[i] = r;
        const A v = ld_acc(r);
        s += RMS ? v * v : v;
      }
      src = so;
    } else {
      for (int64_t i = threadIdx.x; i < p.D; i += blockDim.x) {
        const A v = ld_acc(xa[i]);
        s += RMS ? v * v : v;
      }
    }
    s = block_sum(s, sh);  // its barriers also publish the Sum writes to the whole block
    const A n = A(p.D);
    A mean = 0, inv;
    if constexpr (RMS) {
      inv = A(1) / sqrt((p.D ? s / n : A(0)) + A(p.eps));
    } else {
      mean = p.D ? s / n : A(0);
      A q = 0;
      for (int64_t i = threadIdx.x; i < p.D; i += blockDim.x) {
        const A d = ld_acc(src[i]) - mean;
        q += d * d;
      }
      q = block_sum(q, sh);
      inv = A(1) / sqrt((p.D ? q / n : A(0)) + A(p.eps));
    }
    T* yo = static_cast<T*>(p.y) + row * p.D;
    for (int64_t i = threadIdx.x; i < p.D; i += blockDim.x) {
      const A v = ld_acc(src[i]);
      A r = RMS ? v * inv : (v - mean) * inv;
      if (sc) r *= ld_acc(sc[i]);
      if (bi) r += ld_acc(bi[i]);
      yo[i] = st_acc<T>(r);
    }
    if (threadIdx.x == 0) {
      if (p.mean) p.mean[row] = float(mean);
      if (p.inv) p.inv[row] = float(inv);
    }
  }
}

template <class T, int VEC, bool RMS, bool ADD> void launch_fast(const RowArgs& p, int64_t nch, cudaStream_t st) {
  if (nch <= int64_t(32) * kWarpItems) {
    // One row (a decode step) takes one warp: a 32-thread block, not 3 idle warps beside it.
    const unsigned rows_per_block = p.rows < kWarpRows ? unsigned(p.rows) : unsigned(kWarpRows);
    launch_pdl(row_norm_fast<T, VEC, kWarpItems, true, RMS, ADD>, dim3(grid_for(p.rows, rows_per_block)),
               dim3(32, rows_per_block), 0, st, p);
  } else {
    // Enough threads that each holds about 4 vectors (ILP without register pressure).
    int64_t tpr = ((nch + 3) / 4 + 31) / 32 * 32;
    if (tpr > kBlockMax) tpr = kBlockMax;
    if (nch <= tpr * 4)  // 4 vectors a thread: scale and bias fit in registers beside the row
      launch_pdl(row_norm_fast<T, VEC, 4, false, RMS, ADD>, dim3(grid_for(p.rows, 1)), dim3(unsigned(tpr)), 0, st, p);
    else
      launch_pdl(row_norm_fast<T, VEC, kBlockItems, false, RMS, ADD>, dim3(grid_for(p.rows, 1)), dim3(unsigned(tpr)),
                 0, st, p);
  }
}

template <class T, bool RMS, bool ADD> void launch_generic(const RowArgs& p, cudaStream_t st) {
  int64_t threads = (p.D + 31) / 32 * 32;
  if (threads < 32) threads = 32;
  if (threads > 512) threads = 512;
  launch_pdl(row_norm_generic<T, RMS, ADD>, grid_for(p.rows, 1), unsigned(threads), 0, st, p);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

template <class T, bool RMS, bool ADD> void launch_row_norm(const RowArgs& p, cudaStream_t st) {
  if (p.rows == 0) return;
  if constexpr (!std::is_same_v<T, double>) {
    constexpr int V = 16 / sizeof(T);
    const bool vec_ok = p.D % V == 0 && aligned16(p.a) && aligned16(p.y) && (!p.b || aligned16(p.b)) &&
                        (!p.sum || aligned16(p.sum)) && (!p.scale || aligned16(p.scale)) &&
                        (!p.bias || aligned16(p.bias));
    if (p.D > 0) {
      if (vec_ok && p.D / V <= int64_t(kBlockMax) * kBlockItems) return launch_fast<T, V, RMS, ADD>(p, p.D / V, st);
      if (!vec_ok && p.D <= int64_t(kBlockMax) * kBlockItems) return launch_fast<T, 1, RMS, ADD>(p, p.D, st);
    }
  }
  launch_generic<T, RMS, ADD>(p, st);
}

DevTensor* out_at(KernelCtx& c, size_t i) { return i < c.out.size() ? c.out[i] : nullptr; }

// Scale/bias of LayerNormalization broadcast to the normalized dims, expanded to `inner`
// elements (dst[i] = src[offset of i through the broadcast strides]).
template <class T> __global__ void expand_param(const T* __restrict__ src, T* __restrict__ dst, int64_t inner, Dims8 d) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < inner; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, off = 0;
    for (int k = d.n - 1; k >= 0; --k) {
      const int64_t idx = rem % d.size[k];
      rem /= d.size[k];
      off += idx * d.stride[k];
    }
    dst[i] = src[off];
  }
}

template <class T>
const void* param_for(KernelCtx& c, const DevTensor* t, const Dims& norm_dims, int64_t inner, T* store) {
  if (!t) return nullptr;
  if (t->numel() == inner) return t->data;
  if (int(norm_dims.size()) > kMaxDims) c.fail("scale/bias broadcast over more than 8 normalized dims");
  Dims8 d;
  d.n = int(norm_dims.size());
  const Dims& td = t->dims;
  int64_t s = 1;
  for (int k = d.n - 1; k >= 0; --k) {
    d.size[k] = norm_dims[size_t(k)];
    const int64_t tk = int64_t(td.size()) - (d.n - k);  // t's dim aligned with norm dim k
    if (tk >= 0) {
      const int64_t tdim = td[size_t(tk)];
      d.stride[k] = tdim == 1 ? 0 : s;
      s *= tdim;
    }
  }
  launch_pdl(expand_param<T>, grid_for(inner, 256, 4096), 256, 0, c.stream(), t->as<T>(), store, inner, d);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
  return store;
}

void layernorm_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  const int64_t r = x.rank();
  int64_t axis = c.node.attr_i("axis", -1);
  if (axis < -r || axis >= r) c.fail("axis " + std::to_string(axis) + " is out of range for rank " + std::to_string(r));
  if (axis < 0) axis += r;
  if (c.node.attr_i("stash_type", 1) != 1) c.fail("only stash_type=1 (fp32) is supported");
  const Dims norm_dims(x.dims.begin() + axis, x.dims.end());
  const int64_t inner = shardrt::numel(norm_dims);
  int64_t rows = 1;
  for (int64_t i = 0; i < axis; ++i) rows *= x.dims[size_t(i)];
  DevTensor* mean = out_at(c, 1);
  DevTensor* inv = out_at(c, 2);
  SHARDRT_CUDA_FLOAT_DISPATCH(c, x.dtype, {
    const DevTensor* sc = c.input(1);
    const DevTensor* bi = c.input(2);
    const bool expand_sc = sc && sc->numel() != inner, expand_bi = bi && bi->numel() != inner;
    T* store = nullptr;
    if (expand_sc || expand_bi) store = static_cast<T*>(c.res.workspace(size_t(2 * inner) * sizeof(T)));
    RowArgs p{x.data, nullptr, param_for<T>(c, sc, norm_dims, inner, store),
              param_for<T>(c, bi, norm_dims, inner, store ? store + inner : nullptr), c.out[0]->data, nullptr,
              mean ? mean->as<float>() : nullptr, inv ? inv->as<float>() : nullptr, rows, inner,
              c.node.attr_f("epsilon", 1e-5f)};
    if (inner == 0 && !p.mean && !p.inv) p.rows = 0;  // nothing to write
    launch_row_norm<T, false, false>(p, c.stream());
  });
}

int64_t check_row_param(KernelCtx& c, const DevTensor* t, int64_t D, const char* what) {
  if (t && t->numel() != D)
    c.fail(std::string(what) + " has " + std::to_string(t->numel()) + " elements, expected " + std::to_string(D));
  if (t && t->dtype != c.input(0)->dtype) c.fail(std::string(what) + "'s dtype differs from the input's");
  return D;
}

void rmsnorm_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  if (x.rank() < 1) c.fail("X must have rank >= 1");
  const int64_t D = x.dims.back(), rows = D ? x.numel() / D : 0;
  check_row_param(c, c.input(1), D, "W");
  NORMK_HALF_DISPATCH(c, x.dtype, {
    RowArgs p{x.data, nullptr, c.input(1)->data, nullptr, c.out[0]->data, nullptr, nullptr, nullptr, rows, D,
              c.node.attr_f("epsilon", 1e-6f)};
    launch_row_norm<T, true, false>(p, c.stream());
  });
}

// shardrt.AddLayerNorm(A, B, Scale, [Bias]) / shardrt.AddRMSNorm(A, B, W) → (Y, Sum).
template <bool RMS> void add_norm_kernel(KernelCtx& c) {
  const DevTensor& a = *c.input(0);
  const DevTensor& b = *c.input(1);
  if (a.dims != b.dims) c.fail("A and B must have the same shape");
  if (a.dtype != b.dtype) c.fail("A and B must have the same dtype");
  if (a.rank() < 1) c.fail("A must have rank >= 1");
  if (!RMS && c.node.attr_i("axis", -1) != -1 && c.node.attr_i("axis", -1) != a.rank() - 1)
    c.fail("only axis=-1 is supported");
  const int64_t D = a.dims.back(), rows = D ? a.numel() / D : 0;
  check_row_param(c, c.input(2), D, RMS ? "W" : "Scale");
  check_row_param(c, c.input(3), D, "Bias");
  DevTensor* sum = out_at(c, 1);
  if (!sum) c.fail("the Sum output is required");
  const float eps = c.node.attr_f("epsilon", RMS ? 1e-6f : 1e-5f);
  NORMK_HALF_DISPATCH(c, a.dtype, {
    RowArgs p{a.data, b.data, c.input(2)->data, c.input(3) ? c.input(3)->data : nullptr, c.out[0]->data, sum->data,
              nullptr, nullptr, rows, D, eps};
    launch_row_norm<T, RMS, true>(p, c.stream());
  });
}

}  // namespace

void register_norm_row_kernels() {
  register_kernel("LayerNormalization", layernorm_kernel);
  register_kernel("shardrt.RMSNorm", rmsnorm_kernel);
  register_kernel("shardrt.AddLayerNorm", add_norm_kernel<false>);
  register_kernel("shardrt.AddRMSNorm", add_norm_kernel<true>);
}

}  // namespace shardrt::cuda
