// Channel norms over NC... tensors: BatchNormalization (inference: y = x·a[c] + b[c] with
// a, b folded per channel first), InstanceNormalization and GroupNormalization (statistics
// of each (n, group) plane, a contiguous run of Cg·S elements). Plane statistics accumulate
// in fp64, as the CPU kernel's do: planes can hold 10^5+ elements.
#include "backends/cuda/kernels_norm_util.cuh"

namespace shardrt::cuda {

namespace {

using namespace normk;

struct ChanParams {
  const void* p[4];  // BatchNorm: scale, B, mean, var; Group/Instance: scale, bias
  int code[4];
};

// a[c] = scale / sqrt(var + eps), b[c] = B - mean·a (as the CPU kernel folds them, in fp64).
__global__ void bn_fold(ChanParams q, float* ab, int64_t C, float eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    const double a = double(ldf(q.p[0], q.code[0], c)) / sqrt(double(ldf(q.p[3], q.code[3], c)) + double(eps));
    const float af = float(a);
    ab[c] = af;
    ab[C + c] = float(double(ldf(q.p[1], q.code[1], c)) - double(ldf(q.p[2], q.code[2], c)) * double(af));
  }
}

// IX: uint32_t when every index fits (32-bit division is several times cheaper), else int64_t.
template <class T, class IX>
__global__ void bn_apply(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ ab, IX n, IX C, IX S) {
  for (IX i = blockIdx.x * IX(blockDim.x) + threadIdx.x; i < n; i += IX(gridDim.x) * blockDim.x) {
    const IX c = (i / S) % C;
    y[i] = st_acc<T>(typename acc_of<T>::type(ld_acc(x[i]) * ab[c] + ab[C + c]));
  }
}

void batchnorm_kernel(KernelCtx& c) {
  const DevTensor& x = *c.input(0);
  if (c.node.attr_i("training_mode", 0) != 0) c.fail("training_mode=1 is not supported (inference only)");
  if (x.rank() < 2) c.fail("input must have rank >= 2");
  const int64_t N = x.dim(0), C = x.dim(1), S = (N * C) != 0 ? x.numel() / (N * C) : 0;
  ChanParams q{};
  const char* names[] = {"scale", "B", "input_mean", "input_var"};
  for (int i = 0; i < 4; ++i) {
    const DevTensor* t = c.input(size_t(i + 1));
    if (!t || t->numel() != C) c.fail(std::string(names[i]) + " must have " + std::to_string(C) + " elements");
    q.p[i] = t->data;
    q.code[i] = fcode(c, t->dtype, names[i]);
  }
  if (x.numel() == 0) return;
  float* ab = static_cast<float*>(c.res.workspace(size_t(2 * C) * sizeof(float)));
  bn_fold<<<grid_for(C, 256, 1024), 256, 0, c.stream()>>>(q, ab, C, c.node.attr_f("epsilon", 1e-5f));
  SHARDRT_CUDA_CHECK(cudaGetLastError());
  SHARDRT_CUDA_FLOAT_DISPATCH(c, x.dtype, {
    // (the grid-stride loop's i + stride stays below 2^32 when n < 2^31)
    if (x.numel() < (int64_t(1) << 31))
      bn_apply<T, uint32_t><<<grid_for(x.numel(), 256), 256, 0, c.stream()>>>(
          x.as<T>(), c.out[0]->as<T>(), ab, uint32_t(x.numel()), uint32_t(C), uint32_t(S));
    else
      bn_apply<T, int64_t><<<grid_for(x.numel(), 256), 256, 0, c.stream()>>>(x.as<T>(), c.out[0]->as<T>(), ab,
                                                                             x.numel(), C, S);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// One block per (n, g) plane of Cg·S elements; the parameter of element j is at
// g·Cg + j/S (per channel) or g (per group).
template <class T>
__global__ void __launch_bounds__(512) plane_norm(const T* __restrict__ x, T* __restrict__ y, ChanParams q,
                                                  int64_t planes, int64_t G, int64_t Cg, int64_t S, bool per_channel,
                                                  double eps) {
  __shared__ double sh[32];
  const int64_t len = Cg * S;
  for (int64_t pl = blockIdx.x; pl < planes; pl += gridDim.x) {
    const int64_t g = pl % G;
    const T* xp = x + pl * len;
    T* yp = y + pl * len;
    double s = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) s += to_d(xp[i]);
    s = block_sum(s, sh);
    const double mean = len ? s / double(len) : 0.0;
    double ss = 0;
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      const double d = to_d(xp[i]) - mean;
      ss += d * d;
    }
    ss = block_sum(ss, sh);
    const float inv = float(1.0 / sqrt((len ? ss / double(len) : 0.0) + eps));
    const float meanf = float(mean);
    for (int64_t i = threadIdx.x; i < len; i += blockDim.x) {
      // (32-bit division where the plane allows: it is the costliest instruction here)
      const int64_t pi = per_channel ? g * Cg + (len < (int64_t(1) << 31) ? int64_t(uint32_t(i) / uint32_t(S)) : i / S) : g;
      const float a = inv * ldf(q.p[0], q.code[0], pi);
      const float b = ldf(q.p[1], q.code[1], pi) - meanf * a;
      yp[i] = st_acc<T>(typename acc_of<T>::type(ld_acc(xp[i]) * a + b));
    }
  }
}

void plane_kernel(KernelCtx& c, bool group) {
  const DevTensor& x = *c.input(0);
  if (x.rank() < (group ? 2 : 3)) c.fail(group ? "input must have rank >= 2" : "input must have rank >= 3");
  const int64_t N = x.dim(0), C = x.dim(1), S = (N * C) != 0 ? x.numel() / (N * C) : 0;
  int64_t G = C;
  if (group) {
    G = c.node.attr_i("num_groups");
    if (G < 1 || C % G != 0) c.fail("channels not divisible by num_groups");
    if (c.node.attr_i("stash_type", 1) != 1) c.fail("only stash_type=1 (fp32) is supported");
  }
  const int64_t Cg = C / G;
  ChanParams q{};
  const DevTensor* sc = c.input(1);
  const DevTensor* bi = c.input(2);
  if (!sc || !bi) c.fail("scale and B are required");
  const int64_t ns = sc->numel();
  if (ns != C && !(group && ns == G))
    c.fail("scale has " + std::to_string(ns) + " elements: need " + (group ? "num_groups or " : "") + "channels");
  if (bi->numel() != ns) c.fail("B has " + std::to_string(bi->numel()) + " elements, scale " + std::to_string(ns));
  q.p[0] = sc->data;
  q.p[1] = bi->data;
  q.code[0] = fcode(c, sc->dtype, "scale");
  q.code[1] = fcode(c, bi->dtype, "B");
  const bool per_channel = ns == C;
  const int64_t planes = N * G, len = Cg * S;
  if (planes == 0 || len == 0) return;
  int64_t threads = (len + 31) / 32 * 32;
  if (threads > 512) threads = 512;
  const double eps = c.node.attr_f("epsilon", 1e-5f);
  SHARDRT_CUDA_FLOAT_DISPATCH(c, x.dtype, {
    plane_norm<T><<<grid_for(planes, 1), unsigned(threads), 0, c.stream()>>>(x.as<T>(), c.out[0]->as<T>(), q, planes, G,
                                                                             Cg, S, per_channel, eps);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void register_norm_channel_kernels() {
  register_kernel("BatchNormalization", batchnorm_kernel);
  register_kernel("InstanceNormalization", [](KernelCtx& c) { plane_kernel(c, false); });
  register_kernel("GroupNormalization", [](KernelCtx& c) { plane_kernel(c, true); });
}

}  // namespace shardrt::cuda
