// libFuzzer target: the tensor-parallel plan parser (JSON plans in parallelize_module's
// vocabulary) and the placement parser.
#include "dist/plan.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  SHARDRT_FUZZ_EXPECTED_ERRORS({
    auto plan = shardrt::dist::parse_plan_json(text, "fuzz.json");
    (void)plan;
  });
  SHARDRT_FUZZ_EXPECTED_ERRORS((void)shardrt::dist::parse_placement(text));
  return 0;
}
