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
  // Where the engine runs by default ("cpu" | "cuda"); an ExecutionContext may override it.
  // With "cuda" on a machine with a GPU, the build also runs the engine once at the
  // profiles' opt shapes and stores the CUDA kernels' tactics in the engine.
  std::string device = "cpu";
};

// How an ExecutionContext runs its engine.
struct ContextOptions {
  std::string device;                    // "cpu" | "cuda"; "" = the engine's build setting
  dist::Communicator* comm = nullptr;    // as in ExecutionContext(engine, comm); borrowed
  // After every node, scan its float outputs (and, at set_inputs, the float inputs) for NaN
  // and Inf; the first found ends the run with an Error naming the node, the output, the
  // counts, the first bad index and whether the node's inputs already held some. A
  // debugging mode: it costs a pass over every output (on CUDA also a synchronisation per
  // node, and no CUDA graphs). Also on when SHARDRT_CHECK_NUMERICS is set (not "0").
  bool check_numerics = false;
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
  // Backend choice (device) and, optionally, a communicator. Throws Error for an unknown
  // device, for "cuda" in a build without CUDA, and for "cuda" on a machine without a GPU.
  ExecutionContext(const Engine& engine, const ContextOptions& options);
  ~ExecutionContext();
  // "cpu" or "cuda": where this context runs.
  const std::string& device() const;
  // Runs with inputs by name; returns outputs by name (owned tensors). Checks names,
  // dtypes and shapes against the bindings and profiles, naming what is wrong.
  // Same as set_inputs(), execute(), synchronize(), outputs().
  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs);

  // The run split in its steps (benchmarks time execute() + synchronize() with the inputs
  // already in place). set_inputs checks as run() does and copies the inputs (on CUDA into
  // device buffers sized for the profiles' largest shapes); they stay in place for any
  // number of execute() calls. execute() starts a run (on CUDA it returns before the GPU
  // finishes); synchronize() waits for it; outputs() returns the last run's outputs as
  // owned host tensors.
  void set_inputs(const std::map<std::string, Tensor>& inputs);
  void execute();
  void synchronize();
  std::map<std::string, Tensor> outputs();
  // Per-layer timing of the runs that follow (adds a clock read per layer).
  void set_profiling(bool on);
  // Time per layer and per op type over the profiled runs, largest first.
  std::string profile_report(size_t top_layers = 25) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardrt
