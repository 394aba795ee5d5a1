// Reader of the safetensors format (Hugging Face): an 8-byte little-endian header length N,
// N bytes of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}},
// then the raw little-endian tensor bytes (offsets relative to the end of the header).
//
// The file is memory-mapped read-only and the Tensors borrow the mapping (it stays mapped as
// long as any of them is alive), so opening a checkpoint copies nothing. Every offset, size
// and shape is checked against the file; a malformed file is refused with an error naming the
// file and the tensor.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "shardrt/tensor.h"

namespace shardrt {

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws Error on anything malformed.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return path_; }
  // Tensor names, sorted.
  std::vector<std::string> names() const;
  bool contains(const std::string& name) const { return tensors_.count(name) != 0; }
  // The tensor, borrowing the mapping; throws Error naming the file if absent.
  const Tensor& get(const std::string& name) const;
  // "__metadata__" string pairs (empty when the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::string path_;
  std::shared_ptr<void> mapping_;
  std::map<std::string, Tensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or shards listed by model.safetensors.index.json
// ({"weight_map": {name: file}}). Tensor lookups go to the file that holds the name.
class SafetensorsCheckpoint {
 public:
  explicit SafetensorsCheckpoint(const std::string& dir);

  bool contains(const std::string& name) const { return where_.count(name) != 0; }
  const Tensor& get(const std::string& name) const;
  std::vector<std::string> names() const;

 private:
  std::string dir_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const SafetensorsFile*> where_;
};

}  // namespace shardrt
