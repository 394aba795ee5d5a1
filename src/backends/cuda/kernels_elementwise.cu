// The CUDA elementwise family: the broadcast planner, Where and Clip here; unary,
// activation, binary, comparison, Pow/variadic and cast kernels in kernels_elementwise_*.cu,
// registered from here. (Inference Dropout is the data family's, kernels_data_create.cu, as
// on the CPU side.)
#include <limits>
#include <vector>

#include "backends/cuda/elementwise_common.cuh"

namespace shardrt::cuda {

namespace ew {

void type_error(const KernelCtx& c, DType t) {
  c.unsupported(std::string("element type ") + dtype_name(t) + " is not supported by " + c.node.op);
}

Plan make_plan(const KernelCtx& c, const Dims& out, const Dims* const* ins, int k) {
  Plan p;
  p.n = numel(out);
  size_t r = out.size();
  for (int j = 0; j < k; ++j)
    if (ins[j]->size() > r) c.fail("input " + dims_str(*ins[j]) + " has a higher rank than the output " + dims_str(out));
  // Output dims (size-1 ones dropped), merged with the previous one while every input
  // either runs along both or repeats over both.
  std::vector<int64_t> sizes;
  std::vector<std::vector<bool>> full;
  for (size_t i = 0; i < r; ++i) {
    std::vector<bool> f(size_t(k), false);
    for (int j = 0; j < k; ++j) {
      const Dims& d = *ins[j];
      size_t off = r - d.size();
      int64_t v = i >= off ? d[i - off] : 1;
      if (v != out[i] && v != 1) c.fail("cannot broadcast " + dims_str(d) + " to " + dims_str(out));
      f[size_t(j)] = v == out[i];
    }
    if (out[i] == 1) continue;
    if (!sizes.empty() && full.back() == f) {
      sizes.back() *= out[i];
    } else {
      sizes.push_back(out[i]);
      full.push_back(f);
    }
  }
  if (p.n == 0) return p;
  int m = int(sizes.size());
  p.fast = true;
  for (int j = 0; j < k && p.fast; ++j) {
    int cnt = 0, at = -1;
    for (int i = 0; i < m; ++i)
      if (full[size_t(i)][size_t(j)]) ++cnt, at = i;
    if (cnt == m) {
      p.mode[j].kind = 0;
    } else if (cnt == 0) {
      p.mode[j].kind = 1;
    } else if (cnt == 1) {
      int64_t div = 1;
      for (int i = at + 1; i < m; ++i) div *= sizes[size_t(i)];
      p.mode[j] = InMode{2, div, sizes[size_t(at)]};
    } else {
      p.fast = false;
    }
  }
  if (p.fast) return p;
  if (m > kMaxDims)
    c.fail("broadcasting needs " + std::to_string(m) + " dims after merging, more than the CUDA kernels' " +
           std::to_string(kMaxDims));
  p.g.rank = m;
  for (int i = 0; i < m; ++i) p.g.dims[i] = sizes[size_t(i)];
  for (int j = 0; j < k; ++j) {
    int64_t s = 1;
    for (int i = m - 1; i >= 0; --i) {
      bool f = full[size_t(i)][size_t(j)];
      p.g.st[j][i] = f ? s : 0;
      if (f) s *= sizes[size_t(i)];
    }
  }
  return p;
}

}  // namespace ew

namespace {

using namespace ew;

// ---- Where: raw element bits of X/Y chosen by a bool condition, three-way broadcast ----

template <int VEC, class T>
__global__ void __launch_bounds__(kThreads) where_fast_kernel(const uint8_t* __restrict__ cnd, const T* __restrict__ x,
                                                              const T* __restrict__ y, T* __restrict__ o, int64_t n,
                                                              int64_t nvec, InMode mc, InMode mx, InMode my) {
  pdl_wait();
  pdl_trigger();
  int64_t gid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = gid; i < nvec; i += stride) {
    int64_t e = i * VEC;
    uint8_t cv[VEC];
    T xv[VEC], yv[VEC];
    load_vec<VEC>(cnd, mc, e, cv);
    load_vec<VEC>(x, mx, e, xv);
    load_vec<VEC>(y, my, e, yv);
    Vec<T, VEC> r;
#pragma unroll
    for (int k = 0; k < VEC; ++k) r.v[k] = cv[k] ? xv[k] : yv[k];
    reinterpret_cast<Vec<T, VEC>*>(o)[i] = r;
  }
  for (int64_t t = nvec * VEC + gid; t < n; t += stride)
    o[t] = cnd[in_index(mc, t)] ? x[in_index(mx, t)] : y[in_index(my, t)];
}

template <class T>
__global__ void __launch_bounds__(kThreads) where_strided_kernel(const uint8_t* __restrict__ cnd,
                                                                 const T* __restrict__ x, const T* __restrict__ y,
                                                                 T* __restrict__ o, int64_t n, Strided g) {
  pdl_wait();
  pdl_trigger();
  int64_t gid = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t t = gid; t < n; t += stride) {
    int64_t off[3];
    strided_offsets(g, t, 3, off);
    o[t] = cnd[off[0]] ? x[off[1]] : y[off[2]];
  }
}

template <class T> void where_run(const KernelCtx& c, const Plan& p, const DevTensor& cd, const DevTensor& x,
                                  const DevTensor& y, DevTensor& out) {
  const uint8_t* pc = static_cast<const uint8_t*>(cd.data);
  const T* px = static_cast<const T*>(x.data);
  const T* py = static_cast<const T*>(y.data);
  T* po = static_cast<T*>(out.data);
  if (p.fast) {
    constexpr int VEC = int(16 / sizeof(T));
    bool v = vec_ok(p.mode[0], pc, VEC, 1) && vec_ok(p.mode[1], px, VEC, sizeof(T)) &&
             vec_ok(p.mode[2], py, VEC, sizeof(T)) && aligned(po, VEC * sizeof(T));
    int64_t nvec = v ? p.n / VEC : 0;
    launch_pdl(where_fast_kernel<VEC, T>, grid_for(c, v ? nvec : p.n), kThreads, 0, c.stream(), pc, px, py, po, p.n,
               nvec, p.mode[0], p.mode[1], p.mode[2]);
  } else {
    launch_pdl(where_strided_kernel<T>, grid_for(c, p.n), kThreads, 0, c.stream(), pc, px, py, po, p.n, p.g);
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void where_kernel(KernelCtx& c) {
  const DevTensor& cd = *c.in[0];
  const DevTensor& x = *c.in[1];
  const DevTensor& y = *c.in[2];
  DevTensor& out = *c.out[0];
  if (cd.dtype != DType::Bool) c.fail("condition must be bool");
  if (x.dtype != y.dtype || out.dtype != x.dtype) c.fail("X, Y and the output must have one type");
  const Dims* ins[3] = {&cd.dims, &x.dims, &y.dims};
  Plan p = make_plan(c, out.dims, ins, 3);
  if (p.n == 0) return;
  // Where never looks at the values: elements move as raw bits of their size.
  switch (dtype_size(x.dtype)) {
    case 1: where_run<uint8_t>(c, p, cd, x, y, out); break;
    case 2: where_run<uint16_t>(c, p, cd, x, y, out); break;
    case 4: where_run<uint32_t>(c, p, cd, x, y, out); break;
    case 8: where_run<uint64_t>(c, p, cd, x, y, out); break;
    default: type_error(c, x.dtype);
  }
}

// ---- Clip: bounds read on the device (min/max may be computed tensors) ----

template <class S> struct ClipF {
  using V = compute_t<S>;
  const S* lo;  // null: no lower bound (dlo)
  const S* hi;
  V dlo, dhi;
  // min(max(x, lo), hi): when lo > hi every element becomes hi, as ONNX specifies.
  __device__ V operator()(V v) const {
    V l = lo ? ld(*lo) : dlo;
    V h = hi ? ld(*hi) : dhi;
    v = v < l ? l : v;
    return v > h ? h : v;
  }
};

void clip_kernel(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const DevTensor* lo = c.input(1);
  const DevTensor* hi = c.input(2);
  for (const DevTensor* t : {lo, hi})
    if (t && (t->dtype != x.dtype || t->numel() != 1)) c.fail("min/max must be scalars of the input's type");
  dispatch(c, x.dtype, [&](auto tg) {
    using S = typename decltype(tg)::type;
    if constexpr (accepts<S>(Kind::Numeric)) {
      using V = compute_t<S>;
      ClipF<S> f;
      f.lo = lo ? static_cast<const S*>(lo->data) : nullptr;
      f.hi = hi ? static_cast<const S*>(hi->data) : nullptr;
      if constexpr (std::is_floating_point_v<V>) {
        f.dlo = -std::numeric_limits<V>::infinity();
        f.dhi = std::numeric_limits<V>::infinity();
      } else {
        f.dlo = std::numeric_limits<V>::lowest();
        f.dhi = std::numeric_limits<V>::max();
      }
      launch_unary<S, S>(c, x, y, f);
    } else {
      type_error(c, x.dtype);
    }
  });
}

}  // namespace

void register_elementwise_kernels() {
  ew::register_unary_math_kernels();
  ew::register_activation_kernels();
  ew::register_binary_kernels();
  ew::register_compare_kernels();
  ew::register_pow_variadic_kernels();
  ew::register_cast_kernels();
  register_kernel("Where", where_kernel);
  register_kernel("Clip", clip_kernel);
}

}  // namespace shardrt::cuda
