// Older op forms → the canonical IR form. Only forms that opsets 13 and newer can contain
// need converting (older models are refused): the Reduce ops' `axes` attribute (an input
// from opset 18, ReduceSum from 13), Split without `num_outputs` (before 18), DFT's `axis`
// attribute (an input from 20), GridSample's mode names (renamed in 20), RoiAlign's implicit
// coordinate mode (explicit from 16), and the deprecated Upsample and Scatter ops, which
// exporters still emit.
#include <set>

#include "onnx/import_internal.h"

namespace shardrt::onnx_detail {

std::string NodeSpec::describe() const {
  return "node '" + name + "' (" + op + ", opset " + std::to_string(opset) + ")";
}

namespace {

// Puts `t` at input position `pos` (after the existing ones, padding with omitted inputs).
void set_const_input(NodeSpec& n, size_t pos, Tensor t) {
  if (n.inputs.size() <= pos) n.inputs.resize(pos + 1);
  n.inputs[pos] = "";
  n.const_inputs[pos] = std::move(t);
}

bool has_input(const NodeSpec& n, size_t i) { return i < n.inputs.size() && !n.inputs[i].empty(); }

// axes attribute → input 1 (absent attribute: no input, i.e. reduce over every axis).
std::string axes_attr_to_input(NodeSpec& n) {
  auto it = n.attrs.find("axes");
  if (it == n.attrs.end()) return "";
  if (it->second.kind != Attr::Ints) return "attribute 'axes' must be a list of ints";
  if (has_input(n, 1)) return "has both an 'axes' attribute and an axes input";
  Tensor axes = Tensor::from_i64(it->second.ints);
  n.attrs.erase(it);
  set_const_input(n, 1, std::move(axes));
  return "";
}

}  // namespace

std::string canonicalize(NodeSpec& n) {
  static const std::set<std::string> reduce_ops = {
      "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
      "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"};
  if (reduce_ops.count(n.op) && n.version < 18) return axes_attr_to_input(n);
  if ((n.op == "ReduceSum" || n.op == "Squeeze" || n.op == "Unsqueeze") && n.version < 13)
    return axes_attr_to_input(n);

  if (n.op == "Split" && n.version < 18) {
    // Before 18, Split without a `split` input cuts into as many equal parts as it has
    // outputs; 18 spells that num_outputs.
    if (!has_input(n, 1)) n.attrs["num_outputs"] = Attr::of(int64_t(n.outputs.size()));
    return "";
  }
  if (n.op == "DFT" && n.version < 20) {
    int64_t axis = 1;  // DFT-17's default
    auto it = n.attrs.find("axis");
    if (it != n.attrs.end()) { axis = it->second.i; n.attrs.erase(it); }
    set_const_input(n, 2, Tensor::scalar_i64(axis));
    return "";
  }
  if (n.op == "GridSample" && n.version < 20) {
    auto it = n.attrs.find("mode");
    if (it != n.attrs.end()) {
      if (it->second.s == "bilinear") it->second.s = "linear";
      else if (it->second.s == "bicubic") it->second.s = "cubic";
    }
    return "";
  }
  if (n.op == "RoiAlign" && n.version < 16) {
    // RoiAlign-10 shifted output coordinates by half a pixel; 16 made that the explicit
    // "output_half_pixel" mode and defaulted to "half_pixel".
    n.attrs["coordinate_transformation_mode"] = Attr::of(std::string("output_half_pixel"));
    return "";
  }
  if (n.op == "GroupNormalization" && n.version < 21)
    return "the opset-18 form (scale and bias per group) is not supported; export with opset 21 "
           "or newer (scale and bias per channel)";
  if (n.op == "Upsample") {
    // Upsample(X, scales) samples output index i at input i / scale, i.e. Resize with
    // asymmetric coordinates (and floor rounding for nearest).
    std::string mode = "nearest";
    for (auto& [k, a] : n.attrs) {
      if (k == "mode") mode = a.s;
      else return "attribute '" + k + "' of Upsample is not supported";
    }
    if (mode != "nearest" && mode != "linear") return "Upsample mode '" + mode + "' is not supported";
    if (n.inputs.size() != 2) return "Upsample needs inputs X and scales";
    n.op = "Resize";
    n.inputs = {n.inputs[0], "", n.inputs[1]};
    n.attrs.clear();
    n.attrs["mode"] = Attr::of(mode);
    n.attrs["coordinate_transformation_mode"] = Attr::of(std::string("asymmetric"));
    if (mode == "nearest") n.attrs["nearest_mode"] = Attr::of(std::string("floor"));
    return "";
  }
  if (n.op == "Scatter") {  // deprecated alias of ScatterElements (same inputs and axis)
    n.op = "ScatterElements";
    return "";
  }
  return "";
}

}  // namespace shardrt::onnx_detail
