// The safetensors reader on small files written here byte by byte from the format's
// definition (8-byte little-endian header length, JSON header, raw data), including
// truncated and corrupted ones that must be refused with the file and tensor named.
// (Real files written by Hugging Face's safetensors are read by tests/python/test_gpt2_checkpoint.py.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "error_util.h"
#include "shardrt/engine.h"
#include "util/safetensors.h"

using namespace shardrt;
namespace fs = std::filesystem;

namespace {

// A fresh directory per test, removed when the test ends.
struct TempDir {
  fs::path path;
  TempDir()
      : path(fs::temp_directory_path() / ("shardrt_safetensors_" + std::to_string(::getpid()) + "_" +
                                          ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void append(std::string& s, const void* p, size_t n) { s.append(static_cast<const char*>(p), n); }

// A file: length, header (padded with spaces to a multiple of 8, as the reference writer
// does, unless `pad` is false), data.
std::string file_bytes(const std::string& header, const std::string& data, bool pad = true) {
  std::string h = header;
  while (pad && h.size() % 8) h += ' ';
  std::string out;
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) out += char((n >> (8 * i)) & 0xff);
  return out + h + data;
}

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// A well-formed file with several dtypes; returns its bytes.
std::string good_file() {
  std::string data;
  const float f32[6] = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, -7.f};
  append(data, f32, sizeof f32);                       // [0, 24)
  const uint16_t f16[2] = {0x3c00, 0xc000};            // 1.0, -2.0
  append(data, f16, sizeof f16);                       // [24, 28)
  const uint16_t bf16[2] = {0x3f80, 0x4040};           // 1.0, 3.0
  append(data, bf16, sizeof bf16);                     // [28, 32)
  const int64_t i64[3] = {-1, 0, 1234567890123};
  append(data, i64, sizeof i64);                       // [32, 56)
  const float scalar = 42.f;
  append(data, &scalar, 4);                            // [56, 60)
  const std::string header =
      R"({"__metadata__":{"format":"pt"},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("h":{"dtype":"F16","shape":[2],"data_offsets":[24,28]},)"
      R"("b":{"dtype":"BF16","shape":[1,2],"data_offsets":[28,32]},)"
      R"("i":{"dtype":"I64","shape":[3],"data_offsets":[32,56]},)"
      R"("s":{"dtype":"F32","shape":[],"data_offsets":[56,60]},)"
      R"("e":{"dtype":"F32","shape":[0,4],"data_offsets":[60,60]}})";
  return file_bytes(header, data);
}

}  // namespace

TEST(Safetensors, ReadsEveryDtypeAndShape) {
  TempDir tmp;
  const fs::path& d = tmp.path;
  write(d / "m.safetensors", good_file());
  SafetensorsFile f((d / "m.safetensors").string());
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "b", "e", "h", "i", "s"}));
  EXPECT_EQ(f.metadata().at("format"), "pt");

  const Tensor& a = f.get("a");
  EXPECT_EQ(a.dtype(), DType::F32);
  EXPECT_EQ(a.dims(), (Dims{2, 3}));
  const float want_a[6] = {1.5f, -2.f, 3.25f, 0.f, 1e-3f, -7.f};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(a.data<float>()[i], want_a[i]);  // bytes copied exactly

  const Tensor& h = f.get("h");
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(h.get_f(0), 1.0);
  EXPECT_EQ(h.get_f(1), -2.0);
  const Tensor& b = f.get("b");
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_EQ(b.dims(), (Dims{1, 2}));
  EXPECT_EQ(b.get_f(0), 1.0);
  EXPECT_EQ(b.get_f(1), 3.0);
  const Tensor& i = f.get("i");
  EXPECT_EQ(i.dtype(), DType::I64);
  EXPECT_EQ(i.to_i64_vector(), (std::vector<int64_t>{-1, 0, 1234567890123}));
  EXPECT_EQ(f.get("s").dims(), Dims{});
  EXPECT_EQ(f.get("s").data<float>()[0], 42.f);
  EXPECT_EQ(f.get("e").dims(), (Dims{0, 4}));
  EXPECT_EQ(f.get("e").numel(), 0);

  std::string err = error_of([&] { f.get("nope"); });
  EXPECT_NE(err.find("m.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("nope"), std::string::npos) << err;
}

TEST(Safetensors, TensorsOutliveTheFileObject) {
  TempDir tmp;
  const fs::path& d = tmp.path;
  write(d / "m.safetensors", good_file());
  Tensor a;
  {
    SafetensorsFile f((d / "m.safetensors").string());
    a = f.get("a");
  }
  fs::remove(d / "m.safetensors");  // the mapping keeps the data
  EXPECT_EQ(a.data<float>()[2], 3.25f);
}

TEST(Safetensors, MisalignedDataIsCopiedNotMisread) {
  // An unpadded 41-byte header puts the data at an odd address in the mapping.
  TempDir tmp;
  const fs::path& d = tmp.path;
  const float v[2] = {0.5f, -0.25f};
  std::string data;
  append(data, v, sizeof v);
  const std::string header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NE(header.size() % 4, 0u);
  write(d / "m.safetensors", file_bytes(header, data, /*pad=*/false));
  SafetensorsFile f((d / "m.safetensors").string());
  const Tensor& x = f.get("x");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.raw()) % 4, 0u);
  EXPECT_EQ(x.data<float>()[0], 0.5f);
  EXPECT_EQ(x.data<float>()[1], -0.25f);
}

TEST(Safetensors, TruncatedFilesAreRefused) {
  TempDir tmp;
  const fs::path& d = tmp.path;
  const std::string bytes = good_file();
  // Cut inside the data: a tensor that reaches past the end ('e' or 's') is named.
  write(d / "cut_data.safetensors", bytes.substr(0, bytes.size() - 2));
  std::string err = error_of([&] { SafetensorsFile((d / "cut_data.safetensors").string()); });
  EXPECT_NE(err.find("cut_data.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("tensor '"), std::string::npos) << err;
  EXPECT_NE(err.find("outside the data section"), std::string::npos) << err;
  // Cut inside the header.
  write(d / "cut_header.safetensors", bytes.substr(0, 40));
  err = error_of([&] { SafetensorsFile((d / "cut_header.safetensors").string()); });
  EXPECT_NE(err.find("cut_header.safetensors"), std::string::npos) << err;
  EXPECT_NE(err.find("header length"), std::string::npos) << err;
  // Shorter than the length field.
  write(d / "tiny.safetensors", bytes.substr(0, 5));
  err = error_of([&] { SafetensorsFile((d / "tiny.safetensors").string()); });
  EXPECT_NE(err.find("tiny.safetensors"), std::string::npos) << err;
  // Missing file.
  err = error_of([&] { SafetensorsFile((d / "absent.safetensors").string()); });
  EXPECT_NE(err.find("absent.safetensors"), std::string::npos) << err;
}

TEST(Safetensors, CorruptedHeadersAreRefused) {
  TempDir tmp;
  const fs::path& d = tmp.path;
  const std::string data(24, '\0');
  struct Case {
    const char* header;
    const char* expect;  // in the message, besides the file name
  };
  const Case cases[] = {
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", "'w'"},        // size != shape
      {R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,28]}})", "'w'"},        // past the end
      {R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", "'w'"},           // begin > end
      {R"({"w":{"dtype":"F32","shape":[-1,6],"data_offsets":[0,24]}})", "'w'"},       // negative dim
      {R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,24]}})", "'w'"},  // overflow
      {R"({"w":{"dtype":"Q4","shape":[6],"data_offsets":[0,24]}})", "unsupported dtype Q4"},
      {R"({"w":{"dtype":"F32","shape":[6]}})", "'w'"},                                // no offsets
      {R"({"w":{"dtype":"F32","shape":[6],"data_offsets":[0]}})", "'w'"},             // one offset
      {R"({"w":[1,2,3]})", "'w'"},                                                    // not an object
      {R"({"w":{"dtype":"F32","shape":[6],"data_offsets":[0,24]})", "not valid JSON"},  // unclosed
      {R"([1,2])", "not a JSON object"},
  };
  int k = 0;
  for (const Case& c : cases) {
    const std::string name = "bad" + std::to_string(k++) + ".safetensors";
    write(d / name, file_bytes(c.header, data));
    std::string err = error_of([&] { SafetensorsFile((d / name).string()); });
    EXPECT_NE(err.find(name), std::string::npos) << c.header << " -> " << err;
    EXPECT_NE(err.find(c.expect), std::string::npos) << c.header << " -> " << err;
  }
  // A header length far beyond the file.
  std::string bytes = good_file();
  bytes[5] = '\x7f';
  write(d / "huge.safetensors", bytes);
  std::string err = error_of([&] { SafetensorsFile((d / "huge.safetensors").string()); });
  EXPECT_NE(err.find("huge.safetensors"), std::string::npos) << err;
}

TEST(Safetensors, CheckpointDirectorySingleAndSharded) {
  TempDir tmp;
  const fs::path& d = tmp.path;
  write(d / "model.safetensors", good_file());
  SafetensorsCheckpoint one(d.string());
  EXPECT_TRUE(one.contains("a"));
  EXPECT_EQ(one.get("i").to_i64_vector()[2], 1234567890123);

  fs::path s = d / "sharded";
  fs::create_directories(s);
  const float x = 1.f, y = 2.f;
  std::string dx, dy;
  append(dx, &x, 4);
  append(dy, &y, 4);
  write(s / "model-00001-of-00002.safetensors", file_bytes(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", dx));
  write(s / "model-00002-of-00002.safetensors", file_bytes(R"({"y":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", dy));
  write(s / "model.safetensors.index.json",
        R"({"metadata":{"total_size":8},"weight_map":{"x":"model-00001-of-00002.safetensors","y":"model-00002-of-00002.safetensors"}})");
  SafetensorsCheckpoint two(s.string());
  EXPECT_EQ(two.names(), (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(two.get("x").data<float>()[0], 1.f);
  EXPECT_EQ(two.get("y").data<float>()[0], 2.f);
  std::string err = error_of([&] { two.get("z"); });
  EXPECT_NE(err.find("'z'"), std::string::npos) << err;

  // An index naming a shard that is not there.
  write(s / "model.safetensors.index.json", R"({"weight_map":{"x":"model-00009-of-00009.safetensors"}})");
  err = error_of([&] { SafetensorsCheckpoint c(s.string()); });
  EXPECT_NE(err.find("model-00009-of-00009.safetensors"), std::string::npos) << err;

  fs::path empty = d / "empty";
  fs::create_directories(empty);
  err = error_of([&] { SafetensorsCheckpoint c(empty.string()); });
  EXPECT_NE(err.find("model.safetensors"), std::string::npos) << err;
}
