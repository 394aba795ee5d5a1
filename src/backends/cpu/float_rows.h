// Row-wise load/store of fp32, fp16 or bf16 data to/from fp32, for the per-row kernels that
// never widen a whole tensor (attention, cached attention).
#pragma once
#include <algorithm>
#include <cstdint>

#include "shardrt/dtype.h"

namespace shardrt::cpu {

// dst[i] = float(base[off + i]) for i < n; `t` is fp32, fp16 or bf16 (anything else: bf16).
inline void load_row(DType t, const void* base, int64_t off, int64_t n, float* dst) {
  switch (t) {
    case DType::F32: std::copy_n(static_cast<const float*>(base) + off, n, dst); break;
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = half_to_float(s[i]);
      break;
    }
    default: {
      const uint16_t* s = static_cast<const uint16_t*>(base) + off;
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(s[i]);
      break;
    }
  }
}

// base[off + i] = src[i] rounded to `t` (round to nearest even) for i < n.
inline void store_row(DType t, void* base, int64_t off, int64_t n, const float* src) {
  switch (t) {
    case DType::F32: std::copy_n(src, n, static_cast<float*>(base) + off); break;
    case DType::F16: {
      uint16_t* d = static_cast<uint16_t*>(base) + off;
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_half(src[i]);
      break;
    }
    default: {
      uint16_t* d = static_cast<uint16_t*>(base) + off;
      for (int64_t i = 0; i < n; ++i) d[i] = float_to_bf16(src[i]);
      break;
    }
  }
}

}  // namespace shardrt::cpu
