// Runs a list of passes over a graph to a fixed point, with per-pass statistics and an
// optional log of every rewrite; default_pipeline() lists the standard passes in order.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "passes/pass.h"

namespace shardrt {

struct PipelineOptions {
  std::optional<DType> autocast;            // fp16 or bf16: lower float math (autocast pass)
  bool optimize = true;                     // false: only the passes needed for correctness
  std::vector<std::string> disabled_passes;  // by Pass::name()
  bool verbose = false;                     // log each rewrite (to `log`, else stderr)
  std::function<void(const std::string&)> log;
  int max_iterations = 16;                  // fixed-point cap per stage
  bool verify_each = false;                 // Graph::verify() after every changing pass
  // constant_fold does not create a constant larger than this unless its inputs were as big.
  size_t fold_size_cap = size_t(16) << 20;
};

struct PassStats {
  std::string name;
  int runs = 0;          // times run() was called
  int changed_runs = 0;  // of which returned true
  int rewrites = 0;      // notes recorded (one per rewrite)
  double ms = 0;         // time spent
};

class PassManager {
 public:
  PassManager() = default;
  PassManager(PassManager&&) = default;
  PassManager& operator=(PassManager&&) = default;

  // Passes run in stages: each stage is iterated (all its passes in order, repeatedly) until
  // none changes the graph or `max_iterations` rounds ran; then the next stage starts.
  // add() appends to the current (last) stage; stage() opens a new one.
  PassManager& stage(const std::string& name);
  PassManager& add(PassPtr p);

  void set_options(const PipelineOptions& o) { opts_ = o; }
  const PipelineOptions& options() const { return opts_; }

  // Runs every stage; returns whether anything changed. Throws GraphError when a pass
  // leaves an invalid graph (with verify_each) or fails.
  bool run(Graph& g);

  const std::vector<PassStats>& stats() const { return stats_; }
  std::string stats_report() const;  // one line per pass
  std::vector<std::string> pass_names() const;

 private:
  struct Stage {
    std::string name;
    std::vector<PassPtr> passes;
  };
  void log(const std::string& s) const;
  PassStats& stat_for(const std::string& name);

  std::vector<Stage> stages_;
  PipelineOptions opts_;
  std::vector<PassStats> stats_;
};

// The standard pipeline:
//   canonicalize/fold (constant_fold) → cleanup (dce, cse) → fusions → autocast (when
//   requested) → cleanups (constant_fold of the casts of weights, dce, cse) → the late
//   fusions of norms into the Linear that reads them (fuse_norm_linear) and of a cached
//   attention's output projection into it (fuse_attention_linear), dtypes final.
PassManager default_pipeline(const PipelineOptions& opts);

// Factories of the general passes (passes/*.cpp).
PassPtr make_constant_fold_pass(size_t size_cap = size_t(16) << 20);
PassPtr make_dce_pass();
PassPtr make_cse_pass();
PassPtr make_fuse_linear_pass();       // MatMul/Gemm [+Add] [+act] → shardrt.Linear
PassPtr make_fuse_activations_pass();  // GELU forms → Gelu, x*sigmoid(x) → Silu, SwiGLU
PassPtr make_autocast_pass(DType to);  // fp16 or bf16

// ---- Factories of the norm/attention/rotary fusion passes: append declarations below ----
// (their definitions live in those passes' own files; default_pipeline lists them in the
// marked place in pass_manager.cpp).
PassPtr make_fuse_layernorm_pass();  // decomposed LayerNorm → LayerNormalization
PassPtr make_fuse_rmsnorm_pass();    // Pow/ReduceMean/Add/Sqrt/Reciprocal/Mul → shardrt.RMSNorm
PassPtr make_fuse_rotary_pass();     // rotate-half rotary embedding → shardrt.Rotary
PassPtr make_fuse_attention_pass();  // MatMul/scale/mask/Softmax/MatMul → shardrt.Attention
PassPtr make_fuse_add_norm_pass();   // Add + LayerNormalization/RMSNorm → shardrt.AddLayerNorm/AddRMSNorm
// ---- end of norm/attention/rotary factories ----
PassPtr make_fuse_collectives_pass();  // shardrt.XStart + shardrt.Wait (sole user) → shardrt.X
PassPtr make_fuse_norm_linear_pass();  // norm + the Linear that reads it → shardrt.NormLinear (after autocast)
PassPtr make_fuse_attention_linear_pass();  // CachedAttention + its output projection's Linear → one CachedAttention

}  // namespace shardrt
