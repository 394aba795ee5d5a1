// Shared by the libFuzzer targets: the errors shardrt raises for bad input are expected;
// any other exception escaping (std::out_of_range, a JSON library error, bad_alloc from a
// size read off the input) is a finding, so it is left uncaught and the fuzzer reports it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "ir/op_schema.h"
#include "shardrt/engine.h"

#define SHARDRT_FUZZ_EXPECTED_ERRORS(body) \
  try {                                    \
    body;                                  \
  } catch (const shardrt::Error&) {        \
  } catch (const shardrt::GraphError&) {   \
  }
