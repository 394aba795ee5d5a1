// A fast 64-bit checksum over bytes (word-wise multiply-xorshift); detects corruption of
// engine files, not tampering.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace shardrt {

inline uint64_t hash64(const void* data, size_t n, uint64_t h = 0x6a09e667f3bcc909ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  std::memcpy(&w, p + i, n - i);
  h = (h ^ w ^ (uint64_t(n) << 56)) * 0x9e3779b97f4a7c15ull;
  return h ^ (h >> 32);
}

}  // namespace shardrt
