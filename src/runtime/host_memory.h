// Host allocations of the runtime that report running out of memory with the sizes: what
// was asked for, and what the machine has (MemAvailable from /proc/meminfo).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

namespace shardrt {

// Bytes the kernel says it could give without swapping (MemAvailable); 0 when unknown.
size_t host_memory_available();
// RAM plus swap (MemTotal + SwapTotal); 0 when unknown. Read once per process.
size_t host_memory_total();
// "12345 bytes (0.0 MB)"
std::string bytes_str(size_t bytes);
// "out of memory: <what> needs N bytes (X MB); the machine has Y MB available (MemAvailable)"
std::string host_oom_message(const std::string& what, size_t bytes);
// The same when the size is unknown (a std::bad_alloc from a library or a tensor):
// "out of memory: <what> failed to allocate; the machine has Y MB available (MemAvailable)"
std::string host_oom_message(const std::string& what);

// 64-byte aligned, freed with the returned pointer. A request larger than RAM plus swap is
// refused before it is tried: with overcommit on, the allocation would succeed and the
// process be killed when it touches the pages. Throws Error(host_oom_message(what, bytes)).
std::shared_ptr<void> host_alloc(size_t bytes, const std::string& what);
// As host_alloc, but returns null instead of throwing (callers that build `what` only on
// failure).
std::shared_ptr<void> try_host_alloc(size_t bytes);

}  // namespace shardrt
