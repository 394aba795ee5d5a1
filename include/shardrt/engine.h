// Build and run: a network (or ONNX file) is built into an immutable Engine, which can be
// saved to and loaded from an engine file; an ExecutionContext runs it (one per thread).
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shardrt/dtype.h"
#include "shardrt/tensor.h"

namespace shardrt {

struct Graph;
class Network;
namespace dist {
class Communicator;
}

// Raised for every user-facing error (bad model, bad engine file, wrong inputs, ...).
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Shape range of one input: every dim within [min, max]; `opt` is what tactics tune for.
struct ShapeProfile {
  Dims min, opt, max;
};

struct BuildConfig {
  std::map<std::string, ShapeProfile> shapes;  // per input; needed for symbolic dims
  std::optional<DType> autocast;                // fp16 or bf16: lower float math on request
  bool optimize = true;                         // run the pass pipeline
  std::vector<std::string> disabled_passes;     // by pass name
  // Progress: (stage, done, total); called from the building thread.
  std::function<void(const std::string&, int, int)> progress;
  bool verbose = false;  // print each pass's effect to stderr
};

struct Binding {
  std::string name;
  DType dtype;
  std::vector<std::string> dims;  // "4", "batch", ...
  std::optional<ShapeProfile> profile;
  bool is_input;
};

class Engine {
 public:
  ~Engine();
  Engine(Engine&&) noexcept;
  Engine& operator=(Engine&&) noexcept;

  void save(const std::string& path) const;
  // Loads (memory-maps) an engine file; verifies magic, version and checksum unless
  // `verify_checksum` is false.
  static Engine load(const std::string& path, bool verify_checksum = true);

  const std::vector<Binding>& inputs() const;
  const std::vector<Binding>& outputs() const;
  // Human-readable or JSON description: layers, fusions, memory plan, bindings.
  std::string inspect(bool json) const;
  const Graph& graph() const;
  size_t arena_bytes() const;
  size_t weight_bytes() const;
  size_t layer_count() const;

  struct Impl;
  explicit Engine(std::unique_ptr<Impl> impl);
  Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

Engine build_engine(Network& network, const BuildConfig& config);
Engine build_engine_from_onnx(const std::string& onnx_path, const BuildConfig& config);
// For code that already holds an IR graph (importer tests, the conformance runner).
Engine build_engine_from_graph(Graph&& graph, const BuildConfig& config);

class ExecutionContext {
 public:
  explicit ExecutionContext(const Engine& engine);
  // One rank of a distributed run: the engine's collective ops go through `comm` (the world
  // communicator, or a dist::Mesh whose tp/dp groups the ops' `group` attributes name). The
  // caller owns `comm` and keeps it alive as long as the context.
  ExecutionContext(const Engine& engine, dist::Communicator& comm);
  ~ExecutionContext();
  // Runs with inputs by name; returns outputs by name (owned tensors). Checks names,
  // dtypes and shapes against the bindings and profiles, naming what is wrong.
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs);
  // Per-layer timing of the runs that follow (adds a clock read per layer).
  void set_profiling(bool on);
  // Time per layer and per op type over the profiled runs, largest first.
  std::string profile_report(size_t top_layers = 25) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardrt
