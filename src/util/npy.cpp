#include "shardrt/npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "shardrt/engine.h"

namespace shardrt {

namespace {

const char* descr_of(DType t) {
  switch (t) {
    case DType::F32: return "<f4";
    case DType::F16: return "<f2";
    case DType::BF16: return "bfloat16";
    case DType::F64: return "<f8";
    case DType::I64: return "<i8";
    case DType::I32: return "<i4";
    case DType::I8: return "|i1";
    case DType::U8: return "|u1";
    case DType::Bool: return "|b1";
    default: throw Error("cannot write dtype " + std::string(dtype_name(t)) + " to .npy");
  }
}

DType dtype_of_descr(const std::string& d, const std::string& what) {
  static const std::pair<const char*, DType> table[] = {
      {"<f4", DType::F32}, {"<f2", DType::F16}, {"bfloat16", DType::BF16}, {"<V2", DType::BF16},
      {"<f8", DType::F64}, {"<i8", DType::I64}, {"<i4", DType::I32}, {"|i1", DType::I8},
      {"|u1", DType::U8},  {"|b1", DType::Bool}, {"<u1", DType::U8}, {"<i1", DType::I8}};
  for (auto& [k, v] : table)
    if (d == k) return v;
  throw Error(what + ": unsupported .npy dtype '" + d + "' (shardrt reads float32/16, bfloat16, float64, int64/32/8, uint8, bool, little-endian)");
}

// Value of key `k` in the header dict text, e.g. 'descr': '<f4'.
std::string dict_value(const std::string& h, const std::string& k, const std::string& what) {
  auto p = h.find("'" + k + "'");
  if (p == std::string::npos) throw Error(what + ": .npy header has no '" + k + "'");
  p = h.find(':', p);
  if (p == std::string::npos) throw Error(what + ": malformed .npy header");
  ++p;
  while (p < h.size() && h[p] == ' ') ++p;
  if (p >= h.size()) throw Error(what + ": malformed .npy header");
  if (h[p] == '\'') {
    auto e = h.find('\'', p + 1);
    if (e == std::string::npos) throw Error(what + ": malformed .npy header");
    return h.substr(p + 1, e - p - 1);
  }
  if (h[p] == '(') {
    auto e = h.find(')', p);
    if (e == std::string::npos) throw Error(what + ": malformed .npy header");
    return h.substr(p + 1, e - p - 1);
  }
  auto e = h.find_first_of(",}", p);
  return h.substr(p, e == std::string::npos ? std::string::npos : e - p);
}

}  // namespace

Tensor parse_npy(const std::string& b, const std::string& what) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0)
    throw Error(what + ": not a .npy file (bad magic)");
  int major = uint8_t(b[6]);
  size_t hlen, hoff;
  if (major == 1) {
    hlen = uint8_t(b[8]) | (size_t(uint8_t(b[9])) << 8);
    hoff = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw Error(what + ": truncated .npy header");
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= size_t(uint8_t(b[8 + i])) << (8 * i);
    hoff = 12;
  } else {
    throw Error(what + ": unsupported .npy format version " + std::to_string(major));
  }
  if (hoff + hlen > b.size()) throw Error(what + ": truncated .npy header");
  std::string h = b.substr(hoff, hlen);
  std::string descr = dict_value(h, "descr", what);
  if (dict_value(h, "fortran_order", what).find("True") != std::string::npos)
    throw Error(what + ": Fortran-order .npy arrays are not supported (save with np.ascontiguousarray)");
  DType t = dtype_of_descr(descr, what);
  Dims dims;
  std::stringstream ss(dict_value(h, "shape", what));
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t a = item.find_first_not_of(" L");
    if (a == std::string::npos) continue;
    try {
      long long d = std::stoll(item.substr(a));
      if (d < 0) throw Error(what + ": negative dimension in .npy shape");
      dims.push_back(d);
    } catch (const std::logic_error&) {
      throw Error(what + ": malformed .npy shape '" + item + "'");
    }
  }
  // Guard against overflow before trusting the product.
  size_t n = 1;
  for (int64_t d : dims) {
    if (d != 0 && n > (size_t(1) << 48) / size_t(d)) throw Error(what + ": .npy shape is too large");
    n *= size_t(d);
  }
  size_t need = n * dtype_size(t), off = hoff + hlen;
  if (b.size() - off < need)
    throw Error(what + ": truncated .npy data (" + std::to_string(b.size() - off) + " bytes, shape " +
                dims_str(dims) + " needs " + std::to_string(need) + ")");
  Tensor out(t, dims);
  if (need) std::memcpy(out.raw(), b.data() + off, need);
  return out;
}

Tensor read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open '" + path + "'");
  std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse_npy(b, "'" + path + "'");
}

void write_npy(const std::string& path, const Tensor& t) {
  std::string shape = "(";
  for (size_t i = 0; i < t.dims().size(); ++i) shape += std::to_string(t.dims()[i]) + (t.dims().size() == 1 ? "," : (i + 1 < t.dims().size() ? ", " : ""));
  shape += ")";
  std::string h = "{'descr': '" + std::string(descr_of(t.dtype())) + "', 'fortran_order': False, 'shape': " + shape + ", }";
  size_t total = 10 + h.size() + 1;
  h.append((64 - total % 64) % 64, ' ');
  h += '\n';
  std::ofstream f(path, std::ios::binary);
  if (!f) throw Error("cannot write '" + path + "'");
  f.write("\x93NUMPY\x01\x00", 8);
  char len[2] = {char(h.size() & 0xff), char((h.size() >> 8) & 0xff)};
  f.write(len, 2);
  f.write(h.data(), std::streamsize(h.size()));
  f.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  if (!f) throw Error("error writing '" + path + "'");
}

}  // namespace shardrt
