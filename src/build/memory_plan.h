// Memory planning: intermediates share one arena; two values share bytes only when their
// lifetimes (first definition to last use, in node order) do not overlap.
#pragma once
#include <map>
#include <string>

#include "runtime/engine_impl.h"

namespace shardrt {

// `bytes` gives the planned size of each intermediate value by name (from a run at the
// largest profile shapes); values missing from it get no slot (allocated at run time).
MemoryPlan plan_memory(const Graph& g, const std::map<std::string, size_t>& bytes);

}  // namespace shardrt
