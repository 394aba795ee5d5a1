// CUDA Resize: nearest (any dtype, bytes copied), linear and cubic (float types, fp32
// accumulation), N-d and separable, every ONNX coordinate transformation mode, following
// the CPU kernel (kernels_resize.cpp). Each output element computes its source coordinates
// on the device in double with explicitly rounded operations, so nearest picks the same
// input element as the CPU. Integer nearest upsampling of the two innermost axes (the
// UNet's 2x) has its own kernel: one thread per input element writes its fh x fw block.
// antialias is refused (not implemented on CUDA).
#include <cmath>
#include <cstring>

#include "backends/cuda/kernels_data_common.h"
#include "ir/ops/nn_ops_resize.h"

namespace shardrt::cuda::data {

namespace {

constexpr int kRMax = 8;  // Resize ranks handled on CUDA

enum Ctm : int { kHalfPixel, kAlignCorners, kAsymmetric, kTfCrop, kPytorchHalfPixel, kHalfPixelSymmetric, kTfHalfPixelNN };
enum NearestMode : int { kPreferFloor, kPreferCeil, kFloor, kCeil };
enum Mode : int { kNearest, kLinear, kCubic };

// Double arithmetic without contraction into FMAs on the device (the host compiler does
// not contract these either: no multiply feeds an add), so results are bit-identical.
__host__ __device__ inline double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ inline double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ inline double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline double ddiv(double a, double b) {
#ifdef __CUDA_ARCH__
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}

struct ResizeArgs {
  int r = 0, mode = kNearest, ctm = kHalfPixel, nearest_mode = kPreferFloor, exclude_outside = 0;
  double cubic_a = -0.75;
  // innermost first
  int64_t in[kRMax], out[kRMax], xs[kRMax];
  double scale[kRMax], roi0[kRMax], roi1[kRMax];
  int64_t total = 0;
};

// Source coordinate of output index o on axis d (kernels_resize.cpp's plan_axis); sets
// *outside for tf_crop_and_resize samples outside the input. The two sums of a product
// (half_pixel_symmetric, tf_crop_and_resize) are fused as the CPU build (-march with FMA,
// contraction on) compiles them.
__host__ __device__ inline double source_coord(const ResizeArgs& a, int d, int64_t o, bool* outside) {
  const double x = double(o), in = double(a.in[d]), scale = a.scale[d];
  const double out_w = dmul(scale, in);
  *outside = false;
  switch (a.ctm) {
    case kAlignCorners: return out_w == 1 ? 0.0 : ddiv(dmul(x, in - 1), dsub(out_w, 1));
    case kAsymmetric: return ddiv(x, scale);
    case kTfCrop: {
      const double span = dsub(a.roi1[d], a.roi0[d]);
      double xo = out_w == 1 ? ddiv(dmul(span, in - 1), 2) : ddiv(dmul(dmul(x, span), in - 1), dsub(out_w, 1));
      xo = fma(a.roi0[d], in - 1, xo);
      if (xo < 0 || xo > in - 1) *outside = true;
      return xo;
    }
    case kPytorchHalfPixel: return out_w == 1 ? -0.5 : dsub(ddiv(dadd(x, 0.5), scale), 0.5);
    case kHalfPixelSymmetric: {
      const double adjustment = ddiv(double(a.out[d]), out_w);
      const double center = ddiv(in, 2);
      return dsub(fma(center, dsub(1, adjustment), ddiv(dadd(x, 0.5), scale)), 0.5);
    }
    case kTfHalfPixelNN: return ddiv(dadd(x, 0.5), scale);
    default: return dsub(ddiv(dadd(x, 0.5), scale), 0.5);
  }
}

__host__ __device__ inline int64_t clamp_i(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

__host__ __device__ inline int64_t nearest_index(const ResizeArgs& a, int d, int64_t o, bool* outside) {
  const double xo = source_coord(a, d, o, outside);
  const double base = floor(xo), r = dsub(xo, base);
  int64_t idx;
  if (r == 0) idx = int64_t(base);
  else if (a.nearest_mode == kPreferCeil) idx = int64_t(base) + (r >= 0.5 ? 1 : 0);
  else if (a.nearest_mode == kFloor) idx = int64_t(base);
  else if (a.nearest_mode == kCeil) idx = int64_t(base) + 1;
  else idx = int64_t(base) + (r > 0.5 ? 1 : 0);
  return clamp_i(idx, 0, a.in[d] - 1);
}

__device__ inline double cubic_weight(double x, double A) {
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

// Taps (input index, weight) of output index o on axis d for linear/cubic; returns count.
__device__ inline int interp_taps(const ResizeArgs& a, int d, int64_t o, int64_t* ti, float* tw, bool* outside) {
  const double xo = source_coord(a, d, o, outside);
  const double base = floor(xo), r = dsub(xo, base);
  int64_t idx[4];
  double w[4];
  int n;
  if (a.mode == kLinear) {
    idx[0] = int64_t(base);
    w[0] = 1 - r;
    idx[1] = int64_t(base) + 1;
    w[1] = r;
    n = 2;
  } else {
    for (int i = 0; i < 4; ++i) {
      idx[i] = int64_t(base) + i - 1;
      w[i] = cubic_weight(double(i - 1) - r, a.cubic_a);
    }
    n = 4;
  }
  if (a.exclude_outside) {
    double s = 0;
    for (int i = 0; i < n; ++i) {
      if (idx[i] < 0 || idx[i] >= a.in[d]) w[i] = 0;
      s += w[i];
    }
    if (s != 0)
      for (int i = 0; i < n; ++i) w[i] /= s;
  }
  int k = 0;
  for (int i = 0; i < n; ++i) {
    if (w[i] == 0) continue;
    ti[k] = clamp_i(idx[i], 0, a.in[d] - 1);
    tw[k] = float(w[i]);
    ++k;
  }
  return k;
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    resize_nearest_kernel(T* __restrict__ y, const T* __restrict__ x, ResizeArgs a, T extrapolation) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rem = i, off = 0;
    bool out = false;
    for (int d = 0; d < a.r; ++d) {
      const int64_t o = rem % a.out[d];
      rem /= a.out[d];
      bool od;
      off += nearest_index(a, d, o, &od) * a.xs[d];
      out |= od;
    }
    y[i] = out ? extrapolation : x[off];
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    resize_interp_kernel(T* __restrict__ y, const T* __restrict__ x, ResizeArgs a, float extrapolation) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.total; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t ti[kRMax][4];
    float tw[kRMax][4];
    int cnt[kRMax], cur[kRMax];
    int64_t rem = i;
    bool out = false, none = false;
    for (int d = 0; d < a.r; ++d) {
      const int64_t o = rem % a.out[d];
      rem /= a.out[d];
      bool od;
      cnt[d] = interp_taps(a, d, o, ti[d], tw[d], &od);
      cur[d] = 0;
      out |= od;
      none |= cnt[d] == 0;
    }
    if (out) { y[i] = from_f<T>(extrapolation); continue; }
    float acc = 0;
    if (!none) {
      for (;;) {
        float w = 1;
        int64_t off = 0;
        for (int d = 0; d < a.r; ++d) {
          w *= tw[d][cur[d]];
          off += ti[d][cur[d]] * a.xs[d];
        }
        acc += w * to_f(x[off]);
        int d = 0;
        for (; d < a.r; ++d) {
          if (++cur[d] < cnt[d]) break;
          cur[d] = 0;
        }
        if (d == a.r) break;
      }
    }
    y[i] = from_f<T>(acc);
  }
}

// Integer nearest upsampling of the two innermost axes: x [outer, IH, IW] -> y [outer,
// IH*fh, IW*fw]; each thread reads one input element and writes its fh rows of fw copies
// (as one P-sized store when P packs the fw copies).
template <class T, class P, int FW>
__global__ void __launch_bounds__(kThreads) upsample_nearest_kernel(P* __restrict__ y, const T* __restrict__ x, int64_t IH,
                                                                    int64_t IW, int64_t fh, int64_t total) {
  pdl_wait();
  pdl_trigger();
  const int64_t OW = IW * FW;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % IW, t = i / IW, ih = t % IH, o = t / IH;
    const T v = x[i];
    P p;
    T* pt = reinterpret_cast<T*>(&p);
#pragma unroll
    for (int k = 0; k < FW; ++k) pt[k] = v;
    const int64_t row0 = (o * IH + ih) * fh;
    for (int64_t dy = 0; dy < fh; ++dy) y[((row0 + dy) * OW) / FW + iw] = p;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads) upsample_nearest_any_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t IH,
                                                                        int64_t IW, int64_t fh, int64_t fw, int64_t total) {
  pdl_wait();
  pdl_trigger();
  const int64_t OW = IW * fw;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t iw = i % IW, t = i / IW, ih = t % IH, o = t / IH;
    const T v = x[i];
    const int64_t row0 = (o * IH + ih) * fh;
    for (int64_t dy = 0; dy < fh; ++dy)
      for (int64_t dx = 0; dx < fw; ++dx) y[(row0 + dy) * OW + iw * fw + dx] = v;
  }
}

// Whether nearest maps every axis as o -> o / f with f = out / in an integer, and all but
// the two innermost axes (innermost first: d >= 2) as the identity. Checked by evaluating
// the same index function the general kernel uses, over every output index.
bool integer_upsample(const ResizeArgs& a) {
  for (int d = 0; d < a.r; ++d) {
    if (a.out[d] % a.in[d] != 0) return false;
    const int64_t f = a.out[d] / a.in[d];
    if (d >= 2 && f != 1) return false;
    for (int64_t o = 0; o < a.out[d]; ++o) {
      bool outside;
      if (nearest_index(a, d, o, &outside) != o / f || outside) return false;
    }
  }
  return true;
}

void launch_upsample(const KernelCtx& c, const ResizeArgs& a, const DevTensor& x, DevTensor& y) {
  const int64_t IW = a.in[0], IH = a.r >= 2 ? a.in[1] : 1;
  const int64_t fw = a.out[0] / a.in[0], fh = a.r >= 2 ? a.out[1] / a.in[1] : 1;
  const int64_t total = x.numel();
  const size_t es = dtype_size(x.dtype);
  const bool aligned = reinterpret_cast<uintptr_t>(y.data) % (size_t(fw) * es) == 0;
  with_elem(c, es, [&](auto z) {
    using T = decltype(z);
    if constexpr (sizeof(T) <= 8) {
      const unsigned grid = grid_for(c, total);
      auto any = [&] {
        launch_pdl(upsample_nearest_any_kernel<T>, grid, kThreads, 0, c.stream(), y.as<T>(), x.as<T>(), IH, IW, fh, fw,
                   total);
      };
      if (!aligned) {
        any();
      } else if (fw == 2) {
        if constexpr (sizeof(T) == 1)
          launch_pdl(upsample_nearest_kernel<T, uint16_t, 2>, grid, kThreads, 0, c.stream(), y.as<uint16_t>(),
                     x.as<T>(), IH, IW, fh, total);
        if constexpr (sizeof(T) == 2)
          launch_pdl(upsample_nearest_kernel<T, uint32_t, 2>, grid, kThreads, 0, c.stream(), y.as<uint32_t>(),
                     x.as<T>(), IH, IW, fh, total);
        if constexpr (sizeof(T) == 4)
          launch_pdl(upsample_nearest_kernel<T, uint2, 2>, grid, kThreads, 0, c.stream(), y.as<uint2>(), x.as<T>(), IH,
                     IW, fh, total);
        if constexpr (sizeof(T) == 8)
          launch_pdl(upsample_nearest_kernel<T, uint4, 2>, grid, kThreads, 0, c.stream(), y.as<uint4>(), x.as<T>(), IH,
                     IW, fh, total);
      } else if (fw == 4 && sizeof(T) <= 4) {
        if constexpr (sizeof(T) == 1)
          launch_pdl(upsample_nearest_kernel<T, uint32_t, 4>, grid, kThreads, 0, c.stream(), y.as<uint32_t>(),
                     x.as<T>(), IH, IW, fh, total);
        if constexpr (sizeof(T) == 2)
          launch_pdl(upsample_nearest_kernel<T, uint2, 4>, grid, kThreads, 0, c.stream(), y.as<uint2>(), x.as<T>(), IH,
                     IW, fh, total);
        if constexpr (sizeof(T) == 4)
          launch_pdl(upsample_nearest_kernel<T, uint4, 4>, grid, kThreads, 0, c.stream(), y.as<uint4>(), x.as<T>(), IH,
                     IW, fh, total);
      } else {
        any();
      }
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void k_resize(KernelCtx& c) {
  const DevTensor& X = *c.in[0];
  DevTensor& Y = *c.out[0];
  const Node& n = c.node;
  auto present = [&](size_t i) { return c.input(i) && c.input(i)->numel() > 0; };
  std::vector<double> scales;
  std::vector<int64_t> sizes;
  if (present(3)) sizes = host_input_or_fail(c, 3, "sizes").to_i64_vector();
  else if (present(2)) {
    const Tensor& s = host_input_or_fail(c, 2, "scales");
    for (int64_t i = 0; i < s.numel(); ++i) scales.push_back(double(float(s.get_f(i))));
  }
  std::vector<int64_t> od;
  std::vector<double> sc;
  if (auto e = resize_output(n, X.dims, scales, sizes, od, sc); !e.empty()) c.fail(e);
  if (od != Y.dims) c.fail("output dims disagree with the shape rule");
  const int r = int(X.rank());
  if (r == 0) c.fail("Resize needs an input of rank >= 1");
  if (r > kRMax) c.unsupported("Resize of rank above " + std::to_string(kRMax) + " is not supported on CUDA");
  ResizeArgs a;
  a.r = r;
  const std::string mode = n.attr_s("mode", "nearest");
  if (mode == "nearest") a.mode = kNearest;
  else if (mode == "linear") a.mode = kLinear;
  else if (mode == "cubic") a.mode = kCubic;
  else c.unsupported("mode '" + mode + "' is not supported");
  if (a.mode != kNearest && n.attr_i("antialias", 0) != 0) c.unsupported("antialias is not supported on CUDA");
  const std::string ctm = n.attr_s("coordinate_transformation_mode", "half_pixel");
  if (ctm == "half_pixel") a.ctm = kHalfPixel;
  else if (ctm == "align_corners") a.ctm = kAlignCorners;
  else if (ctm == "asymmetric") a.ctm = kAsymmetric;
  else if (ctm == "tf_crop_and_resize") a.ctm = kTfCrop;
  else if (ctm == "pytorch_half_pixel") a.ctm = kPytorchHalfPixel;
  else if (ctm == "half_pixel_symmetric") a.ctm = kHalfPixelSymmetric;
  else if (ctm == "tf_half_pixel_for_nn") a.ctm = kTfHalfPixelNN;
  else c.unsupported("coordinate_transformation_mode '" + ctm + "' is not supported");
  const std::string nm = n.attr_s("nearest_mode", "round_prefer_floor");
  a.nearest_mode = nm == "round_prefer_ceil" ? kPreferCeil : nm == "floor" ? kFloor : nm == "ceil" ? kCeil : kPreferFloor;
  a.cubic_a = double(n.attr_f("cubic_coeff_a", -0.75f));
  a.exclude_outside = n.attr_i("exclude_outside", 0) != 0;
  std::vector<double> roi(2 * size_t(r));
  for (int i = 0; i < r; ++i) { roi[size_t(i)] = 0; roi[size_t(r + i)] = 1; }
  if (a.ctm == kTfCrop) {
    if (!present(1)) c.fail("tf_crop_and_resize needs roi");
    const Tensor& R = host_input_or_fail(c, 1, "roi");
    std::vector<int64_t> axes = n.attr_ints("axes");
    if (axes.empty())
      for (int i = 0; i < r; ++i) axes.push_back(i);
    if (R.numel() != int64_t(2 * axes.size())) c.fail("roi must have 2 values per resized axis");
    for (size_t i = 0; i < axes.size(); ++i) {
      const size_t ax = size_t(norm_axis(c, axes[i], r));
      roi[ax] = R.get_f(int64_t(i));
      roi[size_t(r) + ax] = R.get_f(int64_t(i + axes.size()));
    }
  }
  auto xs = strides_of(X.dims);
  for (int d = 0; d < r; ++d) {
    const size_t s = size_t(r - 1 - d);
    a.in[d] = X.dims[s];
    a.out[d] = od[s];
    a.xs[d] = xs[s];
    a.scale[d] = sc[s];
    a.roi0[d] = roi[s];
    a.roi1[d] = roi[size_t(r) + s];
  }
  a.total = Y.numel();
  if (a.total == 0) return;
  if (X.numel() == 0) c.fail("cannot resize an empty input to a non-empty output");
  const float extrapolation = n.attr_f("extrapolation_value", 0.f);
  const size_t es = dtype_size(X.dtype);
  if (a.mode == kNearest) {
    if (a.ctm != kTfCrop && integer_upsample(a)) {
      launch_upsample(c, a, X, Y);
      return;
    }
    // The extrapolation value stored in the output's dtype.
    Tensor ext = Tensor::from_f32({1}, {extrapolation}).cast(X.dtype);
    with_elem(c, es, [&](auto z) {
      using T = decltype(z);
      if constexpr (sizeof(T) <= 8) {
        T e;
        std::memcpy(&e, ext.raw(), sizeof(T));
        launch_pdl(resize_nearest_kernel<T>, grid_for(c, a.total), kThreads, 0, c.stream(), Y.as<T>(), X.as<T>(), a, e);
      }
    });
    SHARDRT_CUDA_CHECK(cudaGetLastError());
    return;
  }
  SHARDRT_CUDA_FLOAT_DISPATCH(c, X.dtype, {
    launch_pdl(resize_interp_kernel<T>, grid_for(c, a.total), kThreads, 0, c.stream(), Y.as<T>(), X.as<T>(), a,
               extrapolation);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void register_data_resize_kernels() { register_kernel("Resize", k_resize); }

}  // namespace shardrt::cuda::data
