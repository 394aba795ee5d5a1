// Small kernels around the cuBLASLt GEMMs: the activations cuBLASLt has no exact epilogue
// for (erf GELU, SiLU), bias/activation when an epilogue is unsupported, copying a padded
// GEMM result out, and broadcasting Gemm's C into the output.
#pragma once
#include "backends/cuda/cuda_common.h"

namespace shardrt::cuda::gemm {

enum class Act { None = 0, Relu = 1, Gelu = 2, GeluTanh = 3, Silu = 4 };

// The node's "activation" attribute (none|relu|gelu|gelu_tanh|silu; swiglu is handled apart).
Act parse_act(const KernelCtx& c);

// dst[i, j] = act(scale · src[i·lds + j] + bias[j]) for i < rows, j < cols; dst is contiguous
// [rows, cols]; src may be dst itself (lds == cols) or a wider buffer (lds >= cols). bias may
// be null. Float dtypes (fp32/fp16/bf16 compute in fp32, fp64 in fp64).
void bias_act(KernelCtx& c, DType t, const void* src, int64_t lds, void* dst, int64_t rows, int64_t cols,
              const void* bias, Act act, float scale = 1.f);

// Y[M, N] = C broadcast: C[(cm == 1 ? 0 : i) · cn + (cn == 1 ? 0 : j)]; any dtype of 1, 2, 4 or 8 bytes.
void broadcast_c(KernelCtx& c, DType t, const void* C, int64_t cm, int64_t cn, void* Y, int64_t M, int64_t N);

}  // namespace shardrt::cuda::gemm
