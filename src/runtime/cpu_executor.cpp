// The CPU backend: runs the engine's nodes in order; intermediates live in one arena at
// the offsets the memory plan gave (a value larger than its slot, possible only for
// data-dependent shapes, gets its own allocation); view ops alias their input.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "backends/cpu/cpu_kernels.h"
#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "ir/op_schema.h"
#include "runtime/exec_backend.h"
#include "runtime/host_memory.h"
#include "runtime/numerics.h"

namespace shardrt {

namespace {

class CpuBackend final : public ExecBackend {
 public:
  CpuBackend(const Engine::Impl& eng, dist::Communicator* c) : e(eng), comm(c) {
    const Graph& g = *e.graph;
    for (auto& v : g.values) {
      index[v.get()] = env.size();
      env.emplace_back(v->constant ? *v->constant : Tensor());
    }
    if (e.memory.arena_bytes)
      arena = host_alloc(e.memory.arena_bytes, "the activation arena (sized for the profiles' largest shapes)");
    for (auto& n : g.nodes) {
      Step s{n.get(), cpu::find_kernel(n->op), {}, {}, {}, false};
      if (!s.kernel) throw Error(n->describe() + ": the CPU backend has no kernel for op '" + n->op + "'");
      if (!comm && n->op != "shardrt.Wait" && dist::is_collective_op(n->op))
        throw Error(n->describe() + ": the engine holds collective ops; run it in an ExecutionContext created with "
                    "a communicator (ExecutionContext(engine, comm))");
      for (Value* v : n->inputs) s.in.push_back(v ? int(index.at(v)) : -1);
      for (Value* v : n->outputs) {
        s.out.push_back(v ? int(index.at(v)) : -1);
        auto it = v ? e.memory.slots.find(v->name) : e.memory.slots.end();
        s.slot.push_back(it == e.memory.slots.end() ? nullptr : &it->second);
      }
      s.view = n->outputs.size() >= 1 && n->outputs[0] && e.memory.aliases.count(n->outputs[0]->name);
      steps.push_back(std::move(s));
      nodes.push_back(n.get());
    }
    const char* ps = std::getenv("SHARDRT_POISON");
    poison = ps && *ps && std::string(ps) != "0";
  }

  void set_inputs(const std::map<std::string, Tensor>& inputs) override {
    check_inputs(e, inputs);
    if (check_numerics)
      for (Value* v : e.graph->inputs) {
        const Tensor& t = inputs.at(v->name);
        NumericsCount c = scan_numerics(t);
        if (c.bad()) throw Error(input_numerics_error(v->name, t.dtype(), t.dims(), c));
      }
    for (Value* v : e.graph->inputs) env[index.at(v)] = inputs.at(v->name);
    have_inputs = true;
  }

  void execute() override {
    if (!have_inputs) throw Error("execute() before set_inputs(): the context has no inputs");
    // The collectives' shape rules read the group sizes and this rank's place in them.
    std::optional<dist::ScopedGroupShapes> group_shapes;
    if (comm) group_shapes.emplace(*comm);
    std::vector<const Tensor*> ins;
    std::vector<DType> types;
    std::vector<Dims> dims;
    if (profiling) {
      layer_ms.resize(steps.size(), 0.0);
      ++profiled_runs;
    }
    for (size_t si = 0; si < steps.size(); ++si) {
      auto& s = steps[si];
      auto t0 = profiling ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
      ins.clear();
      for (int i : s.in) ins.push_back(i < 0 ? nullptr : &env[size_t(i)]);
      cpu::infer_concrete(*s.node, ins, types, dims);
      if (s.view) {
        const Tensor& src = *ins[0];
        env[size_t(s.out[0])] = src.reshaped(dims[0]);
        continue;
      }
      cpu::KernelCtx c{*s.node, ins, {}, comm, &states};
      scratch.clear();
      scratch.reserve(s.out.size());  // pointers into it must stay valid
      for (size_t o = 0; o < s.out.size(); ++o) {
        if (s.out[o] < 0) {
          // An omitted optional output still needs scratch for the kernel to write.
          scratch.emplace_back(types[o], dims[o]);
          c.out.push_back(&scratch.back());
          continue;
        }
        Tensor& t = env[size_t(s.out[o])];
        size_t need = size_t(numel(dims[o])) * dtype_size(types[o]);
        if (s.slot[o] && need <= s.slot[o]->bytes) {
          void* p = static_cast<char*>(arena.get()) + s.slot[o]->offset;
          if (poison) std::memset(p, 0xff, need);
          t = Tensor(types[o], dims[o], p, arena);
        } else {
          t = Tensor();  // drop this context's reference to the previous run's tensor first
          t = own_output(size_t(s.out[o]), types[o], dims[o], need, *s.node, o);
          if (poison && need) std::memset(t.raw(), 0xff, need);
        }
        c.out.push_back(&t);
      }
      try {
        (*s.kernel)(c);
      } catch (const std::bad_alloc&) {
        // A tensor or library buffer the kernel allocated itself (sizes unknown here).
        throw Error(s.node->describe() + ": " + host_oom_message("a host allocation while it ran"));
      }
      if (check_numerics) check_outputs(s, c);
      if (profiling)
        layer_ms[si] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    have_outputs = true;
  }

  void synchronize() override {}

  // Outputs share their buffers with this context until its next run, which drops its
  // reference before writing (own_output then allocates afresh while the caller holds one):
  // what the caller got is never overwritten. Node outputs that are graph outputs never
  // get an arena slot; an input or weight returned as-is is copied.
  std::map<std::string, Tensor> outputs() override {
    if (!have_outputs) throw Error("outputs() before execute(): the context has not run");
    std::map<std::string, Tensor> out;
    for (Value* v : e.graph->outputs) {
      const Tensor& t = env[index.at(v)];
      out[v->name] = v->producer ? t : t.clone();
    }
    return out;
  }

  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) override {
    set_inputs(inputs);
    execute();
    std::map<std::string, Tensor> out;
    for (Value* v : e.graph->outputs) {
      Tensor& t = env[index.at(v)];
      // Moved out, so that the next run can reuse the buffer once the caller drops it.
      if (v->producer && !out.count(v->name)) out[v->name] = std::move(t);
      else out[v->name] = t.clone();
    }
    // The context keeps no reference to the caller's inputs between runs.
    for (Value* v : e.graph->inputs) env[index.at(v)] = Tensor();
    have_inputs = have_outputs = false;
    return out;
  }

  void set_profiling(bool on) override { profiling = on; }
  void set_check_numerics(bool on) override { check_numerics = on; }
  std::string profile_report(size_t top) const override {
    return format_profile(nodes, layer_ms, profiled_runs, top);
  }

 private:
  struct Step {
    const Node* node;
    const cpu::Kernel* kernel;
    std::vector<int> in;   // env index or -1
    std::vector<int> out;  // env index or -1
    std::vector<const MemorySlot*> slot;
    bool view;
  };

  // Values without an arena slot (graph outputs, data-dependent sizes): the last run's
  // buffer per value, reused when nobody else holds it any more. A fresh allocation of a
  // big output (GPT-2's logits at 4 x 128 are 100 MB) costs a page fault per 4 KiB and the
  // kernel's zeroing on every run: a third of the LM head's time.
  Tensor own_output(size_t v, DType t, const Dims& d, size_t need, const Node& n, size_t o) {
    if (own_buf.size() < env.size()) {
      own_buf.resize(env.size());
      own_bytes.resize(env.size(), 0);
    }
    auto& b = own_buf[v];
    if (!b || b.use_count() != 1 || own_bytes[v] < need) {
      if (need == 0) return Tensor(t, d);
      b.reset();  // the old buffer, if nobody else holds it, goes before the new one comes
      own_bytes[v] = 0;
      b = try_host_alloc(need);
      if (!b)
        throw Error(host_oom_message("output " + std::to_string(o) + " '" + n.outputs[o]->name + "' (" +
                                         dtype_name(t) + dims_str(d) + ") of " + n.describe(),
                                     need));
      own_bytes[v] = need;
    }
    return Tensor(t, d, b.get(), b);
  }

  // --check-numerics: every float output of the step just run; the first NaN or Inf ends the
  // run, naming the node and which of its float inputs already held some.
  void check_outputs(const Step& s, const cpu::KernelCtx& c) {
    for (size_t o = 0; o < s.out.size(); ++o) {
      if (s.out[o] < 0 || !is_float(c.out[o]->dtype())) continue;
      NumericsCount cnt = scan_numerics(*c.out[o]);
      if (!cnt.bad()) continue;
      std::vector<NumericsInput> ins;
      for (size_t i = 0; i < s.in.size(); ++i) {
        const Tensor* t = c.in[i];
        if (!t || !is_float(t->dtype())) continue;
        const Value& v = *s.node->inputs[i];
        ins.push_back({i, v.name, value_origin(*e.graph, v), t->dtype(), t->dims(), scan_numerics(*t)});
      }
      throw Error(node_numerics_error(*s.node, o, c.out[o]->dtype(), c.out[o]->dims(), cnt, ins));
    }
  }

  const Engine::Impl& e;
  dist::Communicator* comm = nullptr;  // borrowed; null outside a distributed run
  std::shared_ptr<void> arena;
  cpu::NodeStates states;  // kernels' state across runs (the KV caches)
  std::unordered_map<const Value*, size_t> index;  // value -> slot in `env`
  std::vector<Tensor> env;
  std::vector<Step> steps;
  std::vector<const Node*> nodes;  // per step, for the profile report
  std::vector<Tensor> scratch;     // outputs a node has but the graph omits
  bool poison = false;  // fill buffers with 0xff before each kernel (SHARDRT_POISON, tests)
  bool profiling = false;
  bool check_numerics = false;  // ContextOptions::check_numerics
  bool have_inputs = false, have_outputs = false;
  std::vector<double> layer_ms;  // per step, summed over profiled runs
  int profiled_runs = 0;
  std::vector<std::shared_ptr<void>> own_buf;
  std::vector<size_t> own_bytes;
};

}  // namespace

std::unique_ptr<ExecBackend> make_cpu_backend(const Engine::Impl& e, dist::Communicator* comm) {
  return std::make_unique<CpuBackend>(e, comm);
}

}  // namespace shardrt
