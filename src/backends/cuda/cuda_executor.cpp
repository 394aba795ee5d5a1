// The CUDA backend of ExecutionContext.
//
// Placement: Shape/Size, and nodes whose inputs are all host values (constants or outputs
// of host nodes) with small outputs, run on the host with the CPU kernels: that is the
// shape arithmetic constant folding could not do because of symbolic dims. Their values are
// fixed for a given tuple of input dims (a "signature"). Every other node runs on the GPU.
//
// Memory: constants are uploaded once; graph inputs live in staging buffers sized for the
// profiles' largest shapes; intermediates live in one arena at the memory plan's offsets;
// graph outputs, values larger than their slot, and host values a GPU node reads get
// per-signature persistent buffers (a captured graph keeps pointing at them).
//
// Runs: the first two runs of a signature are eager (kernels time tactics and size their
// workspace), then the second run's launches are captured into a CUDA graph that later runs
// of the signature replay. Capturing only a signature that comes back spares loops whose
// every call has a new shape (a growing sequence) the capture and instantiation cost. A signature whose run had to read a GPU value on the host, ran a node
// on the CPU, or staged a collective through the host, runs eagerly every time.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <set>
#include <unordered_map>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_common.h"
#include "backends/cuda/cuda_eval.h"
#include "backends/cuda/device_comm.h"
#include "backends/cuda/device_memory.h"
#include "backends/cuda/numerics.h"
#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "ir/op_schema.h"
#include "runtime/exec_backend.h"
#include "runtime/numerics.h"

namespace shardrt {
namespace cuda {
namespace {

// Host nodes (all inputs on the host) produce at most this many bytes per output: shape
// arithmetic is a few int64s; anything bigger (a mask, a table) is worth the GPU.
constexpr size_t kHostMaxBytes = 16 * 1024;
// Signatures kept (graph + per-signature buffers); the least recently used goes first.
constexpr size_t kMaxSignatures = 64;

bool env_flag(const char* name, bool dflt) {
  const char* s = std::getenv(name);
  if (!s || !*s) return dflt;
  return std::string(s) != "0";
}

std::string cuda_err(cudaError_t e) { return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")"; }

// Makes `device` current for the scope: a Python thread may have another GPU current (torch
// does not set it back), and the context's stream, events and kernels belong to its own.
struct DeviceGuard {
  int prev = -1;
  explicit DeviceGuard(int device) {
    if (cudaGetDevice(&prev) != cudaSuccess || prev == device) {
      prev = -1;
      return;
    }
    SHARDRT_CUDA_CHECK(cudaSetDevice(device));
  }
  ~DeviceGuard() {
    if (prev >= 0) cudaSetDevice(prev);
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;
};

// Device memory owned by the executor, grown only outside capture.
struct DevBuf {
  void* p = nullptr;
  size_t cap = 0;
};

void free_buf(DevBuf& b) {
  if (b.p) cudaFree(b.p);
  b = {};
}

// Makes `b` hold at least `need` bytes. A buffer in use by queued work is freed only after
// the stream drains (`drain()` waits for it: the backend's sync_stream, which a distributed
// run bounds by the collective timeout). `what` is called only when an allocation is needed
// (for its message).
template <class Drain, class What>
void ensure_buf(DevBuf& b, size_t need, const Drain& drain, const What& what, const Node* node = nullptr) {
  if (b.p && b.cap >= need) return;
  if (b.p) {
    drain();
    free_buf(b);
  }
  size_t bytes = std::max<size_t>((need + 255) / 256 * 256, 256);
  b.p = device_alloc(bytes, what(), node ? node->describe() : std::string());
  b.cap = bytes;
}

enum class Kind : uint8_t { Host, Device, View, ViewCopy, Fallback };

struct Step {
  const Node* node;
  const OpSchema* schema;
  const Kernel* kernel;        // CUDA kernel; null: the node falls back to the CPU
  const cpu::Kernel* cpu;      // CPU kernel (host nodes, fallback); may be null
  std::vector<int> in, out;    // value index or -1
  bool view;                   // an aliased view: output = input 0 with other dims
  bool view_op;                // a view op whose output is not aliased (a graph output): a copy
  bool shape_only;             // Shape / Size: reads dims only
  bool collective;
};

// Everything that belongs to one tuple of input dims.
struct Sig {
  Dims key;
  std::string label;  // "x=[4,8] mask=[4,1,8,8]" for messages
  std::vector<DevTensor> dev;      // per value: where it is on the GPU this run
  std::vector<char> on_dev;
  std::vector<Tensor> host;        // per value: host copy where there is one
  std::vector<char> has_host;
  std::vector<char> host_static;   // the host copy is fixed for the signature
  std::vector<DevBuf> own;         // per value: persistent buffer (outputs, oversize, uploads)
  std::vector<Kind> kind;          // per step: where it ran in the eager run
  bool capturable = true;
  std::string why_not;
  bool logged = false;
  int eager_runs = 0;              // runs of this signature so far without its graph
  cudaGraphExec_t exec = nullptr;
  void* ws = nullptr;  // the workspace the graph was captured with
  uint64_t last_used = 0;
};

class CudaBackend final : public ExecBackend {
 public:
  CudaBackend(const Engine::Impl& eng, dist::Communicator* c) : e(eng), comm(c) {
    if (!device_available()) throw Error("cannot run on device 'cuda': " + device_description());
    // One GPU per local rank (no-op when the process chose a device itself).
    if (comm) DeviceComm::select_local_device();
    res = std::make_unique<Resources>();
    stream = res->stream();
    const Graph& g = *e.graph;
    for (auto& v : g.values) {
      index[v.get()] = int(vals.size());
      vals.push_back(v.get());
    }
    slot.assign(vals.size(), nullptr);
    for (size_t i = 0; i < vals.size(); ++i) {
      auto it = e.memory.slots.find(vals[i]->name);
      if (it != e.memory.slots.end()) slot[i] = &it->second;
    }
    std::set<std::string> groups;
    bool has_collective = false;
    for (auto& n : g.nodes) {
      Step s{n.get(), find_schema(n->op), find_kernel(n->op), cpu::find_kernel(n->op), {}, {}, false, false, false, false};
      if (!s.schema) throw Error(n->describe() + ": no schema for op '" + n->op + "'");
      s.collective = dist::is_collective_op(n->op);
      if (s.collective && n->op != "shardrt.Wait") {
        has_collective = true;
        auto ga = n->attrs.find("group");
        groups.insert(ga == n->attrs.end() ? "tp" : ga->second.s);
        if (!comm)
          throw Error(n->describe() + ": the engine holds collective ops; run it in an ExecutionContext created with "
                      "a communicator (ExecutionContext(engine, comm))");
      }
      s.shape_only = n->op == "Shape" || n->op == "Size";
      s.view = !n->outputs.empty() && n->outputs[0] && e.memory.aliases.count(n->outputs[0]->name);
      s.view_op = !s.view && is_view_op(*n) && !n->inputs.empty() && n->inputs[0] && !n->outputs.empty() && n->outputs[0];
      if (!s.kernel && !s.cpu && !s.view && !s.view_op)
        throw Error(n->describe() + ": neither the CUDA nor the CPU backend has a kernel for op '" + n->op + "'");
      for (Value* v : n->inputs) s.in.push_back(v ? index.at(v) : -1);
      for (Value* v : n->outputs) s.out.push_back(v ? index.at(v) : -1);
      steps.push_back(std::move(s));
      nodes.push_back(n.get());
    }
    if (comm) {
      dcomm = DeviceComm::create(*comm, stream);
      // Waits inside a run (a growing workspace) are bounded by the collective timeout too.
      res->set_drain([this] { sync_stream(); });
      if (has_collective) {
        dcomm->prepare(std::vector<std::string>(groups.begin(), groups.end()));
        if (!dcomm->capturable())
          staged_reason = "collectives go through the host (" + dcomm->backend() + ": " + dcomm->staged_reason() + ")";
      }
    }
    poison = env_flag("SHARDRT_POISON", false);
    debug_sync = env_flag("SHARDRT_CUDA_DEBUG_SYNC", false);
    graphs = env_flag("SHARDRT_CUDA_GRAPHS", true) && !debug_sync;

    // A failed allocation (out of GPU memory) must not leak what was allocated before it:
    // the destructor does not run for a constructor that throws.
    try {
      allocate_buffers(g);
    } catch (...) {
      release();
      throw;
    }
  }

  // Constants, the arena and the input buffers (sized for the profiles' largest shapes).
  void allocate_buffers(const Graph& g) {
    // Constants: one allocation, uploaded once.
    size_t total = 0;
    for (Value* v : vals)
      if (v->constant) total += (v->constant->nbytes() + 255) / 256 * 256;
    const_dev.resize(vals.size());
    if (total) {
      consts.p = device_alloc(total, "the engine's constants (weights)");
      consts.cap = total;
      size_t off = 0;
      for (size_t i = 0; i < vals.size(); ++i) {
        const Tensor* t = vals[i]->constant.get();
        if (!t) continue;
        char* p = static_cast<char*>(consts.p) + off;
        if (t->nbytes()) SHARDRT_CUDA_CHECK(cudaMemcpy(p, t->raw(), t->nbytes(), cudaMemcpyHostToDevice));
        const_dev[i] = DevTensor{t->dtype(), t->dims(), p};
        off += (t->nbytes() + 255) / 256 * 256;
      }
      // cudaMemcpy from pageable memory may return before the bytes land, and the context's
      // stream does not wait for the legacy stream: make the weights visible to it now.
      SHARDRT_CUDA_CHECK(cudaDeviceSynchronize());
    }
    if (e.memory.arena_bytes) {
      arena.p = device_alloc(e.memory.arena_bytes, "the activation arena (sized for the profiles' largest shapes)");
      arena.cap = e.memory.arena_bytes;
    }
    // Staging buffers of the graph inputs, for the largest shapes the bindings allow.
    for (Value* v : g.inputs) {
      const Binding* b = nullptr;
      for (auto& x : e.inputs)
        if (x.name == v->name) b = &x;
      Dims maxd;
      if (b && b->profile) maxd = b->profile->max;
      else if (shape_known(v->shape)) maxd = shape_dims(v->shape);
      else throw Error("input '" + v->name + "' has dynamic shape " + shape_str(v->shape) + " but no profile");
      DevBuf buf;
      buf.cap = std::max<size_t>(size_t(numel(maxd)) * dtype_size(v->dtype), 256);
      buf.p = device_alloc(buf.cap, "the buffer of input '" + v->name + "' (" + dtype_name(v->dtype) + dims_str(maxd) +
                                        ", its profile's largest shape)");
      staging.push_back(buf);
      input_dims.emplace_back();
    }
  }

  ~CudaBackend() override { release(); }

  void release() {
    if (stream) cudaStreamSynchronize(stream);
    for (auto& s : sigs) drop_sig(*s);
    for (auto& b : staging) free_buf(b);
    free_buf(arena);
    free_buf(consts);
    free_buf(numerics_buf);
    for (auto& [si, ev] : events) {
      cudaEventDestroy(ev.first);
      cudaEventDestroy(ev.second);
    }
    if (io_ready) cudaEventDestroy(io_ready);
    if (io_done) cudaEventDestroy(io_done);
    dcomm.reset();
    res.reset();
  }

  void set_inputs(const std::map<std::string, Tensor>& inputs) override {
    check_inputs(e, inputs);
    const Graph& g = *e.graph;
    if (check_numerics)
      for (Value* v : g.inputs) {
        const Tensor& t = inputs.at(v->name);
        NumericsCount c = scan_numerics(t);
        if (c.bad()) throw Error(input_numerics_error(v->name, t.dtype(), t.dims(), c));
      }
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Value* v = g.inputs[i];
      const Tensor& t = inputs.at(v->name);
      if (t.nbytes() > staging[i].cap)
        throw Error("internal: input '" + v->name + "' of shape " + dims_str(t.dims()) + " exceeds its staging buffer");
      if (t.nbytes()) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(staging[i].p, t.raw(), t.nbytes(), cudaMemcpyHostToDevice, stream));
      input_dims[i] = t.dims();
    }
    select_signature();
  }

  // The signature of the inputs now in the staging buffers (input_dims) becomes current.
  void select_signature() {
    const Graph& g = *e.graph;
    Dims key;
    std::string label;
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      const Dims& d = input_dims[i];
      key.push_back(int64_t(d.size()));
      key.insert(key.end(), d.begin(), d.end());
      label += (label.empty() ? "" : " ") + g.inputs[i]->name + "=" + dims_str(d);
    }
    cur = &signature(key, label);
    ran = false;
  }

  void execute() override {
    if (!cur) throw Error("execute() before set_inputs(): the context has no inputs");
    DeviceGuard guard(res->device());
    Sig& S = *cur;
    S.last_used = ++clock;
    last_replay = false;
    std::optional<dist::ScopedGroupShapes> group_shapes;
    if (comm) group_shapes.emplace(*comm);
    // --check-numerics reads every node's outputs back: kernel by kernel, never a graph.
    const bool want_graph = graphs && !profiling && !check_numerics && staged_reason.empty();
    if (want_graph && S.exec) {
      if (S.ws == res->workspace(0)) {
        cudaError_t err = cudaGraphLaunch(S.exec, stream);
        if (err != cudaSuccess)
          throw Error("CUDA error launching the CUDA graph of input shapes " + S.label + ": " + cuda_err(err));
        last_replay = true;
        ran = true;
        return;
      }
      // Another signature's eager run grew the workspace this graph was captured with.
      sync_stream();
      cudaGraphExecDestroy(S.exec);
      S.exec = nullptr;
    }
    run_eager(S);
    ran = true;
    ++S.eager_runs;
    if (!staged_reason.empty()) note_not_captured(S, staged_reason);
    if (want_graph && S.capturable) {
      if (S.eager_runs >= 2) {
        // Capture only after this eager run's work has completed, under the collective
        // timeout: NCCL may wait for its earlier kernels when a capture starts using the
        // communicator, and a peer that stopped answering would block that wait forever
        // instead of being reported (on 2 GPUs, bench/RESULTS.md). Once per signature.
        if (dcomm) sync_stream();
        capture(S);
      }
    }
    else if (graphs && !profiling && !check_numerics && !S.capturable) note_not_captured(S, S.why_not);
  }

  void synchronize() override {
    try {
      sync_stream();
    } catch (const std::exception& ex) {
      std::string where = cur ? (last_replay ? "the replay of the CUDA graph of input shapes " : "the run of input shapes ") +
                                    cur->label
                              : std::string("a run");
      throw Error(std::string(ex.what()) + " (in " + where +
                  (last_replay ? "; rerun with SHARDRT_CUDA_GRAPHS=0 SHARDRT_CUDA_DEBUG_SYNC=1 to find the node)" : ")"));
    }
    if (profile_pending) collect_profile();
  }

  std::map<std::string, Tensor> outputs() override { return fetch(e.graph->outputs); }

  // Only the named outputs cross to the host (a decoder's token ids without its logits).
  std::map<std::string, Tensor> outputs_named(const std::vector<std::string>& names) override {
    std::vector<Value*> which;
    for (const std::string& n : names) {
      Value* found = nullptr;
      for (Value* v : e.graph->outputs)
        if (v->name == n) found = v;
      if (!found) {
        std::map<std::string, Tensor> all;
        for (Value* v : e.graph->outputs) all[v->name];
        throw Error(unknown_output_message(n, all));
      }
      which.push_back(found);
    }
    return fetch(which);
  }

  std::map<std::string, Tensor> fetch(const std::vector<Value*>& which) {
    if (!cur || !ran) throw Error("outputs() before execute(): the context has not run");
    synchronize();
    Sig& S = *cur;
    std::map<std::string, Tensor> out;
    for (Value* v : which) {
      if (out.count(v->name)) continue;
      int i = index.at(v);
      if (v->constant) {
        out[v->name] = v->constant->clone();
      } else if (S.has_host[size_t(i)] && (S.host_static[size_t(i)] || !S.on_dev[size_t(i)])) {
        out[v->name] = S.host[size_t(i)].clone();
      } else if (S.on_dev[size_t(i)]) {
        const DevTensor& d = S.dev[size_t(i)];
        Tensor t(d.dtype, d.dims);
        if (t.nbytes())
          SHARDRT_CUDA_CHECK(cudaMemcpyAsync(t.raw(), d.data, t.nbytes(), cudaMemcpyDeviceToHost, stream));
        out[v->name] = std::move(t);
      } else {
        throw Error("internal: output '" + v->name + "' was not computed");
      }
    }
    sync_stream();
    return out;
  }

  void set_profiling(bool on) override { profiling = on; }
  void set_check_numerics(bool on) override { check_numerics = on; }
  std::string profile_report(size_t top) const override { return format_profile(nodes, layer_ms, profiled_runs, top); }
  std::map<const Node*, std::map<std::string, std::string>> tactics() const override { return res->tactics(); }

  // ---- device memory (ExecutionContext's device-memory API, engine.h) ----

  int cuda_device() const override { return res->device(); }

  // Inputs are copied into the staging buffers rather than bound in place: the captured
  // graphs read those addresses, and a device-to-device copy costs little next to a run.
  void set_inputs_device(const std::map<std::string, DeviceTensor>& inputs, void* caller) override {
    DeviceGuard guard(res->device());
    check_device_inputs(e, inputs);
    const Graph& g = *e.graph;
    for (Value* v : g.inputs) check_device_memory(inputs.at(v->name), "input '" + v->name + "'");
    auto cs = static_cast<cudaStream_t>(caller);
    cur = nullptr;  // the staging buffers change: a failure from here on leaves no inputs
    stream_wait(stream, cs, io_ready);  // the caller's stream produced the inputs
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      Value* v = g.inputs[i];
      const DeviceTensor& t = inputs.at(v->name);
      if (t.nbytes() > staging[i].cap)
        throw Error("internal: input '" + v->name + "' of shape " + dims_str(t.dims) + " exceeds its staging buffer");
      if (t.nbytes())
        SHARDRT_CUDA_CHECK(cudaMemcpyAsync(staging[i].p, t.data, t.nbytes(), cudaMemcpyDeviceToDevice, stream));
      input_dims[i] = t.dims;
    }
    // The caller may free or overwrite the inputs once its stream has passed the copies.
    stream_wait(cs, stream, io_done);
    if (check_numerics) check_device_inputs_numerics();
    select_signature();
  }

  std::map<std::string, TensorDesc> output_shapes() override {
    if (!cur || !ran) throw Error("output_shapes() before execute(): the context has not run");
    Sig& S = *cur;
    std::map<std::string, TensorDesc> out;
    for (Value* v : e.graph->outputs) {
      int i = index.at(v);
      if (!v->constant && !S.has_host[size_t(i)] && !S.on_dev[size_t(i)])
        throw Error("internal: output '" + v->name + "' was not computed");
      out[v->name] = TensorDesc{dtype_of(S, i), dims_of(S, i)};
    }
    return out;
  }

  void outputs_to_device(const std::map<std::string, DeviceTensor>& outputs, void* caller) override {
    DeviceGuard guard(res->device());
    std::map<std::string, TensorDesc> shapes = output_shapes();
    for (auto& [name, d] : outputs) {
      auto it = shapes.find(name);
      if (it == shapes.end()) {
        std::string names;
        for (auto& [n, x] : shapes) names += (names.empty() ? "" : ", ") + n;
        throw Error("unknown output '" + name + "' (the engine's outputs are: " + names + ")");
      }
      const TensorDesc& want = it->second;
      if (d.dtype != want.dtype || d.dims != want.dims)
        throw Error("the buffer for output '" + name + "' is " + dtype_name(d.dtype) + dims_str(d.dims) +
                    "; the last run's output is " + dtype_name(want.dtype) + dims_str(want.dims) + " (output_shapes())");
      check_device_memory(d, "the buffer for output '" + name + "'");
    }
    auto cs = static_cast<cudaStream_t>(caller);
    // The buffers may be memory the caller's stream was still using (a stream-ordered
    // allocator hands out blocks freed by work not yet run): write after that work.
    stream_wait(stream, cs, io_ready);
    Sig& S = *cur;
    for (auto& [name, d] : outputs) {
      if (!d.nbytes()) continue;
      Value* v = nullptr;
      for (Value* o : e.graph->outputs)
        if (o->name == name) v = o;
      int i = index.at(v);
      if (v->constant) {
        SHARDRT_CUDA_CHECK(
            cudaMemcpyAsync(d.data, const_dev[size_t(i)].data, d.nbytes(), cudaMemcpyDeviceToDevice, stream));
      } else if (S.has_host[size_t(i)] && (S.host_static[size_t(i)] || !S.on_dev[size_t(i)])) {
        // A value the host computed (shape arithmetic): from pageable memory the call
        // returns once the bytes are staged, so the host copy may change afterwards.
        SHARDRT_CUDA_CHECK(
            cudaMemcpyAsync(d.data, S.host[size_t(i)].raw(), d.nbytes(), cudaMemcpyHostToDevice, stream));
      } else {
        SHARDRT_CUDA_CHECK(cudaMemcpyAsync(d.data, S.dev[size_t(i)].data, d.nbytes(), cudaMemcpyDeviceToDevice, stream));
      }
    }
    stream_wait(cs, stream, io_done);
  }

  std::map<std::string, DeviceTensor> outputs_device(void* caller) override {
    DeviceGuard guard(res->device());
    const int dev = res->device();
    std::map<std::string, DeviceTensor> out;
    for (auto& [name, desc] : output_shapes()) {
      DeviceTensor t{desc.dtype, desc.dims, nullptr, dev, nullptr};
      void* p = device_alloc(std::max<size_t>(t.nbytes(), 1), "the device buffer of output '" + name + "'");
      // cudaFree waits for all work on the GPU: whatever stream last read the buffer is done.
      t.owner = std::shared_ptr<void>(p, [dev](void* q) {
        int prev = -1;
        if (cudaGetDevice(&prev) == cudaSuccess && prev != dev) cudaSetDevice(dev);
        cudaFree(q);
        if (prev >= 0 && prev != dev) cudaSetDevice(prev);
      });
      t.data = p;
      out.emplace(name, std::move(t));
    }
    outputs_to_device(out, caller);
    return out;
  }

 private:
  // ---- device memory ----

  // `t` must be device (or managed) memory of this context's GPU; `what` names it.
  void check_device_memory(const DeviceTensor& t, const std::string& what) const {
    const int dev = res->device();
    if (t.device >= 0 && t.device != dev)
      throw Error(what + " is on GPU " + std::to_string(t.device) + "; this context runs on GPU " + std::to_string(dev) +
                  " (create the context while that GPU is current, or move the tensor to GPU " + std::to_string(dev) +
                  ")");
    if (!t.nbytes()) return;
    if (!t.data) throw Error(what + " has a null data pointer");
    cudaPointerAttributes a{};
    cudaError_t err = cudaPointerGetAttributes(&a, t.data);
    if (err != cudaSuccess) {
      cudaGetLastError();  // not sticky: clear it
      throw Error(what + ": its pointer is not memory CUDA knows (" + cuda_err(err) + ")");
    }
    if (a.type == cudaMemoryTypeManaged) return;
    if (a.type != cudaMemoryTypeDevice)
      throw Error(what + " is in host memory (" + (a.type == cudaMemoryTypeHost ? "pinned" : "pageable") +
                  "), not in the memory of GPU " + std::to_string(dev) +
                  " this context runs on; pass host tensors through set_inputs()/outputs()");
    if (a.device != dev)
      throw Error(what + " is on GPU " + std::to_string(a.device) + "; this context runs on GPU " + std::to_string(dev) +
                  " (create the context while that GPU is current, or move the tensor to GPU " + std::to_string(dev) +
                  ")");
  }

  // `waiting` waits for the work enqueued on `signal` so far (`ev` is reused: a wait
  // captures the event's state when it is enqueued).
  void stream_wait(cudaStream_t waiting, cudaStream_t signal, cudaEvent_t& ev) {
    if (waiting == signal) return;
    if (!ev) SHARDRT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    SHARDRT_CUDA_CHECK(cudaEventRecord(ev, signal));
    SHARDRT_CUDA_CHECK(cudaStreamWaitEvent(waiting, ev, 0));
  }

  // --check-numerics for inputs that arrived in device memory: scanned in their staging
  // buffers (one synchronisation; a debugging mode).
  void check_device_inputs_numerics() {
    const Graph& g = *e.graph;
    std::vector<size_t> scanned;
    for (size_t i = 0; i < g.inputs.size(); ++i)
      if (is_float(g.inputs[i]->dtype) && numel(input_dims[i])) scanned.push_back(i);
    if (scanned.empty()) return;
    ensure_buf(numerics_buf, scanned.size() * sizeof(DeviceNumerics), [&] { sync_stream(); },
               [] { return std::string("the --check-numerics counters"); });
    auto* d = static_cast<DeviceNumerics*>(numerics_buf.p);
    for (size_t j = 0; j < scanned.size(); ++j) {
      size_t i = scanned[j];
      enqueue_numerics_scan(g.inputs[i]->dtype, staging[i].p, numel(input_dims[i]), d + j, stream);
    }
    std::vector<DeviceNumerics> h(scanned.size());
    SHARDRT_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, h.size() * sizeof(DeviceNumerics), cudaMemcpyDeviceToHost, stream));
    sync_stream();
    for (size_t j = 0; j < scanned.size(); ++j) {
      NumericsCount c{h[j].nan, h[j].inf, h[j].first == ~0ull ? int64_t(-1) : int64_t(h[j].first)};
      size_t i = scanned[j];
      if (c.bad()) throw Error(input_numerics_error(g.inputs[i]->name, g.inputs[i]->dtype, input_dims[i], c));
    }
  }

  cudaEvent_t io_ready = nullptr;  // recorded on the caller's stream before device-memory I/O
  cudaEvent_t io_done = nullptr;   // recorded on the context's stream after it

  // ---- signatures ----

  Sig& signature(const Dims& key, const std::string& label) {
    for (auto& s : sigs)
      if (s->key == key) return *s;
    if (sigs.size() >= kMaxSignatures) {
      auto lru = std::min_element(sigs.begin(), sigs.end(), [](auto& a, auto& b) { return a->last_used < b->last_used; });
      sync_stream();
      drop_sig(**lru);
      sigs.erase(lru);
    }
    auto s = std::make_unique<Sig>();
    s->key = key;
    s->label = label;
    size_t nv = vals.size();
    s->dev.resize(nv);
    s->on_dev.assign(nv, 0);
    s->host.resize(nv);
    s->has_host.assign(nv, 0);
    s->host_static.assign(nv, 0);
    s->own.resize(nv);
    s->kind.assign(steps.size(), Kind::Device);
    sigs.push_back(std::move(s));
    return *sigs.back();
  }

  void drop_sig(Sig& S) {
    if (S.exec) cudaGraphExecDestroy(S.exec);
    S.exec = nullptr;
    for (auto& b : S.own) free_buf(b);
  }

  void note_not_captured(Sig& S, const std::string& why) {
    if (S.logged) return;
    S.logged = true;
    // Said once per reason: a decoder's prefill has a new signature per prompt length.
    if (!noted_reasons.insert(why).second) return;
    std::fprintf(stderr, "shardrt: input shapes %s run without a CUDA graph: %s (said once for this reason)\n",
                 S.label.c_str(), why.c_str());
  }

  std::set<std::string> noted_reasons;  // reasons already printed by note_not_captured

  void mark_not_capturable(Sig& S, const std::string& why) {
    if (!S.capturable) return;
    S.capturable = false;
    S.why_not = why;
  }

  void sync_stream() {
    if (dcomm) dcomm->wait_or_abort(stream, {"", "run"});
    else SHARDRT_CUDA_CHECK(cudaStreamSynchronize(stream));
  }

  // ---- values ----

  const Tensor* host_of(const Sig& S, int v) const {
    if (vals[size_t(v)]->constant) return vals[size_t(v)]->constant.get();
    return S.has_host[size_t(v)] ? &S.host[size_t(v)] : nullptr;
  }
  bool is_static_host(const Sig& S, int v) const {
    return vals[size_t(v)]->constant || (S.has_host[size_t(v)] && S.host_static[size_t(v)]);
  }
  DType dtype_of(const Sig& S, int v) const {
    if (const Tensor* h = host_of(S, v)) return h->dtype();
    return S.dev[size_t(v)].dtype;
  }
  const Dims& dims_of(const Sig& S, int v) const {
    if (const Tensor* h = host_of(S, v)) return h->dims();
    return S.dev[size_t(v)].dims;
  }

  // Where output value `v` of `need` bytes goes: its arena slot when it fits, else its
  // per-signature buffer.
  void* place(Sig& S, int v, size_t need, const Node& n) {
    const MemorySlot* sl = slot[size_t(v)];
    if (sl && need <= sl->bytes) return static_cast<char*>(arena.p) + sl->offset;
    ensure_buf(
        S.own[size_t(v)], need, [&] { sync_stream(); },
        [&] { return "the buffer of output '" + vals[size_t(v)]->name + "'"; }, &n);
    return S.own[size_t(v)].p;
  }

  // A host value a GPU node reads: uploaded into its per-signature buffer (never the
  // arena, whose bytes a replayed graph does not restore).
  void ensure_device(Sig& S, int v, const Node* n = nullptr) {
    if (S.on_dev[size_t(v)]) return;
    const Tensor* h = host_of(S, v);
    if (!h) throw Error("internal: value '" + vals[size_t(v)]->name + "' is neither on the GPU nor on the host");
    ensure_buf(S.own[size_t(v)], h->nbytes(), [&] { sync_stream(); },
               [&] { return "the upload of host value '" + vals[size_t(v)]->name + "'"; }, n);
    if (h->nbytes())
      SHARDRT_CUDA_CHECK(cudaMemcpyAsync(S.own[size_t(v)].p, h->raw(), h->nbytes(), cudaMemcpyHostToDevice, stream));
    S.dev[size_t(v)] = DevTensor{h->dtype(), h->dims(), S.own[size_t(v)].p};
    S.on_dev[size_t(v)] = 1;
  }

  // A GPU value read on the host (synchronises).
  const Tensor& download(Sig& S, int v) {
    if (const Tensor* h = host_of(S, v)) return *h;
    const DevTensor& d = S.dev[size_t(v)];
    Tensor t(d.dtype, d.dims);
    if (t.nbytes()) SHARDRT_CUDA_CHECK(cudaMemcpyAsync(t.raw(), d.data, t.nbytes(), cudaMemcpyDeviceToHost, stream));
    sync_stream();
    S.host[size_t(v)] = std::move(t);
    S.has_host[size_t(v)] = 1;
    S.host_static[size_t(v)] = 0;
    return S.host[size_t(v)];
  }

  // ---- shapes ----

  // The op's shape rule with every input's dtype and dims and the values the host has.
  // When the rule needs a value only the GPU has (it fails, or gives dims it cannot know),
  // that input is downloaded (smallest first) and the rule reruns.
  void infer(Sig& S, const Step& st, std::vector<DType>& types, std::vector<Dims>& dims) {
    const Node& n = *st.node;
    std::vector<int> missing;
    for (int v : st.in)
      if (v >= 0 && !host_of(S, v)) missing.push_back(v);
    std::sort(missing.begin(), missing.end(), [&](int a, int b) {
      return S.dev[size_t(a)].nbytes() < S.dev[size_t(b)].nbytes();
    });
    for (size_t next = 0;; ++next) {
      InferCtx c(n);
      for (int v : st.in) {
        c.in_types.push_back(v < 0 ? DType::Undefined : dtype_of(S, v));
        c.in_shapes.push_back(v < 0 ? Shape{} : dims_shape(dims_of(S, v)));
        c.in_values.push_back(v < 0 ? nullptr : host_of(S, v));
      }
      std::string problem;
      try {
        st.schema->infer(c);
        for (auto& sh : c.out_shapes)
          if (!shape_known(sh)) problem = n.describe() + ": output shape " + shape_str(sh) + " is not concrete";
      } catch (const std::exception& ex) {
        problem = ex.what();
      }
      if (problem.empty()) {
        types = c.out_types;
        dims.clear();
        for (auto& sh : c.out_shapes) dims.push_back(shape_dims(sh));
        return;
      }
      // Only the host has every value now: the rule's own error stands.
      if (next >= missing.size()) throw GraphError(problem);
      int v = missing[next];
      mark_not_capturable(S, n.describe() + " needs the value of '" + vals[size_t(v)]->name +
                                 "' on the host to know its output shape");
      download(S, v);
    }
  }

  // ---- the eager run ----

  void reset_run_state(Sig& S) {
    for (size_t i = 0; i < vals.size(); ++i) {
      if (vals[i]->constant) {
        S.dev[i] = const_dev[i];
        S.on_dev[i] = 1;
        continue;
      }
      S.on_dev[i] = 0;
      S.has_host[i] = 0;
      S.host_static[i] = 0;
      S.host[i] = Tensor();
    }
    const Graph& g = *e.graph;
    for (size_t i = 0; i < g.inputs.size(); ++i) {
      int v = index.at(g.inputs[i]);
      S.dev[size_t(v)] = DevTensor{g.inputs[i]->dtype, input_dims[i], staging[i].p};
      S.on_dev[size_t(v)] = 1;
    }
  }

  void run_eager(Sig& S) {
    reset_run_state(S);
    if (profiling) {
      layer_ms.resize(steps.size(), 0.0);
      host_ms.assign(steps.size(), 0.0);
      timed.assign(steps.size(), 0);
    }
    std::vector<DType> types;
    std::vector<Dims> dims;
    for (size_t si = 0; si < steps.size(); ++si) {
      const Step& st = steps[si];
      const Node& n = *st.node;
      auto t0 = std::chrono::steady_clock::now();
      infer(S, st, types, dims);
      Kind k = choose(S, st, types, dims);
      S.kind[si] = k;
      if (k == Kind::Host) {
        run_on_host(S, st, types, dims);
        if (profiling) host_ms[si] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (check_numerics) check_step(S, st);
        continue;
      }
      if (k == Kind::View) {
        int src = st.in[0], dst = st.out[0];
        ensure_device(S, src, &n);
        S.dev[size_t(dst)] = DevTensor{types[0], dims[0], S.dev[size_t(src)].data};
        S.on_dev[size_t(dst)] = 1;
        if (const Tensor* h = host_of(S, src)) {
          S.host[size_t(dst)] = h->reshaped(dims[0]);
          S.has_host[size_t(dst)] = 1;
          S.host_static[size_t(dst)] = is_static_host(S, src);
        }
        continue;
      }
      if (k != Kind::Fallback)
        for (int v : st.in)
          if (v >= 0) ensure_device(S, v, &n);
      for (size_t o = 0; o < st.out.size(); ++o) {
        int v = st.out[o];
        if (v < 0) continue;
        size_t need = size_t(numel(dims[o])) * dtype_size(types[o]);
        S.dev[size_t(v)] = DevTensor{types[o], dims[o], place(S, v, need, n)};
        S.on_dev[size_t(v)] = 1;
      }
      if (k == Kind::Fallback) {
        run_fallback(S, st, types, dims, "the CUDA backend has no kernel for it");
        if (profiling) host_ms[si] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (check_numerics) check_step(S, st);
        continue;
      }
      if (profiling) record_event(si, true);
      try {
        // A kernel that needs an input's value on the host says so before it enqueues
        // anything: download that value (no CUDA graph for these shapes then) and relaunch.
        for (size_t tries = 0;; ++tries) {
          try {
            launch(S, si);
            break;
          } catch (const NeedsHostValue& h) {
            if (tries >= st.in.size() || h.index >= st.in.size() || st.in[h.index] < 0 || host_of(S, st.in[h.index]))
              throw;
            mark_not_capturable(S, std::string(h.what()) + " (its value was read back from the GPU)");
            download(S, st.in[h.index]);
          }
        }
      } catch (const Unsupported& u) {
        // The kernel does not handle this case (it enqueued nothing): the CPU's runs it.
        if (profiling) record_event(si, false);
        S.kind[si] = Kind::Fallback;
        std::string why = u.what();
        run_fallback(S, st, types, dims, why.substr(std::min(why.size(), n.describe().size() + 2)));
        if (check_numerics) check_step(S, st);
        continue;
      }
      if (profiling) record_event(si, false);
      if (debug_sync) {
        if (dcomm) {  // bounded by the collective timeout, which names the collective
          sync_stream();
        } else {
          cudaError_t err = cudaStreamSynchronize(stream);
          if (err != cudaSuccess) throw Error(n.describe() + ": CUDA error while it ran: " + cuda_err(err));
        }
      }
      if (check_numerics) check_step(S, st);
    }
    if (profiling) profile_pending = true;
  }

  Kind choose(Sig& S, const Step& st, const std::vector<DType>& types, const std::vector<Dims>& dims) {
    if (st.shape_only && st.cpu) return Kind::Host;
    // A stateful op (the KV cache of shardrt.CachedAttention) keeps its state on the GPU:
    // it never runs on the host, even on host inputs.
    const bool stateful = st.schema && st.schema->stateful;
    if (st.cpu && !st.collective && !stateful) {
      bool all_host = true;
      for (int v : st.in)
        if (v >= 0 && !is_static_host(S, v)) all_host = false;
      size_t biggest = 0;
      for (size_t o = 0; o < types.size() && o < dims.size(); ++o)
        biggest = std::max(biggest, size_t(numel(dims[o])) * dtype_size(types[o]));
      if (all_host && biggest <= kHostMaxBytes) return Kind::Host;
    }
    if (st.view) return Kind::View;
    if (st.view_op) return Kind::ViewCopy;
    if (!st.kernel) return Kind::Fallback;
    return Kind::Device;
  }

  void run_on_host(Sig& S, const Step& st, const std::vector<DType>& types, const std::vector<Dims>& dims) {
    std::vector<Tensor> dims_only;  // Shape/Size of a GPU value: its dims, no data
    dims_only.reserve(st.in.size());
    std::vector<const Tensor*> ins;
    for (int v : st.in) {
      if (v < 0) { ins.push_back(nullptr); continue; }
      if (const Tensor* h = host_of(S, v)) { ins.push_back(h); continue; }
      dims_only.emplace_back(S.dev[size_t(v)].dtype, S.dev[size_t(v)].dims, nullptr, nullptr);
      ins.push_back(&dims_only.back());
    }
    std::vector<Tensor> outs;
    for (size_t o = 0; o < types.size(); ++o) outs.emplace_back(types[o], dims[o]);
    cpu::KernelCtx c{*st.node, ins, {}, comm};
    for (auto& t : outs) c.out.push_back(&t);
    (*st.cpu)(c);
    for (size_t o = 0; o < st.out.size() && o < outs.size(); ++o) {
      int v = st.out[o];
      if (v < 0) continue;
      S.host[size_t(v)] = std::move(outs[o]);
      S.has_host[size_t(v)] = 1;
      S.host_static[size_t(v)] = 1;
    }
  }

  void run_fallback(Sig& S, const Step& st, const std::vector<DType>& types, const std::vector<Dims>& dims,
                    const std::string& why) {
    const Node& n = *st.node;
    mark_not_capturable(S, n.describe() + " runs on the CPU (" + why + ")");
    if (warned_ops.insert(n.op + "\n" + why).second)
      std::fprintf(stderr, "shardrt: node '%s' (%s) runs on the CPU: %s\n", n.name.c_str(), n.op.c_str(), why.c_str());
    if (!st.cpu) throw Error(n.describe() + ": neither the CUDA nor the CPU backend has a kernel for op '" + n.op + "'");
    std::vector<const Tensor*> ins;
    for (int v : st.in) ins.push_back(v < 0 ? nullptr : &download(S, v));
    std::vector<Tensor> outs;
    for (size_t o = 0; o < types.size(); ++o) outs.emplace_back(types[o], dims[o]);
    cpu::KernelCtx c{n, ins, {}, comm};
    for (auto& t : outs) c.out.push_back(&t);
    (*st.cpu)(c);
    for (size_t o = 0; o < st.out.size() && o < outs.size(); ++o) {
      int v = st.out[o];
      if (v < 0) continue;
      if (outs[o].nbytes())
        SHARDRT_CUDA_CHECK(cudaMemcpyAsync(S.dev[size_t(v)].data, outs[o].raw(), outs[o].nbytes(),
                                           cudaMemcpyHostToDevice, stream));
      S.host[size_t(v)] = std::move(outs[o]);
      S.has_host[size_t(v)] = 1;
      S.host_static[size_t(v)] = 0;
    }
  }

  // The launches of one GPU step, from the signature's recorded placement (the eager run
  // and the capture both come here).
  void launch(Sig& S, size_t si) {
    const Step& st = steps[si];
    const Node& n = *st.node;
    if (poison)
      for (int v : st.out)
        if (v >= 0 && S.dev[size_t(v)].nbytes())
          SHARDRT_CUDA_CHECK(cudaMemsetAsync(S.dev[size_t(v)].data, 0xff, S.dev[size_t(v)].nbytes(), stream));
    if (S.kind[si] == Kind::ViewCopy) {
      const DevTensor& src = S.dev[size_t(st.in[0])];
      const DevTensor& dst = S.dev[size_t(st.out[0])];
      if (dst.nbytes() != src.nbytes())
        throw Error(n.describe() + ": view of " + std::to_string(src.nbytes()) + " bytes as " + std::to_string(dst.nbytes()));
      if (dst.nbytes())
        SHARDRT_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, dst.nbytes(), cudaMemcpyDeviceToDevice, stream));
      return;
    }
    KernelCtx c{n, {}, {}, {}, *res, comm, dcomm.get()};
    for (int v : st.in) {
      c.in.push_back(v < 0 ? nullptr : &S.dev[size_t(v)]);
      c.host.push_back(v < 0 ? nullptr : host_of(S, v));
    }
    for (int v : st.out) c.out.push_back(v < 0 ? nullptr : &S.dev[size_t(v)]);
    try {
      (*st.kernel)(c);
    } catch (const DeviceOutOfMemory& oom) {
      // Resources' workspace and persistent buffers do not know the node.
      throw oom.with_node(n.describe());
    }
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) throw Error(n.describe() + ": CUDA error after its launch: " + cuda_err(err));
  }

  // ---- --check-numerics ----

  // NaN/Inf counts of values `vs` (-1 and non-float: zero counts): host copies are scanned
  // on the host, GPU values by the reduction kernel, all read back with one synchronisation.
  std::vector<NumericsCount> count_numerics(Sig& S, const std::vector<int>& vs, const Node& n) {
    std::vector<NumericsCount> r(vs.size());
    std::vector<size_t> on_gpu;
    for (size_t k = 0; k < vs.size(); ++k) {
      int v = vs[k];
      if (v < 0 || !is_float(dtype_of(S, v))) continue;
      if (const Tensor* h = host_of(S, v)) r[k] = scan_numerics(*h);
      else if (S.on_dev[size_t(v)]) on_gpu.push_back(k);
    }
    if (on_gpu.empty()) return r;
    ensure_buf(numerics_buf, on_gpu.size() * sizeof(DeviceNumerics), [&] { sync_stream(); },
               [] { return std::string("the --check-numerics counters"); }, &n);
    auto* d = static_cast<DeviceNumerics*>(numerics_buf.p);
    for (size_t j = 0; j < on_gpu.size(); ++j) {
      const DevTensor& t = S.dev[size_t(vs[on_gpu[j]])];
      enqueue_numerics_scan(t.dtype, t.data, t.numel(), d + j, stream);
    }
    std::vector<DeviceNumerics> h(on_gpu.size());
    SHARDRT_CUDA_CHECK(cudaMemcpyAsync(h.data(), d, h.size() * sizeof(DeviceNumerics), cudaMemcpyDeviceToHost, stream));
    try {
      sync_stream();
    } catch (const std::exception& ex) {
      throw Error(n.describe() + ": error while it ran (or while its outputs were checked): " + ex.what());
    }
    for (size_t j = 0; j < on_gpu.size(); ++j)
      r[on_gpu[j]] = NumericsCount{h[j].nan, h[j].inf, h[j].first == ~0ull ? int64_t(-1) : int64_t(h[j].first)};
    return r;
  }

  // After step `st`: the first float output holding NaN or Inf ends the run, naming the
  // node and which of its float inputs already held some.
  void check_step(Sig& S, const Step& st) {
    const Node& n = *st.node;
    auto outs = count_numerics(S, st.out, n);
    for (size_t o = 0; o < outs.size(); ++o) {
      if (!outs[o].bad()) continue;
      int v = st.out[o];
      auto ins = count_numerics(S, st.in, n);
      std::vector<NumericsInput> report;
      for (size_t i = 0; i < st.in.size(); ++i) {
        int u = st.in[i];
        if (u < 0 || !is_float(dtype_of(S, u)) || (!host_of(S, u) && !S.on_dev[size_t(u)])) continue;
        report.push_back({i, vals[size_t(u)]->name, value_origin(*e.graph, *vals[size_t(u)]), dtype_of(S, u),
                          dims_of(S, u), ins[i]});
      }
      throw Error(node_numerics_error(n, o, dtype_of(S, v), dims_of(S, v), outs[o], report));
    }
  }

  // ---- CUDA graphs ----

  void capture(Sig& S) {
    std::string err;
    cudaGraph_t graph = nullptr;
    cudaError_t e0 = cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal);
    if (e0 != cudaSuccess) {
      cudaGetLastError();
      mark_not_capturable(S, "cudaStreamBeginCapture failed: " + cuda_err(e0));
      note_not_captured(S, S.why_not);
      return;
    }
    res->set_capturing(true);
    try {
      for (size_t si = 0; si < steps.size(); ++si)
        if (S.kind[si] == Kind::Device || S.kind[si] == Kind::ViewCopy) launch(S, si);
    } catch (const std::exception& ex) {
      err = ex.what();
    }
    res->set_capturing(false);
    cudaError_t e1 = cudaStreamEndCapture(stream, &graph);
    if (err.empty() && e1 != cudaSuccess) err = "cudaStreamEndCapture: " + cuda_err(e1);
    if (err.empty()) {
      cudaError_t e2 = cudaGraphInstantiate(&S.exec, graph, 0);
      if (e2 != cudaSuccess) {
        err = "cudaGraphInstantiate: " + cuda_err(e2);
        S.exec = nullptr;
      }
    }
    if (graph) cudaGraphDestroy(graph);
    if (!err.empty()) {
      cudaGetLastError();  // capture errors are not sticky; clear the last one
      mark_not_capturable(S, "capturing its launches as a CUDA graph failed: " + err);
      note_not_captured(S, S.why_not);
      return;
    }
    S.ws = res->workspace(0);
  }

  // ---- profiling ----

  void record_event(size_t si, bool start) {
    auto it = events.find(si);
    if (it == events.end()) {
      std::pair<cudaEvent_t, cudaEvent_t> ev{};
      SHARDRT_CUDA_CHECK(cudaEventCreate(&ev.first));
      SHARDRT_CUDA_CHECK(cudaEventCreate(&ev.second));
      it = events.emplace(si, ev).first;
    }
    SHARDRT_CUDA_CHECK(cudaEventRecord(start ? it->second.first : it->second.second, stream));
    if (!start) timed[si] = 1;
  }

  void collect_profile() {
    profile_pending = false;
    for (size_t si = 0; si < steps.size(); ++si) {
      double ms = host_ms.size() > si ? host_ms[si] : 0.0;
      if (timed.size() > si && timed[si]) {
        float f = 0;
        SHARDRT_CUDA_CHECK(cudaEventElapsedTime(&f, events.at(si).first, events.at(si).second));
        ms += f;
      }
      layer_ms[si] += ms;
    }
    ++profiled_runs;
  }

  const Engine::Impl& e;
  dist::Communicator* comm = nullptr;
  std::unique_ptr<Resources> res;
  std::unique_ptr<DeviceComm> dcomm;
  std::string staged_reason;  // non-empty: collectives are not capturable
  cudaStream_t stream = nullptr;
  std::vector<Value*> vals;
  std::unordered_map<const Value*, int> index;
  std::vector<const MemorySlot*> slot;  // per value
  std::vector<Step> steps;
  std::vector<const Node*> nodes;
  std::vector<DevTensor> const_dev;  // per value: the constant's device copy
  DevBuf consts, arena;
  std::vector<DevBuf> staging;  // per graph input
  std::vector<Dims> input_dims;
  std::vector<std::unique_ptr<Sig>> sigs;
  Sig* cur = nullptr;
  uint64_t clock = 0;
  bool ran = false, last_replay = false;
  bool poison = false, graphs = true, debug_sync = false;
  bool check_numerics = false;  // ContextOptions::check_numerics
  DevBuf numerics_buf;          // DeviceNumerics records of one node's values
  std::set<std::string> warned_ops;
  bool profiling = false, profile_pending = false;
  std::map<size_t, std::pair<cudaEvent_t, cudaEvent_t>> events;
  std::vector<double> layer_ms, host_ms;
  std::vector<char> timed;
  int profiled_runs = 0;
};

}  // namespace
}  // namespace cuda

std::unique_ptr<ExecBackend> make_cuda_backend(const Engine::Impl& e, dist::Communicator* comm) {
  return std::make_unique<cuda::CudaBackend>(e, comm);
}

void cuda_stream_wait(void* waiting, void* stream) {
  if (waiting == stream) return;
  auto w = static_cast<cudaStream_t>(waiting), s = static_cast<cudaStream_t>(stream);
  // The event must belong to the recorded stream's GPU.
  int dev = 0;
  SHARDRT_CUDA_CHECK(cudaStreamGetDevice(s, &dev));
  cuda::DeviceGuard guard(dev);
  cudaEvent_t ev = nullptr;
  SHARDRT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t e1 = cudaEventRecord(ev, s);
  cudaError_t e2 = e1 == cudaSuccess ? cudaStreamWaitEvent(w, ev, 0) : e1;
  cudaEventDestroy(ev);  // released once the wait no longer needs it
  if (e2 != cudaSuccess) throw Error("cuda_stream_wait: " + cuda::cuda_err(e2));
}

}  // namespace shardrt
