// The engine file. Layout (little-endian):
//   0  magic "SHRDRTEN"          8 bytes
//   8  format version            u32 (kEngineFormatVersion)
//  12  flags                     u32 (0)
//  16  header JSON size          u64
//  24  weights offset            u64 (a multiple of 4096, so weights can be mmap'd)
//  32  weights size              u64
//  40  checksum                  u64 (hash64 over the header JSON, then the weights)
//  48  reserved                  16 bytes of zeros
//  64  header JSON               build settings, bindings with profiles, graph, memory plan
//      weights                   every constant, each at a 64-byte-aligned offset
// docs/engine-format.md describes the JSON.
#pragma once
#include <memory>
#include <string>

#include "runtime/engine_impl.h"

namespace shardrt {

constexpr uint32_t kEngineFormatVersion = 1;

void save_engine_file(const Engine::Impl& e, const std::string& path);
std::unique_ptr<Engine::Impl> load_engine_file(const std::string& path, bool verify_checksum);
// The same checks and parsing over bytes already in memory (`data` holds `size` bytes and is
// kept alive by the engine: weights are borrowed from it); `path` names it in errors.
std::unique_ptr<Engine::Impl> load_engine_bytes(std::shared_ptr<void> data, size_t size, const std::string& path,
                                                bool verify_checksum);

}  // namespace shardrt
