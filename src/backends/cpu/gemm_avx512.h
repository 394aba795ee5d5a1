// The AVX-512 fp32 GEMM behind gemm_f32 (see gemm_avx512.cpp for why it exists).
#pragma once
#include <cstdint>

#include "backends/cpu/gemm.h"

namespace shardrt::cpu {

// True when the CPU has AVX-512F (and SHARDRT_NO_AVX512_GEMM is not set, which selects
// OpenBLAS instead, for comparisons).
bool have_avx512_gemm();

// Same contract as gemm_f32 (row-major, M, N, K > 0; beta == 0 never reads C); `epi`
// (may be null) runs on each finished block of C as gemm_f32_epilogue describes.
void gemm_f32_avx512(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                     int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                     const GemmEpilogue* epi = nullptr);

}  // namespace shardrt::cpu
