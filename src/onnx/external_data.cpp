#include "onnx/external_data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ir/op_schema.h"
#include "onnx/onnx.pb.h"

namespace shardrt::onnx_detail {

namespace fs = std::filesystem;

FileMapping::~FileMapping() {
  if (base && size) munmap(base, size);
}

std::shared_ptr<FileMapping> ExternalDataFiles::map(const std::string& location, const std::string& tensor) {
  auto it = files_.find(location);
  if (it != files_.end()) return it->second;
  fs::path rel(location);
  // The model names files beside itself; refusing absolute paths and '..' keeps a model
  // from reading arbitrary files of the machine it is imported on.
  if (location.empty() || rel.is_absolute())
    throw GraphError("initializer '" + tensor + "': external data location '" + location +
                     "' must be a path relative to the model's folder");
  for (auto& part : rel)
    if (part == "..")
      throw GraphError("initializer '" + tensor + "': external data location '" + location +
                       "' must not leave the model's folder");
  std::string path = (fs::path(base_dir_.empty() ? "." : base_dir_) / rel).string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw GraphError("initializer '" + tensor + "': cannot open external data file '" + path +
                     "': " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw GraphError("cannot stat external data file '" + path + "': " + std::strerror(e));
  }
  auto m = std::make_shared<FileMapping>();
  m->path = path;
  m->size = size_t(st.st_size);
  if (m->size) {
    // Private and writable: pages stay shared with the page cache unless someone writes,
    // so a kernel that (wrongly) writes to a weight cannot fault or corrupt the file.
    void* p = mmap(nullptr, m->size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw GraphError("cannot map external data file '" + path + "': " + std::strerror(e));
    }
    m->base = p;
  }
  ::close(fd);
  files_[location] = m;
  return m;
}

Tensor ExternalDataFiles::load(const onnx::TensorProto& t, DType dtype, const Dims& dims) {
  std::string location;
  int64_t offset = 0, length = -1;
  for (auto& kv : t.external_data()) {
    try {
      if (kv.key() == "location") location = kv.value();
      else if (kv.key() == "offset") offset = std::stoll(kv.value());
      else if (kv.key() == "length") length = std::stoll(kv.value());
    } catch (const std::exception&) {
      throw GraphError("initializer '" + t.name() + "': bad external data " + kv.key() + " '" +
                       kv.value() + "'");
    }
  }
  if (location.empty()) throw GraphError("initializer '" + t.name() + "': external data without a location");
  size_t want = size_t(numel(dims)) * dtype_size(dtype);
  if (length >= 0 && size_t(length) != want)
    throw GraphError("initializer '" + t.name() + "': external data length " + std::to_string(length) +
                     " does not match " + std::to_string(want) + " bytes of " + dtype_name(dtype) +
                     dims_str(dims));
  auto m = map(location, t.name());
  if (offset < 0 || size_t(offset) > m->size || m->size - size_t(offset) < want)
    throw GraphError("initializer '" + t.name() + "': external data [" + std::to_string(offset) + ", +" +
                     std::to_string(want) + ") lies outside '" + m->path + "' (" + std::to_string(m->size) +
                     " bytes): the file is truncated or the offsets are wrong");
  char* p = static_cast<char*>(m->base) + offset;
  // Kernels assume the 64-byte alignment of owned tensors; exporters align big tensors to
  // pages, so those are borrowed, and odd small ones are copied.
  if (want >= 4096 && reinterpret_cast<uintptr_t>(p) % 64 == 0)
    return Tensor(dtype, dims, p, std::shared_ptr<void>(m, m.get()));
  Tensor r(dtype, dims);
  if (want) std::memcpy(r.raw(), p, want);
  return r;
}

}  // namespace shardrt::onnx_detail
