#include "util/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "shardrt/engine.h"

namespace shardrt {

namespace {

using json = nlohmann::json;

// safetensors' own limit on the header (its reference reader refuses larger ones).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

bool dtype_of(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> table[] = {
      {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16}, {"F64", DType::F64}, {"I64", DType::I64},
      {"I32", DType::I32}, {"I8", DType::I8},   {"U8", DType::U8},     {"BOOL", DType::Bool}};
  for (auto& [k, v] : table)
    if (s == k) {
      out = v;
      return true;
    }
  return false;
}

// Maps the whole file read-only; the shared_ptr unmaps it when the last Tensor lets go.
std::shared_ptr<void> map_file(const std::string& path, size_t& size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(e));
  }
  size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw Error(path + ": not a safetensors file: " + std::to_string(size) + " bytes, shorter than the 8-byte header length");
  }
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  ::close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) throw Error(path + ": cannot map: " + std::strerror(e));
  return std::shared_ptr<void>(p, [size](void* q) { ::munmap(q, size); });
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  size_t size = 0;
  mapping_ = map_file(path, size);
  const auto* base = static_cast<const uint8_t*>(mapping_.get());
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian
  if (header_len > kMaxHeaderBytes || header_len > size - 8)
    throw Error(path + ": header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(size) +
                " bytes) or the 100 MiB limit: truncated or not a safetensors file");
  const uint64_t data_start = 8 + header_len, data_size = size - data_start;

  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(base + 8), reinterpret_cast<const char*>(base + data_start));
  } catch (const json::exception& e) {
    throw Error(path + ": header is not valid JSON: " + e.what());
  }
  if (!header.is_object()) throw Error(path + ": header is not a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw Error(path + ": __metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m)
        metadata_[m.key()] = m.value().is_string() ? m.value().get<std::string>() : m.value().dump();
      continue;
    }
    const std::string what = path + ": tensor '" + name + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw Error(what + ": entry needs dtype, shape and data_offsets");
    const json &jd = v["dtype"], &js = v["shape"], &jo = v["data_offsets"];
    if (!jd.is_string()) throw Error(what + ": dtype is not a string");
    DType dt;
    if (!dtype_of(jd.get<std::string>(), dt))
      throw Error(what + ": unsupported dtype " + jd.get<std::string>() +
                  " (shardrt reads F32, F16, BF16, F64, I64, I32, I8, U8, BOOL)");
    if (!js.is_array()) throw Error(what + ": shape is not an array");
    Dims dims;
    uint64_t n = 1;
    bool overflow = false;
    for (const json& d : js) {
      if (!d.is_number_unsigned()) throw Error(what + ": shape " + js.dump() + " has a non-integer or negative dim");
      uint64_t k = d.get<uint64_t>();
      if (k > uint64_t(std::numeric_limits<int64_t>::max()) || (k != 0 && n > std::numeric_limits<uint64_t>::max() / k))
        overflow = true;
      else
        n *= k;
      dims.push_back(int64_t(std::min<uint64_t>(k, uint64_t(std::numeric_limits<int64_t>::max()))));
    }
    if (!jo.is_array() || jo.size() != 2 || !jo[0].is_number_unsigned() || !jo[1].is_number_unsigned())
      throw Error(what + ": data_offsets is not [begin, end]");
    const uint64_t begin = jo[0].get<uint64_t>(), end = jo[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw Error(what + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                  "] outside the data section of " + std::to_string(data_size) + " bytes (truncated file?)");
    const uint64_t esize = dtype_size(dt);
    if (overflow || n > std::numeric_limits<uint64_t>::max() / esize || n * esize != end - begin)
      throw Error(what + ": " + jd.get<std::string>() + " " + js.dump() + " needs " +
                  (overflow ? std::string("more than 2^64") : std::to_string(n * esize)) + " bytes but data_offsets span " +
                  std::to_string(end - begin));
    const uint8_t* p = base + data_start + begin;
    if (reinterpret_cast<uintptr_t>(p) % esize == 0) {
      tensors_.emplace(name, Tensor(dt, dims, const_cast<uint8_t*>(p), mapping_));
    } else {
      // The format does not promise alignment: a misaligned tensor gets its own aligned copy.
      Tensor t(dt, dims);
      std::memcpy(t.raw(), p, size_t(end - begin));
      tensors_.emplace(name, std::move(t));
    }
  }
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

const Tensor& SafetensorsFile::get(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(path_ + ": no tensor '" + name + "'");
  return it->second;
}

SafetensorsCheckpoint::SafetensorsCheckpoint(const std::string& dir) : dir_(dir) {
  namespace fs = std::filesystem;
  const fs::path single = fs::path(dir) / "model.safetensors", index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shards;
  if (fs::exists(single)) {
    shards.push_back(single.string());
  } else if (fs::exists(index)) {
    std::ifstream in(index);
    json j;
    try {
      j = json::parse(in);
    } catch (const json::exception& e) {
      throw Error(index.string() + ": not valid JSON: " + e.what());
    }
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw Error(index.string() + ": has no weight_map object");
    std::set<std::string> files;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string()) throw Error(index.string() + ": weight_map entry '" + it.key() + "' is not a file name");
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f == "..")
        throw Error(index.string() + ": weight_map entry '" + it.key() + "' names a file outside the directory");
      files.insert(f);
    }
    for (const std::string& f : files) shards.push_back((fs::path(dir) / f).string());
  } else {
    throw Error(dir + ": has neither model.safetensors nor model.safetensors.index.json");
  }
  for (const std::string& s : shards) {
    files_.push_back(std::make_unique<SafetensorsFile>(s));
    for (const std::string& n : files_.back()->names()) {
      auto [it, fresh] = where_.emplace(n, files_.back().get());
      if (!fresh) throw Error(dir + ": tensor '" + n + "' is in both " + it->second->path() + " and " + s);
    }
  }
}

const Tensor& SafetensorsCheckpoint::get(const std::string& name) const {
  auto it = where_.find(name);
  if (it == where_.end()) throw Error(dir_ + ": checkpoint has no tensor '" + name + "'");
  return it->second->get(name);
}

std::vector<std::string> SafetensorsCheckpoint::names() const {
  std::vector<std::string> out;
  for (auto& [k, v] : where_) out.push_back(k);
  return out;
}

}  // namespace shardrt
