// ExecutionContext: picks the backend for the device (the engine's build setting unless
// the caller names one) and forwards to it. Also what both backends share: the input
// checks and the profile report.
#include <algorithm>
#include <cstdio>

#include "runtime/exec_backend.h"
#include "runtime/numerics.h"

namespace shardrt {

void check_device_name(const std::string& device, const std::string& what) {
  if (device != "cpu" && device != "cuda")
    throw Error(what + ": unknown device '" + device + "' (shardrt runs on \"cpu\" or \"cuda\")");
}

std::string engine_device(const Engine::Impl& e) {
  auto it = e.build_settings.find("device");
  return it == e.build_settings.end() || it->second.empty() ? "cpu" : it->second;
}

void check_inputs(const Engine::Impl& e, const std::map<std::string, Tensor>& inputs) {
  for (auto& [name, t] : inputs) {
    bool known = false;
    for (auto& b : e.inputs) known |= b.name == name;
    if (!known) {
      std::string names;
      for (auto& b : e.inputs) names += (names.empty() ? "" : ", ") + b.name;
      throw Error("unknown input '" + name + "' (the engine's inputs are: " + names + ")");
    }
  }
  for (auto& b : e.inputs) {
    auto it = inputs.find(b.name);
    if (it == inputs.end()) throw Error("input '" + b.name + "' is missing");
    const Tensor& t = it->second;
    if (t.dtype() != b.dtype)
      throw Error("input '" + b.name + "' has dtype " + dtype_name(t.dtype()) + ", the engine expects " + dtype_name(b.dtype));
    if (size_t(t.rank()) != b.dims.size())
      throw Error("input '" + b.name + "' has rank " + std::to_string(t.rank()) + " (shape " + dims_str(t.dims()) +
                  "), the engine expects rank " + std::to_string(b.dims.size()));
    for (size_t d = 0; d < b.dims.size(); ++d) {
      int64_t x = t.dims()[d];
      if (b.profile) {
        if (x < b.profile->min[d] || x > b.profile->max[d])
          throw Error("input '" + b.name + "' has shape " + dims_str(t.dims()) + ", outside the engine's profile min " +
                      dims_str(b.profile->min) + " max " + dims_str(b.profile->max) + " (dim " + std::to_string(d) + ")");
      } else if (b.dims[d] != std::to_string(x)) {
        throw Error("input '" + b.name + "' has shape " + dims_str(t.dims()) + ", the engine was built for a fixed dim " +
                    std::to_string(d) + " of " + b.dims[d]);
      }
    }
  }
}

std::string unknown_output_message(const std::string& name, const std::map<std::string, Tensor>& outputs) {
  std::string names;
  for (auto& [n, t] : outputs) names += (names.empty() ? "" : ", ") + n;
  return "unknown output '" + name + "' (the engine's outputs are: " + names + ")";
}

void check_device_inputs(const Engine::Impl& e, const std::map<std::string, DeviceTensor>& inputs) {
  std::map<std::string, Tensor> views;
  for (auto& [name, d] : inputs) views[name] = Tensor(d.dtype, d.dims, nullptr, nullptr);
  check_inputs(e, views);
}

namespace {
// What a context on the CPU says when asked to read or write device memory.
[[noreturn]] void refuse_device_memory(const std::string& what) {
  throw Error(what + ": this ExecutionContext runs on \"cpu\" and takes host memory only; copy the tensors to the "
              "host (set_inputs/outputs), or create the context with device \"cuda\"");
}
}  // namespace

void ExecBackend::set_inputs_device(const std::map<std::string, DeviceTensor>& inputs, void*) {
  refuse_device_memory(inputs.empty() ? std::string("set_inputs_device")
                                      : "input '" + inputs.begin()->first + "' is in GPU memory");
}
std::map<std::string, TensorDesc> ExecBackend::output_shapes() { refuse_device_memory("output_shapes()"); }
void ExecBackend::outputs_to_device(const std::map<std::string, DeviceTensor>& outputs, void*) {
  refuse_device_memory(outputs.empty() ? std::string("outputs_to_device")
                                       : "output buffer '" + outputs.begin()->first + "' is in GPU memory");
}
std::map<std::string, DeviceTensor> ExecBackend::outputs_device(void*) { refuse_device_memory("outputs_device()"); }

std::string format_profile(const std::vector<const Node*>& nodes, const std::vector<double>& layer_ms, int runs,
                           size_t top) {
  if (!runs) return "no profiled runs\n";
  double total = 0;
  std::map<std::string, std::pair<double, int>> by_op;
  std::vector<std::pair<double, size_t>> order;
  for (size_t i = 0; i < layer_ms.size(); ++i) {
    double t = layer_ms[i] / runs;
    total += t;
    auto& o = by_op[nodes[i]->op];
    o.first += t;
    o.second++;
    order.push_back({t, i});
  }
  if (total <= 0) total = 1e-12;  // keeps the percentages finite for an empty or instant graph
  std::sort(order.rbegin(), order.rend());
  std::string r;
  char buf[512];
  std::snprintf(buf, sizeof buf, "profile: %d runs, %.3f ms per run in %zu layers\n%-28s %8s %7s %6s\n", runs, total,
                layer_ms.size(), "op type", "ms", "%", "count");
  r += buf;
  std::vector<std::pair<double, std::string>> ops;
  for (auto& [k, v] : by_op) ops.push_back({v.first, k});
  std::sort(ops.rbegin(), ops.rend());
  for (auto& [t, k] : ops) {
    std::snprintf(buf, sizeof buf, "%-28s %8.3f %6.1f%% %6d\n", k.c_str(), t, 100 * t / total, by_op[k].second);
    r += buf;
  }
  std::snprintf(buf, sizeof buf, "%-50s %-22s %8s %6s\n", "layer", "op", "ms", "%");
  r += buf;
  for (size_t k = 0; k < std::min(top, order.size()); ++k) {
    const Node& n = *nodes[order[k].second];
    std::snprintf(buf, sizeof buf, "%-50.50s %-22.22s %8.3f %5.1f%%\n", n.name.c_str(), n.op.c_str(), order[k].first,
                  100 * order[k].first / total);
    r += buf;
  }
  return r;
}

struct ExecutionContext::Impl {
  std::string device;
  std::unique_ptr<ExecBackend> backend;
};

namespace {
std::unique_ptr<ExecBackend> make_backend(const std::string& device, const Engine::Impl& e, dist::Communicator* comm) {
  if (device == "cuda") return make_cuda_backend(e, comm);
  return make_cpu_backend(e, comm);
}
}  // namespace

ExecutionContext::ExecutionContext(const Engine& engine) : ExecutionContext(engine, ContextOptions{}) {}
ExecutionContext::ExecutionContext(const Engine& engine, dist::Communicator& comm)
    : ExecutionContext(engine, ContextOptions{"", &comm}) {}
ExecutionContext::ExecutionContext(const Engine& engine, const ContextOptions& o) : impl_(std::make_unique<Impl>()) {
  impl_->device = o.device.empty() ? engine_device(engine.impl()) : o.device;
  check_device_name(impl_->device, o.device.empty() ? "the engine's build setting" : "ContextOptions::device");
  impl_->backend = make_backend(impl_->device, engine.impl(), o.comm);
  impl_->backend->set_check_numerics(check_numerics_enabled(o.check_numerics));
}
ExecutionContext::~ExecutionContext() = default;

const std::string& ExecutionContext::device() const { return impl_->device; }
std::map<std::string, Tensor> ExecutionContext::run(const std::map<std::string, Tensor>& inputs) {
  return impl_->backend->run(inputs);
}
void ExecutionContext::set_inputs(const std::map<std::string, Tensor>& inputs) { impl_->backend->set_inputs(inputs); }
void ExecutionContext::execute() { impl_->backend->execute(); }
void ExecutionContext::synchronize() { impl_->backend->synchronize(); }
std::map<std::string, Tensor> ExecutionContext::outputs() { return impl_->backend->outputs(); }
std::map<std::string, Tensor> ExecutionContext::outputs(const std::vector<std::string>& names) {
  return impl_->backend->outputs_named(names);
}
int ExecutionContext::cuda_device() const { return impl_->backend->cuda_device(); }
void ExecutionContext::set_inputs_device(const std::map<std::string, DeviceTensor>& inputs, void* stream) {
  impl_->backend->set_inputs_device(inputs, stream);
}
std::map<std::string, TensorDesc> ExecutionContext::output_shapes() { return impl_->backend->output_shapes(); }
void ExecutionContext::outputs_to_device(const std::map<std::string, DeviceTensor>& outputs, void* stream) {
  impl_->backend->outputs_to_device(outputs, stream);
}
std::map<std::string, DeviceTensor> ExecutionContext::outputs_device(void* stream) {
  return impl_->backend->outputs_device(stream);
}
void ExecutionContext::set_profiling(bool on) { impl_->backend->set_profiling(on); }
std::string ExecutionContext::profile_report(size_t top) const { return impl_->backend->profile_report(top); }

}  // namespace shardrt
