#include "runtime/host_memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shardrt/engine.h"

namespace shardrt {

namespace {
// The value of `key` in /proc/meminfo, in bytes; 0 when missing (not Linux, no /proc).
size_t meminfo(const char* key) {
  std::FILE* f = std::fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  size_t klen = std::strlen(key), r = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, klen) == 0 && line[klen] == ':') {
      r = size_t(std::strtoull(line + klen + 1, nullptr, 10)) * 1024;  // values are in kB
      break;
    }
  }
  std::fclose(f);
  return r;
}

std::string mb(size_t bytes) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f MB", double(bytes) / 1e6);
  return buf;
}

std::string available_str() {
  size_t avail = host_memory_available();
  return avail ? "the machine has " + mb(avail) + " available (MemAvailable)"
               : std::string("the machine's available memory is unknown (no /proc/meminfo)");
}
}  // namespace

size_t host_memory_available() { return meminfo("MemAvailable"); }

size_t host_memory_total() {
  static const size_t total = [] {
    size_t ram = meminfo("MemTotal");
    return ram ? ram + meminfo("SwapTotal") : 0;
  }();
  return total;
}

std::string bytes_str(size_t bytes) { return std::to_string(bytes) + " bytes (" + mb(bytes) + ")"; }

std::string host_oom_message(const std::string& what, size_t bytes) {
  return "out of memory: " + what + " needs " + bytes_str(bytes) + "; " + available_str();
}

std::string host_oom_message(const std::string& what) {
  return "out of memory: " + what + " failed to allocate; " + available_str();
}

std::shared_ptr<void> try_host_alloc(size_t bytes) {
  size_t total = host_memory_total();
  if (total && bytes > total) return nullptr;
  size_t sz = (std::max<size_t>(bytes, 1) + 63) / 64 * 64;
  if (sz < bytes) return nullptr;  // the rounding overflowed
  void* p = std::aligned_alloc(64, sz);
  if (!p) return nullptr;
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

std::shared_ptr<void> host_alloc(size_t bytes, const std::string& what) {
  auto p = try_host_alloc(bytes);
  if (!p) throw Error(host_oom_message(what, bytes));
  return p;
}

}  // namespace shardrt
