#include "shardrt/tensor.h"

#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "ir/checked_size.h"
#include "shardrt/engine.h"

namespace shardrt {

int64_t numel(const Dims& d) {
  // Checked: dims come from files and shape rules over them, and a product that wraps
  // would size a buffer far smaller than the indexing into it.
  int64_t n = 1;
  for (int64_t x : d)
    if (__builtin_mul_overflow(n, x, &n)) throw Error("shape " + dims_str(d) + " has more elements than fit in 64 bits");
  return n;
}

namespace {
// 2^62: far above any real tensor, and leaves room for byte counts of 8-byte elements.
constexpr int64_t kMaxElements = int64_t(1) << 62;
}  // namespace

int64_t checked_numel(const Dims& dims, const std::string& what) {
  int64_t n = 1;
  for (int64_t x : dims) {
    if (x < 0) throw Error(what + ": negative dimension in " + dims_str(dims));
    if (__builtin_mul_overflow(n, x, &n) || n > kMaxElements)
      throw Error(what + ": shape " + dims_str(dims) + " has too many elements");
  }
  return n;
}

size_t checked_nbytes(DType t, const Dims& dims, const std::string& what) {
  size_t n = size_t(checked_numel(dims, what)), b;
  if (__builtin_mul_overflow(n, dtype_size(t), &b) || b > size_t(kMaxElements))
    throw Error(what + ": shape " + dims_str(dims) + " of " + dtype_name(t) + " is too large");
  return b;
}

std::string dims_str(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? "," : "") + std::to_string(d[i]);
  return s + "]";
}

namespace {
std::shared_ptr<void> alloc_bytes(size_t n) {
  // 64-byte alignment for vector kernels; at least one byte so data() is never null.
  size_t sz = ((n ? n : 1) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, sz);
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, sz);
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}
}  // namespace

Tensor::Tensor(DType t, Dims dims) : dtype_(t), dims_(std::move(dims)) {
  for (int64_t x : dims_)
    if (x < 0) throw std::invalid_argument("negative dimension in " + dims_str(dims_));
  owner_ = alloc_bytes(checked_nbytes(dtype_, dims_, "tensor"));
  data_ = owner_.get();
}

Tensor::Tensor(DType t, Dims dims, void* data, std::shared_ptr<void> owner)
    : dtype_(t), dims_(std::move(dims)), data_(data), owner_(std::move(owner)) {}

Tensor Tensor::reshaped(Dims dims) const {
  if (shardrt::numel(dims) != numel())
    throw std::invalid_argument("cannot reshape " + dims_str(dims_) + " to " + dims_str(dims));
  Tensor t = *this;
  t.dims_ = std::move(dims);
  return t;
}

Tensor Tensor::clone() const {
  Tensor t(dtype_, dims_);
  if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  return t;
}

double Tensor::get_f(int64_t i) const {
  switch (dtype_) {
    case DType::F32: return data<float>()[i];
    case DType::F16: return half_to_float(data<uint16_t>()[i]);
    case DType::BF16: return bf16_to_float(data<uint16_t>()[i]);
    case DType::F64: return data<double>()[i];
    case DType::I64: return double(data<int64_t>()[i]);
    case DType::I32: return data<int32_t>()[i];
    case DType::I8: return data<int8_t>()[i];
    case DType::U8: return data<uint8_t>()[i];
    case DType::Bool: return data<uint8_t>()[i] ? 1.0 : 0.0;
    default: throw std::logic_error("get_f on undefined tensor");
  }
}

int64_t Tensor::get_i(int64_t i) const {
  switch (dtype_) {
    case DType::I64: return data<int64_t>()[i];
    case DType::I32: return data<int32_t>()[i];
    case DType::I8: return data<int8_t>()[i];
    case DType::U8: return data<uint8_t>()[i];
    case DType::Bool: return data<uint8_t>()[i] ? 1 : 0;
    default: return int64_t(get_f(i));
  }
}

void Tensor::set_f(int64_t i, double v) {
  switch (dtype_) {
    case DType::F32: data<float>()[i] = float(v); break;
    case DType::F16: data<uint16_t>()[i] = float_to_half(float(v)); break;
    case DType::BF16: data<uint16_t>()[i] = float_to_bf16(float(v)); break;
    case DType::F64: data<double>()[i] = v; break;
    case DType::I64: data<int64_t>()[i] = int64_t(v); break;
    case DType::I32: data<int32_t>()[i] = int32_t(v); break;
    case DType::I8: data<int8_t>()[i] = int8_t(v); break;
    case DType::U8: data<uint8_t>()[i] = uint8_t(v); break;
    case DType::Bool: data<uint8_t>()[i] = v != 0; break;
    default: throw std::logic_error("set_f on undefined tensor");
  }
}

Tensor Tensor::cast(DType to) const {
  Tensor t(to, dims_);
  int64_t n = numel();
  if (to == dtype_) {
    if (nbytes()) std::memcpy(t.data_, data_, nbytes());
  } else if (to == DType::I64 || to == DType::I32 || to == DType::I8 || to == DType::U8) {
    bool from_int = !is_float(dtype_);
    for (int64_t i = 0; i < n; ++i) {
      int64_t v = from_int ? get_i(i) : int64_t(get_f(i));
      if (to == DType::I64) t.data<int64_t>()[i] = v;
      else if (to == DType::I32) t.data<int32_t>()[i] = int32_t(v);
      else if (to == DType::I8) t.data<int8_t>()[i] = int8_t(v);
      else t.data<uint8_t>()[i] = uint8_t(v);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) t.set_f(i, get_f(i));
  }
  return t;
}

std::vector<int64_t> Tensor::to_i64_vector() const {
  std::vector<int64_t> v(static_cast<size_t>(this->numel()));
  for (int64_t i = 0; i < numel(); ++i) v[size_t(i)] = get_i(i);
  return v;
}

Tensor Tensor::scalar_i64(int64_t v) {
  Tensor t(DType::I64, {});
  t.data<int64_t>()[0] = v;
  return t;
}

Tensor Tensor::from_i64(const std::vector<int64_t>& v) {
  Tensor t(DType::I64, {int64_t(v.size())});
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * 8);
  return t;
}

Tensor Tensor::from_f32(Dims dims, const std::vector<float>& v) {
  Tensor t(DType::F32, std::move(dims));
  if (size_t(t.numel()) != v.size()) throw std::invalid_argument("from_f32: size mismatch");
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * 4);
  return t;
}

}  // namespace shardrt
