// Per-rank engines of a dp × tp mesh: a folder with one engine file per rank and
// manifest.json (mesh, plan, per-rank file names and hashes, binding placements), and the
// distributed run that loads it (each rank its own engine; the batch split between
// data-parallel groups; outputs gathered on rank 0).
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "dist/plan.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

namespace shardrt {

namespace dist {
class Communicator;
}
struct ShardResult;

struct MeshShape {
  int dp = 1, tp = 1;
  int world() const { return dp * tp; }
  std::string str() const { return "dp=" + std::to_string(dp) + ",tp=" + std::to_string(tp); }
};
// "dp=2,tp=2" (either order, either may be left out: it is then 1).
MeshShape parse_mesh(const std::string& spec);

struct MultiRankOptions {
  MeshShape mesh;
  std::string plan;  // a plan file, "auto", or "" (nothing sharded: pure data parallel)
  const dist::ShardingPlan* plan_object = nullptr;  // a plan built in code (overrides `plan`)
  BuildConfig config;
  std::function<void(const std::string&)> log;  // what the auto plan chose, per-rank progress
};

struct RankEntry {
  int rank = 0, dp_index = 0, tp_index = 0;
  std::string file;
  std::string hash;  // hex of hash64 over the file's bytes
};

struct Manifest {
  MeshShape mesh;
  std::string plan_source;  // file name, "auto", "code" or "none"
  std::string plan_json;    // the plan actually used (auto plans included)
  std::vector<RankEntry> ranks;
  std::map<std::string, dist::Placement> input_placements, output_placements;
  std::string model;
  static Manifest load(const std::string& dir);  // errors name the folder
  void save(const std::string& dir) const;
};

// One rank's engine, built in memory: the graph is fused, sharded for tensor-parallel index
// `tp_index` under `plan` and compiled. `result` (optional) receives the pass's report.
Engine build_rank_engine(Graph&& g, const dist::ShardingPlan& plan, const MeshShape& mesh, int tp_index,
                         const BuildConfig& config, struct ShardResult* result = nullptr);

// Builds `mesh.tp` engines (ranks of one tp index share theirs) from graphs made by
// `make_graph` (called once per tp index: the pass rewrites its graph) and writes the
// folder. Returns the manifest written.
Manifest build_multi_rank(const std::function<Graph()>& make_graph, const std::string& dir, const MultiRankOptions& o,
                          const std::string& model_name = "");
Manifest build_multi_rank_from_onnx(const std::string& onnx_path, const std::string& dir, const MultiRankOptions& o);

// Checks that a launch of `world_size` ranks (and, when given, the mesh asked for) matches
// the manifest; throws the same Error on every rank otherwise.
void check_launch(const Manifest& m, const std::string& dir, int world_size, const MeshShape* asked = nullptr);
// Loads rank `rank`'s engine, verifying its hash against the manifest.
Engine load_rank_engine(const Manifest& m, const std::string& dir, int rank);

// Data parallel: the contiguous slice [start, start+count) of a batch of `batch` items that
// group `group` of `groups` takes (the first groups take one more when it does not divide).
std::pair<int64_t, int64_t> dp_slice(int64_t batch, int groups, int group);

// The distributed `shardrt run DIR`: every rank reads the inputs, takes its slice (data
// parallel on dim 0, then its tensor-parallel chunk for sharded inputs), runs its engine,
// and rank 0 writes the gathered outputs (original batch order) to `out_dir`. Returns the
// process exit code; errors are thrown as Error with the rank named.
// `device` ("cpu", "cuda", or "" for the engines' build setting) is where each rank runs
// (CUDA: one GPU per local rank, collectives through NCCL or staged through MPI).
// `check_numerics`: ContextOptions::check_numerics on every rank.
std::map<std::string, Tensor> run_multi_rank(const std::string& dir, const std::map<std::string, Tensor>& inputs,
                                             dist::Communicator& world, const MeshShape* asked = nullptr,
                                             const std::string& device = "", bool check_numerics = false);

}  // namespace shardrt
