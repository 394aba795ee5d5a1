// The CPU execution context: runs the engine's nodes in order; intermediates live in one
// arena at the offsets the memory plan gave (a value larger than its slot, possible only
// for data-dependent shapes, gets its own allocation); view ops alias their input.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "backends/cpu/cpu_kernels.h"
#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "ir/op_schema.h"
#include "runtime/engine_impl.h"

namespace shardrt {

struct ExecutionContext::Impl {
  const Engine::Impl& e;
  std::shared_ptr<void> arena;
  std::unordered_map<const Value*, size_t> index;  // value -> slot in `env`
  std::vector<Tensor> env;
  struct Step {
    const Node* node;
    const cpu::Kernel* kernel;
    std::vector<int> in;   // env index or -1
    std::vector<int> out;  // env index or -1
    std::vector<const MemorySlot*> slot;
    bool view;
  };
  std::vector<Step> steps;
  std::vector<Tensor> scratch;  // outputs a node has but the graph omits
  bool poison = false;  // fill buffers with 0xff before each kernel (SHARDRT_POISON, tests)
  bool profiling = false;
  std::vector<double> layer_ms;  // per step, summed over profiled runs
  int profiled_runs = 0;

  // Values without an arena slot (graph outputs, data-dependent sizes): the last run's
  // buffer per value, reused when nobody else holds it any more. A fresh allocation of a
  // big output (GPT-2's logits at 4 x 128 are 100 MB) costs a page fault per 4 KiB and the
  // kernel's zeroing on every run: a third of the LM head's time.
  std::vector<std::shared_ptr<void>> own_buf;
  std::vector<size_t> own_bytes;

  Tensor own_output(size_t v, DType t, const Dims& d, size_t need) {
    if (own_buf.size() < env.size()) {
      own_buf.resize(env.size());
      own_bytes.resize(env.size(), 0);
    }
    auto& b = own_buf[v];
    if (!b || b.use_count() != 1 || own_bytes[v] < need) {
      if (need == 0) return Tensor(t, d);
      void* p = std::aligned_alloc(64, (need + 63) / 64 * 64);
      if (!p) throw Error("out of memory: an output needs " + std::to_string(need) + " bytes");
      b = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
      own_bytes[v] = need;
    }
    return Tensor(t, d, b.get(), b);
  }

  dist::Communicator* comm = nullptr;  // borrowed; null outside a distributed run

  explicit Impl(const Engine::Impl& eng, dist::Communicator* c = nullptr) : e(eng), comm(c) {
    const Graph& g = *e.graph;
    for (auto& v : g.values) {
      index[v.get()] = env.size();
      env.emplace_back(v->constant ? *v->constant : Tensor());
    }
    if (e.memory.arena_bytes) {
      void* p = std::aligned_alloc(64, (e.memory.arena_bytes + 63) / 64 * 64);
      if (!p) throw Error("out of memory: the activation arena needs " + std::to_string(e.memory.arena_bytes) + " bytes");
      arena = std::shared_ptr<void>(p, [](void* q) { std::free(q); });
    }
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
    }
    const char* ps = std::getenv("SHARDRT_POISON");
    poison = ps && *ps && std::string(ps) != "0";
  }

  void check_inputs(const std::map<std::string, Tensor>& inputs) {
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

  std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs) {
    check_inputs(inputs);
    // The collectives' shape rules read the group sizes and this rank's place in them.
    std::optional<dist::ScopedGroupShapes> group_shapes;
    if (comm) group_shapes.emplace(*comm);
    const Graph& g = *e.graph;
    for (Value* v : g.inputs) env[index.at(v)] = inputs.at(v->name);
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
      cpu::KernelCtx c{*s.node, ins, {}, comm};
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
          t = own_output(size_t(s.out[o]), types[o], dims[o], need);
          if (poison && need) std::memset(t.raw(), 0xff, need);
        }
        c.out.push_back(&t);
      }
      (*s.kernel)(c);
      if (profiling)
        layer_ms[si] += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    }
    std::map<std::string, Tensor> out;
    for (Value* v : g.outputs) {
      Tensor& t = env[index.at(v)];
      // Outputs are owned by the caller. Node outputs that are graph outputs never get an
      // arena slot, so they move out; an input or weight returned as-is is copied.
      if (v->producer && !out.count(v->name)) out[v->name] = std::move(t);
      else out[v->name] = t.clone();
    }
    for (Value* v : g.inputs) env[index.at(v)] = Tensor();
    return out;
  }
};

void ExecutionContext::set_profiling(bool on) { impl_->profiling = on; }

std::string ExecutionContext::profile_report(size_t top) const {
  const Impl& m = *impl_;
  if (!m.profiled_runs) return "no profiled runs\n";
  double total = 0;
  std::map<std::string, std::pair<double, int>> by_op;
  std::vector<std::pair<double, size_t>> order;
  for (size_t i = 0; i < m.layer_ms.size(); ++i) {
    double t = m.layer_ms[i] / m.profiled_runs;
    total += t;
    auto& o = by_op[m.steps[i].node->op];
    o.first += t;
    o.second++;
    order.push_back({t, i});
  }
  std::sort(order.rbegin(), order.rend());
  std::string r;
  char buf[512];
  std::snprintf(buf, sizeof buf, "profile: %d runs, %.3f ms per run in %zu layers\n%-28s %8s %7s %6s\n",
                m.profiled_runs, total, m.layer_ms.size(), "op type", "ms", "%", "count");
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
    const Node& n = *m.steps[order[k].second].node;
    std::snprintf(buf, sizeof buf, "%-50.50s %-22.22s %8.3f %5.1f%%\n", n.name.c_str(), n.op.c_str(), order[k].first,
                  100 * order[k].first / total);
    r += buf;
  }
  return r;
}

ExecutionContext::ExecutionContext(const Engine& engine) : impl_(std::make_unique<Impl>(engine.impl())) {}
ExecutionContext::ExecutionContext(const Engine& engine, dist::Communicator& comm)
    : impl_(std::make_unique<Impl>(engine.impl(), &comm)) {}
ExecutionContext::~ExecutionContext() = default;
std::map<std::string, Tensor> ExecutionContext::run(const std::map<std::string, Tensor>& inputs) {
  return impl_->run(inputs);
}

}  // namespace shardrt
