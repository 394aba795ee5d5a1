// Helpers of the command line that tests reach: --shapes parsing, output file names.
#pragma once
#include <map>
#include <string>

#include "shardrt/engine.h"

namespace shardrt {

// "ids:1x16/4x128/8x512,mask:1x16" → profiles (a single shape means min = opt = max).
// A scalar is written as an empty dims list ("x:").
std::map<std::string, ShapeProfile> parse_shapes(const std::string& spec);
// Output names become file names: bytes other than A-Z a-z 0-9 '_' '-' '.' are written as
// %XX (upper-case hex), as is a leading '.'; an empty name is "%". Reversible.
std::string escape_file_name(const std::string& name);

}  // namespace shardrt
