// A host tensor: dtype, concrete dims, and a shared byte buffer (owned, or borrowed from a
// memory-mapped engine file or an arena). Row-major, contiguous.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shardrt/dtype.h"

namespace shardrt {

using Dims = std::vector<int64_t>;

int64_t numel(const Dims& d);
std::string dims_str(const Dims& d);  // "[2,3]"

class Tensor {
 public:
  Tensor() = default;
  // Allocates zero-filled storage.
  Tensor(DType t, Dims dims);
  // Borrows memory kept alive by `owner` (may be null for memory the caller keeps alive).
  Tensor(DType t, Dims dims, void* data, std::shared_ptr<void> owner);

  DType dtype() const { return dtype_; }
  const Dims& dims() const { return dims_; }
  int64_t rank() const { return int64_t(dims_.size()); }
  int64_t dim(int64_t i) const { return dims_[size_t(i < 0 ? i + rank() : i)]; }
  int64_t numel() const { return shardrt::numel(dims_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool defined() const { return dtype_ != DType::Undefined; }

  void* raw() { return data_; }
  const void* raw() const { return data_; }
  template <class T> T* data() { return static_cast<T*>(data_); }
  template <class T> const T* data() const { return static_cast<const T*>(data_); }

  // Same storage, new dims (numel must match).
  Tensor reshaped(Dims dims) const;
  // A deep copy with owned storage.
  Tensor clone() const;
  // Element i converted to double / int64 (any dtype); for shape math and tests.
  double get_f(int64_t i) const;
  int64_t get_i(int64_t i) const;
  void set_f(int64_t i, double v);
  // Converts to another dtype (new storage).
  Tensor cast(DType to) const;
  // Values as int64 vector (for small shape tensors).
  std::vector<int64_t> to_i64_vector() const;

  static Tensor scalar_i64(int64_t v);
  static Tensor from_i64(const std::vector<int64_t>& v);
  static Tensor from_f32(Dims dims, const std::vector<float>& v);

 private:
  DType dtype_ = DType::Undefined;
  Dims dims_;
  void* data_ = nullptr;
  std::shared_ptr<void> owner_;
};

}  // namespace shardrt
