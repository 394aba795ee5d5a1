#include "build/multi_rank.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "dist/collective_exec.h"
#include "dist/mesh.h"
#include "ir/op_schema.h"
#include "onnx/importer.h"
#include "passes/pass_manager.h"
#include "passes/shard.h"
#include "runtime/engine_impl.h"
#include "util/hash.h"

namespace fs = std::filesystem;

namespace shardrt {

using json = nlohmann::ordered_json;

MeshShape parse_mesh(const std::string& spec) {
  MeshShape m;
  std::stringstream ss(spec);
  std::string part;
  bool any = false;
  while (std::getline(ss, part, ',')) {
    auto eq = part.find('=');
    std::string k = part.substr(0, eq);
    int* slot = k == "dp" ? &m.dp : k == "tp" ? &m.tp : nullptr;
    int v = 0;
    try {
      if (eq != std::string::npos) v = std::stoi(part.substr(eq + 1));
    } catch (...) {
    }
    if (!slot || eq == std::string::npos || v < 1)
      throw Error("--mesh takes dp=N,tp=M (N, M >= 1), got '" + spec + "'");
    *slot = v;
    any = true;
  }
  if (!any) throw Error("--mesh takes dp=N,tp=M, got '" + spec + "'");
  return m;
}

std::pair<int64_t, int64_t> dp_slice(int64_t batch, int groups, int group) {
  int64_t base = batch / groups, extra = batch % groups;
  int64_t start = group * base + std::min<int64_t>(group, extra);
  return {start, base + (group < extra ? 1 : 0)};
}

namespace {

std::string hex(uint64_t h) {
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(h));
  return b;
}

std::string file_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  return hex(hash64(s.data(), s.size()));
}

// Part of `t` along `dim`: [start, start+len).
Tensor slice_dim(const Tensor& t, int64_t dim, int64_t start, int64_t len) {
  Dims d = t.dims();
  int64_t n = d[size_t(dim)];
  d[size_t(dim)] = len;
  Tensor out(t.dtype(), d);
  int64_t outer = 1, inner = int64_t(dtype_size(t.dtype()));
  for (int64_t i = 0; i < dim; ++i) outer *= d[size_t(i)];
  for (size_t i = size_t(dim) + 1; i < d.size(); ++i) inner *= d[i];
  for (int64_t o = 0; o < outer; ++o)
    std::memcpy(static_cast<char*>(out.raw()) + o * len * inner,
                static_cast<const char*>(t.raw()) + (o * n + start) * inner, size_t(len * inner));
  return out;
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

void Manifest::save(const std::string& dir) const {
  json j;
  j["format"] = "shardrt-multi-rank";
  j["version"] = 1;
  j["model"] = model;
  j["mesh"] = {{"dp", mesh.dp}, {"tp", mesh.tp}, {"world_size", mesh.world()}};
  j["plan"] = {{"source", plan_source}, {"tp_plan", plan_json.empty() ? json(nullptr) : json::parse(plan_json)["tp_plan"]}};
  json in = json::object(), out = json::object();
  for (auto& [k, p] : input_placements) in[k] = p.str();
  for (auto& [k, p] : output_placements) out[k] = p.str();
  j["inputs"] = in;
  j["outputs"] = out;
  json rs = json::array();
  for (auto& r : ranks)
    rs.push_back({{"rank", r.rank}, {"dp_index", r.dp_index}, {"tp_index", r.tp_index}, {"file", r.file}, {"hash", r.hash}});
  j["ranks"] = rs;
  std::ofstream f(fs::path(dir) / "manifest.json");
  f << j.dump(2) << "\n";
  if (!f) throw Error("cannot write " + (fs::path(dir) / "manifest.json").string());
}

Manifest Manifest::load(const std::string& dir) {
  fs::path p = fs::path(dir) / "manifest.json";
  std::ifstream f(p);
  if (!f) throw Error("'" + dir + "' is not a per-rank engine folder: it has no manifest.json");
  Manifest m;
  try {
    json j = json::parse(f);
    if (j.value("format", "") != "shardrt-multi-rank") throw Error("not a shardrt multi-rank manifest");
    m.model = j.value("model", "");
    m.mesh.dp = j["mesh"]["dp"].get<int>();
    m.mesh.tp = j["mesh"]["tp"].get<int>();
    m.plan_source = j["plan"]["source"].get<std::string>();
    if (!j["plan"]["tp_plan"].is_null()) m.plan_json = json{{"tp_plan", j["plan"]["tp_plan"]}}.dump(2);
    for (auto& [k, v] : j["inputs"].items()) m.input_placements[k] = *dist::parse_placement(v.get<std::string>());
    for (auto& [k, v] : j["outputs"].items()) m.output_placements[k] = *dist::parse_placement(v.get<std::string>());
    for (auto& r : j["ranks"])
      m.ranks.push_back({r["rank"].get<int>(), r["dp_index"].get<int>(), r["tp_index"].get<int>(), r["file"].get<std::string>(),
                         r["hash"].get<std::string>()});
  } catch (const Error& e) {
    throw Error(p.string() + ": " + e.what());
  } catch (const std::exception& e) {
    throw Error(p.string() + ": malformed manifest: " + e.what());
  }
  if (int(m.ranks.size()) != m.mesh.world())
    throw Error(p.string() + ": lists " + std::to_string(m.ranks.size()) + " ranks for mesh " + m.mesh.str());
  return m;
}

namespace {

// The default pipeline, so that the sharding pass sees linear layers, attention and
// rotary as single nodes.
void fuse_for_sharding(Graph& g, const BuildConfig& c) {
  infer_graph(g);
  g.verify();
  PipelineOptions po;
  po.optimize = c.optimize;
  po.disabled_passes = c.disabled_passes;
  // The residual Add + norm, norm + Linear and attention + Linear fusions wait until after
  // sharding (the per-rank build runs the pipeline again): the sharding rules know
  // LayerNormalization, RMSNorm and Linear, not the fused ops.
  po.disabled_passes.push_back("fuse_add_norm");
  po.disabled_passes.push_back("fuse_norm_linear");
  po.disabled_passes.push_back("fuse_attention_linear");
  PassManager pm = default_pipeline(po);
  pm.run(g);
  g.sort();
  g.compact();
  infer_graph(g);
}

}  // namespace

Engine build_rank_engine(Graph&& g, const dist::ShardingPlan& plan, const MeshShape& mesh, int t, const BuildConfig& config,
                         ShardResult* result) {
  fuse_for_sharding(g, config);
  dist::ScopedGroupShapes gs(mesh.dp, mesh.tp, t);
  ShardResult sr = shard_graph(g, plan, mesh.tp, t, mesh.dp > 1);
  BuildConfig cfg = config;
    // Local profiles: data parallel takes a slice of dim 0, a Shard(d) input a chunk of d.
    for (Value* v : g.inputs) {
      dist::Placement p = sr.inputs.count(v->name) ? sr.inputs[v->name] : dist::Placement::replicate();
      bool dp0 = mesh.dp > 1 && !v->shape.empty();
      bool tpd = p.is_shard();
      if (!dp0 && !tpd) continue;
      ShapeProfile prof;
      if (cfg.shapes.count(v->name)) prof = cfg.shapes[v->name];
      else {
        Dims full;
        for (auto& d : sr.global_dims[v->name]) full.push_back(std::stoll(d));
        prof = {full, full, full};
      }
      auto shrink = [&](size_t d, int parts) {
        prof.max[d] = ceil_div(prof.max[d], parts);
        prof.opt[d] = std::max<int64_t>(1, ceil_div(prof.opt[d], parts));
        prof.min[d] = 0;
        v->shape[d] = Dim::symbol(v->name + "_local" + std::to_string(d));
      };
      if (dp0) shrink(0, mesh.dp);
      if (tpd) {
        size_t d = size_t(p.dim);
        if (v->shape[d].known()) prof.min[d] = prof.opt[d] = prof.max[d] = v->shape[d].value;  // the pass set the chunk
        else if (!(dp0 && d == 0)) shrink(d, mesh.tp);
        else { prof.max[0] = ceil_div(prof.max[0], mesh.tp); prof.opt[0] = std::max<int64_t>(1, ceil_div(prof.opt[0], mesh.tp)); }
      }
      for (size_t d = 0; d < prof.min.size(); ++d) prof.opt[d] = std::min(std::max(prof.opt[d], prof.min[d]), prof.max[d]);
      cfg.shapes[v->name] = prof;
    }
  Engine e = build_engine_from_graph(std::move(g), cfg);
  auto& bs = e.impl().build_settings;
  bs["mesh"] = mesh.str();
  bs["tp_index"] = std::to_string(t);
  bs["parallel"] = sr.report();
  if (result) *result = std::move(sr);
  return e;
}

Manifest build_multi_rank(const std::function<Graph()>& make_graph, const std::string& dir, const MultiRankOptions& o,
                          const std::string& model_name) {
  const MeshShape& mesh = o.mesh;
  if (mesh.dp < 1 || mesh.tp < 1) throw Error("mesh " + mesh.str() + ": sizes must be >= 1");
  auto log = [&](const std::string& s) { if (o.log) o.log(s); };
  fs::create_directories(dir);
  Manifest man;
  man.mesh = mesh;
  man.model = model_name;
  dist::ShardingPlan plan;
  std::string plan_source = "none";
  if (o.plan_object) { plan = *o.plan_object; plan_source = "code"; }
  else if (!o.plan.empty() && o.plan != "auto") { plan = dist::load_plan_file(o.plan); plan_source = o.plan; }
  std::vector<std::string> files(size_t(mesh.tp));
  for (int t = 0; t < mesh.tp; ++t) {
    Graph g = make_graph();
    if (o.plan == "auto" && !o.plan_object) {
      fuse_for_sharding(g, o.config);
      std::string rep;
      plan = dist::auto_plan(g, mesh.tp, rep);
      plan_source = "auto";
      if (t == 0) log("auto plan for tp=" + std::to_string(mesh.tp) + ":\n" + rep);
    }
    ShardResult sr;
    Engine e = build_rank_engine(std::move(g), plan, mesh, t, o.config, &sr);
    log("tp index " + std::to_string(t) + ": " + std::to_string(sr.collectives.size()) + " collectives");
    auto& bs = e.impl().build_settings;
    bs["plan_source"] = plan_source;
    std::string file = "tp" + std::to_string(t) + ".engine";
    // Ranks of one tp index across dp groups run the same engine: written once per rank
    // so every rank has its own file, as the manifest lists.
    for (int d = 0; d < mesh.dp; ++d) {
      int rank = d * mesh.tp + t;
      std::string name = "rank" + std::to_string(rank) + ".engine";
      bs["rank"] = std::to_string(rank);
      e.save((fs::path(dir) / name).string());
      man.ranks.push_back({rank, d, t, name, file_hash((fs::path(dir) / name).string())});
    }
    if (t == 0) { man.input_placements = sr.inputs; man.output_placements = sr.outputs; }
    (void)file;
  }
  std::sort(man.ranks.begin(), man.ranks.end(), [](auto& a, auto& b) { return a.rank < b.rank; });
  man.plan_source = plan_source;
  man.plan_json = plan.entries.empty() ? "" : plan.to_json();
  man.save(dir);
  return man;
}

Manifest build_multi_rank_from_onnx(const std::string& onnx_path, const std::string& dir, const MultiRankOptions& o) {
  return build_multi_rank([&] { return import_onnx_file(onnx_path); }, dir, o, fs::path(onnx_path).filename().string());
}

void check_launch(const Manifest& m, const std::string& dir, int world_size, const MeshShape* asked) {
  if (world_size != m.mesh.world())
    throw Error("engine folder '" + dir + "' was built for mesh " + m.mesh.str() + " (" + std::to_string(m.mesh.world()) +
                " ranks), but this launch has " + std::to_string(world_size) + " rank(s): run it with mpirun -n " +
                std::to_string(m.mesh.world()));
  if (asked && (asked->dp != m.mesh.dp || asked->tp != m.mesh.tp))
    throw Error("engine folder '" + dir + "' was built for mesh " + m.mesh.str() + ", but --mesh asks for " + asked->str());
}

Engine load_rank_engine(const Manifest& m, const std::string& dir, int rank) {
  for (auto& r : m.ranks)
    if (r.rank == rank) {
      std::string path = (fs::path(dir) / r.file).string();
      if (!fs::exists(path)) throw Error("rank " + std::to_string(rank) + ": engine file '" + path + "' is missing");
      std::string h = file_hash(path);
      if (h != r.hash)
        throw Error("rank " + std::to_string(rank) + ": engine file '" + path + "' has hash " + h + ", the manifest says " + r.hash);
      return Engine::load(path);
    }
  throw Error("the manifest in '" + dir + "' has no rank " + std::to_string(rank));
}

std::map<std::string, Tensor> run_multi_rank(const std::string& dir, const std::map<std::string, Tensor>& inputs,
                                             dist::Communicator& world, const MeshShape* asked,
                                             const std::string& device, bool check_numerics) {
  Manifest m = Manifest::load(dir);
  check_launch(m, dir, world.size(), asked);
  dist::Mesh mesh(world, m.mesh.dp, m.mesh.tp);
  const int rank = world.rank(), tpi = mesh.tp_index(), dpi = mesh.dp_index();
  std::string who = "rank " + std::to_string(rank) + ": ";
  Engine e = load_rank_engine(m, dir, rank);
  std::map<std::string, Tensor> local;
  int64_t batch = -1;
  int64_t my_items = 1;
  for (auto& b : e.inputs()) {
    auto it = inputs.find(b.name);
    if (it == inputs.end()) throw Error(who + "no --input for '" + b.name + "'");
    Tensor t = it->second;
    if (m.mesh.dp > 1) {
      if (t.rank() == 0) throw Error(who + "input '" + b.name + "' is a scalar: data parallel splits dim 0");
      if (batch >= 0 && t.dim(0) != batch)
        throw Error(who + "data parallel: input '" + b.name + "' has " + std::to_string(t.dim(0)) + " items, others " + std::to_string(batch));
      batch = t.dim(0);
      auto [s, c] = dp_slice(batch, m.mesh.dp, dpi);
      my_items = c;
      t = slice_dim(t, 0, s, c);
    }
    dist::Placement p = m.input_placements.count(b.name) ? m.input_placements.at(b.name) : dist::Placement::replicate();
    if (p.is_shard()) {
      auto sizes = dist::chunk_sizes(t.dim(p.dim), m.mesh.tp);
      int64_t s = 0;
      for (int i = 0; i < tpi; ++i) s += sizes[size_t(i)];
      t = slice_dim(t, p.dim, s, sizes[size_t(tpi)]);
    }
    local[b.name] = t;
  }
  std::map<std::string, Tensor> outs;
  // A data-parallel group with no items does not run (its tensor-parallel peers are in the
  // same group, so no collective waits on it); it still takes part in the gathers below.
  if (my_items > 0) {
    ContextOptions co;
    co.device = device;
    co.comm = &mesh;
    co.check_numerics = check_numerics;
    try {
      ExecutionContext ctx(e, co);
      outs = ctx.run(local);
    } catch (const Error& ex) {
      // Which rank (and so which slice of the inputs) a --check-numerics stop or an
      // out-of-memory happened on.
      throw Error(who + ex.what());
    }
  }
  std::map<std::string, Tensor> result;
  for (auto& b : e.outputs()) {
    dist::Placement p = m.output_placements.count(b.name) ? m.output_placements.at(b.name) : dist::Placement::replicate();
    bool have = outs.count(b.name) != 0;
    bool contributes = have && (p.is_shard() || tpi == 0);
    int64_t mine = contributes ? outs[b.name].numel() : 0;
    std::vector<int64_t> counts(size_t(world.size()));
    world.all_gather(&mine, counts.data(), 1, DType::I64, {"", "gather output counts"});
    // Rank 0 always holds items (the first groups take the most): its dims tell the rest.
    int64_t r = int64_t(b.dims.size());
    std::vector<int64_t> dims(size_t(r), 0);
    if (rank == 0 && have) dims = outs[b.name].dims();
    if (r > 0) world.broadcast(dims.data(), r, DType::I64, 0, {"", "output dims"});
    int64_t total = 0;
    for (int64_t c : counts) total += c;
    Tensor all(b.dtype, {total});
    const void* send = contributes ? outs[b.name].raw() : nullptr;
    Tensor empty(b.dtype, {0});
    world.all_gather(send ? send : empty.raw(), all.raw(), counts, b.dtype, {"", "gather output " + b.name});
    if (rank == 0) {
      if (r == 0) { result[b.name] = all.reshaped({}); continue; }
      int64_t inner = 1;
      for (int64_t i = 1; i < r; ++i) inner *= dims[size_t(i)];
      Dims d = dims;
      d[0] = inner ? total / inner : 0;
      result[b.name] = all.reshaped(d);
    }
  }
  return result;
}

}  // namespace shardrt
