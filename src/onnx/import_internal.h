// Pieces of the ONNX importer shared between its files (not part of the public API).
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "onnx/external_data.h"

namespace onnx {
class TensorProto;
class NodeProto;
}  // namespace onnx

namespace shardrt::onnx_detail {

// ---- tensor_proto.cpp
// Decodes a TensorProto; `ext` resolves external data. Throws UnsupportedModelError for a
// data type shardrt lacks, GraphError for malformed data (both naming the tensor).
Tensor tensor_from_proto(const onnx::TensorProto& t, ExternalDataFiles& ext);
// "float", "string", "uint16", ... for messages.
std::string onnx_type_name(int onnx_type);

// ---- opset_versions.cpp
struct OpVersionInfo {
  const char* op;
  std::vector<int> versions;  // since_versions, ascending
  int newest_accepted;        // newest version whose form equals the opset-21 form
  bool deprecated = false;
};
const OpVersionInfo* op_version_info(const std::string& op);  // null: not an ONNX op
// The version of the op a model of `opset` uses (0 when the op did not exist yet).
int op_version_at(const OpVersionInfo& info, int opset);

// ---- opset_canonicalize.cpp
// One ONNX node after conversion to the canonical IR form, before it joins the graph.
struct NodeSpec {
  std::string op, name;
  int opset = 0;    // the model's default-domain opset
  int version = 0;  // the op's since_version in that opset
  // Input value names ("" = omitted); inputs that conversion turned from attributes into
  // constants are in `const_inputs` (by position) instead.
  std::vector<std::string> inputs;
  std::map<size_t, Tensor> const_inputs;
  std::vector<std::string> outputs;  // "" = omitted
  std::map<std::string, Attr> attrs;
  std::string describe() const;  // "node 'n' (Op, opset 18)"
};
// Converts an older form of the op (by n.version) to its canonical form in place: attributes
// that newer opsets take as inputs become constant inputs, renamed or replaced ops get
// their current names. Returns "" or why the node cannot be converted (the node is then
// refused as unsupported).
std::string canonicalize(NodeSpec& n);

// ---- import_fold.cpp
// Evaluates `n` when its inputs are constants (or it is Shape/Size of a value with known
// dims) and its outputs are small; then removes it and makes its outputs constants.
// `n` must already be inferred. Returns whether it folded.
bool fold_if_constant(Graph& g, Node& n);

}  // namespace shardrt::onnx_detail
