// shardrt.Rotary(X, Cos, Sin): X [..., S, D], Cos/Sin broadcastable to [..., S, R], R <= D
// even; the first R features of each row rotate (rotate-half, or pairs (2i, 2i+1) when
// interleaved), the rest pass through. One thread per pair of outputs: (i, i + R/2) for
// rotate-half, (2i, 2i+1) interleaved, or two pass-through features; each thread reads its
// two inputs and writes its two outputs, so X is read and Y written exactly once.
// Cos/Sin rows are found through broadcast strides of the leading dims (computed on the
// host); they are read as fp32/fp16/bf16 whatever X's dtype.
// Every kernel here is launched with programmatic dependent launch (launch_pdl.h): it calls
// pdl_wait() before its first read or write and pdl_trigger() right after.
#include "backends/cuda/kernels_norm_util.cuh"
#include "backends/cuda/launch_pdl.h"

namespace shardrt::cuda {

namespace {

using namespace normk;

struct RotArgs {
  const void* cos;
  const void* sin;
  int cos_code, sin_code;
  int64_t rows, D, R;
  int64_t pairs;  // per row: R/2 rotated pairs + ceil((D - R)/2) pass-through pairs
  Dims8 lead;     // X's leading dims; stride[] = Cos's row strides
  int64_t sin_stride[kMaxDims];
  bool inter;
};

template <class T>
__global__ void rotary_kernel_dev(const T* __restrict__ x, T* __restrict__ y, RotArgs a) {
  pdl_wait();
  pdl_trigger();
  const int64_t total = a.rows * a.pairs, half = a.R / 2;
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < total; t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = t / a.pairs, p = t % a.pairs;
    const T* xr = x + row * a.D;
    T* yr = y + row * a.D;
    if (p >= half) {
      // Pass-through features R + 2(p - half) and the one after it.
      const int64_t i = a.R + 2 * (p - half);
      yr[i] = xr[i];
      if (i + 1 < a.D) yr[i + 1] = xr[i + 1];
      continue;
    }
    int64_t rem = row, co = 0, so = 0;
    for (int k = a.lead.n - 1; k >= 0; --k) {
      const int64_t idx = rem % a.lead.size[k];
      rem /= a.lead.size[k];
      co += idx * a.lead.stride[k];
      so += idx * a.sin_stride[k];
    }
    co *= a.R;
    so *= a.R;
    const int64_t i0 = a.inter ? 2 * p : p, i1 = a.inter ? 2 * p + 1 : p + half;
    const float x0 = to_f(xr[i0]), x1 = to_f(xr[i1]);
    yr[i0] = from_f<T>(x0 * ldf(a.cos, a.cos_code, co + i0) - x1 * ldf(a.sin, a.sin_code, so + i0));
    yr[i1] = from_f<T>(x1 * ldf(a.cos, a.cos_code, co + i1) + x0 * ldf(a.sin, a.sin_code, so + i1));
  }
}

// Strides of `small` (leading dims) broadcast onto `big`, right-aligned; 0 where small has
// 1 or lacks the dim (as the CPU kernel's bcast_strides).
void bcast_strides(const Dims& small, const Dims& big, int64_t* st) {
  for (size_t i = 0; i < big.size(); ++i) st[i] = 0;
  int64_t s = 1;
  for (size_t i = 0; i < small.size(); ++i) {
    const size_t si = small.size() - 1 - i, bi = big.size() - 1 - i;
    st[bi] = small[si] == 1 ? 0 : s;
    s *= small[si];
  }
}

void rotary_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  const DevTensor& cs = *c.input(1);
  const DevTensor& sn = *c.input(2);
  if (x.rank() < 2) c.fail("X must be [..., S, D]");
  if (cs.rank() < 1 || sn.rank() < 1) c.fail("Cos and Sin must have rank >= 1");
  const int64_t D = x.dims.back(), R = cs.dims.back();
  if (R % 2 || R > D || sn.dims.back() != R) c.fail("bad rotary width " + std::to_string(R));
  const Dims xl(x.dims.begin(), x.dims.end() - 1);
  const Dims cl(cs.dims.begin(), cs.dims.end() - 1), sl(sn.dims.begin(), sn.dims.end() - 1);
  if (xl.size() > size_t(kMaxDims)) c.fail("X has more than 9 dims");
  if (cl.size() > xl.size() || sl.size() > xl.size()) c.fail("Cos/Sin have more leading dims than X");
  for (const Dims* d : {&cl, &sl})
    for (size_t i = 0; i < d->size(); ++i) {
      const int64_t v = (*d)[d->size() - 1 - i], xv = xl[xl.size() - 1 - i];
      if (v != 1 && v != xv) c.fail("Cos/Sin leading dims do not broadcast to X's");
    }
  RotArgs a{};
  a.cos = cs.data;
  a.sin = sn.data;
  a.cos_code = fcode(c, cs.dtype, "Cos");
  a.sin_code = fcode(c, sn.dtype, "Sin");
  a.rows = D ? x.numel() / D : 0;
  a.D = D;
  a.R = R;
  a.pairs = R / 2 + (D - R + 1) / 2;
  a.inter = c.node.attr_i("interleaved", 0) != 0;
  a.lead.n = int(xl.size());
  for (size_t i = 0; i < xl.size(); ++i) a.lead.size[i] = xl[i];
  bcast_strides(cl, xl, a.lead.stride);
  bcast_strides(sl, xl, a.sin_stride);
  const int64_t total = a.rows * a.pairs;
  if (total == 0) return;
  NORMK_HALF_DISPATCH(c, x.dtype, {
    launch_pdl(rotary_kernel_dev<T>, grid_for(total, 256), 256, 0, c.stream(), x.as<T>(), c.out[0]->as<T>(), a);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void register_rotary_kernels() { register_kernel("shardrt.Rotary", rotary_kernel); }

}  // namespace shardrt::cuda
