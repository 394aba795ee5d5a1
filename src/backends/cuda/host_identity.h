// Small helpers for the records ranks exchange when they set up device collectives
// (device_comm.cpp, peer_allreduce.cu): which host a rank runs on, and fixed-size strings.
#pragma once
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <string>

namespace shardrt::cuda {

// Host name plus the kernel's boot id: two containers with one host name on different
// machines differ, two ranks of one machine agree.
inline std::string host_identity() {
  char h[64] = {0};
  gethostname(h, sizeof h - 1);
  std::string id = h;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string boot;
  if (f && std::getline(f, boot)) id += "/" + boot;
  return id;
}

// `s` into a fixed field of `cap` bytes, cut to fit and NUL-terminated.
inline void copy_cstr(char* dst, size_t cap, const std::string& s) {
  std::memset(dst, 0, cap);
  std::memcpy(dst, s.data(), std::min(cap - 1, s.size()));
}

}  // namespace shardrt::cuda
