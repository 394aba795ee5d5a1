// Neural-network kernels: MatMul and Gemm here; the other families in kernels_conv.cpp,
// kernels_pool.cpp, kernels_norm.cpp, kernels_resize.cpp and kernels_einsum.cpp.
#include <cstring>
#include <stdexcept>

#include "backends/cpu/kernels_nn_util.h"

namespace shardrt::cpu {

namespace nn {

namespace {

void matmul_kernel(KernelCtx& c) {
  try {
    matmul_nd(*c.in[0], *c.in[1], *c.out[0]);
  } catch (const std::invalid_argument& e) {
    c.fail(e.what());
  }
}

// Y = alpha * op(A) op(B) + beta * C, C broadcast to [M, N].
void gemm_kernel(KernelCtx& c) {
  const Tensor& A = *c.in[0];
  const Tensor& B = *c.in[1];
  const Tensor* C = c.input(2);
  Tensor& Y = *c.out[0];
  const bool ta = c.node.attr_i("transA", 0) != 0, tb = c.node.attr_i("transB", 0) != 0;
  const float alpha = c.node.attr_f("alpha", 1.f), beta = c.node.attr_f("beta", 1.f);
  const int64_t M = Y.dim(0), N = Y.dim(1), K = ta ? A.dim(0) : A.dim(1);
  const DType t = Y.dtype();
  const bool use_c = C && beta != 0.f && C->numel() > 0;
  // Expands C into Y (as Y's dtype), so the GEMM can accumulate onto it with beta.
  auto broadcast_c = [&] {
    const Dims& cd = C->dims();
    const int64_t cm = cd.size() == 2 ? cd[0] : 1;
    const int64_t cn = cd.empty() ? 1 : cd.back();
    const size_t es = dtype_size(t);
    const char* src = static_cast<const char*>(C->raw());
    char* dst = static_cast<char*>(Y.raw());
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        std::memcpy(dst + size_t(i * N + j) * es, src + size_t((cm == 1 ? 0 : i) * cn + (cn == 1 ? 0 : j)) * es, es);
  };
  if (t == DType::I32 || t == DType::I64) {
    // Integer Gemm: exact product, then the float scalars applied per element.
    Tensor prod(t, {M, N});
    gemm_typed(t, ta, tb, M, N, K, 1.f, A.raw(), A.dim(1), B.raw(), B.dim(1), 0.f, prod.raw(), N);
    if (use_c) broadcast_c();
    for (int64_t i = 0; i < M * N; ++i) {
      const double v = double(alpha) * double(prod.get_i(i)) + (use_c ? double(beta) * double(Y.get_i(i)) : 0.0);
      if (t == DType::I32) Y.data<int32_t>()[i] = int32_t(int64_t(v));
      else Y.data<int64_t>()[i] = int64_t(v);
    }
    return;
  }
  if (use_c) broadcast_c();
  try {
    gemm_typed(t, ta, tb, M, N, K, alpha, A.raw(), A.dim(1), B.raw(), B.dim(1), use_c ? beta : 0.f, Y.raw(), N);
  } catch (const std::invalid_argument& e) {
    c.fail(e.what());
  }
}

}  // namespace

void register_matmul_kernels() {
  register_kernel("MatMul", matmul_kernel);
  register_kernel("Gemm", gemm_kernel);
}

}  // namespace nn

void register_nn_kernels() {
  nn::register_matmul_kernels();
  nn::register_conv_kernels();
  nn::register_pool_kernels();
  nn::register_norm_kernels();
  nn::register_resize_kernels();
  nn::register_einsum_kernels();
}

}  // namespace shardrt::cpu
