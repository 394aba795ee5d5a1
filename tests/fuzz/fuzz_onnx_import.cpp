// libFuzzer target: the ONNX importer on arbitrary bytes (protobuf parsing, opset checks,
// initializers, shape inference, import-time folding). External data is looked up in an
// empty folder, so no file outside it is ever read.
#include <filesystem>

#include "fuzz_common.h"
#include "onnx/importer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    auto d = std::filesystem::temp_directory_path() / "shardrt_fuzz_empty";
    std::filesystem::create_directories(d);
    return d.string();
  }();
  std::string bytes(reinterpret_cast<const char*>(data), size);
  SHARDRT_FUZZ_EXPECTED_ERRORS(shardrt::import_onnx_model_bytes(bytes, dir, "fuzz.onnx"));
  return 0;
}
