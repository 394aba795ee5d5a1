#include "passes/pass_manager.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <sstream>

#include "ir/op_schema.h"
#include "runtime/host_memory.h"
#include "shardrt/engine.h"

namespace shardrt {

PassManager& PassManager::stage(const std::string& name) {
  stages_.push_back(Stage{name, {}});
  return *this;
}

PassManager& PassManager::add(PassPtr p) {
  if (!p) return *this;
  const auto& off = opts_.disabled_passes;
  if (std::find(off.begin(), off.end(), p->name()) != off.end()) return *this;
  if (stages_.empty()) stage("main");
  stat_for(p->name());  // list every pass in the stats, even one that never runs
  stages_.back().passes.push_back(std::move(p));
  return *this;
}

std::vector<std::string> PassManager::pass_names() const {
  std::vector<std::string> r;
  for (auto& s : stages_)
    for (auto& p : s.passes) r.push_back(p->name());
  return r;
}

void PassManager::log(const std::string& s) const {
  if (opts_.log) opts_.log(s);
  else std::fprintf(stderr, "%s\n", s.c_str());
}

PassStats& PassManager::stat_for(const std::string& name) {
  for (auto& s : stats_)
    if (s.name == name) return s;
  stats_.push_back(PassStats{name});
  return stats_.back();
}

static bool graph_has_any(const Graph& g, const std::vector<std::string>& ops) {
  if (ops.empty()) return true;
  std::set<std::string> want(ops.begin(), ops.end());
  for (auto& n : g.nodes)
    if (!n->dead && want.count(n->op)) return true;
  return false;
}

bool PassManager::run(Graph& g) {
  bool any = false;
  for (auto& st : stages_) {
    std::set<Pass*> ran_once;
    int round = 0;
    for (bool changed = true; changed;) {
      changed = false;
      if (round++ >= opts_.max_iterations) {
        if (opts_.verbose)
          log("[passes] stage '" + st.name + "' stopped after " + std::to_string(opts_.max_iterations) +
              " rounds without reaching a fixed point");
        break;
      }
      for (auto& p : st.passes) {
        if (p->run_once() && ran_once.count(p.get())) continue;
        if (!graph_has_any(g, p->target_ops())) continue;
        PassStats& s = stat_for(p->name());
        auto t0 = std::chrono::steady_clock::now();
        bool c;
        try {
          c = p->run(g);
        } catch (const GraphError& e) {
          throw GraphError("pass '" + p->name() + "': " + e.what());
        } catch (const std::bad_alloc&) {
          // Constant folding of a huge tensor, typically.
          throw Error(host_oom_message("pass '" + p->name() + "'"));
        }
        s.ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        ++s.runs;
        ran_once.insert(p.get());
        auto notes = p->take_notes();
        s.rewrites += int(notes.size());
        if (!c) continue;
        ++s.changed_runs;
        changed = any = true;
        if (opts_.verbose) {
          log("[" + p->name() + "] changed the graph (" + std::to_string(notes.size()) + " rewrites)");
          for (auto& n : notes) log("[" + p->name() + "]   " + n);
        }
        if (opts_.verify_each) {
          try {
            g.verify();
          } catch (const GraphError& e) {
            throw GraphError("after pass '" + p->name() + "': " + e.what());
          }
        }
      }
    }
  }
  return any;
}

std::string PassManager::stats_report() const {
  std::ostringstream o;
  for (auto& s : stats_) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.2f ms", s.ms);
    o << s.name << ": " << s.rewrites << " rewrites, changed " << s.changed_runs << "/" << s.runs << " runs, "
      << buf << "\n";
  }
  return o.str();
}

PassManager default_pipeline(const PipelineOptions& opts) {
  PassManager pm;
  pm.set_options(opts);
  if (opts.optimize) {
    // Canonicalize: fold constant subgraphs (weight casts/transposes, shape arithmetic).
    pm.stage("fold").add(make_constant_fold_pass(opts.fold_size_cap)).add(make_dce_pass()).add(make_cse_pass());

    pm.stage("fuse");
    // ---- Norm/attention/rotary fusions: append `pm.add(make_..._pass());` lines below ----
    // (they run before the activation/linear fusions of the same round; the fusion stage
    // is iterated to a fixed point, so the order only decides which of two overlapping
    // patterns wins.)
    pm.add(make_fuse_layernorm_pass());
    pm.add(make_fuse_rmsnorm_pass());
    pm.add(make_fuse_rotary_pass());
    pm.add(make_fuse_attention_pass());
    pm.add(make_fuse_add_norm_pass());  // after the norm fusions: reads the norms they make
    // ---- end of norm/attention/rotary fusions ----
    pm.add(make_fuse_activations_pass());  // GELU/SiLU/SwiGLU first: Linear folds activations
    pm.add(make_fuse_linear_pass());
    pm.add(make_fuse_collectives_pass());
    pm.add(make_dce_pass());
  }
  if (opts.autocast) pm.stage("autocast").add(make_autocast_pass(*opts.autocast));
  pm.stage("cleanup");
  if (opts.optimize) pm.add(make_constant_fold_pass(opts.fold_size_cap)).add(make_cse_pass());
  pm.add(make_dce_pass());
  if (opts.optimize) pm.stage("late").add(make_fuse_norm_linear_pass()).add(make_fuse_attention_linear_pass());
  return pm;
}

}  // namespace shardrt
