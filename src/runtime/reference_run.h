// Runs an IR graph node by node on the CPU kernels with fresh allocations: the simple
// reference path used by constant folding tests and as an oracle for the engine.
#pragma once
#include <map>
#include <string>

#include "ir/graph.h"

namespace shardrt {

std::map<std::string, Tensor> run_graph_reference(const Graph& g, const std::map<std::string, Tensor>& inputs);

}  // namespace shardrt
