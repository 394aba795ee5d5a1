// External tensor data (TensorProto.data_location == EXTERNAL): files beside the model,
// memory-mapped once per import and shared by every tensor that lives in them.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "shardrt/tensor.h"

namespace onnx {
class TensorProto;
}

namespace shardrt::onnx_detail {

// A read-only (copy-on-write) mapping of one whole file; unmapped when the last Tensor
// borrowing from it goes away.
struct FileMapping {
  void* base = nullptr;
  size_t size = 0;
  std::string path;
  ~FileMapping();
};

class ExternalDataFiles {
 public:
  explicit ExternalDataFiles(std::string base_dir) : base_dir_(std::move(base_dir)) {}
  // Reads the tensor `t` (dtype and dims already decoded) from its external file.
  // Borrows the mapping when the data is suitably aligned, copies otherwise.
  Tensor load(const onnx::TensorProto& t, DType dtype, const Dims& dims);

 private:
  std::shared_ptr<FileMapping> map(const std::string& location, const std::string& tensor);
  std::string base_dir_;
  std::map<std::string, std::shared_ptr<FileMapping>> files_;
};

}  // namespace shardrt::onnx_detail
