// libFuzzer target: the .npy reader (header dictionary, dtype descriptors, shapes, sizes).
#include "fuzz_common.h"
#include "shardrt/npy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  SHARDRT_FUZZ_EXPECTED_ERRORS((void)shardrt::parse_npy(bytes, "fuzz.npy"));
  return 0;
}
