// Import of ONNX Runtime's collective contrib ops (domain com.microsoft): AllReduce,
// AllGather and ReduceScatter become shardrt.AllReduce/AllGather/ReduceScatter over the
// world group (ONNX Runtime's collectives span every rank of the job).
#pragma once
#include <string>

#include "onnx/import_internal.h"

namespace onnx {
class NodeProto;
}

namespace shardrt::onnx_detail {

bool is_contrib_collective(const std::string& domain, const std::string& op);
// Fills `n` (inputs, outputs, op, attributes) from `np`; returns "" or why the node cannot
// be imported.
std::string convert_contrib_collective(const onnx::NodeProto& np, NodeSpec& n);

}  // namespace shardrt::onnx_detail
