#include "ir/ops/nn_ops_window.h"

namespace shardrt {

namespace {

std::string fill_common(const Node& n, size_t ns, const std::vector<int64_t>& kernel, WindowGeom& g) {
  g.kernel = kernel;
  if (g.kernel.size() != ns)
    return "kernel has " + std::to_string(g.kernel.size()) + " dims, input has " + std::to_string(ns) + " spatial dims";
  g.strides = n.attr_ints("strides", std::vector<int64_t>(ns, 1));
  g.dilations = n.attr_ints("dilations", std::vector<int64_t>(ns, 1));
  if (g.strides.size() != ns) return "strides must have " + std::to_string(ns) + " values";
  if (g.dilations.size() != ns) return "dilations must have " + std::to_string(ns) + " values";
  for (size_t i = 0; i < ns; ++i) {
    if (g.strides[i] < 1) return "strides must be positive";
    if (g.dilations[i] < 1) return "dilations must be positive";
    if (g.kernel[i] < 1) return "kernel dims must be positive";
  }
  g.pad_begin.assign(ns, 0);
  g.pad_end.assign(ns, 0);
  return "";
}

}  // namespace

std::string window_geom(const Node& n, const std::vector<int64_t>& in,
                        const std::vector<int64_t>& kernel, bool ceil_mode, WindowGeom& g) {
  const size_t ns = in.size();
  if (auto e = fill_common(n, ns, kernel, g); !e.empty()) return e;
  g.in = in;
  g.out.assign(ns, -1);
  const std::string ap = n.attr_s("auto_pad", "NOTSET");
  std::vector<int64_t> pads = n.attr_ints("pads", std::vector<int64_t>(2 * ns, 0));
  if (ap == "NOTSET" && pads.size() != 2 * ns) return "pads must have " + std::to_string(2 * ns) + " values";
  if (ap != "NOTSET" && ap != "SAME_UPPER" && ap != "SAME_LOWER" && ap != "VALID")
    return "unknown auto_pad '" + ap + "'";
  for (size_t i = 0; i < ns; ++i) {
    const int64_t ek = (g.kernel[i] - 1) * g.dilations[i] + 1;  // effective window
    const int64_t s = g.strides[i];
    if (ap == "NOTSET") {
      g.pad_begin[i] = pads[i];
      g.pad_end[i] = pads[i + ns];
      if (pads[i] < 0 || pads[i + ns] < 0) return "pads must be non-negative";
    }
    if (in[i] < 0) continue;
    if (ap == "SAME_UPPER" || ap == "SAME_LOWER") {
      const int64_t out = (in[i] + s - 1) / s;
      const int64_t total = std::max<int64_t>(0, (out - 1) * s + ek - in[i]);
      g.pad_begin[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
      g.pad_end[i] = total - g.pad_begin[i];
      g.out[i] = out;
      continue;
    }
    const int64_t span = in[i] + g.pad_begin[i] + g.pad_end[i] - ek;
    if (span < 0) return "window of size " + std::to_string(ek) + " exceeds the padded input (" + std::to_string(in[i] + g.pad_begin[i] + g.pad_end[i]) + ")";
    int64_t out = ceil_mode ? (span + s - 1) / s + 1 : span / s + 1;
    // With ceil_mode the last window must start inside the input or its left padding.
    if (ceil_mode && (out - 1) * s >= in[i] + g.pad_begin[i]) --out;
    g.out[i] = out;
  }
  return "";
}

std::string conv_transpose_geom(const Node& n, const std::vector<int64_t>& in,
                                const std::vector<int64_t>& kernel, WindowGeom& g) {
  const size_t ns = in.size();
  if (auto e = fill_common(n, ns, kernel, g); !e.empty()) return e;
  g.in = in;
  g.out.assign(ns, -1);
  const std::string ap = n.attr_s("auto_pad", "NOTSET");
  if (ap != "NOTSET" && ap != "SAME_UPPER" && ap != "SAME_LOWER" && ap != "VALID")
    return "unknown auto_pad '" + ap + "'";
  std::vector<int64_t> opad = n.attr_ints("output_padding", std::vector<int64_t>(ns, 0));
  if (opad.size() == 2 * ns) opad.resize(ns);  // some exporters write begin/end pairs
  if (opad.size() != ns) return "output_padding must have " + std::to_string(ns) + " values";
  std::vector<int64_t> oshape = n.attr_ints("output_shape");
  if (oshape.size() == ns + 2) oshape.erase(oshape.begin(), oshape.begin() + 2);  // full shape
  if (!oshape.empty() && oshape.size() != ns) return "output_shape must have " + std::to_string(ns) + " values";
  const bool have_pads = n.has_attr("pads");
  std::vector<int64_t> pads = n.attr_ints("pads", std::vector<int64_t>(2 * ns, 0));
  if (pads.size() != 2 * ns) return "pads must have " + std::to_string(2 * ns) + " values";
  const bool same = (ap == "SAME_UPPER" || ap == "SAME_LOWER") && !have_pads;
  for (size_t i = 0; i < ns; ++i) {
    const int64_t ek = (g.kernel[i] - 1) * g.dilations[i] + 1;
    if (!same) {
      g.pad_begin[i] = ap == "VALID" ? 0 : pads[i];
      g.pad_end[i] = ap == "VALID" ? 0 : pads[i + ns];
      if (!oshape.empty()) g.out[i] = oshape[i];
      else if (in[i] >= 0) g.out[i] = g.strides[i] * (in[i] - 1) + opad[i] + ek - g.pad_begin[i] - g.pad_end[i];
      continue;
    }
    if (in[i] < 0) continue;
    const int64_t out = oshape.empty() ? in[i] * g.strides[i] : oshape[i];
    const int64_t total = g.strides[i] * (in[i] - 1) + opad[i] + ek - out;
    g.pad_begin[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
    g.pad_end[i] = total - g.pad_begin[i];
    g.out[i] = out;
  }
  for (size_t i = 0; i < ns; ++i)
    if (g.out[i] == 0 || g.out[i] < -1) return "output size along spatial axis " + std::to_string(i) + " is not positive";
  return "";
}

}  // namespace shardrt
