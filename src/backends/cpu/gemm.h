// A reusable GEMM layer over OpenBLAS's cblas for CPU kernels (MatMul, Gemm, Conv,
// shardrt.Linear, attention). Everything is row-major. fp32 goes straight to sgemm without
// copies (transposes are expressed with the transpose flags); fp16/bf16 operands are
// converted to fp32 once per distinct matrix and the result converted back; fp64 uses dgemm;
// int32/int64 use a plain (row-parallel) loop.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "shardrt/dtype.h"
#include "shardrt/tensor.h"

namespace shardrt::cpu {

// C[M,N] = alpha * op(A) * op(B) + beta * C, fp32, row-major. op(A) is [M,K]: A is stored
// [M,K] (lda >= K) or, with trans_a, [K,M] (lda >= M); likewise B is [K,N] or, with trans_b,
// [N,K]. beta == 0 ignores C's previous contents (NaNs included).
void gemm_f32(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc);

// gemm_f32, then `epi(i0, i1, j0, j1)` over blocks that tile C[0:M, 0:N] (each element in
// exactly one block; today: row blocks spread over the cores, after the GEMM). Blocks may
// run concurrently on different threads.
using GemmEpilogue = std::function<void(int64_t i0, int64_t i1, int64_t j0, int64_t j1)>;
void gemm_f32_epilogue(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                       const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                       int64_t ldc, const GemmEpilogue& epi);

// The same for any of F32/F16/BF16/F64/I32/I64 (A, B and C all of dtype `t`). Half types
// compute in fp32 (their A/B are converted, C is converted back). For integer types alpha
// and beta must be 1/0 or 1/1 (as MatMul and Gemm with integer inputs need); the products
// accumulate in int64 and wrap to the type.
void gemm_typed(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                const void* A, int64_t lda, const void* B, int64_t ldb, float beta, void* C,
                int64_t ldc);

// `count` GEMMs of equal size: C + c_off[i] = alpha * op(A + a_off[i]) * op(B + b_off[i]) +
// beta * (C + c_off[i]); offsets are in elements. Offsets may repeat (broadcast operands,
// grouped-query attention heads sharing a KV head); distinct c_off must not overlap. Small
// GEMMs are spread over the cores by batch item; large ones run one after another with
// OpenBLAS's own threading.
void gemm_batched(DType t, bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                  float alpha, const void* A, int64_t lda, const int64_t* a_off, const void* B,
                  int64_t ldb, const int64_t* b_off, float beta, void* C, int64_t ldc,
                  const int64_t* c_off, int64_t count);

// numpy matmul semantics on whole tensors: Y = A @ B with batch broadcasting and 1-D
// operands (a 1-D A is [1,K] with that dim dropped from Y; a 1-D B is [K,1] likewise).
// trans_a / trans_b transpose the last two dims of A / B first (ignored for 1-D operands).
// Y must already have the shape matmul_dims gives. When B has no batch dims (or only 1s),
// A's batch dims fold into M and the whole product is one GEMM.
void matmul_nd(const Tensor& A, const Tensor& B, Tensor& Y, bool trans_a = false,
               bool trans_b = false);
// The output dims of matmul_nd; returns false (with `err` set) when they do not match.
bool matmul_dims(const Dims& a, const Dims& b, bool trans_a, bool trans_b, Dims& out,
                 std::string* err = nullptr);

// Conversions between a dtype's buffer and fp32 (any of F32/F16/BF16/F64/I32/I64/I8/U8/Bool),
// row-parallel for big n. Handy to stage half-precision operands.
void to_f32(DType t, const void* src, float* dst, int64_t n);
void from_f32(DType t, const float* src, void* dst, int64_t n);

}  // namespace shardrt::cpu
