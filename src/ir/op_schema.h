// Each op's schema and shape rule, in one place. The same rule serves build time (symbolic
// dims, values only for constants) and run time (concrete dims, every input's value).
#pragma once
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace shardrt {

// Thrown for a model or graph problem; the message names the node.
struct GraphError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct InferCtx {
  const Node& node;
  std::vector<DType> in_types;          // Undefined for an omitted input
  std::vector<Shape> in_shapes;
  std::vector<const Tensor*> in_values;  // null where the value is not known
  std::vector<DType> out_types;          // to be filled by the rule
  std::vector<Shape> out_shapes;

  explicit InferCtx(const Node& n) : node(n) {}
  size_t num_inputs() const { return in_types.size(); }
  bool has(size_t i) const { return i < in_types.size() && in_types[i] != DType::Undefined; }
  const Tensor* value(size_t i) const { return i < in_values.size() ? in_values[i] : nullptr; }
  int64_t rank(size_t i) const { return int64_t(in_shapes.at(i).size()); }
  void set(size_t out, DType t, Shape s) {
    if (out_types.size() <= out) { out_types.resize(out + 1); out_shapes.resize(out + 1); }
    out_types[out] = t;
    out_shapes[out] = std::move(s);
  }
  // Throws a GraphError naming the node.
  [[noreturn]] void fail(const std::string& msg) const;
  // Normalises a possibly negative axis against `rank`, failing with the node's name.
  int64_t axis(int64_t a, int64_t rank) const;
};

struct OpSchema {
  std::string name;
  int min_inputs = 0, max_inputs = 0;
  int min_outputs = 1, max_outputs = 1;
  std::vector<std::string> attrs;  // attribute names it understands
  std::function<void(InferCtx&)> infer;
  // Optional extra check of attribute values at import (returns "" when fine).
  std::function<std::string(const Node&)> validate;
  // Whether output shapes depend on the values (not just shapes) of non-constant inputs:
  // such ops get a fresh allocation at run time instead of an arena slot when needed.
  bool data_dependent_shape = false;
  // Whether the op keeps state across the runs of an execution context (the KV cache of
  // shardrt.CachedAttention): such a node is never evaluated outside a context (the
  // builder's sizing run takes its outputs' sizes from the shape rule alone).
  bool stateful = false;
};

void register_schema(OpSchema s);
const OpSchema* find_schema(const std::string& op);
std::vector<std::string> all_schema_names();

// Runs the node's shape rule over the graph's current value types/shapes and constants,
// and writes the results to its outputs. Throws GraphError naming the node.
void infer_node(Graph& g, Node& n);
// Runs inference over every node in order.
void infer_graph(Graph& g);

// Shape helpers shared by rules.
Shape broadcast_shapes(const InferCtx& c, const Shape& a, const Shape& b);
Dim dim_mul(const Dim& a, const Dim& b);
Dim dim_unknown(const std::string& hint = "?");

}  // namespace shardrt
