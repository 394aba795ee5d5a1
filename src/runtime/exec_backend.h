// What an ExecutionContext delegates to: one backend per device (cpu_executor.cpp,
// backends/cuda/cuda_executor.cpp). The context itself only picks the backend.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine_impl.h"

namespace shardrt {

// "unknown output 'name' (the engine's outputs are: ...)" for outputs(names).
std::string unknown_output_message(const std::string& name, const std::map<std::string, Tensor>& outputs);

class ExecBackend {
 public:
  virtual ~ExecBackend() = default;
  virtual void set_inputs(const std::map<std::string, Tensor>& inputs) = 0;
  virtual void execute() = 0;
  virtual void synchronize() = 0;
  virtual std::map<std::string, Tensor> outputs() = 0;
  // The outputs named (ExecutionContext::outputs(names)). This default fetches them all
  // and keeps those asked for; a backend whose outputs() copies (CUDA) overrides it.
  virtual std::map<std::string, Tensor> outputs_named(const std::vector<std::string>& names) {
    std::map<std::string, Tensor> all = outputs(), out;
    for (const std::string& n : names) {
      auto it = all.find(n);
      if (it == all.end()) throw Error(unknown_output_message(n, all));
      out[n] = it->second;
    }
    return out;
  }
  // set_inputs, execute, synchronize, outputs; a backend may do it with fewer copies.
  virtual std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) {
    set_inputs(inputs);
    execute();
    synchronize();
    return outputs();
  }
  virtual void set_profiling(bool on) = 0;
  // ContextOptions::check_numerics: scan every float output after each node (and the
  // inputs at set_inputs); the first NaN or Inf throws Error naming the node.
  virtual void set_check_numerics(bool on) = 0;
  virtual std::string profile_report(size_t top_layers) const = 0;
  // Tactics the kernels chose, per node ("key" -> "value"); empty on the CPU.
  virtual std::map<const Node*, std::map<std::string, std::string>> tactics() const { return {}; }

  // ExecutionContext's device-memory API (engine.h); only the CUDA backend has it: these
  // defaults refuse, naming what was asked for.
  virtual int cuda_device() const { return -1; }
  virtual void set_inputs_device(const std::map<std::string, DeviceTensor>& inputs, void* stream);
  virtual std::map<std::string, TensorDesc> output_shapes();
  virtual void outputs_to_device(const std::map<std::string, DeviceTensor>& outputs, void* stream);
  virtual std::map<std::string, DeviceTensor> outputs_device(void* stream);
};

std::unique_ptr<ExecBackend> make_cpu_backend(const Engine::Impl& engine, dist::Communicator* comm);
// Defined in backends/cuda/cuda_executor.cpp; in a build without CUDA
// (backends/no_cuda/cuda_unavailable.cpp) it throws Error saying so.
std::unique_ptr<ExecBackend> make_cuda_backend(const Engine::Impl& engine, dist::Communicator* comm);

// ---- shared by the backends ----

// Checks names, dtypes, ranks and dims of `inputs` against the engine's bindings and
// profiles; throws Error naming what is wrong.
void check_inputs(const Engine::Impl& engine, const std::map<std::string, Tensor>& inputs);
// The engine's device setting ("cpu" when the engine predates the setting).
std::string engine_device(const Engine::Impl& engine);
// The profile report of both backends: `layer_ms[i]` is node i's time summed over `runs`.
std::string format_profile(const std::vector<const Node*>& nodes, const std::vector<double>& layer_ms, int runs,
                           size_t top_layers);
// set_inputs_device's checks shared with set_inputs: `inputs` as dims-only tensors
// (no data) through check_inputs.
void check_device_inputs(const Engine::Impl& engine, const std::map<std::string, DeviceTensor>& inputs);
// Whether `device` names a backend ("cpu" | "cuda"); else throws Error listing them.
void check_device_name(const std::string& device, const std::string& what);

}  // namespace shardrt
