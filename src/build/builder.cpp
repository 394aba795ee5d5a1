// Builder: graph → checked profiles → pass pipeline → memory plan → Engine.
#include <chrono>
#include <ctime>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <unordered_map>

#include "backends/cpu/cpu_kernels.h"
#include "backends/cuda/cuda_eval.h"
#include "backends/cuda/peer_allreduce.h"
#include "build/engine_file.h"
#include "build/memory_plan.h"
#include "ir/checked_size.h"
#include "ir/op_schema.h"
#include "ir/ops/ops.h"
#include "onnx/importer.h"
#include "passes/pass_manager.h"
#include "runtime/exec_backend.h"
#include "runtime/host_memory.h"
#include "shardrt/network.h"

namespace shardrt {

namespace {

void progress(const BuildConfig& c, const std::string& stage, int done, int total) {
  if (c.progress) c.progress(stage, done, total);
}

// Checks each input's profile against its declared shape and returns the dims of the
// largest profile shape (used to size the memory plan).
std::map<std::string, Dims> check_profiles(const Graph& g, const BuildConfig& cfg) {
  for (auto& [name, p] : cfg.shapes) {
    bool found = false;
    for (Value* v : g.inputs) found |= v->name == name;
    if (!found) {
      std::string names;
      for (Value* v : g.inputs) names += (names.empty() ? "" : ", ") + v->name;
      throw Error("--shapes names '" + name + "', which is not an input of the model (inputs: " + names + ")");
    }
  }
  std::map<std::string, Dims> maxd;
  for (Value* v : g.inputs) {
    auto it = cfg.shapes.find(v->name);
    if (it == cfg.shapes.end()) {
      if (!shape_known(v->shape))
        throw Error("input '" + v->name + "' has dynamic shape " + shape_str(v->shape) +
                    ": give its range with --shapes " + v->name + ":MIN/OPT/MAX (e.g. 1x16/4x128/8x512)");
      maxd[v->name] = shape_dims(v->shape);
      continue;
    }
    const ShapeProfile& p = it->second;
    size_t r = v->shape.size();
    if (p.min.size() != r || p.opt.size() != r || p.max.size() != r)
      throw Error("profile of input '" + v->name + "' has rank " + std::to_string(p.max.size()) + ", the input has rank " +
                  std::to_string(r) + " " + shape_str(v->shape));
    for (size_t d = 0; d < r; ++d) {
      if (!(p.min[d] >= 0 && p.min[d] <= p.opt[d] && p.opt[d] <= p.max[d]))
        throw Error("profile of input '" + v->name + "': dim " + std::to_string(d) + " needs min <= opt <= max, got " +
                    std::to_string(p.min[d]) + "/" + std::to_string(p.opt[d]) + "/" + std::to_string(p.max[d]));
      if (v->shape[d].known() && (p.min[d] != v->shape[d].value || p.max[d] != v->shape[d].value))
        throw Error("profile of input '" + v->name + "': dim " + std::to_string(d) + " is fixed at " +
                    std::to_string(v->shape[d].value) + " in the model");
    }
    maxd[v->name] = p.max;
  }
  return maxd;
}

// Whether a node is float math big enough that the sizing run should not compute it: every
// output is floating point and the node reads or writes more than 64 Ki elements (shape
// arithmetic is integer, and tiny float scalars are still computed).
bool float_work(const std::vector<DType>& types, const std::vector<Dims>& dims, const std::vector<const Tensor*>& ins) {
  if (types.empty()) return false;
  int64_t elems = 0;
  for (size_t o = 0; o < types.size(); ++o) {
    if (!is_float(types[o])) return false;
    elems += numel(dims[o]);
  }
  for (const Tensor* t : ins)
    if (t) elems += t->numel();
  return elems > (int64_t(1) << 16);
}

// A zero tensor whose pages are mapped only when touched.
Tensor lazy_zeros(DType t, const Dims& d) {
  size_t bytes = checked_nbytes(t, d, "tensor");
  void* p = std::calloc(bytes ? bytes : 1, 1);
  if (!p) throw std::bad_alloc();
  return Tensor(t, d, p, std::shared_ptr<void>(p, [](void* q) { std::free(q); }));
}

// Runs the graph once on zero inputs of the largest profile shapes to learn every
// intermediate's size (exact even where shapes come from data-independent shape math).
// Returns false when the run is not possible (e.g. an op rejects zeros).
bool measure_sizes(const Graph& g, const std::map<std::string, Dims>& maxd, std::map<std::string, size_t>& bytes,
                   const BuildConfig& cfg, std::string& why) {
  std::unordered_map<const Value*, Tensor> env;
  std::unordered_map<const Value*, size_t> last_use;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (Value* v : g.nodes[i]->inputs) if (v) last_use[v] = i;
  for (Value* v : g.inputs) env[v] = Tensor(v->dtype, maxd.at(v->name));
  try {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
      const Node& n = *g.nodes[i];
      std::vector<const Tensor*> ins;
      for (Value* v : n.inputs) ins.push_back(!v ? nullptr : v->constant ? v->constant.get() : &env.at(v));
      std::vector<Tensor> outs;
      const OpSchema* schema = find_schema(n.op);
      std::vector<DType> types;
      std::vector<Dims> dims;
      cpu::infer_concrete(n, ins, types, dims);
      if ((schema && schema->stateful) || float_work(types, dims, ins)) {
        // The sizes come from the shape rule: kept state needs a context (and zeros may
        // break its contract), and large float math (GEMMs, attention, norms at the
        // largest profile shapes) would take minutes on the host for a big model while its
        // values never decide a shape. Zero pages from calloc stand for the outputs: they
        // cost no memory until something reads them.
        for (size_t o = 0; o < types.size(); ++o) outs.push_back(lazy_zeros(types[o], dims[o]));
      } else {
        outs = cpu::eval_node(n, ins);
      }
      for (size_t o = 0; o < n.outputs.size() && o < outs.size(); ++o) {
        if (!n.outputs[o]) continue;
        bytes[n.outputs[o]->name] = outs[o].nbytes();
        env[n.outputs[o]] = std::move(outs[o]);
      }
      for (Value* v : n.inputs)
        if (v && last_use[v] == i && !v->constant) env.erase(v);
      if (i % 16 == 0 || i + 1 == g.nodes.size()) progress(cfg, "plan memory", int(i + 1), int(g.nodes.size()));
    }
  } catch (const std::exception& ex) {
    why = ex.what();
    return false;
  }
  return true;
}

// Runs the engine once on the GPU at each input's opt shape (N(0,1) floats, zero
// integers: always valid indices) and stores what the CUDA kernels chose (GEMM algorithms,
// ...) in each node's "cuda_tactics" attribute, which kernels read at load instead of
// timing again. A failure here costs only the tactics: the kernels time at run time then.
void record_cuda_tactics(Engine::Impl& e, const BuildConfig& cfg) {
  progress(cfg, "tune (cuda)", 0, 1);
  try {
    std::map<std::string, Tensor> ins;
    std::mt19937 rng(0);
    std::normal_distribution<float> nd;
    for (auto& b : e.inputs) {
      Dims d;
      if (b.profile) d = b.profile->opt;
      else for (auto& s : b.dims) d.push_back(std::stoll(s));
      Tensor t(b.dtype, d);
      std::memset(t.raw(), 0, t.nbytes());
      if (is_float(b.dtype))
        for (int64_t i = 0; i < t.numel(); ++i) t.set_f(i, nd(rng));
      ins[b.name] = std::move(t);
    }
    auto backend = make_cuda_backend(e, nullptr);
    backend->run(ins);
    size_t tuned = 0;
    for (auto& [node, kv] : backend->tactics()) {
      std::vector<std::string> strs;
      for (auto& [k, v] : kv) strs.push_back(k + "=" + v);
      const_cast<Node*>(node)->attrs["cuda_tactics"] = Attr::of_strings(strs);
      ++tuned;
    }
    std::fprintf(stderr, "shardrt: tuned on %s: tactics for %zu layers\n", cuda::device_description().c_str(), tuned);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "shardrt: warning: the tuning run on the GPU failed (%s); the engine carries no CUDA tactics\n",
                 ex.what());
  }
  progress(cfg, "tune (cuda)", 1, 1);
}

std::vector<std::string> dims_strings(const Shape& s) {
  std::vector<std::string> r;
  for (auto& d : s) r.push_back(d.str());
  return r;
}

// The build; `stage` follows it so that running out of host memory can say where.
Engine build_from_graph(Graph&& graph, const BuildConfig& cfg, std::string& stage) {
  stage = "check";
  check_device_name(cfg.device, "BuildConfig::device");
  auto g = std::make_unique<Graph>(std::move(graph));
  infer_graph(*g);
  g->verify();
  auto maxd = check_profiles(*g, cfg);
  auto e = std::make_unique<Engine::Impl>();
  // Bindings are fixed before optimisation: passes keep input and output names.
  for (Value* v : g->inputs) {
    Binding b{v->name, v->dtype, dims_strings(v->shape), std::nullopt, true};
    if (cfg.shapes.count(v->name)) b.profile = cfg.shapes.at(v->name);
    e->inputs.push_back(b);
  }
  for (Value* v : g->outputs) e->outputs.push_back({v->name, v->dtype, dims_strings(v->shape), std::nullopt, false});

  PipelineOptions po;
  po.autocast = cfg.autocast;
  po.optimize = cfg.optimize;
  po.disabled_passes = cfg.disabled_passes;
  po.verbose = cfg.verbose;
  stage = "optimize";
  progress(cfg, "optimize", 0, 1);
  PassManager pm = default_pipeline(po);
  pm.run(*g);
  g->sort();
  g->compact();
  infer_graph(*g);
  g->verify();
  progress(cfg, "optimize", 1, 1);

  // Every node must have a kernel before any engine is written.
  std::string missing;
  for (auto& n : g->nodes)
    if (!cpu::supports(*n)) missing += "\n  " + n->describe() + ": no CPU kernel";
  if (!missing.empty()) throw Error("the CPU backend cannot run this graph:" + missing);

  stage = "plan memory";
  std::map<std::string, size_t> sizes;
  std::string why;
  if (!measure_sizes(*g, maxd, sizes, cfg, why)) {
    if (cfg.verbose) std::fprintf(stderr, "shardrt: no memory plan (sizing run failed: %s); intermediates allocate per run\n", why.c_str());
    sizes.clear();
  }
  e->memory = plan_memory(*g, sizes);

  for (Value* v : g->outputs)
    for (auto& b : e->outputs)
      if (b.name == v->name) b.dims = dims_strings(v->shape);
  size_t wbytes = 0;
  for (auto& v : g->values) if (v->constant) wbytes += v->constant->nbytes();
  e->weight_bytes = wbytes;
  std::time_t now = std::time(nullptr);
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  e->build_settings = {{"shardrt_version", "0.1.0"},
                       {"backend", "cpu"},
                       {"device", cfg.device},
                       {"autocast", cfg.autocast ? dtype_name(*cfg.autocast) : "none"},
                       {"optimize", cfg.optimize ? "true" : "false"},
                       {"created", ts},
                       {"passes", pm.stats_report()}};
  e->graph = std::move(g);
  stage = "tune (cuda)";
  if (cfg.device == "cuda" && cuda::device_available()) record_cuda_tactics(*e, cfg);
  progress(cfg, "done", 1, 1);
  return Engine(std::move(e));
}

}  // namespace

Engine build_engine_from_graph(Graph&& graph, const BuildConfig& cfg) {
  std::string stage;
  try {
    return build_from_graph(std::move(graph), cfg, stage);
  } catch (const std::bad_alloc&) {
    // Constant folding or the sizing run allocating beyond the machine (a pass that runs
    // out names itself: see PassManager::run).
    throw Error(host_oom_message("the build (stage '" + stage + "')"));
  }
}

Engine build_engine_from_onnx(const std::string& path, const BuildConfig& cfg) {
  progress(cfg, "import", 0, 1);
  Graph g;
  try {
    g = import_onnx_file(path);
  } catch (const std::bad_alloc&) {
    throw Error(host_oom_message("the import of '" + path + "' (its weights)"));
  }
  progress(cfg, "import", 1, 1);
  return build_engine_from_graph(std::move(g), cfg);
}

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
Engine::Engine(Engine&&) noexcept = default;
Engine& Engine::operator=(Engine&&) noexcept = default;

void Engine::save(const std::string& path) const { save_engine_file(*impl_, path); }
Engine Engine::load(const std::string& path, bool verify) { return Engine(load_engine_file(path, verify)); }
const std::vector<Binding>& Engine::inputs() const { return impl_->inputs; }
const std::vector<Binding>& Engine::outputs() const { return impl_->outputs; }
const Graph& Engine::graph() const { return *impl_->graph; }
size_t Engine::arena_bytes() const { return impl_->memory.arena_bytes; }
size_t Engine::weight_bytes() const { return impl_->weight_bytes; }
size_t Engine::layer_count() const { return impl_->graph->nodes.size(); }

namespace {

// Bytes of an all-reduce's message at the input profiles' opt and max shapes (-1 where a
// dim cannot be resolved): output dims are numbers, binding symbols, or products "a*b".
std::pair<int64_t, int64_t> collective_bytes(const Node& n, const std::vector<Binding>& inputs) {
  std::map<std::string, std::pair<int64_t, int64_t>> sym;
  for (auto& b : inputs)
    if (b.profile)
      for (size_t d = 0; d < b.dims.size() && d < b.profile->opt.size(); ++d)
        sym.emplace(b.dims[d], std::make_pair(b.profile->opt[d], b.profile->max[d]));
  if (n.outputs.empty() || !n.outputs[0]) return {-1, -1};
  const Value& v = *n.outputs[0];
  int64_t opt = int64_t(dtype_size(v.dtype)), max = opt;
  for (const Dim& d : v.shape) {
    if (d.known()) { opt *= d.value; max *= d.value; continue; }
    std::stringstream factors(d.sym);
    std::string f;
    while (std::getline(factors, f, '*')) {
      if (!f.empty() && f.find_first_not_of("0123456789") == std::string::npos) { opt *= std::stoll(f); max *= std::stoll(f); continue; }
      auto it = sym.find(f);
      if (it == sym.end()) return {-1, -1};
      opt *= it->second.first;
      max *= it->second.second;
    }
  }
  return {opt, max};
}

}  // namespace

std::string Engine::inspect(bool as_json) const {
  using json = nlohmann::json;
  const Graph& g = *impl_->graph;
  auto bind = [](const Binding& b) {
    json j = {{"name", b.name}, {"dtype", dtype_name(b.dtype)}, {"dims", b.dims}};
    if (b.profile) j["profile"] = {{"min", b.profile->min}, {"opt", b.profile->opt}, {"max", b.profile->max}};
    return j;
  };
  json layers = json::array();
  std::map<std::string, int> op_counts;
  for (auto& n : g.nodes) {
    json outs = json::array();
    for (Value* v : n->outputs)
      if (v) outs.push_back({{"name", v->name}, {"dtype", dtype_name(v->dtype)}, {"shape", shape_str(v->shape)}});
    json l = {{"name", n->name}, {"op", n->op}, {"outputs", outs}};
    if (!n->fused_from.empty()) l["fused_from"] = n->fused_from;
    auto it = n->outputs.empty() || !n->outputs[0] ? impl_->memory.slots.end() : impl_->memory.slots.find(n->outputs[0]->name);
    if (it != impl_->memory.slots.end()) l["arena"] = {{"offset", it->second.offset}, {"bytes", it->second.bytes}};
    if (n->outputs.size() && n->outputs[0] && impl_->memory.aliases.count(n->outputs[0]->name)) l["alias_of"] = impl_->memory.aliases.at(n->outputs[0]->name);
    // The CUDA backend picks an all-reduce's path per call by its bytes (peer_allreduce.h);
    // the machine decides whether the peer path exists, so inspect states the rule.
    if (n->op == "shardrt.AllReduce" || n->op == "shardrt.AllReduceStart") {
      auto [opt, max] = collective_bytes(*n, impl_->inputs);
      l["all_reduce"] = {{"bytes_opt", opt}, {"bytes_max", max}, {"cuda_path", cuda::peer_allreduce_rule()}};
    }
    layers.push_back(l);
    op_counts[n->op]++;
  }
  json j;
  j["build"] = impl_->build_settings;
  j["bindings"] = {{"inputs", json::array()}, {"outputs", json::array()}};
  for (auto& b : impl_->inputs) j["bindings"]["inputs"].push_back(bind(b));
  for (auto& b : impl_->outputs) j["bindings"]["outputs"].push_back(bind(b));
  j["layers"] = layers;
  j["op_counts"] = op_counts;
  j["memory"] = {{"arena_bytes", impl_->memory.arena_bytes}, {"planned_values", impl_->memory.slots.size()},
                 {"sum_of_slot_bytes", impl_->memory.unplanned_bytes_sum}, {"views", impl_->memory.aliases.size()},
                 {"weight_bytes", impl_->weight_bytes}};
  const size_t kv_bytes = cached_attention_state_bytes(g);
  j["kv_cache_bytes"] = kv_bytes;
  if (as_json) return j.dump(2);
  std::ostringstream o;
  o << "engine: " << g.name << " (device " << engine_device(*impl_) << ", autocast " << impl_->build_settings["autocast"] << ")\n";
  o << "inputs:\n";
  for (auto& b : impl_->inputs) {
    o << "  " << b.name << " " << dtype_name(b.dtype) << " [";
    for (size_t i = 0; i < b.dims.size(); ++i) o << (i ? "," : "") << b.dims[i];
    o << "]";
    if (b.profile) o << " min " << dims_str(b.profile->min) << " opt " << dims_str(b.profile->opt) << " max " << dims_str(b.profile->max);
    o << "\n";
  }
  o << "outputs:\n";
  for (auto& b : impl_->outputs) {
    o << "  " << b.name << " " << dtype_name(b.dtype) << " [";
    for (size_t i = 0; i < b.dims.size(); ++i) o << (i ? "," : "") << b.dims[i];
    o << "]\n";
  }
  o << "layers (" << g.nodes.size() << "):\n";
  for (auto& l : layers) {
    o << "  " << l["op"].get<std::string>() << " '" << l["name"].get<std::string>() << "'";
    for (auto& x : l["outputs"]) o << " -> " << x["dtype"].get<std::string>() << x["shape"].get<std::string>();
    if (l.contains("fused_from")) o << "  [fused: " << l["fused_from"].get<std::string>() << "]";
    if (l.contains("alias_of")) o << "  [view of " << l["alias_of"].get<std::string>() << "]";
    if (l.contains("all_reduce")) {
      auto bytes = [](const json& b) { return b.get<int64_t>() < 0 ? std::string("?") : std::to_string(b.get<int64_t>()); };
      o << "  [all-reduce " << bytes(l["all_reduce"]["bytes_opt"]) << " bytes at opt, " << bytes(l["all_reduce"]["bytes_max"])
        << " at max; on CUDA: " << l["all_reduce"]["cuda_path"].get<std::string>() << "]";
    }
    o << "\n";
  }
  o << "op counts:";
  for (auto& [k, c] : op_counts) o << " " << k << "=" << c;
  o << "\nmemory: arena " << impl_->memory.arena_bytes << " bytes for " << impl_->memory.slots.size()
    << " intermediates (" << impl_->memory.unplanned_bytes_sum << " bytes without sharing), "
    << impl_->memory.aliases.size() << " views; weights " << impl_->weight_bytes << " bytes\n";
  if (kv_bytes) o << cached_attention_state_summary(g) << "\n";
  o << "passes:\n" << impl_->build_settings["passes"] << "\n";
  // Per-rank engines (build/multi_rank.cpp): placements, collectives with message sizes.
  if (impl_->build_settings.count("parallel"))
    o << "parallel (mesh " << impl_->build_settings["mesh"] << ", tp index " << impl_->build_settings["tp_index"] << "):\n"
      << impl_->build_settings["parallel"];
  return o.str();
}

}  // namespace shardrt
