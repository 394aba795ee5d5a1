// Helpers shared by the shape/data-movement family: symbolic evaluation of small integer
// tensors (the Shape -> Gather -> Concat -> Reshape chains exporters produce), and index
// arithmetic used by both the shape rules and the CPU kernels (Slice, Split).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/op_schema.h"

namespace shardrt::shape_ops {

// One integer of a shape-like tensor: a known value (negative allowed, e.g. Reshape's -1)
// or a symbol naming a dimension ("batch", "batch*seq"; "?" when anonymous).
struct SymInt {
  int64_t v = 0;
  std::string sym;
  bool known() const { return sym.empty(); }
  static SymInt of(int64_t x) { return SymInt{x, {}}; }
  static SymInt of(const Dim& d) { return d.known() ? of(d.value) : SymInt{0, d.str()}; }
};
using SymVec = std::vector<SymInt>;

// The integer value of input i when known (always at run time; constants at build time).
std::optional<std::vector<int64_t>> ints_of(const InferCtx& c, size_t i);
// The value of input i, following its producers at build time through shape arithmetic
// (Shape, Gather, Concat, Slice, Unsqueeze, Squeeze, Cast, Add/Sub/Mul/Div, ...) so that
// symbolic dims survive. nullopt when it cannot be determined.
std::optional<SymVec> sym_of(const InferCtx& c, size_t i);
// All entries known: their values.
std::optional<std::vector<int64_t>> all_known(const std::optional<SymVec>& v);

// A SymInt used as a dimension (fails on a negative known value).
Dim to_dim(const InferCtx& c, const SymInt& s);
// a + b for dims ("seq+1" when symbolic).
Dim dim_add(const Dim& a, const Dim& b);
// An output rank taken from the (known) length of a shape-like input whose values are not
// known: fails when it is negative or beyond kMaxRank, so that a model cannot make a
// shape rule allocate billions of dims.
constexpr int64_t kMaxRank = 1024;
size_t rank_from_length(const InferCtx& c, int64_t n);

// Slice geometry of one axis, following ONNX's clamping rules.
struct SliceAxis {
  int64_t start = 0, step = 1, count = 0;
};
// Per-axis geometry for the concrete input dims (axes not named: whole axis, step 1).
// Returns an error string on invalid parameters.
std::string slice_geometry(const Dims& dims, const std::vector<int64_t>& starts,
                           const std::vector<int64_t>& ends, const std::vector<int64_t>& axes,
                           const std::vector<int64_t>& steps, std::vector<SliceAxis>& out);
SliceAxis slice_axis(int64_t dim, int64_t start, int64_t end, int64_t step);

// Split sizes along an axis of length `dim` for `n` outputs (ONNX 18: the last chunk may
// be smaller). Empty on failure.
std::vector<int64_t> equal_split(int64_t dim, int64_t n);

// Registration of the parts of the family.
void register_shape_reshape_schemas();  // Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Identity, Expand, Tile
void register_shape_index_schemas();    // Concat, Split, Slice, Gather*, Scatter*, Compress, NonZero, OneHot, ReverseSequence
void register_shape_create_schemas();   // Shape, Size, Range, ConstantOfShape, Constant, EyeLike, Trilu, Dropout, Pad, DepthToSpace, SpaceToDepth

// Schema helper: name, input/output counts, attribute names, rule.
void add_schema(const std::string& name, int min_in, int max_in, int min_out, int max_out,
                std::vector<std::string> attrs, std::function<void(InferCtx&)> infer,
                bool data_dependent = false, std::function<std::string(const Node&)> validate = {});

}  // namespace shardrt::shape_ops
