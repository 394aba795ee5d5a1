#include "runtime/numerics.h"

#include <cstdlib>
#include <cstring>
#include <mutex>

#include "backends/cpu/cpu_kernels.h"

namespace shardrt {

namespace {

// NaN and Inf by their bits: exponent all ones; mantissa zero for Inf, non-zero for NaN.
// Exact for every format (no conversion that could overflow a finite fp64 into Inf).
template <class U, U kExp, U kMan>
NumericsCount scan_bits(const void* data, int64_t n) {
  NumericsCount total;
  std::mutex mu;
  const U* p = static_cast<const U*>(data);
  cpu::parallel_for(n, 1 << 16, [&](int64_t b, int64_t e) {
    NumericsCount c;
    for (int64_t i = b; i < e; ++i) {
      U u = p[i];
      if ((u & kExp) != kExp) continue;
      if (u & kMan) ++c.nan;
      else ++c.inf;
      if (c.first < 0) c.first = i;
    }
    if (!c.bad()) return;
    std::lock_guard<std::mutex> lock(mu);
    total.nan += c.nan;
    total.inf += c.inf;
    if (total.first < 0 || c.first < total.first) total.first = c.first;
  });
  return total;
}

std::string counts_str(const NumericsCount& c, const Dims& dims) {
  return std::to_string(c.nan) + " NaN and " + std::to_string(c.inf) + " Inf (the first at index " +
         multi_index(c.first, dims) + ")";
}

}  // namespace

bool check_numerics_enabled(bool asked) {
  if (asked) return true;
  const char* s = std::getenv("SHARDRT_CHECK_NUMERICS");
  return s && *s && std::strcmp(s, "0") != 0;
}

NumericsCount scan_numerics(DType t, const void* data, int64_t n) {
  if (n <= 0 || !data) return {};
  switch (t) {
    case DType::F32: return scan_bits<uint32_t, 0x7f800000u, 0x007fffffu>(data, n);
    case DType::F16: return scan_bits<uint16_t, 0x7c00, 0x03ff>(data, n);
    case DType::BF16: return scan_bits<uint16_t, 0x7f80, 0x007f>(data, n);
    case DType::F64: return scan_bits<uint64_t, 0x7ff0000000000000ull, 0x000fffffffffffffull>(data, n);
    default: return {};
  }
}

std::string multi_index(int64_t flat, const Dims& dims) {
  if (flat < 0) return "none";
  std::vector<int64_t> idx(dims.size(), 0);
  for (size_t d = dims.size(); d-- > 0;) {
    if (dims[d] <= 0) break;
    idx[d] = flat % dims[d];
    flat /= dims[d];
  }
  return dims_str(idx);
}

std::string input_numerics_error(const std::string& name, DType t, const Dims& dims, const NumericsCount& c) {
  return "check-numerics: input '" + name + "' (" + dtype_name(t) + dims_str(dims) + ") holds " + counts_str(c, dims) +
         " before any node ran";
}

std::string node_numerics_error(const Node& n, size_t o, DType t, const Dims& dims, const NumericsCount& c,
                                const std::vector<NumericsInput>& inputs) {
  std::string name = o < n.outputs.size() && n.outputs[o] ? n.outputs[o]->name : std::string("?");
  std::string r = "check-numerics: " + n.describe() + " output " + std::to_string(o) + " '" + name + "' (" +
                  dtype_name(t) + dims_str(dims) + ") holds " + counts_str(c, dims) + "; ";
  std::string bad;
  for (auto& in : inputs) {
    if (!in.count.bad()) continue;
    bad += std::string(bad.empty() ? "" : "; ") + "input " + std::to_string(in.index) + " '" + in.name + "' (" +
           in.kind + ", " + dtype_name(in.dtype) + dims_str(in.dims) + ") holds " + counts_str(in.count, in.dims);
  }
  if (!bad.empty()) return r + "its inputs already held NaN/Inf: " + bad;
  if (inputs.empty()) return r + "it has no float inputs, so this node produced them";
  return r + "its " + std::to_string(inputs.size()) + " float input" + (inputs.size() == 1 ? "" : "s") +
         " held none, so this node produced them";
}

std::string value_origin(const Graph& g, const Value& v) {
  if (v.constant) return "constant";
  if (v.producer) return "output of " + v.producer->describe();
  for (Value* x : g.inputs)
    if (x == &v) return "graph input";
  return "value";
}

}  // namespace shardrt
