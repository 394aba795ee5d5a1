// Helpers shared by the per-op test files: run one op on the CPU kernels, make tensors.
#pragma once
#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"

namespace shardrt::optest {

inline Node make_node(const std::string& op, std::map<std::string, Attr> attrs = {}) {
  Node n;
  n.op = op;
  n.name = "t_" + op;
  n.attrs = std::move(attrs);
  return n;
}

// Runs `op` once through its shape rule and CPU kernel.
inline std::vector<Tensor> run(const std::string& op, const std::vector<const Tensor*>& ins,
                               std::map<std::string, Attr> attrs = {}) {
  Node n = make_node(op, std::move(attrs));
  return cpu::eval_node(n, ins);
}

// Uniform values in [lo, hi) (whole numbers for integer types), seeded.
inline Tensor random_tensor(DType t, Dims d, double lo, double hi, unsigned seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> u(lo, hi);
  Tensor x(DType::F64, std::move(d));
  for (int64_t i = 0; i < x.numel(); ++i) x.set_f(i, is_float(t) ? u(g) : std::floor(u(g)));
  return x.cast(t);
}

inline Tensor make(DType t, Dims d, const std::vector<double>& v) {
  Tensor x(t, std::move(d));
  for (size_t i = 0; i < v.size(); ++i) x.set_f(int64_t(i), v[i]);
  return x;
}

}  // namespace shardrt::optest
