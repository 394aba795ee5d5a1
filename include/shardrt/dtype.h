// Element types of the IR and their conversions.
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace shardrt {

enum class DType : uint8_t { F32, F16, BF16, I64, I32, I8, U8, Bool, F64, Undefined };

size_t dtype_size(DType t);
const char* dtype_name(DType t);           // "fp32", "fp16", ...
DType dtype_from_name(std::string_view s);  // throws on unknown
bool is_float(DType t);                     // F32/F16/BF16/F64

// IEEE half and bfloat16 conversions (round to nearest even).
float half_to_float(uint16_t h);
uint16_t float_to_half(float f);
inline float bf16_to_float(uint16_t b) {
  uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

}  // namespace shardrt
