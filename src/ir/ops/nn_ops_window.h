// Window geometry shared by the shape rules and CPU kernels of Conv, ConvTranspose and the
// pools: resolves kernel size, strides, dilations, auto_pad and explicit pads into per-axis
// begin/end pads and output sizes, so both sides agree by construction.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace shardrt {

struct WindowGeom {
  std::vector<int64_t> kernel, strides, dilations, pad_begin, pad_end;
  std::vector<int64_t> in, out;  // spatial sizes; -1 where unknown (build time)
};

// Conv and pools. `in` holds the input's spatial sizes (-1 unknown), `kernel` the window
// (from kernel_shape or the weight's dims). `ceil_mode` only for pools. Returns an error or "".
std::string window_geom(const Node& n, const std::vector<int64_t>& in,
                        const std::vector<int64_t>& kernel, bool ceil_mode, WindowGeom& g);

// ConvTranspose: output_padding, output_shape and auto_pad as in ONNX's reference.
std::string conv_transpose_geom(const Node& n, const std::vector<int64_t>& in,
                                const std::vector<int64_t>& kernel, WindowGeom& g);

}  // namespace shardrt
