// BuildConfig, Engine, the builders and ExecutionContext. Builds and runs release the GIL
// (other Python threads go on; a callback communicator takes it back for its calls).
#include <memory>

#include "dist/communicator.h"
#include "py_common.h"
#include "py_dlpack.h"
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

// ---- CUDA arrays ----

// Whether the inputs are CUDA arrays (all of them) or host arrays (all of them); a mix is
// refused, naming one of each.
bool inputs_on_device(const pyb::dict& inputs) {
  std::string on_dev, on_host;
  for (auto [k, v] : inputs) (is_cuda_array(v) ? on_dev : on_host) = pyb::str(k);
  if (!on_dev.empty() && !on_host.empty())
    throw pyb::value_error("shardrt: input '" + on_dev + "' is in CUDA memory but input '" + on_host +
                           "' is not; pass all inputs on the GPU or all on the host");
  return !on_dev.empty();
}

// CUDA inputs for `ctx`, borrowed with the stream protocol; a context on the CPU refuses them
// before any producer is asked for its memory.
std::map<std::string, DeviceTensor> device_inputs_from_py(const ExecutionContext& ctx, const pyb::dict& inputs,
                                                          int64_t stream) {
  if (ctx.cuda_device() < 0)
    for (auto [k, v] : inputs)
      throw pyb::value_error("shardrt: input '" + std::string(pyb::str(k)) +
                             "' is in CUDA memory but this ExecutionContext runs on \"cpu\"; copy it to the host "
                             "(tensor.cpu()) or create the context with device=\"cuda\"");
  std::map<std::string, DeviceTensor> r;
  for (auto [k, v] : inputs) {
    std::string name = pyb::str(k);
    r[name] = borrow_device_tensor(v, "input '" + name + "'", stream);
  }
  return r;
}

pyb::dict output_shapes_to_py(const std::map<std::string, TensorDesc>& shapes) {
  pyb::dict d;
  for (auto& [k, x] : shapes) d[pyb::str(k)] = pyb::make_tuple(py_dtype_name(x.dtype), pyb::tuple(pyb::cast(x.dims)));
  return d;
}

// The last run's outputs in device memory. `outputs`: None (shardrt allocates DeviceTensors),
// a dict of CUDA arrays to fill (any subset of the outputs), or a callable
// (name, shape, dtype) -> CUDA array that allocates each output's buffer, e.g. torch.empty.
pyb::dict device_outputs_to_py(ExecutionContext& ctx, const pyb::object& outputs, int64_t stream) {
  if (outputs.is_none()) {
    std::map<std::string, DeviceTensor> outs;
    {
      pyb::gil_scoped_release nogil;
      outs = ctx.outputs_device(stream_ptr(stream));
    }
    pyb::dict d;
    for (auto& [k, t] : outs) d[pyb::str(k)] = wrap_device_tensor(std::move(t), stream);
    return d;
  }
  pyb::dict bufs;
  if (pyb::isinstance<pyb::dict>(outputs)) {
    bufs = pyb::reinterpret_borrow<pyb::dict>(outputs);
  } else if (PyCallable_Check(outputs.ptr())) {
    for (auto& [name, x] : ctx.output_shapes())
      bufs[pyb::str(name)] = outputs(name, pyb::tuple(pyb::cast(x.dims)), py_dtype_name(x.dtype));
  } else {
    throw pyb::type_error("shardrt: outputs must be None, a dict of CUDA arrays to fill, or a callable "
                          "(name, shape, dtype) -> CUDA array");
  }
  std::map<std::string, DeviceTensor> into;
  for (auto [k, v] : bufs) {
    std::string name = pyb::str(k);
    into[name] = borrow_device_tensor(v, "the buffer for output '" + name + "'", stream);
  }
  {
    pyb::gil_scoped_release nogil;
    ctx.outputs_to_device(into, stream_ptr(stream));
  }
  return bufs;
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
      .def_property_readonly("cuda_device", &ExecutionContext::cuda_device,
                             "The GPU (CUDA ordinal) this context runs on; -1 on the CPU.")
      .def(
          "run",
          [](ExecutionContext& ctx, const pyb::dict& inputs, const pyb::object& stream, const pyb::object& outputs) {
            if (inputs_on_device(inputs)) {
              int64_t s = stream_from_py(stream);
              std::map<std::string, DeviceTensor> in = device_inputs_from_py(ctx, inputs, s);
              {
                pyb::gil_scoped_release nogil;
                ctx.set_inputs_device(in, stream_ptr(s));
                ctx.execute();
              }
              in.clear();  // the caller's stream is ordered after the input copies
              return device_outputs_to_py(ctx, outputs, s);
            }
            if (!outputs.is_none())
              throw pyb::value_error("shardrt: outputs= is for CUDA inputs; host runs return HostTensors");
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
          pyb::arg("inputs"), pyb::kw_only(), pyb::arg("stream") = pyb::none(), pyb::arg("outputs") = pyb::none(),
          "Runs with arrays by name. Host arrays (borrowed, not copied): returns HostTensors by name. CUDA arrays "
          "(a context on 'cuda'; borrowed through DLPack with the caller's `stream`, copied on the GPU into the "
          "engine's input buffers): returns the outputs in GPU memory, ordered before `stream` (None: the legacy "
          "default stream; pass torch.cuda.current_stream().cuda_stream), as DeviceTensors, or in the caller's "
          "buffers given by `outputs` (a dict of CUDA arrays, or a callable (name, shape, dtype) -> CUDA array).")
      .def(
          "set_inputs",
          [](ExecutionContext& ctx, const pyb::dict& inputs, const pyb::object& stream) {
            if (inputs_on_device(inputs)) {
              int64_t s = stream_from_py(stream);
              std::map<std::string, DeviceTensor> in = device_inputs_from_py(ctx, inputs, s);
              pyb::gil_scoped_release nogil;
              ctx.set_inputs_device(in, stream_ptr(s));
              return;
            }
            std::map<std::string, Tensor> in = inputs_from_py(inputs);
            pyb::gil_scoped_release nogil;
            ctx.set_inputs(in);
          },
          pyb::arg("inputs"), pyb::kw_only(), pyb::arg("stream") = pyb::none(),
          "Host arrays, or CUDA arrays ordered after `stream` (as run()).")
      .def(
          "output_shapes", [](ExecutionContext& ctx) { return output_shapes_to_py(ctx.output_shapes()); },
          "After execute() (contexts on 'cuda'): {name: (dtype, shape)} of the last run's outputs, without "
          "waiting for the GPU.")
      .def(
          "outputs_device",
          [](ExecutionContext& ctx, const pyb::object& stream, const pyb::object& outputs) {
            return device_outputs_to_py(ctx, outputs, stream_from_py(stream));
          },
          pyb::kw_only(), pyb::arg("stream") = pyb::none(), pyb::arg("outputs") = pyb::none(),
          "The last run's outputs in GPU memory, ordered before `stream` (as run() returns them for CUDA inputs).")
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
