// BuildConfig, Engine, the builders and ExecutionContext. Builds and runs release the GIL
// (other Python threads go on; a callback communicator takes it back for its calls).
#include <memory>

#include "dist/communicator.h"
#include "py_common.h"
#include "py_network.h"
#include "shardrt/engine.h"

namespace shardrt::py {
namespace {

pyb::object profile_to_py(const std::optional<ShapeProfile>& p) {
  if (!p) return pyb::none();
  return pyb::make_tuple(p->min, p->opt, p->max);
}

pyb::list bindings_to_py(const std::vector<Binding>& bs) {
  pyb::list l;
  for (auto& b : bs) {
    pyb::dict d;
    d["name"] = b.name;
    d["dtype"] = py_dtype_name(b.dtype);
    d["dims"] = b.dims;
    d["profile"] = profile_to_py(b.profile);
    l.append(d);
  }
  return l;
}

std::map<std::string, ShapeProfile> shapes_from_py(const pyb::dict& d) {
  std::map<std::string, ShapeProfile> r;
  for (auto [k, v] : d) {
    auto t = v.cast<std::vector<Dims>>();
    if (t.size() != 3)
      throw pyb::value_error("BuildConfig.shapes['" + std::string(pyb::str(k)) + "'] must be (min, opt, max) dims");
    r[pyb::str(k)] = ShapeProfile{t[0], t[1], t[2]};
  }
  return r;
}

std::map<std::string, Tensor> inputs_from_py(const pyb::dict& inputs) {
  std::map<std::string, Tensor> r;
  for (auto [k, v] : inputs) {
    std::string name = pyb::str(k);
    r[name] = borrow_tensor(v, "input '" + name + "'");
  }
  return r;
}

pyb::dict outputs_to_py(std::map<std::string, Tensor>&& outs) {
  pyb::dict d;
  for (auto& [k, t] : outs) d[pyb::str(k)] = wrap_tensor(std::move(t));
  return d;
}

}  // namespace

void init_engine(pyb::module_& m) {
  pyb::class_<BuildConfig>(m, "BuildConfig")
      .def(pyb::init([](const pyb::dict& shapes, const pyb::object& autocast, bool optimize, const std::string& device,
                        const std::vector<std::string>& disabled_passes, bool verbose) {
             BuildConfig c;
             c.shapes = shapes_from_py(shapes);
             if (!autocast.is_none()) c.autocast = dtype_from_py(autocast);
             c.optimize = optimize;
             c.device = device;
             c.disabled_passes = disabled_passes;
             c.verbose = verbose;
             return c;
           }),
           pyb::kw_only(), pyb::arg("shapes") = pyb::dict(), pyb::arg("autocast") = pyb::none(),
           pyb::arg("optimize") = true, pyb::arg("device") = "cpu",
           pyb::arg("disabled_passes") = std::vector<std::string>{}, pyb::arg("verbose") = false)
      .def_property(
          "shapes",
          [](const BuildConfig& c) {
            pyb::dict d;
            for (auto& [k, p] : c.shapes) d[pyb::str(k)] = pyb::make_tuple(p.min, p.opt, p.max);
            return d;
          },
          [](BuildConfig& c, const pyb::dict& d) { c.shapes = shapes_from_py(d); },
          "Per input: (min, opt, max) dims; needed for dynamic dims.")
      .def_property(
          "autocast",
          [](const BuildConfig& c) -> pyb::object {
            if (!c.autocast) return pyb::none();
            return pyb::str(py_dtype_name(*c.autocast));
          },
          [](BuildConfig& c, const pyb::object& v) {
            if (v.is_none()) c.autocast.reset();
            else c.autocast = dtype_from_py(v);
          },
          "None, 'float16' or 'bfloat16': lower float math.")
      .def_readwrite("optimize", &BuildConfig::optimize)
      .def_readwrite("device", &BuildConfig::device)
      .def_readwrite("disabled_passes", &BuildConfig::disabled_passes)
      .def_readwrite("verbose", &BuildConfig::verbose);

  pyb::class_<Engine>(m, "Engine")
      .def("save", &Engine::save, pyb::arg("path"), pyb::call_guard<pyb::gil_scoped_release>())
      .def_static("load", &Engine::load, pyb::arg("path"), pyb::arg("verify_checksum") = true,
                  pyb::call_guard<pyb::gil_scoped_release>())
      .def_property_readonly("inputs", [](const Engine& e) { return bindings_to_py(e.inputs()); })
      .def_property_readonly("outputs", [](const Engine& e) { return bindings_to_py(e.outputs()); })
      .def("inspect", &Engine::inspect, pyb::arg("json") = false)
      .def_property_readonly("weight_bytes", &Engine::weight_bytes)
      .def_property_readonly("arena_bytes", &Engine::arena_bytes)
      .def_property_readonly("layer_count", &Engine::layer_count);

  m.def(
      "build_engine",
      [](PyNetwork& net, const BuildConfig& cfg) {
        auto g = net.take();
        pyb::gil_scoped_release nogil;
        return build_engine_from_graph(std::move(*g), cfg);
      },
      pyb::arg("net"), pyb::arg("cfg") = BuildConfig{},
      "Builds an engine from a network (the network is empty afterwards, as in C++).");
  m.def("build_engine_from_onnx", &build_engine_from_onnx, pyb::arg("path"), pyb::arg("cfg") = BuildConfig{},
        pyb::call_guard<pyb::gil_scoped_release>());

  pyb::class_<ExecutionContext>(m, "ExecutionContext")
      .def(pyb::init([](const Engine& e, const std::string& device, dist::Communicator* comm) {
             ContextOptions o;
             o.device = device;
             o.comm = comm;
             return std::make_unique<ExecutionContext>(e, o);
           }),
           pyb::arg("engine"), pyb::arg("device") = "", pyb::arg("comm") = nullptr,
           // The context borrows the engine and the communicator: both live as long as it.
           pyb::keep_alive<1, 2>(), pyb::keep_alive<1, 4>())
      .def_property_readonly("device", &ExecutionContext::device)
      .def(
          "run",
          [](ExecutionContext& ctx, const pyb::dict& inputs) {
            // The borrowed inputs are released after the GIL is back (their deleters need it
            // anyway, but releasing here keeps it cheap).
            std::map<std::string, Tensor> in = inputs_from_py(inputs);
            std::map<std::string, Tensor> out;
            {
              pyb::gil_scoped_release nogil;
              out = ctx.run(in);
            }
            return outputs_to_py(std::move(out));
          },
          pyb::arg("inputs"),
          "Runs with host arrays by name (borrowed, not copied); returns HostTensors by name.")
      .def("set_inputs",
           [](ExecutionContext& ctx, const pyb::dict& inputs) {
             std::map<std::string, Tensor> in = inputs_from_py(inputs);
             pyb::gil_scoped_release nogil;
             ctx.set_inputs(in);
           })
      .def("execute", &ExecutionContext::execute, pyb::call_guard<pyb::gil_scoped_release>())
      .def("synchronize", &ExecutionContext::synchronize, pyb::call_guard<pyb::gil_scoped_release>())
      .def("outputs",
           [](ExecutionContext& ctx) {
             std::map<std::string, Tensor> out;
             {
               pyb::gil_scoped_release nogil;
               out = ctx.outputs();
             }
             return outputs_to_py(std::move(out));
           })
      .def("set_profiling", &ExecutionContext::set_profiling, pyb::arg("on"))
      .def("profile_report", &ExecutionContext::profile_report, pyb::arg("top_layers") = 25);
}

}  // namespace shardrt::py
