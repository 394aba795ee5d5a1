// dlopen of NCCL (see nccl_loader.h). The handle is never closed: NCCL keeps threads and
// communicators alive until exit.
#include "backends/cuda/nccl_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

namespace shardrt::cuda {

std::string nccl_version_string(int code) {
  // Codes since 2.9 are major*10000 + minor*100 + patch; older ones major*1000 + minor*100 + patch.
  int major = code >= 10000 ? code / 10000 : code / 1000;
  int minor = code >= 10000 ? (code % 10000) / 100 : (code % 1000) / 100;
  int patch = code % 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

namespace {

struct Loaded {
  NcclApi api;
  bool ok = false;
  std::string why;
};

template <class F>
bool bind(void* h, const char* name, F& fn, std::string& why) {
  void* p = dlsym(h, name);
  if (!p) {
    why = std::string("symbol ") + name + " missing from the NCCL library";
    return false;
  }
  fn = reinterpret_cast<F>(p);
  return true;
}

Loaded load() {
  Loaded l;
  const char* env = std::getenv("SHARDRT_NCCL_LIBRARY");
  std::string path = env && *env ? env : "libnccl.so.2";
  l.api.path = path;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    l.why = "cannot load " + path + ": " + (e ? e : "unknown dlopen error");
    return l;
  }
  NcclApi& a = l.api;
  if (!bind(h, "ncclGetVersion", a.GetVersion, l.why) || !bind(h, "ncclGetUniqueId", a.GetUniqueId, l.why) ||
      !bind(h, "ncclCommInitRank", a.CommInitRank, l.why) || !bind(h, "ncclAllReduce", a.AllReduce, l.why) ||
      !bind(h, "ncclAllGather", a.AllGather, l.why) || !bind(h, "ncclReduceScatter", a.ReduceScatter, l.why) ||
      !bind(h, "ncclBroadcast", a.Broadcast, l.why) || !bind(h, "ncclGroupStart", a.GroupStart, l.why) ||
      !bind(h, "ncclGroupEnd", a.GroupEnd, l.why) || !bind(h, "ncclCommAbort", a.CommAbort, l.why) ||
      !bind(h, "ncclCommDestroy", a.CommDestroy, l.why) || !bind(h, "ncclGetErrorString", a.GetErrorString, l.why) ||
      !bind(h, "ncclCommGetAsyncError", a.CommGetAsyncError, l.why))
    return l;
  if (a.GetVersion(&a.version) != ncclSuccess) {
    l.why = "ncclGetVersion failed in " + path;
    return l;
  }
  // bf16 (ncclBfloat16) arrived in 2.10; every dtype shardrt moves must work.
  if (a.version < 21000) {
    l.why = "NCCL " + nccl_version_string(a.version) + " in " + path + " is older than 2.10 (no bf16 reductions)";
    return l;
  }
  l.ok = true;
  return l;
}

}  // namespace

const NcclApi* nccl_api(std::string* why) {
  static const Loaded l = load();
  if (!l.ok) {
    if (why) *why = l.why;
    return nullptr;
  }
  return &l.api;
}

}  // namespace shardrt::cuda
