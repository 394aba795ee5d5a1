// --check-numerics (ContextOptions::check_numerics): finding NaN and Inf in float tensors
// after every node, and the messages that say where they started. Shared by both backends
// (the CUDA backend counts on the GPU and formats with these).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "shardrt/tensor.h"

namespace shardrt {

struct NumericsCount {
  uint64_t nan = 0, inf = 0;
  int64_t first = -1;  // flat index of the first NaN or Inf; -1 when there is none
  bool bad() const { return nan || inf; }
};

// Whether the check is on: `asked`, or SHARDRT_CHECK_NUMERICS set to anything but "0".
bool check_numerics_enabled(bool asked);

// NaN and Inf in `n` elements of dtype `t` at `data` (fp32, fp16, bf16, fp64; other dtypes
// count nothing), scanned in parallel over the cores.
NumericsCount scan_numerics(DType t, const void* data, int64_t n);
inline NumericsCount scan_numerics(const Tensor& x) { return scan_numerics(x.dtype(), x.raw(), x.numel()); }

// "[0,3,1]": the multi-index of flat index `flat` in row-major `dims`.
std::string multi_index(int64_t flat, const Dims& dims);

// One float input of a node and what it held, for the message.
struct NumericsInput {
  size_t index;
  std::string name;
  std::string kind;  // "graph input", "constant", "output of node 'x' (Op)"
  DType dtype;
  Dims dims;
  NumericsCount count;
};

// The error of graph input `name` holding NaN or Inf.
std::string input_numerics_error(const std::string& name, DType t, const Dims& dims, const NumericsCount& c);
// The error of node `n`'s output `o` holding NaN or Inf; `inputs` are the node's float
// inputs with their counts (those that hold some are named as where it started).
std::string node_numerics_error(const Node& n, size_t o, DType t, const Dims& dims, const NumericsCount& c,
                                const std::vector<NumericsInput>& inputs);
// How `v` came to be, for NumericsInput::kind.
std::string value_origin(const Graph& g, const Value& v);

}  // namespace shardrt
