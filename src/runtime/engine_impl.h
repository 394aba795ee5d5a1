// What an Engine holds: the optimised graph (constants borrowed from the mapped file when
// loaded), bindings with profiles, the memory plan, and the build settings.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "shardrt/engine.h"

namespace shardrt {

// Arena slot of one intermediate value: planned for the largest shapes of the profiles.
struct MemorySlot {
  size_t offset = 0;
  size_t bytes = 0;
};

struct MemoryPlan {
  size_t arena_bytes = 0;
  std::map<std::string, MemorySlot> slots;  // by value name; values without a slot allocate
  std::map<std::string, std::string> aliases;  // view op output -> the value it views
  size_t unplanned_bytes_sum = 0;              // what planning saved: sum of all slot sizes
};

struct Engine::Impl {
  std::unique_ptr<Graph> graph;
  std::vector<Binding> inputs, outputs;
  MemoryPlan memory;
  std::map<std::string, std::string> build_settings;  // printed by inspect, kept in the file
  std::shared_ptr<void> mapping;                       // keeps a loaded file mapped
  size_t weight_bytes = 0;
};

// Ops whose output is a view of input 0 (same bytes, other dims): the executor aliases.
bool is_view_op(const Node& n);

}  // namespace shardrt
