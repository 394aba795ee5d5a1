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

// One tensor in GPU memory, for ExecutionContext's device-memory API: contiguous row-major
// elements of `dtype` at `data`. `owner` keeps the memory alive (for buffers shardrt
// allocated it frees them; null for memory the caller keeps alive).
struct DeviceTensor {
  DType dtype = DType::Undefined;
  Dims dims;
  void* data = nullptr;
  int device = -1;  // CUDA device ordinal
  std::shared_ptr<void> owner;

  int64_t numel() const { return shardrt::numel(dims); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype); }
};

// dtype and dims of one output (ExecutionContext::output_shapes).
struct TensorDesc {
  DType dtype = DType::Undefined;
  Dims dims;
};

// Makes CUDA stream `waiting` wait (on the GPU, the host does not block) for the work
// enqueued so far on CUDA stream `stream`. Streams are cudaStream_t handles cast to void*
// (nullptr: the legacy default stream). Throws Error in a build without CUDA.
void cuda_stream_wait(void* waiting, void* stream);

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
  // Only the outputs named (each must be one of the engine's outputs; Error otherwise):
  // on CUDA only those are copied to the host, e.g. a decoder's chosen token ids
  // without its [B, V] logits.
  std::map<std::string, Tensor> outputs(const std::vector<std::string>& names);
  // Per-layer timing of the runs that follow (adds a clock read per layer).
  void set_profiling(bool on);
  // Time per layer and per op type over the profiled runs, largest first.
  std::string profile_report(size_t top_layers = 25) const;

  // ---- Device memory (contexts on "cuda") ----
  // For callers whose tensors already live on the GPU (torch CUDA tensors): no host copies.
  // `stream` is the caller's CUDA stream (cudaStream_t cast to void*; nullptr: the legacy
  // default stream): the work the caller enqueued on it before the call is what produced
  // the inputs (or last used the output buffers), and work it enqueues after the call may
  // use the results. None of these calls blocks the host. A context on "cpu" refuses them
  // (Error saying so), as it refuses memory that is not device memory of its GPU.

  // The GPU this context runs on (CUDA ordinal); -1 for a context on "cpu".
  int cuda_device() const;
  // set_inputs() from device memory. Same checks as set_inputs (names, dtypes, shapes
  // against the profiles), and each pointer must be device (or managed) memory of this
  // context's GPU; errors name the binding. The context's stream waits for `stream`, then
  // copies each input device-to-device into the engine's own input buffer (CUDA graphs
  // keep pointing at those buffers, as torch.compile's reduce-overhead mode copies into
  // static inputs); `stream` then waits for the copies, so the caller may free or reuse the
  // inputs as soon as the call returns.
  void set_inputs_device(const std::map<std::string, DeviceTensor>& inputs, void* stream);
  // The last execute()'s outputs' dtypes and dims, without waiting for the GPU (they are
  // known on the host once execute() returns).
  std::map<std::string, TensorDesc> output_shapes();
  // Copies the last run's outputs named in `outputs` (any subset of the engine's outputs)
  // into the caller's device buffers there, which must have output_shapes()'s dtype and
  // dims: the copies wait for `stream` and `stream` waits for the copies. Buffers allocated
  // on `stream` by a stream-ordered allocator (torch's caching allocator) are safe to use.
  void outputs_to_device(const std::map<std::string, DeviceTensor>& outputs, void* stream);
  // The last run's outputs in device buffers shardrt allocates (cudaMalloc); `stream` waits
  // for the copies. Each buffer is freed (cudaFree, which waits for the whole GPU) when the
  // last copy of its DeviceTensor::owner goes: outputs_to_device into the caller's own
  // buffers is the faster path.
  std::map<std::string, DeviceTensor> outputs_device(void* stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardrt
