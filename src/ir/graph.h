// The IR: a typed SSA graph. Values are produced by at most one node (or are graph inputs
// or constants); nodes are kept in topological order. Op types use ONNX names and
// semantics; shardrt's fused ops carry the prefix "shardrt." (e.g. "shardrt.Linear").
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "shardrt/dtype.h"
#include "shardrt/tensor.h"

namespace shardrt {

// One dimension: a known size, or a symbol ("batch", "seq", or "?" when anonymous).
struct Dim {
  int64_t value = -1;
  std::string sym;
  Dim() = default;
  Dim(int64_t v) : value(v) {}  // NOLINT: implicit from a size on purpose
  static Dim symbol(std::string s) { Dim d; d.sym = std::move(s); return d; }
  bool known() const { return value >= 0; }
  bool operator==(const Dim& o) const { return known() ? value == o.value : (!o.known() && sym == o.sym && sym != "?"); }
  std::string str() const { return known() ? std::to_string(value) : (sym.empty() ? "?" : sym); }
};
using Shape = std::vector<Dim>;
std::string shape_str(const Shape& s);
bool shape_known(const Shape& s);
Dims shape_dims(const Shape& s);  // throws unless known
Shape dims_shape(const Dims& d);

struct Graph;
struct Node;

struct Value {
  std::string name;
  DType dtype = DType::Undefined;
  Shape shape;
  bool shape_inferred = false;      // shape/dtype were set (by import or inference)
  Node* producer = nullptr;         // null for graph inputs and constants
  std::vector<Node*> users;         // one entry per use (a node using it twice appears twice)
  std::shared_ptr<Tensor> constant;  // set for weights and folded values
  bool is_constant() const { return constant != nullptr; }
};

struct Attr {
  enum Kind { Int, Float, String, Ints, Floats, Strings, TensorV } kind = Int;
  int64_t i = 0;
  float f = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::vector<std::string> strings;
  std::shared_ptr<Tensor> t;
  static Attr of(int64_t v) { Attr a; a.kind = Int; a.i = v; return a; }
  static Attr of(float v) { Attr a; a.kind = Float; a.f = v; return a; }
  static Attr of(std::string v) { Attr a; a.kind = String; a.s = std::move(v); return a; }
  static Attr of(std::vector<int64_t> v) { Attr a; a.kind = Ints; a.ints = std::move(v); return a; }
  static Attr of(std::vector<float> v) { Attr a; a.kind = Floats; a.floats = std::move(v); return a; }
  static Attr of_strings(std::vector<std::string> v) { Attr a; a.kind = Strings; a.strings = std::move(v); return a; }
  static Attr of(Tensor v) { Attr a; a.kind = TensorV; a.t = std::make_shared<Tensor>(std::move(v)); return a; }
  std::string str() const;
};

struct Node {
  std::string op;    // "MatMul", "shardrt.Attention", ...
  std::string name;  // unique within the graph
  std::vector<Value*> inputs;   // nullptr marks an omitted optional input
  std::vector<Value*> outputs;  // nullptr marks an omitted optional output
  std::map<std::string, Attr> attrs;
  int opset = 0;          // opset of the model it came from (0: built in code)
  std::string fused_from;  // what a fusion pass replaced, for `inspect`
  bool dead = false;       // removed; dropped by Graph::compact()

  bool has_attr(const std::string& k) const { return attrs.count(k) != 0; }
  int64_t attr_i(const std::string& k, int64_t dflt) const;
  int64_t attr_i(const std::string& k) const;  // throws naming the node when missing
  float attr_f(const std::string& k, float dflt) const;
  std::string attr_s(const std::string& k, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const std::string& k, std::vector<int64_t> dflt = {}) const;
  std::vector<float> attr_floats(const std::string& k, std::vector<float> dflt = {}) const;
  const Tensor* attr_t(const std::string& k) const;
  // Input i, or null when absent/omitted.
  Value* in(size_t i) const { return i < inputs.size() ? inputs[i] : nullptr; }
  Value* out(size_t i) const { return i < outputs.size() ? outputs[i] : nullptr; }
  std::string describe() const;  // "node 'name' (Op)" for errors
};

struct Graph {
  std::string name = "graph";
  std::vector<std::unique_ptr<Value>> values;
  std::vector<std::unique_ptr<Node>> nodes;  // topological order after sort()
  std::vector<Value*> inputs;
  std::vector<Value*> outputs;

  Graph() = default;
  Graph(const Graph&) = delete;
  Graph& operator=(const Graph&) = delete;
  Graph(Graph&&) = default;
  Graph& operator=(Graph&&) = default;

  // Creates a value with a unique name (a suffix is added when `name` is taken).
  Value* add_value(const std::string& name, DType t = DType::Undefined, Shape s = {});
  Value* add_input(const std::string& name, DType t, Shape s);
  Value* add_constant(const std::string& name, Tensor t);
  // Appends a node; its output values are created from `out_names` (empty name: omitted).
  Node* add_node(const std::string& op, const std::string& name, std::vector<Value*> ins,
                 const std::vector<std::string>& out_names, std::map<std::string, Attr> attrs = {});
  Value* find_value(const std::string& name) const;
  // Renames a value; false when the name is taken by another value.
  bool rename(Value* v, const std::string& name);

  void set_input(Node* n, size_t i, Value* v);        // keeps users lists right
  void replace_all_uses(Value* from, Value* to);      // graph outputs included
  void remove_node(Node* n);                           // detaches inputs, marks dead
  void compact();                                      // drops dead nodes and unused values
  void sort();                                         // topological order; throws on a cycle
  bool is_output(const Value* v) const;
  std::string unique_name(const std::string& base);

  std::string print() const;  // human-readable listing
  // Structural checks (SSA, users lists, order, schemas known, input counts); throws with
  // every problem listed.
  void verify() const;

 private:
  std::map<std::string, Value*> by_name_;
  std::map<std::string, int> node_names_;
  int64_t counter_ = 0;
};

}  // namespace shardrt
