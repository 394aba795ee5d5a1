// The `shardrt` command line: build, run, inspect, bench. main() only calls this.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>

#include "api/cli_generate.h"
#include "api/cli_util.h"
#include "build/multi_rank.h"
#include "dist/bootstrap.h"
#include "ir/op_schema.h"
#include "shardrt/engine.h"
#include "shardrt/npy.h"

namespace fs = std::filesystem;
using namespace shardrt;

namespace {

struct ProgressPrinter {
  bool tty = ::isatty(2);
  std::string last_stage;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  void operator()(const std::string& stage, int done, int total) {
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (tty) {
      int w = 30, fill = total ? done * w / total : w;
      std::fprintf(stderr, "\r[%6.1fs] %-12s [%s%s] %d/%d   ", s, stage.c_str(), std::string(size_t(fill), '#').c_str(),
                   std::string(size_t(w - fill), ' ').c_str(), done, total);
      if (stage == "done") std::fprintf(stderr, "\n");
    } else if (stage != last_stage) {
      std::fprintf(stderr, "[%6.1fs] %s\n", s, stage.c_str());
    }
    last_stage = stage;
  }
};

int cmd_build(const std::string& model, const std::string& out, const std::string& shapes, const std::string& autocast,
              bool no_opt, bool verbose, const std::vector<std::string>& disabled, const std::string& device) {
  BuildConfig cfg;
  cfg.device = device;
  cfg.shapes = parse_shapes(shapes);
  if (!autocast.empty()) {
    if (autocast != "fp16" && autocast != "bf16") throw Error("--autocast takes fp16 or bf16, not '" + autocast + "'");
    cfg.autocast = dtype_from_name(autocast);
  }
  cfg.optimize = !no_opt;
  cfg.verbose = verbose;
  cfg.disabled_passes = disabled;
  ProgressPrinter pp;
  cfg.progress = [&](const std::string& s, int d, int t) { pp(s, d, t); };
  Engine e = build_engine_from_onnx(model, cfg);
  e.save(out);
  std::fprintf(stderr, "wrote %s: %zu layers for %s, weights %.1f MB, activation arena %.1f MB\n", out.c_str(),
               e.layer_count(), device.c_str(), e.weight_bytes() / 1e6, e.arena_bytes() / 1e6);
  return 0;
}

// `build --tp/--dp/--mesh`: one engine per rank plus manifest.json in the folder `out`.
int cmd_build_parallel(const std::string& model, const std::string& out, const std::string& shapes, bool no_opt,
                       const std::vector<std::string>& disabled, int tp, int dp, const std::string& mesh,
                       const std::string& plan, const std::string& device) {
  MultiRankOptions o;
  o.config.device = device;
  if (!mesh.empty()) {
    o.mesh = parse_mesh(mesh);
    if ((tp && tp != o.mesh.tp) || (dp && dp != o.mesh.dp)) throw Error("--mesh " + mesh + " contradicts --tp/--dp");
  } else {
    o.mesh.tp = tp ? tp : 1;
    o.mesh.dp = dp ? dp : 1;
  }
  if (o.mesh.tp < 1 || o.mesh.dp < 1) throw Error("--tp and --dp take sizes >= 1");
  if (o.mesh.tp > 1 && plan.empty()) throw Error("--tp " + std::to_string(o.mesh.tp) + " needs --tp-plan FILE or --tp-plan auto");
  o.plan = plan;
  o.config.shapes = parse_shapes(shapes);
  o.config.optimize = !no_opt;
  o.config.disabled_passes = disabled;
  o.log = [](const std::string& s) { std::fprintf(stderr, "%s\n", s.c_str()); };
  Manifest m = build_multi_rank_from_onnx(model, out, o);
  std::fprintf(stderr, "wrote %s: %d engines for mesh %s, plan %s\n", out.c_str(), m.mesh.world(), m.mesh.str().c_str(),
               m.plan_source.c_str());
  return 0;
}

std::map<std::string, Tensor> read_inputs(const std::vector<std::string>& inputs) {
  std::map<std::string, Tensor> ins;
  for (auto& kv : inputs) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) throw Error("--input takes NAME=FILE.npy, got '" + kv + "'");
    ins[kv.substr(0, eq)] = read_npy(kv.substr(eq + 1));
  }
  return ins;
}

// `run DIR` under mpirun: every rank runs its engine; rank 0 writes the outputs. Every rank
// reports its own error, so a mismatched launch fails on all of them.
int cmd_run_parallel(const std::string& dir, const std::vector<std::string>& inputs, const std::string& outdir,
                     const std::string& mesh, const std::string& device, bool check_numerics) {
  auto world = dist::communicator_from_env();
  std::optional<MeshShape> asked;
  if (!mesh.empty()) asked = parse_mesh(mesh);
  auto outs = run_multi_rank(dir, read_inputs(inputs), *world, asked ? &*asked : nullptr, device, check_numerics);
  if (world->rank() != 0) return 0;
  fs::create_directories(outdir);
  for (auto& [name, t] : outs) {
    std::string p = (fs::path(outdir) / (escape_file_name(name) + ".npy")).string();
    write_npy(p, t);
    std::fprintf(stderr, "%s: %s%s -> %s\n", name.c_str(), dtype_name(t.dtype()), dims_str(t.dims()).c_str(), p.c_str());
  }
  return 0;
}

int cmd_run(const std::string& engine, const std::vector<std::string>& inputs, const std::string& outdir, bool skip_checksum,
            const std::string& device, bool check_numerics) {
  Engine e = Engine::load(engine, !skip_checksum);
  std::map<std::string, Tensor> ins = read_inputs(inputs);
  ExecutionContext ctx(e, ContextOptions{device, nullptr, check_numerics});
  auto outs = ctx.run(ins);
  fs::create_directories(outdir);
  for (auto& [name, t] : outs) {
    std::string p = (fs::path(outdir) / (escape_file_name(name) + ".npy")).string();
    write_npy(p, t);
    std::fprintf(stderr, "%s: %s%s -> %s\n", name.c_str(), dtype_name(t.dtype()), dims_str(t.dims()).c_str(), p.c_str());
  }
  return 0;
}

int cmd_inspect(const std::string& engine, bool json) {
  Engine e = Engine::load(engine);
  std::cout << e.inspect(json) << std::endl;
  return 0;
}

// Times execute() + synchronize() with the inputs set once (on CUDA: already on the GPU).
int cmd_bench(const std::string& engine, const std::string& shapes, int iters, int warmup, double min_seconds,
              bool profile, const std::string& device, bool json, bool check_numerics) {
  Engine e = Engine::load(engine);
  auto chosen = parse_shapes(shapes);
  std::map<std::string, Tensor> ins;
  std::mt19937 rng(0);
  std::normal_distribution<float> nd;
  for (auto& b : e.inputs()) {
    Dims d;
    if (chosen.count(b.name)) d = chosen.at(b.name).opt;
    else if (b.profile) d = b.profile->opt;
    else for (auto& s : b.dims) d.push_back(std::stoll(s));
    Tensor t(b.dtype, d);
    // Float inputs get N(0,1) values; integer inputs stay 0 (always a valid index).
    if (is_float(b.dtype))
      for (int64_t i = 0; i < t.numel(); ++i) t.set_f(i, nd(rng));
    ins[b.name] = t;
  }
  ExecutionContext ctx(e, ContextOptions{device, nullptr, check_numerics});
  ctx.set_inputs(ins);
  auto once = [&] {
    ctx.execute();
    ctx.synchronize();
  };
  // At least one untimed run: on CUDA the first run of a shape tunes and captures a graph.
  for (int i = 0; i < std::max(warmup, 1); ++i) once();
  std::vector<double> ms;
  auto start = std::chrono::steady_clock::now();
  while (int(ms.size()) < iters ||
         std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() < min_seconds) {
    auto t0 = std::chrono::steady_clock::now();
    once();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  if (profile) {
    // A separate pass so the clock reads (CUDA: eager runs with events) do not skew the
    // latency figures above. With --json the report goes to stderr.
    ctx.set_profiling(true);
    for (int i = 0; i < std::max(iters / 2, 3); ++i) once();
    ctx.set_profiling(false);
    std::fprintf(json ? stderr : stdout, "%s", ctx.profile_report().c_str());
  }
  std::sort(ms.begin(), ms.end());
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, size_t(p * double(ms.size())))]; };
  double sum = 0;
  for (double x : ms) sum += x;
  if (json) {
    // The median of an even count is the mean of the middle two.
    size_t n = ms.size();
    double median = n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]);
    std::printf("{\"median_ms\": %.6f, \"mean_ms\": %.6f, \"min_ms\": %.6f, \"runs\": %zu, \"device\": \"%s\"}\n", median,
                sum / double(n), ms.front(), n, ctx.device().c_str());
    return 0;
  }
  std::printf("device: %s\ninputs:", ctx.device().c_str());
  for (auto& [n, t] : ins) std::printf(" %s=%s%s", n.c_str(), dtype_name(t.dtype()), dims_str(t.dims()).c_str());
  std::printf("\nruns %zu  mean %.3f ms  min %.3f  p50 %.3f  p90 %.3f  p99 %.3f  max %.3f ms  throughput %.1f runs/s\n",
              ms.size(), sum / double(ms.size()), ms.front(), pct(0.5), pct(0.9), pct(0.99), ms.back(),
              1000.0 * double(ms.size()) / sum);
  return 0;
}

}  // namespace

int shardrt_cli_main(int argc, char** argv) {
  CLI::App app{"shardrt: compile models into engines and run them"};
  app.require_subcommand(1);
  std::string model, out, shapes, autocast, engine, outdir = ".";
  std::vector<std::string> inputs, disabled;
  bool no_opt = false, verbose = false, json = false, skip_checksum = false;
  std::string build_device = "cpu", run_device;
  int iters = 20, warmup = 3;
  double min_seconds = 1.0;

  auto* b = app.add_subcommand("build", "compile an ONNX model into an engine file");
  b->add_option("model", model, "ONNX model file")->required();
  b->add_option("-o,--output", out, "engine file to write")->required();
  b->add_option("--shapes", shapes, "input shape ranges NAME:MIN/OPT/MAX,... with dims like 1x128");
  b->add_option("--autocast", autocast, "lower float math to fp16 or bf16");
  b->add_option("--disable-pass", disabled, "skip a pass by name (repeatable)");
  b->add_flag("--no-optimize", no_opt, "skip the optimisation passes");
  b->add_flag("-v,--verbose", verbose, "log every rewrite the passes make");
  b->add_option("--device", build_device, "where the engine runs by default: cpu or cuda (cuda also tunes on the GPU "
                                           "when there is one)");
  int tp = 0, dp = 0;
  std::string mesh, tp_plan;
  b->add_option("--tp", tp, "tensor-parallel size: -o is then a folder of per-rank engines (docs/parallel.md)");
  b->add_option("--dp", dp, "data-parallel size (the batch is split between dp groups)");
  b->add_option("--mesh", mesh, "dp x tp mesh, e.g. dp=2,tp=2");
  b->add_option("--tp-plan", tp_plan, "sharding plan: a JSON file, or auto");
  auto run_llm_commands = add_generate_commands(app, b, {model, out, tp, dp, build_device});  // generate, tokenize

  auto* r = app.add_subcommand("run", "run an engine on .npy inputs, writing DIR/NAME.npy per output");
  r->add_option("engine", engine, "engine file")->required();
  r->add_option("--input", inputs, "NAME=FILE.npy (repeatable)");
  r->add_option("--output-dir", outdir, "folder for the outputs (names escaped: see docs/cli.md)");
  r->add_flag("--skip-checksum", skip_checksum, "do not verify the engine's checksum (faster load)");
  r->add_option("--mesh", mesh, "with a per-rank engine folder: the mesh this launch expects (checked)");
  r->add_option("--device", run_device, "cpu or cuda (default: the engine's build setting)");
  bool check_numerics = false;
  r->add_flag("--check-numerics", check_numerics, "stop at the first node whose output holds NaN or Inf, naming it");

  auto* in = app.add_subcommand("inspect", "describe an engine: layers, fusions, memory plan, bindings");
  in->add_option("engine", engine, "engine file")->required();
  in->add_flag("--json", json, "machine-readable output");

  auto* be = app.add_subcommand("bench", "time an engine on random inputs");
  be->add_option("engine", engine, "engine file")->required();
  be->add_option("--shapes", shapes, "input shapes NAME:DIMS,... (default: each profile's opt)");
  be->add_option("--iterations", iters, "timed runs (at least)");
  be->add_option("--warmup", warmup, "untimed runs first");
  be->add_option("--min-seconds", min_seconds, "keep timing at least this long");
  bool profile = false;
  be->add_flag("--profile", profile, "also print the time per layer and per op type");
  be->add_option("--device", run_device, "cpu or cuda (default: the engine's build setting)");
  be->add_flag("--check-numerics", check_numerics, "scan every node's outputs for NaN/Inf (slow: a debugging mode)");
  be->add_flag("--json", json, "print {median_ms, mean_ms, min_ms, runs, device} as JSON on stdout");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (auto rc = run_llm_commands()) return *rc;
    if (*b && (tp || dp || !mesh.empty() || !tp_plan.empty())) {
      if (!autocast.empty()) throw Error("--autocast is not supported with --tp/--dp/--mesh yet");
      return cmd_build_parallel(model, out, shapes, no_opt, disabled, tp, dp, mesh, tp_plan, build_device);
    }
    if (*b) return cmd_build(model, out, shapes, autocast, no_opt, verbose, disabled, build_device);
    if (*r && fs::is_directory(engine)) return cmd_run_parallel(engine, inputs, outdir, mesh, run_device, check_numerics);
    if (*r) return cmd_run(engine, inputs, outdir, skip_checksum, run_device, check_numerics);
    if (*in) return cmd_inspect(engine, json);
    if (*be) return cmd_bench(engine, shapes, iters, warmup, min_seconds, profile, run_device, json, check_numerics);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardrt: error: %s\n", e.what());
    return 1;
  }
  return 2;
}
