// com.microsoft AllReduce / AllGather / ReduceScatter → shardrt's collective ops.
// ONNX Runtime's forms: AllReduce (sum, no attributes), AllGather (attrs group_size, axis:
// default 0), ReduceScatter (group_size, axis: default 0; sum); each takes a variadic list
// of tensors, which shardrt imports when it holds one tensor. `group_size` (the number of
// ranks of the job) is not kept: the world communicator the engine runs with decides.
#include "onnx/contrib_collectives.h"

#include "onnx/onnx.pb.h"

namespace shardrt::onnx_detail {

bool is_contrib_collective(const std::string& domain, const std::string& op) {
  return domain == "com.microsoft" && (op == "AllReduce" || op == "AllGather" || op == "ReduceScatter");
}

std::string convert_contrib_collective(const onnx::NodeProto& np, NodeSpec& n) {
  const std::string op = np.op_type();
  if (np.input_size() != 1 || np.output_size() != 1)
    return "com.microsoft." + op + " with " + std::to_string(np.input_size()) +
           " tensors: shardrt imports it with one tensor per node";
  n.inputs = {np.input(0)};
  n.outputs = {np.output(0)};
  n.op = "shardrt." + op;
  n.attrs["group"] = Attr::of(std::string("world"));
  if (op != "AllGather") n.attrs["reduce"] = Attr::of(std::string("sum"));
  if (op != "AllReduce") n.attrs["axis"] = Attr::of(int64_t(0));
  for (auto& a : np.attribute()) {
    if (a.type() != onnx::AttributeProto::INT)
      return "attribute '" + a.name() + "' of com.microsoft." + op + " is not an int";
    if (a.name() == "axis" && op != "AllReduce") n.attrs["axis"] = Attr::of(int64_t(a.i()));
    else if (a.name() == "group_size" && op != "AllReduce") {
      if (a.i() < 1) return "group_size " + std::to_string(a.i()) + " must be >= 1";
    } else {
      return "attribute '" + a.name() + "' of com.microsoft." + op + " is not supported";
    }
  }
  return "";
}

}  // namespace shardrt::onnx_detail
