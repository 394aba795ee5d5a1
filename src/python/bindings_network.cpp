// The Network definition API from Python: inputs, weights (copied), any IR op by type with
// attributes of every IR kind, outputs. Handles (ITensor) keep their network alive and are
// refused once the network has been built (build_engine takes its graph).
#include <memory>

#include "ir/graph.h"
#include "ir/op_schema.h"
#include "py_common.h"
#include "py_network.h"
#include "shardrt/engine.h"

namespace shardrt::py {

PyITensor PyNetwork::handle(ITensor t) { return PyITensor{t, shared_from_this(), generation}; }

ITensor PyNetwork::check(const PyITensor& t, const std::string& what) const {
  if (t.net.get() != this) throw Error("network '" + name + "': " + what + " belongs to another network");
  if (t.generation != generation)
    throw Error("network '" + name + "': " + what + " is from before build_engine() took this network's graph");
  return t.t;
}

namespace {

Attr attr_from_py(const std::string& key, const pyb::handle& v) {
  if (pyb::isinstance<pyb::bool_>(v)) return Attr::of(int64_t(v.cast<bool>()));
  if (pyb::isinstance<pyb::int_>(v)) return Attr::of(v.cast<int64_t>());
  if (pyb::isinstance<pyb::float_>(v)) return Attr::of(v.cast<float>());
  if (pyb::isinstance<pyb::str>(v)) return Attr::of(v.cast<std::string>());
  if (pyb::isinstance<pyb::list>(v) || pyb::isinstance<pyb::tuple>(v)) {
    pyb::sequence seq = pyb::reinterpret_borrow<pyb::sequence>(v);
    bool all_int = true, all_num = true, all_str = true;
    for (auto item : seq) {
      bool is_int = pyb::isinstance<pyb::int_>(item);
      all_int &= is_int;
      all_num &= is_int || pyb::isinstance<pyb::float_>(item);
      all_str &= pyb::isinstance<pyb::str>(item);
    }
    if (all_int) return Attr::of(seq.cast<std::vector<int64_t>>());  // an empty list too
    if (all_num) return Attr::of(seq.cast<std::vector<float>>());
    if (all_str) return Attr::of_strings(seq.cast<std::vector<std::string>>());
    throw pyb::type_error("attribute '" + key + "': a list must hold only ints, only numbers or only strings");
  }
  if (pyb::hasattr(v, "__dlpack__") || PyObject_CheckBuffer(v.ptr()))
    return Attr::of(borrow_tensor(v, "attribute '" + key + "'").clone());
  throw pyb::type_error("attribute '" + key + "': unsupported value of type " +
                        std::string(pyb::str(pyb::type::handle_of(v))));
}

}  // namespace

void init_network(pyb::module_& m) {
  pyb::class_<PyITensor>(m, "ITensor", "A value of a Network being built.")
      .def_property_readonly("name", [](const PyITensor& t) { return t.net->check(t, "tensor").v->name; })
      .def_property_readonly("shape", [](const PyITensor& t) { return t.net->net.shape_of(t.net->check(t, "tensor")); })
      .def_property_readonly("dtype",
                             [](const PyITensor& t) { return py_dtype_name(t.net->net.dtype_of(t.net->check(t, "tensor"))); })
      .def("__repr__", [](const PyITensor& t) {
        if (t.generation != t.net->generation) return std::string("ITensor(<built>)");
        return "ITensor('" + t.t.v->name + "')";
      });

  pyb::class_<PyNetwork, std::shared_ptr<PyNetwork>>(m, "Network")
      .def(pyb::init([](const std::string& name) {
             auto n = std::make_shared<PyNetwork>();
             n->name = name;
             n->net = Network(name);
             return n;
           }),
           pyb::arg("name") = "network")
      .def_readonly("name", &PyNetwork::name)
      .def(
          "input",
          [](PyNetwork& n, const std::string& name, const pyb::object& dtype, const Dims& dims,
             const std::vector<std::string>& dim_names) {
            return n.handle(n.net.input(name, dtype_from_py(dtype), dims, dim_names));
          },
          pyb::arg("name"), pyb::arg("dtype"), pyb::arg("dims"), pyb::arg("dim_names") = std::vector<std::string>{},
          "A network input; dims of -1 are dynamic and take their name from dim_names.")
      .def(
          "weight",
          [](PyNetwork& n, const std::string& name, const pyb::object& array) {
            // Copied: the engine owns its weights, whatever the caller does with the array later.
            return n.handle(n.net.weight(name, borrow_tensor(array, "weight '" + name + "'").clone()));
          },
          pyb::arg("name"), pyb::arg("array"))
      .def(
          "op",
          [](PyNetwork& n, const std::string& op_type, const std::vector<std::optional<PyITensor>>& inputs,
             const pyb::dict& attrs, int num_outputs, const std::string& name) {
            std::map<std::string, Attr> a;
            for (auto [k, v] : attrs) {
              std::string key = pyb::str(k);
              a[key] = attr_from_py(key, v);
            }
            std::vector<Value*> ins;
            for (size_t i = 0; i < inputs.size(); ++i)
              ins.push_back(inputs[i] ? n.check(*inputs[i], op_type + " input " + std::to_string(i)).v : nullptr);
            if (num_outputs < 1) throw Error("network: " + op_type + ": num_outputs must be at least 1");
            if (!find_schema(op_type)) throw Error("network: unknown op type '" + op_type + "'");
            Graph& g = n.net.graph();
            std::string base = name.empty() ? op_type : name;
            std::vector<std::string> outs;
            for (int i = 0; i < num_outputs; ++i)
              outs.push_back(base + (num_outputs > 1 ? "_out" + std::to_string(i) : "_out"));
            Node* node = g.add_node(op_type, base, ins, outs, a);
            try {
              infer_node(g, *node);
            } catch (const GraphError& e) {
              // A refused node leaves the network as it was (Python code may catch and go on).
              g.remove_node(node);
              g.compact();
              throw Error(std::string("network: ") + e.what());
            }
            std::vector<PyITensor> r;
            for (Value* v : node->outputs) r.push_back(n.handle({v}));
            return r;
          },
          pyb::arg("op_type"), pyb::arg("inputs"), pyb::arg("attrs") = pyb::dict(), pyb::arg("num_outputs") = 1,
          pyb::arg("name") = "",
          "Adds one node of any IR op (ONNX's, or shardrt.X); None marks an omitted optional input.")
      .def(
          "output", [](PyNetwork& n, const PyITensor& t, const std::string& name) { n.net.output(n.check(t, "output"), name); },
          pyb::arg("t"), pyb::arg("name"))
      .def("shape_of", [](PyNetwork& n, const PyITensor& t) { return n.net.shape_of(n.check(t, "tensor")); })
      .def("dtype_of", [](PyNetwork& n, const PyITensor& t) { return py_dtype_name(n.net.dtype_of(n.check(t, "tensor"))); })
      .def("__repr__", [](PyNetwork& n) { return "Network('" + n.name + "')"; });
}

}  // namespace shardrt::py
