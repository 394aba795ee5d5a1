// CUDA kernels that create tensors or mask them: Shape, Size, Range, ConstantOfShape,
// Constant, EyeLike, Trilu, Dropout (inference).
#include <cstring>
#include <type_traits>

#include "backends/cuda/kernels_data_common.h"

namespace shardrt::cuda::data {

namespace {

// Up to kMaxDims int64 values passed by value (Shape's output, known on the host).
struct SmallInts {
  int n = 0;
  int64_t v[kMaxDims];
};

__global__ void small_ints_kernel(int64_t* __restrict__ dst, SmallInts a) {
  pdl_wait();
  pdl_trigger();
  const int i = int(threadIdx.x);
  if (i < a.n) dst[i] = a.v[i];
}

void k_shape(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  const int64_t r = x.rank();
  int64_t s = c.node.attr_i("start", 0);
  s = s < 0 ? s + r : s;
  s = s < 0 ? 0 : (s > r ? r : s);
  const int64_t n = y.numel();
  if (n == 0) return;
  if (s + n > r || n > kMaxDims) c.fail("output does not fit the input's rank");
  SmallInts a;
  a.n = int(n);
  for (int64_t i = 0; i < n; ++i) a.v[i] = x.dim(s + i);
  launch_pdl(small_ints_kernel, 1, 32, 0, c.stream(), y.as<int64_t>(), a);
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void k_size(KernelCtx& c) { fill_elems(c, c.out[0]->data, 1, uint64_t(c.in[0]->numel()), 8); }

// start and delta are read on the device (scalars of the output's dtype); the float
// arithmetic is done in double with explicit rounding so it matches the CPU bit for bit.
template <class T>
__global__ void __launch_bounds__(kThreads) range_kernel(T* __restrict__ y, const T* __restrict__ start,
                                                         const T* __restrict__ delta, int64_t n) {
  pdl_wait();
  pdl_trigger();
  const T s = *start, d = *delta;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (std::is_floating_point_v<T>)
      y[i] = T(__dadd_rn(double(s), __dmul_rn(double(i), double(d))));
    else
      y[i] = T(int64_t(s) + i * int64_t(d));
  }
}

void k_range(KernelCtx& c) {
  DevTensor& y = *c.out[0];
  const int64_t n = y.numel();
  if (c.in[0]->dtype != y.dtype || c.in[2]->dtype != y.dtype) c.fail("start and delta must have the output's dtype");
  if (n == 0) return;
  auto go = [&](auto z) {
    using T = decltype(z);
    launch_pdl(range_kernel<T>, grid_for(c, n), kThreads, 0, c.stream(), y.as<T>(), c.in[0]->as<T>(), c.in[2]->as<T>(),
               n);
  };
  switch (y.dtype) {
    case DType::I64: go(int64_t{}); break;
    case DType::I32: go(int32_t{}); break;
    case DType::F32: go(float{}); break;
    case DType::F64: go(double{}); break;
    default: c.unsupported(std::string("type ") + dtype_name(y.dtype) + " is not supported");
  }
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

void k_constant_of_shape(KernelCtx& c) {
  DevTensor& y = *c.out[0];
  const Tensor* v = c.node.attr_t("value");
  const size_t es = dtype_size(y.dtype);
  if (v && (v->numel() < 1 || v->dtype() != y.dtype)) c.fail("value must be one element of the output's dtype");
  fill_elems(c, y.data, y.numel(), v ? elem_bits(v->raw(), es) : 0, es);
}

// Constant: the value is uploaded once into context-owned memory (outside graph capture)
// and copied into the output on every run.
struct ConstState {
  void* dev = nullptr;
  size_t bytes = 0;
};

void k_constant(KernelCtx& c) {
  DevTensor& y = *c.out[0];
  auto& st = c.res.node_state<ConstState>(c.node, [] { return std::make_shared<ConstState>(); });
  if (!st.dev) {
    if (c.res.capturing()) c.fail("internal: Constant first ran during CUDA graph capture");
    const Node& n = c.node;
    Tensor host;
    if (const Tensor* t = n.attr_t("value")) host = *t;
    else if (n.has_attr("value_float")) host = Tensor::from_f32({}, {n.attr_f("value_float", 0)});
    else if (n.has_attr("value_floats")) {
      auto v = n.attr_floats("value_floats");
      host = Tensor::from_f32({int64_t(v.size())}, std::vector<float>(v.begin(), v.end()));
    } else if (n.has_attr("value_int")) host = Tensor::scalar_i64(n.attr_i("value_int", 0));
    else if (n.has_attr("value_ints")) host = Tensor::from_i64(n.attr_ints("value_ints"));
    else c.fail("no value attribute");
    if (host.nbytes() != y.nbytes() || host.dtype() != y.dtype) c.fail("value does not match the output");
    st.bytes = host.nbytes();
    st.dev = c.res.alloc_persistent(st.bytes);
    if (st.bytes)
      SHARDRT_CUDA_CHECK(cudaMemcpyAsync(st.dev, host.raw(), st.bytes, cudaMemcpyHostToDevice, c.stream()));
  }
  if (st.bytes != y.nbytes()) c.fail("value does not match the output");
  copy_bytes(c, y.data, st.dev, st.bytes);
}

template <class T>
__global__ void __launch_bounds__(kThreads) eyelike_kernel(T* __restrict__ y, T one, int64_t cols, int64_t k, int64_t total) {
  pdl_wait();
  pdl_trigger();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    y[i] = (i % cols) - (i / cols) == k ? one : T(0);
}

void k_eyelike(KernelCtx& c) {
  DevTensor& y = *c.out[0];
  if (y.rank() != 2) c.fail("EyeLike needs a 2-D tensor");
  const int64_t total = y.numel(), k = c.node.attr_i("k", 0);
  if (total == 0) return;
  Tensor one(y.dtype, {1});
  one.set_f(0, 1.0);
  with_elem(c, dtype_size(y.dtype), [&](auto z) {
    using T = decltype(z);
    if constexpr (sizeof(T) <= 8) {
      T v;
      std::memcpy(&v, one.raw(), sizeof(T));
      launch_pdl(eyelike_kernel<T>, grid_for(c, total), kThreads, 0, c.stream(), y.as<T>(), v, y.dim(1), k, total);
    }
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// Trilu: k (optional int64 scalar) is read on the device. Zero bytes are zero in every type.
template <class T>
__global__ void __launch_bounds__(kThreads) trilu_kernel(T* __restrict__ y, const T* __restrict__ x, const int64_t* kp,
                                                         int64_t N, int64_t M, int upper, int64_t total) {
  pdl_wait();
  pdl_trigger();
  const int64_t k = kp ? *kp : 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t col = i % M, row = (i / M) % N;
    const bool keep = upper ? col - row >= k : col - row <= k;
    y[i] = keep ? x[i] : T(0);
  }
}

void k_trilu(KernelCtx& c) {
  const DevTensor& x = *c.in[0];
  DevTensor& y = *c.out[0];
  if (x.rank() < 2) c.fail("Trilu needs rank >= 2");
  const DevTensor* kt = c.input(1);
  if (kt && (kt->dtype != DType::I64 || kt->numel() != 1)) c.fail("k must be one int64");
  const int64_t total = x.numel();
  if (total == 0) return;
  const int upper = c.node.attr_i("upper", 1) != 0;
  with_elem(c, dtype_size(x.dtype), [&](auto z) {
    using T = decltype(z);
    if constexpr (sizeof(T) <= 8)
      launch_pdl(trilu_kernel<T>, grid_for(c, total), kThreads, 0, c.stream(), y.as<T>(), x.as<T>(),
                 kt ? kt->as<int64_t>() : nullptr, x.dim(-2), x.dim(-1), upper, total);
  });
  SHARDRT_CUDA_CHECK(cudaGetLastError());
}

// Inference: output = input, mask all true (the shape rule refuses training with a ratio).
void k_dropout(KernelCtx& c) {
  copy_bytes(c, c.out[0]->data, c.in[0]->data, c.in[0]->nbytes());
  if (c.out.size() > 1 && c.out[1] && c.out[1]->nbytes())
    SHARDRT_CUDA_CHECK(cudaMemsetAsync(c.out[1]->data, 1, c.out[1]->nbytes(), c.stream()));
}

}  // namespace

void register_data_create_kernels() {
  register_kernel("Shape", k_shape);
  register_kernel("Size", k_size);
  register_kernel("Range", k_range);
  register_kernel("ConstantOfShape", k_constant_of_shape);
  register_kernel("Constant", k_constant);
  register_kernel("EyeLike", k_eyelike);
  register_kernel("Trilu", k_trilu);
  register_kernel("Dropout", k_dropout);
}

}  // namespace shardrt::cuda::data
