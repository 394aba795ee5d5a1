// ONNX importer: an ONNX model (opsets 13 and newer of the default domain) becomes an IR
// Graph in canonical form (older op forms converted, constants folded into Values), with
// every value typed and shaped by infer_graph.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
#include "ir/op_schema.h"

namespace onnx {
class TensorProto;
class ModelProto;
}  // namespace onnx

namespace shardrt {

// The oldest and newest default-domain opsets the importer accepts. Ops whose form changed
// after opset 21 in more than the types they accept are refused per op (see
// opset_versions.cpp).
constexpr int kOnnxMinOpset = 13;
constexpr int kOnnxMaxOpset = 25;

// Thrown when the model is well formed but uses something shardrt does not support (an op,
// an opset, an attribute value, a data type, a subgraph, another domain). `problems` holds
// one entry per offending node or item; the message lists all of them.
struct UnsupportedModelError : GraphError {
  struct Problem {
    std::string op;      // op type, or "" for a model-level problem (opset, input type)
    std::string detail;  // e.g. "node 'attn/If_3' (If, opset 18): op is not supported"
  };
  std::vector<Problem> problems;
  UnsupportedModelError(const std::string& msg, std::vector<Problem> p)
      : GraphError(msg), problems(std::move(p)) {}
};

// Reads the file (and external data relative to its folder). Throws GraphError (a corrupt
// or truncated file, naming it) or UnsupportedModelError.
Graph import_onnx_file(const std::string& path);
// `base_dir` is where external data files are looked up; `name` names the model in errors.
Graph import_onnx_model_bytes(const std::string& bytes, const std::string& base_dir,
                              const std::string& name);
// Same, from an already parsed model; initializers' raw_data may be moved out of it.
Graph import_onnx_model(onnx::ModelProto& model, const std::string& base_dir,
                        const std::string& name);

// One TensorProto as a host Tensor: raw_data, the typed fields, or external data (relative
// to `base_dir`; large external tensors borrow a memory mapping of the file).
Tensor tensor_from_proto(const onnx::TensorProto& t, const std::string& base_dir);

// The default-domain opset a model imports (0 when it imports none).
int onnx_model_opset(const onnx::ModelProto& model);

}  // namespace shardrt
