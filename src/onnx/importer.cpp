// ONNX ModelProto → IR Graph. Two phases: first every node is converted to its canonical
// form and checked against its op schema, collecting every problem (so a user sees all
// unsupported ops at once, before any weight is read); then initializers, inputs, constants
// and nodes become the graph, which infer_graph types and shapes.
#include "onnx/importer.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_map>

#include "ir/onnx_dtype.h"
#include "onnx/contrib_collectives.h"
#include "onnx/import_internal.h"
#include "onnx/onnx.pb.h"

namespace shardrt {

using onnx_detail::NodeSpec;
using Problem = UnsupportedModelError::Problem;

int onnx_model_opset(const onnx::ModelProto& model) {
  for (auto& o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") return int(o.version());
  return 0;
}

namespace {

bool is_default_domain(const std::string& d) { return d.empty() || d == "ai.onnx"; }

// Problems found while checking; `unsupported` ones make an UnsupportedModelError, any
// malformed one a plain GraphError.
struct Problems {
  std::vector<Problem> unsupported;
  std::vector<std::string> malformed;
  void add(const std::string& op, const std::string& detail) { unsupported.push_back({op, detail}); }
  void raise(const std::string& model) const {
    if (unsupported.empty() && malformed.empty()) return;
    std::string m = "ONNX model '" + model + "' cannot be imported:";
    for (auto& e : malformed) m += "\n  " + e;
    for (auto& p : unsupported) m += "\n  " + p.detail;
    if (!malformed.empty()) throw GraphError(m);
    throw UnsupportedModelError(m, unsupported);
  }
};

// AttributeProto → Attr. Returns "" or why it is not supported.
std::string convert_attr(const onnx::AttributeProto& a, onnx_detail::ExternalDataFiles& ext, Attr& out) {
  if (!a.ref_attr_name().empty()) return "attribute '" + a.name() + "' refers to a function attribute";
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::FLOAT: out = Attr::of(a.f()); return "";
    case A::INT: out = Attr::of(int64_t(a.i())); return "";
    case A::STRING: out = Attr::of(a.s()); return "";
    case A::FLOATS: out = Attr::of(std::vector<float>(a.floats().begin(), a.floats().end())); return "";
    case A::INTS: out = Attr::of(std::vector<int64_t>(a.ints().begin(), a.ints().end())); return "";
    case A::STRINGS: out = Attr::of_strings(std::vector<std::string>(a.strings().begin(), a.strings().end())); return "";
    case A::TENSOR:
      try {
        out = Attr::of(onnx_detail::tensor_from_proto(a.t(), ext));
      } catch (const GraphError& e) {
        return "attribute '" + a.name() + "': " + e.what();
      }
      return "";
    case A::GRAPH:
    case A::GRAPHS: return "attribute '" + a.name() + "' holds a subgraph (subgraphs are not supported yet)";
    default:
      return "attribute '" + a.name() + "' has a type shardrt does not support (" +
             A::AttributeType_Name(a.type()) + ")";
  }
}

// A Constant node's value. Returns "" or why it is not supported.
std::string constant_value(const onnx::NodeProto& n, onnx_detail::ExternalDataFiles& ext, Tensor& out) {
  if (n.attribute_size() != 1) return "a Constant needs exactly one value attribute";
  const auto& a = n.attribute(0);
  const std::string& k = a.name();
  if (k == "value") {
    try {
      out = onnx_detail::tensor_from_proto(a.t(), ext);
    } catch (const GraphError& e) {
      return e.what();
    }
  } else if (k == "value_float") {
    out = Tensor(DType::F32, {});
    out.data<float>()[0] = a.f();
  } else if (k == "value_floats") {
    out = Tensor::from_f32({int64_t(a.floats_size())}, std::vector<float>(a.floats().begin(), a.floats().end()));
  } else if (k == "value_int") {
    out = Tensor::scalar_i64(a.i());
  } else if (k == "value_ints") {
    out = Tensor::from_i64(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
  } else if (k == "sparse_value") {
    return "sparse constants (sparse_value) are not supported";
  } else if (k == "value_string" || k == "value_strings") {
    return "string constants are not supported";
  } else {
    return "unknown Constant attribute '" + k + "'";
  }
  return "";
}

// Shape from a TensorShapeProto: dim_value → known, dim_param → named symbol, neither →
// anonymous symbol.
Shape shape_from_proto(const onnx::TensorShapeProto& s) {
  Shape r;
  for (auto& d : s.dim()) {
    if (d.has_dim_value()) r.push_back(Dim(d.dim_value()));
    else if (d.has_dim_param() && !d.dim_param().empty()) r.push_back(Dim::symbol(d.dim_param()));
    else r.push_back(dim_unknown());
  }
  return r;
}

// Checks one node against its schema (after conversion). Adds problems; returns whether
// the node is fine.
bool check_against_schema(const NodeSpec& n, const std::string& desc, Problems& pr) {
  const OpSchema* s = find_schema(n.op);
  if (!s) {
    pr.add(n.op, desc + ": op is not supported");
    return false;
  }
  bool ok = true;
  int ni = int(n.inputs.size()), no = int(n.outputs.size());
  if (ni < s->min_inputs || ni > s->max_inputs) {
    pr.add(n.op, desc + ": " + std::to_string(ni) + " inputs; shardrt's " + n.op + " takes " +
                     std::to_string(s->min_inputs) + " to " + std::to_string(s->max_inputs));
    ok = false;
  }
  if (no < s->min_outputs || no > s->max_outputs) {
    pr.add(n.op, desc + ": " + std::to_string(no) + " outputs; shardrt's " + n.op + " produces " +
                     std::to_string(s->min_outputs) + " to " + std::to_string(s->max_outputs));
    ok = false;
  }
  std::set<std::string> known(s->attrs.begin(), s->attrs.end());
  for (auto& [k, a] : n.attrs)
    if (!known.count(k)) {
      pr.add(n.op, desc + ": attribute '" + k + "' is not supported");
      ok = false;
    }
  if (ok && s->validate) {
    // The schema's check sees a node shaped like the real one (present inputs and outputs
    // point at a placeholder value).
    static Value placeholder;
    Node tmp;
    tmp.op = n.op;
    tmp.name = n.name;
    tmp.opset = n.opset;
    tmp.attrs = n.attrs;
    for (size_t i = 0; i < n.inputs.size(); ++i)
      tmp.inputs.push_back(!n.inputs[i].empty() || n.const_inputs.count(i) ? &placeholder : nullptr);
    for (auto& o : n.outputs) tmp.outputs.push_back(o.empty() ? nullptr : &placeholder);
    std::string err;
    try {
      err = s->validate(tmp);
    } catch (const std::exception& e) {
      err = e.what();
    }
    if (!err.empty()) {
      pr.add(n.op, desc + ": " + err);
      ok = false;
    }
  }
  return ok;
}

template <class V>
void trim_trailing_empty(V& v) {
  while (!v.empty() && v.back().empty()) v.pop_back();
}

struct Prepared {
  std::vector<NodeSpec> nodes;
  std::vector<std::pair<std::string, Tensor>> constants;  // Constant nodes, by output name
  std::vector<int> order;  // node index → position among nodes (Constant nodes excluded)
};

}  // namespace

Graph import_onnx_model(onnx::ModelProto& model, const std::string& base_dir, const std::string& name) {
  const onnx::GraphProto& gp = model.graph();
  onnx_detail::ExternalDataFiles ext(base_dir);
  Problems pr;

  // ---- model level: opset, input and output types
  int opset = onnx_model_opset(model);
  // Without a default-domain opset only nodes of other domains can appear: those are
  // reported (refused) one by one below.
  if (opset != 0 && (opset < kOnnxMinOpset || opset > kOnnxMaxOpset)) {
    pr.add("", "the model uses opset " + std::to_string(opset) + "; shardrt imports opsets " +
                   std::to_string(kOnnxMinOpset) + " to " + std::to_string(kOnnxMaxOpset) +
                   (opset < kOnnxMinOpset ? " (convert it with onnx.version_converter or re-export it)" : ""));
    pr.raise(name);
  }
  if (!model.functions().empty()) {
    // Local functions are only reachable from nodes of their (non-default) domain, which
    // are refused below; nothing else to do.
  }

  std::set<std::string> init_names;
  for (auto& t : gp.initializer()) init_names.insert(t.name());
  for (auto& t : gp.initializer())
    if (dtype_from_onnx(t.data_type()) == DType::Undefined)
      pr.add("", "initializer '" + t.name() + "' has data type " + onnx_detail::onnx_type_name(t.data_type()) +
                     ", which shardrt does not support");
  for (auto& t : gp.sparse_initializer())
    pr.add("", "sparse initializer '" + t.values().name() + "' is not supported");

  auto check_value_type = [&](const onnx::ValueInfoProto& vi, const char* what, bool need_shape) {
    const auto& ty = vi.type();
    if (!ty.has_tensor_type()) {
      pr.add("", std::string(what) + " '" + vi.name() + "' is not a tensor (sequences, maps and optionals are not supported)");
      return;
    }
    int et = ty.tensor_type().elem_type();
    if (et != 0 && dtype_from_onnx(et) == DType::Undefined)
      pr.add("", std::string(what) + " '" + vi.name() + "' has data type " + onnx_detail::onnx_type_name(et) +
                     ", which shardrt does not support");
    else if (need_shape && et == 0)
      pr.add("", std::string(what) + " '" + vi.name() + "' has no element type");
    if (need_shape && !ty.tensor_type().has_shape())
      pr.add("", std::string(what) + " '" + vi.name() + "' has no shape; shardrt needs each input's rank");
    for (auto& d : ty.tensor_type().shape().dim())
      if (d.has_dim_value() && d.dim_value() < 0) {
        pr.malformed.push_back(std::string(what) + " '" + vi.name() + "' has a negative dimension (" +
                               std::to_string(d.dim_value()) + ")");
        break;
      }
  };
  for (auto& vi : gp.input())
    if (!init_names.count(vi.name())) check_value_type(vi, "graph input", true);
  for (auto& vi : gp.output()) check_value_type(vi, "graph output", false);

  // ---- every node: domain, op, version, conversion, schema
  Prepared prep;
  std::vector<char> is_constant(size_t(gp.node_size()), 0);
  for (int i = 0; i < gp.node_size(); ++i) {
    const onnx::NodeProto& np = gp.node(i);
    NodeSpec n;
    n.op = np.op_type();
    n.name = np.name().empty() ? np.op_type() + "_" + std::to_string(i) : np.name();
    n.opset = opset;
    std::string desc = n.describe();
    if (onnx_detail::is_contrib_collective(np.domain(), n.op)) {  // contrib_collectives.h
      std::string err = onnx_detail::convert_contrib_collective(np, n);
      if (!err.empty()) pr.add(np.domain() + "." + np.op_type(), desc + ": " + err);
      else if (check_against_schema(n, desc, pr)) prep.nodes.push_back(std::move(n));
      continue;
    }
    if (!is_default_domain(np.domain())) {
      pr.add(np.domain() + "." + n.op, desc + ": domain '" + np.domain() + "' is not supported");
      continue;
    }
    if (opset == 0) {
      pr.malformed.push_back(desc + ": the model imports no opset of the default ONNX domain");
      continue;
    }
    const onnx_detail::OpVersionInfo* info = onnx_detail::op_version_info(n.op);
    if (!info) {
      pr.add(n.op, desc + ": op is not supported (not an op of the default ONNX domain)");
      continue;
    }
    n.version = onnx_detail::op_version_at(*info, opset);
    if (n.version == 0) {
      pr.add(n.op, desc + ": op does not exist in opset " + std::to_string(opset));
      continue;
    }
    if (n.version > info->newest_accepted) {
      pr.add(n.op, desc + ": op version " + std::to_string(n.version) +
                       " differs from the form shardrt implements (version " + std::to_string(info->newest_accepted) +
                       "); export with an older opset");
      continue;
    }
    if (n.op == "If" || n.op == "Loop" || n.op == "Scan" || n.op == "SequenceMap") {
      pr.add(n.op, desc + ": op is not supported (ops with subgraphs are not supported yet)");
      continue;
    }
    for (auto& s : np.input()) n.inputs.push_back(s);
    for (auto& s : np.output()) n.outputs.push_back(s);
    trim_trailing_empty(n.inputs);
    trim_trailing_empty(n.outputs);

    if (n.op == "Constant") {
      Tensor t;
      std::string err = constant_value(np, ext, t);
      if (!err.empty()) pr.add(n.op, desc + ": " + err);
      else if (n.outputs.size() != 1 || !n.inputs.empty())
        pr.malformed.push_back(desc + ": a Constant has no inputs and one output");
      else prep.constants.emplace_back(n.outputs[0], std::move(t));
      is_constant[size_t(i)] = 1;
      continue;
    }

    bool ok = true;
    std::set<std::string> seen;
    for (auto& a : np.attribute()) {
      if (!seen.insert(a.name()).second) {
        pr.malformed.push_back(desc + ": attribute '" + a.name() + "' appears twice");
        ok = false;
        continue;
      }
      Attr at;
      std::string err = convert_attr(a, ext, at);
      if (!err.empty()) {
        pr.add(n.op, desc + ": " + err);
        ok = false;
        continue;
      }
      n.attrs[a.name()] = std::move(at);
    }
    if (!ok) continue;
    std::string err = onnx_detail::canonicalize(n);
    if (!err.empty()) {
      pr.add(n.op, desc + ": " + err);
      continue;
    }
    if (check_against_schema(n, desc, pr)) prep.nodes.push_back(std::move(n));
  }
  pr.raise(name);

  // ---- the graph
  Graph g;
  g.name = gp.name().empty() ? name : gp.name();
  std::unordered_map<std::string, Value*> values;
  std::vector<std::string> errs;
  auto define = [&](const std::string& nm, Value* v) {
    if (!values.emplace(nm, v).second) errs.push_back("value '" + nm + "' is defined more than once");
  };

  auto& inits = *model.mutable_graph()->mutable_initializer();
  for (auto& t : inits) {
    Tensor tv;
    try {
      tv = onnx_detail::tensor_from_proto(t, ext);
    } catch (const UnsupportedModelError& e) {
      throw UnsupportedModelError("ONNX model '" + name + "': " + e.what(), e.problems);
    } catch (const GraphError& e) {
      throw GraphError("ONNX model '" + name + "': " + e.what());
    }
    t.clear_raw_data();  // the proto's copy is no longer needed: halve peak memory
    Value* v = g.add_constant(t.name(), std::move(tv));
    if (v->name != t.name()) errs.push_back("initializer '" + t.name() + "' is defined more than once");
    else define(t.name(), v);
  }
  for (auto& vi : gp.input()) {
    if (init_names.count(vi.name())) continue;  // old exporters list weights as inputs too
    const auto& tt = vi.type().tensor_type();
    Value* v = g.add_input(vi.name(), dtype_from_onnx(tt.elem_type()), shape_from_proto(tt.shape()));
    if (v->name != vi.name()) errs.push_back("graph input '" + vi.name() + "' is defined more than once");
    else define(vi.name(), v);
  }
  for (auto& [nm, t] : prep.constants) {
    Value* v = g.add_constant(nm, std::move(t));
    if (v->name != nm) errs.push_back("constant '" + nm + "' is defined more than once");
    else define(nm, v);
  }

  // Nodes in dependency order (ONNX requires a sorted graph; tolerate exporters that are
  // not quite right by ordering here).
  std::unordered_map<std::string, size_t> producer;
  for (size_t i = 0; i < prep.nodes.size(); ++i)
    for (auto& o : prep.nodes[i].outputs)
      if (!o.empty() && !producer.emplace(o, i).second)
        errs.push_back("value '" + o + "' is produced by more than one node");
  if (!errs.empty()) {
    pr.malformed = errs;
    pr.raise(name);
  }
  std::vector<size_t> pending(prep.nodes.size(), 0);
  std::vector<std::vector<size_t>> users(prep.nodes.size());
  for (size_t i = 0; i < prep.nodes.size(); ++i)
    for (auto& in : prep.nodes[i].inputs) {
      if (in.empty() || values.count(in)) continue;
      auto it = producer.find(in);
      if (it == producer.end()) {
        errs.push_back(prep.nodes[i].describe() + ": input '" + in +
                       "' is not produced by any node, graph input or initializer");
        continue;
      }
      ++pending[i];
      users[it->second].push_back(i);
    }
  if (!errs.empty()) {
    pr.malformed = errs;
    pr.raise(name);
  }
  std::set<size_t> ready;
  for (size_t i = 0; i < prep.nodes.size(); ++i)
    if (!pending[i]) ready.insert(i);
  std::set<std::string> graph_outputs;
  for (auto& vi : gp.output()) graph_outputs.insert(vi.name());
  size_t placed = 0;
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    NodeSpec& n = prep.nodes[i];
    std::vector<Value*> ins;
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      auto c = n.const_inputs.find(k);
      if (c != n.const_inputs.end()) ins.push_back(g.add_constant(n.name + "/input" + std::to_string(k), std::move(c->second)));
      else ins.push_back(n.inputs[k].empty() ? nullptr : values.at(n.inputs[k]));
    }
    Node* node = g.add_node(n.op, n.name, ins, n.outputs, std::move(n.attrs));
    node->opset = n.opset;
    // Types and shapes as the graph grows, so constant subgraphs can fold on the way
    // (nodes producing graph outputs are kept: the model asked for that op's result).
    try {
      infer_node(g, *node);
    } catch (const GraphError& e) {
      throw GraphError("ONNX model '" + name + "': " + e.what());
    }
    bool makes_output = false;
    for (auto& o : n.outputs) makes_output |= graph_outputs.count(o) != 0;
    if (!makes_output) onnx_detail::fold_if_constant(g, *node);
    for (size_t k = 0; k < n.outputs.size(); ++k)
      if (!n.outputs[k].empty()) {
        if (node->outputs[k]->name != n.outputs[k]) {
          pr.malformed.push_back(n.describe() + ": output '" + n.outputs[k] + "' has the name of another value");
          pr.raise(name);
        }
        values[n.outputs[k]] = node->outputs[k];
      }
    ++placed;
    for (size_t u : users[i])
      if (--pending[u] == 0) ready.insert(u);
  }
  if (placed != prep.nodes.size()) {
    std::string m = "the graph has a cycle through";
    for (size_t i = 0; i < prep.nodes.size(); ++i)
      if (pending[i]) m += " '" + prep.nodes[i].name + "'";
    pr.malformed.push_back(m);
    pr.raise(name);
  }

  for (auto& vi : gp.output()) {
    auto it = values.find(vi.name());
    if (it == values.end()) {
      pr.malformed.push_back("graph output '" + vi.name() + "' is not produced by any node, input or initializer");
      continue;
    }
    g.outputs.push_back(it->second);
  }
  pr.raise(name);

  g.compact();  // drops folded nodes and values nothing uses any more
  try {
    infer_graph(g);
  } catch (const GraphError& e) {
    throw GraphError("ONNX model '" + name + "': " + e.what());
  }
  for (auto& vi : gp.output()) {
    int et = vi.type().tensor_type().elem_type();
    Value* v = values.at(vi.name());
    if (et != 0 && dtype_from_onnx(et) != v->dtype)
      pr.malformed.push_back("graph output '" + vi.name() + "' is declared " + onnx_detail::onnx_type_name(et) +
                             " but the model computes " + dtype_name(v->dtype));
  }
  pr.raise(name);
  return g;
}

Graph import_onnx_model_bytes(const std::string& bytes, const std::string& base_dir, const std::string& name) {
  onnx::ModelProto m;
  if (bytes.size() > size_t(INT_MAX) || !m.ParseFromArray(bytes.data(), int(bytes.size())))
    throw GraphError("'" + name + "' is not a valid ONNX model (the protobuf is truncated or corrupt" +
                     std::string(bytes.size() > size_t(INT_MAX) ? ", or over protobuf's 2 GB limit: keep big weights in external data)" : ")"));
  if (!m.has_graph()) throw GraphError("'" + name + "' is not a valid ONNX model (it has no graph)");
  return import_onnx_model(m, base_dir, name);
}

Graph import_onnx_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw GraphError("cannot open ONNX model '" + path + "': " + std::strerror(errno));
  struct stat st {};
  fstat(fd, &st);
  size_t size = size_t(st.st_size);
  if (size > size_t(INT_MAX)) {
    ::close(fd);
    throw GraphError("ONNX model '" + path + "' is over protobuf's 2 GB limit; keep its weights in external data");
  }
  // Parse straight from a mapping of the file (no copy of the whole file into a string).
  void* p = size ? mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0) : nullptr;
  ::close(fd);
  if (size && p == MAP_FAILED) throw GraphError("cannot map ONNX model '" + path + "': " + std::strerror(errno));
  onnx::ModelProto m;
  bool ok = size > 0 && m.ParseFromArray(p, int(size));
  if (size) munmap(p, size);
  if (!ok) throw GraphError("'" + path + "' is not a valid ONNX model (the file is empty, truncated or corrupt)");
  if (!m.has_graph()) throw GraphError("'" + path + "' is not a valid ONNX model (it has no graph)");
  std::string dir = std::filesystem::path(path).parent_path().string();
  return import_onnx_model(m, dir, path);
}

}  // namespace shardrt
