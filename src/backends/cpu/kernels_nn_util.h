// Small helpers shared by the neural-network kernel files (kernels_nn*.cpp, kernels_conv.cpp,
// kernels_pool.cpp, kernels_norm.cpp, kernels_resize.cpp, kernels_einsum.cpp).
#pragma once
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cpu/gemm.h"

namespace shardrt::cpu::nn {

// fp32 view of a float tensor: the tensor's own data for fp32, else a converted copy kept in
// `store`. Returns null for a null tensor.
inline const float* f32_view(const Tensor* t, std::vector<float>& store) {
  if (!t) return nullptr;
  if (t->dtype() == DType::F32) return t->data<float>();
  store.resize(size_t(t->numel()));
  to_f32(t->dtype(), t->raw(), store.data(), t->numel());
  return store.data();
}

// Destination in fp32: the output's own data for fp32, else `store` (write back with
// finish_f32).
inline float* f32_out(Tensor* t, std::vector<float>& store) {
  if (t->dtype() == DType::F32) return t->data<float>();
  store.assign(size_t(t->numel()), 0.f);
  return store.data();
}
inline void finish_f32(Tensor* t, const std::vector<float>& store) {
  if (t->dtype() != DType::F32) from_f32(t->dtype(), store.data(), t->raw(), t->numel());
}

inline bool is_float_type(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}

// Register functions of each file, called from register_nn_kernels.
void register_matmul_kernels();
void register_conv_kernels();
void register_pool_kernels();
void register_norm_kernels();
void register_resize_kernels();
void register_einsum_kernels();

}  // namespace shardrt::cpu::nn
