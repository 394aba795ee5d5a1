// CUDA Pad (constant / reflect / edge / wrap, negative pads crop): one pass over the
// output, each element mapping its coordinates to the input per axis. The pads and axes
// come from the host; the constant value is read on the device.
#include "backends/cuda/kernels_data_common.h"

namespace shardrt::cuda::data {

namespace {

enum PadMode : int { kConstant, kReflect, kEdge, kWrap };

// Axes innermost first. Per axis: output dim, input stride, leading pad, first input
// index kept (lo, after cropping by a negative pad) and count kept (n).
struct PadArgs {
  int r = 0, mode = kConstant;
  int64_t ydims[kMaxDims], xs[kMaxDims], pb[kMaxDims], lo[kMaxDims], n[kMaxDims];
  int64_t total = 0;
};

template <class T>
__global__ void __launch_bounds__(kThreads)
    pad_kernel(T* __restrict__ y, const T* __restrict__ x, const T* __restrict__ cvp, PadArgs a) {
  pdl_wait();
  pdl_trigger();
  const T cv = cvp ? *cvp : T(0);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, off = 0;
    bool inside = true;
#pragma unroll
    for (int d = 0; d < kMaxDims; ++d) {
      if (d >= a.r) break;
      const int64_t o = rem % a.ydims[d];
      rem /= a.ydims[d];
      const int64_t v = o - a.pb[d] - a.lo[d], n = a.n[d];
      int64_t m;
      if (v >= 0 && v < n) m = v;
      else if (a.mode == kConstant) { inside = false; m = 0; }
      else if (a.mode == kEdge) m = v < 0 ? 0 : n - 1;
      else if (a.mode == kWrap) m = ((v % n) + n) % n;
      else if (n == 1) m = 0;
      else {
        const int64_t p = 2 * (n - 1), t = ((v % p) + p) % p;
        m = t >= n ? p - t : t;
      }
      off += (a.lo[d] + m) * a.xs[d];
    }
    y[i] = inside ? x[off] : cv;
  }
}

void k_pad(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t r = x.rank();
  const size_t es = dtype_size(x.dtype);
  if (r > kMaxDims) c.unsupported("rank above " + std::to_string(kMaxDims) + " is not supported on CUDA");
  auto pads = host_input_or_fail(c, 1, "pads").to_i64_vector();
  std::vector<int64_t> axes;
  if (c.input(3)) axes = host_input_or_fail(c, 3, "axes").to_i64_vector();
  else
    for (int64_t i = 0; i < r; ++i) axes.push_back(i);
  const size_t na = axes.size();
  if (pads.size() != 2 * na) c.fail("pads must hold 2 values per padded axis");
  std::vector<int64_t> pb(size_t(r), 0), pe(size_t(r), 0);
  for (size_t i = 0; i < na; ++i) {
    const int64_t a = norm_axis(c, axes[i], r);
    pb[size_t(a)] = pads[i];
    pe[size_t(a)] = pads[i + na];
  }
  const std::string mode = c.node.attr_s("mode", "constant");
  PadArgs a;
  a.r = int(r);
  if (mode == "constant") a.mode = kConstant;
  else if (mode == "reflect") a.mode = kReflect;
  else if (mode == "edge") a.mode = kEdge;
  else if (mode == "wrap") a.mode = kWrap;
  else c.unsupported("mode '" + mode + "' is not supported");
  auto xs = strides_of(x.dims);
  for (int64_t d = 0; d < r; ++d) {
    const size_t s = size_t(r - 1 - d);
    if (y.dims[s] != x.dims[s] + pb[s] + pe[s]) c.fail("output dims do not match the pads");
    const int64_t lo = std::max<int64_t>(0, -pb[s]), hi = std::min(x.dims[s], x.dims[s] + pe[s]);
    a.ydims[d] = y.dims[s];
    a.xs[d] = xs[s];
    a.pb[d] = pb[s];
    a.lo[d] = lo;
    a.n[d] = hi - lo;
    if (a.mode != kConstant && hi - lo <= 0 && y.dims[s] > 0) c.fail("cannot " + mode + "-pad an empty axis");
  }
  a.total = y.numel();
  if (a.total == 0) return;
  const DevTensor* cv = c.input(2);
  if (cv && cv->numel() > 0 && cv->dtype != x.dtype) c.fail("constant_value must have the input's dtype");
  const void* cvp = cv && cv->numel() > 0 ? cv->data : nullptr;
  with_elem(c, es, [&](auto z) {
    using T = decltype(z);
    if constexpr (sizeof(T) <= 8)
      launch_pdl(pad_kernel<T>, grid_for(c, a.total), kThreads, 0, c.stream(), y.as<T>(), x.as<T>(),
                 static_cast<const T*>(cvp), a);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void register_data_pad_kernels() { register_kernel("Pad", k_pad); }

}  // namespace shardrt::cuda::data
