// Resize's output-size rule, shared by the shape rule and the CPU kernel.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace shardrt {

// Given the input dims and the scales/sizes values (either may be empty: absent), fills
// `out` (output dims) and `scale` (per-axis scale factors over all axes, 1 where not resized)
// following ONNX: axes attribute, keep_aspect_ratio_policy for sizes, floor(in * scale) for
// scales. Returns an error or "".
std::string resize_output(const Node& n, const std::vector<int64_t>& in, const std::vector<double>& scales,
                          const std::vector<int64_t>& sizes, std::vector<int64_t>& out,
                          std::vector<double>& scale);

}  // namespace shardrt
