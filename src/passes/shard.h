// The sharding pass: turns a (fused, globally shaped) graph into rank `tp_rank`'s part of a
// tensor-parallel graph under a plan. It propagates placements through the graph, slices
// every weight for the rank (torch.chunk semantics), rewrites head counts and reshape
// constants, and inserts the collectives (shardrt.AllGather / AllReduce / ReduceScatter,
// group "tp") the placements need. An impossible plan is refused with shardrt::Error naming
// the node, the tensor and the sizes.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "dist/plan.h"
#include "ir/graph.h"

namespace shardrt {

struct ShardResult {
  // Placement of every value the pass reasoned about, by value name (local graph names).
  std::map<std::string, dist::Placement> placements;
  std::map<std::string, dist::Placement> inputs, outputs;  // graph bindings' placements
  // Global (unsharded) dims of each graph input and output, as the plan sees them.
  std::map<std::string, std::vector<std::string>> global_dims;
  std::vector<std::string> notes;        // decisions, one line each (which style, fallbacks)
  std::vector<std::string> collectives;  // "AllReduce 'n' (group tp) fp32[2,64] 512 bytes"
  std::vector<std::string> matched;      // "node 'x' (shardrt.Linear): colwise(...) from 'pattern'"
  std::string report() const;            // all of the above, for inspect and the CLI
};

// Shards `g` in place. Group shapes (dist::ScopedGroupShapes) should be set by the caller so
// that collectives get concrete shapes. tp == 1 leaves the graph unchanged. `dim0_varies`:
// dim 0 of the inputs is split further at run time (data parallel), so gathers along it do
// not fix its size.
ShardResult shard_graph(Graph& g, const dist::ShardingPlan& plan, int tp, int tp_rank, bool dim0_varies = false);

// Candidate names a plan pattern is matched against for node `n`: its name, its name with
// '/' as '.', its constant inputs' names and those without ".weight"/".bias".
std::vector<std::string> plan_names(const Node& n);

}  // namespace shardrt
