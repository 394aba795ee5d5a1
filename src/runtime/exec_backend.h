// What an ExecutionContext delegates to: one backend per device (cpu_executor.cpp,
// backends/cuda/cuda_executor.cpp). The context itself only picks the backend.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "runtime/engine_impl.h"

namespace shardrt {

class ExecBackend {
 public:
  virtual ~ExecBackend() = default;
  virtual void set_inputs(const std::map<std::string, Tensor>& inputs) = 0;
  virtual void execute() = 0;
  virtual void synchronize() = 0;
  virtual std::map<std::string, Tensor> outputs() = 0;
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
// Whether `device` names a backend ("cpu" | "cuda"); else throws Error listing them.
void check_device_name(const std::string& device, const std::string& what);

}  // namespace shardrt
