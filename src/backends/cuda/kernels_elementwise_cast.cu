// CUDA kernels of Cast and CastLike between every pair of shardrt's element types, with
// the CPU kernel's conversions bit for bit: float -> integer truncates through int64 with
// x86's out-of-range result (NaN, ±inf and |x| >= 2^63 give INT64_MIN, then narrower
// integers wrap), fp64 -> fp16/bf16 rounds once (through float rounded to odd), float ->
// bool is "non-zero" (NaN is true).
#include "backends/cuda/elementwise_common.cuh"

namespace shardrt::cuda::ew {

namespace {

// What cvttsd2si gives: the truncated value when it fits in int64, else INT64_MIN.
__device__ __forceinline__ int64_t trunc_i64(double d) {
  return (d >= -9223372036854775808.0 && d < 9223372036854775808.0) ? int64_t(d) : INT64_MIN;
}

// double -> float rounded to odd: rounding that result again to fp16/bf16 (fewer than 23
// mantissa bits) then equals rounding the double directly, avoiding double rounding.
__device__ __forceinline__ float to_float_odd(double d) {
  float f = __double2float_rn(d);
  if (double(f) == d || d != d) return f;
  uint32_t u = __float_as_uint(f);
  if (fabs(double(f)) > fabs(d)) u -= 1;  // step toward zero (magnitude - 1 ulp)
  return __uint_as_float(u | 1u);
}

// Returns a value that st<R> stores unchanged or converts as C++ does.
template <class A, class R> struct CastF {
  __device__ auto operator()(compute_t<A> v) const {
    if constexpr (std::is_same_v<A, double> && is_half_s<R>) return to_float_odd(v);
    else if constexpr (is_float_s<A> && is_int_s<R>) return R(trunc_i64(double(v)));
    else return v;
  }
};

template <class A, class R> void cast_run(const KernelCtx& c, const DevTensor& x, DevTensor& y) {
  launch_unary<A, R>(c, x, y, CastF<A, R>{});
}

void cast_any(const KernelCtx& c, const DevTensor& x, DevTensor& y) {
  if (x.numel() != y.numel()) c.fail("input and output differ in size");
  if (x.dtype == y.dtype) {
    if (x.nbytes() && x.data != y.data)
      SHARDRT_CUDA_CHECK(cudaMemcpyAsync(y.data, x.data, x.nbytes(), cudaMemcpyDeviceToDevice, c.stream()));
    return;
  }
  dispatch(c, x.dtype, [&](auto ta) {
    using A = typename decltype(ta)::type;
    dispatch(c, y.dtype, [&](auto tr) {
      using R = typename decltype(tr)::type;
      if constexpr (!std::is_same_v<A, R>) cast_run<A, R>(c, x, y);
    });
  });
}

void cast_kernel(KernelCtx& c) { cast_any(c, *c.in[0], *c.out[0]); }

}  // namespace

void launch_cast(const KernelCtx& c, DType from, const void* x, DType to, void* y, int64_t n) {
  DevTensor xt{from, {n}, const_cast<void*>(x)};
  DevTensor yt{to, {n}, y};
  cast_any(c, xt, yt);
}

void register_cast_kernels() {
  // The output already has the target type (from `to`, or CastLike's input 1).
  register_kernel("Cast", cast_kernel);
  register_kernel("CastLike", cast_kernel);
}

}  // namespace shardrt::cuda::ew
