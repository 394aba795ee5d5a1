// libFuzzer target: the engine file loader on arbitrary bytes, with the checksum check
// off (otherwise nearly every input stops there) so that the header, bounds and graph
// checks behind it are reached; a loaded engine is also described (`inspect`).
#include <cstring>
#include <memory>

#include "build/engine_file.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A private copy: the engine borrows its weights from the buffer it is given.
  std::shared_ptr<void> buf(::operator new(size ? size : 1), [](void* p) { ::operator delete(p); });
  if (size) std::memcpy(buf.get(), data, size);
  SHARDRT_FUZZ_EXPECTED_ERRORS({
    auto impl = shardrt::load_engine_bytes(buf, size, "fuzz.engine", false);
    shardrt::Engine e(std::move(impl));
    (void)e.inspect(false);
    (void)e.inspect(true);
  });
  return 0;
}
