// Matching helpers for the transformer fusions (norms, attention, rotary): constants,
// commutative operands, and a small symbolic view of shape arithmetic so that patterns
// whose shapes come from Shape/Gather/Concat chains (dynamic batch and sequence axes) can
// still be proven to be what they look like.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "passes/pass.h"

namespace shardrt::pattern {

using pass_util::producer;
using pass_util::single_use;
using pass_util::const_scalar;

// One dimension as a symbolic expression: a known size, or "dimension `axis` of the value
// `v`" (canonicalised through shape-preserving producers), or a named symbol of a graph
// input ("batch"), or unknown (never equal to anything).
struct DimExpr {
  enum Kind { Known, Ref, Sym, Unknown } kind = Unknown;
  int64_t value = 0;
  const Value* v = nullptr;
  int64_t axis = 0;
  std::string sym;
  static DimExpr known(int64_t x) { DimExpr d; d.kind = Known; d.value = x; return d; }
  static DimExpr unknown() { return DimExpr{}; }
};
bool operator==(const DimExpr& a, const DimExpr& b);

// The canonical expression of dim `axis` (negative counts from the end) of `v`.
DimExpr dim_of(const Value* v, int64_t axis);
// The elements of a 1-D (or scalar) int64 value as dimension expressions (Reshape/Expand
// targets, Slice bounds): constants, Shape(X) slices, Gather, Concat, Unsqueeze/Squeeze,
// Cast, Div by a constant. nullopt when it cannot be followed.
std::optional<std::vector<DimExpr>> int_expr(const Value* v);
// A scalar integer that is constant or follows from known dims.
std::optional<int64_t> int_value(const Value* v);

// Whether dim `small` broadcasts onto `big` without changing it (small is 1 or equal to big),
// as far as can be proven at build time.
bool broadcasts_into(const DimExpr& small, const DimExpr& big);

// Weaker: not provably growing `big`. Used for masks and cos/sin, whose fused ops check
// the broadcast again at run time with concrete dims and fail loudly rather than compute
// something else (the exporters size these from the same batch/sequence lengths, through
// chains such as GatherND that cannot be followed here).
bool not_incompatible(const DimExpr& small, const DimExpr& big);

// `v`'s rank when its shape is known to the IR (shape_inferred); -1 otherwise.
int64_t rank_of(const Value* v);

// For a commutative binary node, sets `a` to the operand produced by `op` (and `b` to the
// other); false when neither is.
bool split_operands(Node* n, const std::string& op, Value*& a, Value*& b);

// Whether `n` reduces over exactly the last axis (attribute `axes`, or input 1 in the
// canonical form) with keepdims=1.
bool reduces_last_axis(const Node* n);

// Removes `nodes` (in any order) whose outputs have become unused, repeatedly.
void remove_unused(Graph& g, const std::vector<Node*>& nodes);

}  // namespace shardrt::pattern
