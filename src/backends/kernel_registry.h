// The op → kernel table of a backend (CPU, CUDA): filled on first lookup by the backend's
// `RegisterAll`, which may itself look kernels up (a family reusing another's rule) without
// waiting on the once_flag it runs under.
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace shardrt {

template <class Kernel, void (*RegisterAll)()>
struct KernelRegistry {
  static void add(const std::string& op, Kernel k) { table()[op] = std::move(k); }
  static const Kernel* find(const std::string& op) {
    ensure();
    auto it = table().find(op);
    return it == table().end() ? nullptr : &it->second;
  }
  static std::vector<std::string> names() {
    ensure();
    std::vector<std::string> r;
    for (auto& kv : table()) r.push_back(kv.first);
    return r;
  }

 private:
  static std::map<std::string, Kernel>& table() {
    static std::map<std::string, Kernel> t;
    return t;
  }
  static void ensure() {
    static thread_local bool registering = false;
    if (registering) return;
    static std::once_flag once;
    std::call_once(once, [] {
      registering = true;
      RegisterAll();
      registering = false;
    });
  }
};

}  // namespace shardrt
