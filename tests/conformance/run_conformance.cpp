// ONNX backend conformance runner.
//
//   shardrt_conformance <suite-root> [filter] [--verbose] [--reference] [--no-fork]
//                       [--exclusions FILE] [--device cpu|cuda]
//
// For every case under node/, simple/, pytorch-converted/, pytorch-operator/ (model.onnx
// with test_data_set_N/{input,output}_K.pb) and light/ (<name>.onnx beside
// <name>_output_K.pb; inputs generated as ONNX's own runner does), it imports the model,
// builds and runs an engine (or, with --reference, the node-by-node reference run), and
// compares every output with the expected one. Each case runs in a child process so that a
// crashing or hanging kernel shows up as that case's failure instead of ending the run.
//
// Exit status: 0 when every case of a supported op passes or is excluded, 1 otherwise,
// 77 when the suite folder is missing (ctest's SKIP_RETURN_CODE), 2 for bad arguments.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "ir/onnx_dtype.h"
#include "ir/op_schema.h"
#include "onnx/importer.h"
#include "onnx/onnx.pb.h"
#include "runtime/reference_run.h"
#include "shardrt/engine.h"

namespace fs = std::filesystem;
using namespace shardrt;

namespace {

// ---------------------------------------------------------------- cases

struct DataSet {
  std::vector<std::string> inputs, outputs;  // .pb paths, in index order
};

struct Case {
  std::string name, category, model;
  std::vector<DataSet> sets;
  bool light = false;         // inputs are generated (light/ models)
  std::set<std::string> ops;  // op types of the model's nodes ("domain.Op" outside the default)
};

std::vector<std::string> numbered_files(const fs::path& dir, const std::string& prefix) {
  std::vector<std::string> r;
  for (int k = 0;; ++k) {
    fs::path p = dir / (prefix + std::to_string(k) + ".pb");
    if (!fs::exists(p)) break;
    r.push_back(p.string());
  }
  return r;
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return false;
  std::ostringstream s;
  s << f.rdbuf();
  out = s.str();
  return true;
}

std::set<std::string> model_ops(const std::string& path) {
  std::set<std::string> ops;
  std::string bytes;
  onnx::ModelProto m;
  if (!read_file(path, bytes) || !m.ParseFromString(bytes)) return ops;
  for (auto& n : m.graph().node())
    ops.insert(n.domain().empty() || n.domain() == "ai.onnx" ? n.op_type() : n.domain() + "." + n.op_type());
  return ops;
}

std::vector<Case> discover(const fs::path& root, const std::string& filter) {
  std::vector<Case> cases;
  for (const char* cat : {"node", "simple", "pytorch-converted", "pytorch-operator"}) {
    fs::path dir = root / cat;
    if (!fs::is_directory(dir)) continue;
    std::vector<fs::path> dirs;
    for (auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
    std::sort(dirs.begin(), dirs.end());
    for (auto& d : dirs) {
      Case c;
      c.name = d.filename().string();
      if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
      c.category = cat;
      c.model = (d / "model.onnx").string();
      std::vector<fs::path> sets;
      for (auto& e : fs::directory_iterator(d))
        if (e.is_directory() && e.path().filename().string().rfind("test_data_set_", 0) == 0) sets.push_back(e.path());
      std::sort(sets.begin(), sets.end());
      for (auto& s : sets) c.sets.push_back({numbered_files(s, "input_"), numbered_files(s, "output_")});
      cases.push_back(std::move(c));
    }
  }
  fs::path light = root / "light";
  if (fs::is_directory(light)) {
    std::vector<fs::path> models;
    for (auto& e : fs::directory_iterator(light))
      if (e.path().extension() == ".onnx") models.push_back(e.path());
    std::sort(models.begin(), models.end());
    for (auto& m : models) {
      Case c;
      c.name = m.stem().string();
      if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
      c.category = "light";
      c.model = m.string();
      c.light = true;
      c.sets.push_back({{}, numbered_files(light, c.name + "_output_")});
      cases.push_back(std::move(c));
    }
  }
  for (auto& c : cases) c.ops = model_ops(c.model);
  return cases;
}

// ---------------------------------------------------------------- running one case

struct Result {
  enum Status { Pass, Fail, Unsupported } status = Fail;
  std::string message;
  std::vector<UnsupportedModelError::Problem> problems;
};

Tensor load_pb(const std::string& path) {
  std::string bytes;
  onnx::TensorProto t;
  if (!read_file(path, bytes) || !t.ParseFromString(bytes))
    throw std::runtime_error("cannot read tensor file " + path);
  return tensor_from_proto(t, fs::path(path).parent_path().string());
}

// Light models get the inputs ONNX's backend runner generates for them: float inputs of
// their declared shape (unknown dims: 1) filled with arange(n) / n.
std::vector<Tensor> light_inputs(const Graph& g) {
  std::vector<Tensor> r;
  for (Value* v : g.inputs) {
    if (v->dtype != DType::F32) throw std::runtime_error("light model input '" + v->name + "' is not float");
    Dims d;
    for (auto& x : v->shape) d.push_back(x.known() ? x.value : 1);
    Tensor t(DType::F32, d);
    int64_t n = t.numel();
    for (int64_t i = 0; i < n; ++i) t.data<float>()[i] = float(double(i) / double(n));
    r.push_back(std::move(t));
  }
  return r;
}

// Tolerances. Integers and bools compare exactly. Floats: |got - want| <= atol + rtol*|want|,
// NaN equals NaN, infinities must match.
//  fp32/fp64: rtol 1e-3 as ONNX's own backend runner uses; atol 1e-5 instead of its 1e-7
//    because our kernels accumulate in a different order (vectorised, blocked GEMM) and use
//    fast exp/tanh approximations, whose absolute error near zero exceeds 1e-7.
//  fp16: 11-bit significand (unit roundoff 4.9e-4); kernels compute in fp32 and round once
//    while the reference may round each step in fp16, so allow a few ulps: rtol 4e-3,
//    atol 1e-3.
//  bf16: 8-bit significand (unit roundoff 3.9e-3): rtol 2e-2, atol 1e-2.
//  light/ models (whole CNNs, long fp32 reductions): ONNX's runner uses rtol 1e-3 (2e-3 for
//    DenseNet); we scale rtol by 2 for the different summation order over ~50 layers.
struct Tol {
  double rtol, atol;
};
Tol tolerance(DType t, bool light) {
  switch (t) {
    case DType::F16: return {4e-3, 1e-3};
    case DType::BF16: return {2e-2, 1e-2};
    default: return {light ? 4e-3 : 1e-3, 1e-5};
  }
}

std::string compare(const Tensor& got, const Tensor& want, bool light) {
  if (got.dtype() != want.dtype())
    return std::string("dtype ") + dtype_name(got.dtype()) + ", expected " + dtype_name(want.dtype());
  if (got.dims() != want.dims()) return "shape " + dims_str(got.dims()) + ", expected " + dims_str(want.dims());
  int64_t n = want.numel(), bad = 0, first = -1;
  double worst = 0;
  if (!is_float(want.dtype())) {
    for (int64_t i = 0; i < n; ++i)
      if (got.get_i(i) != want.get_i(i)) { if (first < 0) first = i; ++bad; }
    if (!bad) return "";
    return std::to_string(bad) + " of " + std::to_string(n) + " values differ; first at " + std::to_string(first) +
           ": got " + std::to_string(got.get_i(first)) + ", expected " + std::to_string(want.get_i(first));
  }
  Tol tol = tolerance(want.dtype(), light);
  for (int64_t i = 0; i < n; ++i) {
    double g = got.get_f(i), w = want.get_f(i);
    bool ok;
    if (std::isnan(w) || std::isnan(g)) ok = std::isnan(w) && std::isnan(g);
    else if (std::isinf(w) || std::isinf(g)) ok = g == w;
    else ok = std::fabs(g - w) <= tol.atol + tol.rtol * std::fabs(w);
    if (!ok) {
      if (first < 0) first = i;
      ++bad;
      if (std::isfinite(g) && std::isfinite(w)) worst = std::max(worst, std::fabs(g - w));
    }
  }
  if (!bad) return "";
  std::ostringstream o;
  o.precision(8);
  o << bad << " of " << n << " values outside rtol " << tol.rtol << " atol " << tol.atol << "; first at " << first
    << ": got " << got.get_f(first) << ", expected " << want.get_f(first) << "; max abs error " << worst;
  return o.str();
}

// Runs every data set of the case through the engine (or the reference run).
// --device: where engines are built for and run ("cpu" or "cuda").
std::string g_device = "cpu";

Result run_case(const Case& c, bool use_engine) {
  Result r;
  std::string stage = "import";
  try {
    Graph g0 = import_onnx_file(c.model);
    for (size_t s = 0; s < c.sets.size(); ++s) {
      const DataSet& ds = c.sets[s];
      std::string where = c.sets.size() > 1 ? "data set " + std::to_string(s) + ": " : "";
      // A fresh import per data set: the engine takes the graph, and shapes may differ.
      Graph g = s == 0 ? std::move(g0) : import_onnx_file(c.model);
      stage = "inputs";
      std::vector<Tensor> ins;
      if (c.light) ins = light_inputs(g);
      else
        for (auto& p : ds.inputs) ins.push_back(load_pb(p));
      if (ins.size() != g.inputs.size()) {
        r.message = where + "the data set has " + std::to_string(ins.size()) + " inputs, the model " +
                    std::to_string(g.inputs.size());
        return r;
      }
      std::map<std::string, Tensor> feeds;
      BuildConfig cfg;
      for (size_t k = 0; k < ins.size(); ++k) {
        Value* v = g.inputs[k];
        feeds[v->name] = ins[k];
        if (!shape_known(v->shape)) cfg.shapes[v->name] = ShapeProfile{ins[k].dims(), ins[k].dims(), ins[k].dims()};
      }
      std::vector<std::string> out_names;
      for (Value* v : g.outputs) out_names.push_back(v->name);
      std::map<std::string, Tensor> outs;
      if (use_engine) {
        stage = "build";
        cfg.device = g_device;
        Engine e = build_engine_from_graph(std::move(g), cfg);
        stage = "run";
        ContextOptions co;
        co.device = g_device;
        ExecutionContext ctx(e, co);
        outs = ctx.run(feeds);
      } else {
        stage = "run";
        outs = run_graph_reference(g, feeds);
      }
      stage = "compare";
      if (ds.outputs.size() > out_names.size()) {
        r.message = where + std::to_string(ds.outputs.size()) + " expected outputs, the model has " +
                    std::to_string(out_names.size());
        return r;
      }
      for (size_t k = 0; k < ds.outputs.size(); ++k) {
        Tensor want = load_pb(ds.outputs[k]);
        auto it = outs.find(out_names[k]);
        if (it == outs.end()) {
          r.message = where + "output '" + out_names[k] + "' was not returned";
          return r;
        }
        std::string err = compare(it->second, want, c.light);
        if (!err.empty()) {
          r.message = where + "output " + std::to_string(k) + " '" + out_names[k] + "': " + err;
          return r;
        }
      }
    }
    r.status = Result::Pass;
  } catch (const UnsupportedModelError& e) {
    if (stage == "import") {
      r.status = Result::Unsupported;
      r.problems = e.problems;
    }
    r.message = stage + ": " + e.what();
  } catch (const std::exception& e) {
    r.message = stage + ": " + e.what();
  }
  return r;
}

// Child → parent: "P" | "F\n<message>" | "U\n<op>\t<detail>\n...".
std::string encode(const Result& r) {
  if (r.status == Result::Pass) return "P";
  if (r.status == Result::Fail) return "F\n" + r.message;
  std::string s = "U\n";
  for (auto& p : r.problems) {
    std::string d = p.detail;
    std::replace(d.begin(), d.end(), '\n', ' ');
    s += p.op + "\t" + d + "\n";
  }
  return s;
}

Result decode(const std::string& s) {
  Result r;
  if (s == "P") { r.status = Result::Pass; return r; }
  if (s.rfind("F\n", 0) == 0) { r.message = s.substr(2); return r; }
  if (s.rfind("U\n", 0) == 0) {
    r.status = Result::Unsupported;
    std::istringstream in(s.substr(2));
    std::string line;
    while (std::getline(in, line)) {
      auto tab = line.find('\t');
      if (tab != std::string::npos) r.problems.push_back({line.substr(0, tab), line.substr(tab + 1)});
    }
    return r;
  }
  r.message = "child process returned no result";
  return r;
}

constexpr unsigned kCaseTimeoutS = 60;  // a case taking longer is reported as hung

Result run_isolated(const Case& c, bool use_engine) {
  int fds[2];
  if (pipe(fds) != 0) return run_case(c, use_engine);
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return run_case(c, use_engine);
  }
  if (pid == 0) {
    close(fds[0]);
    alarm(kCaseTimeoutS);
    std::string msg = encode(run_case(c, use_engine));
    size_t off = 0;
    while (off < msg.size()) {
      ssize_t w = write(fds[1], msg.data() + off, msg.size() - off);
      if (w <= 0) break;
      off += size_t(w);
    }
    close(fds[1]);
    _exit(0);
  }
  close(fds[1]);
  std::string msg;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    msg.append(buf, size_t(n));
  }
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  if (WIFSIGNALED(st)) {
    Result r;
    int sig = WTERMSIG(st);
    r.message = sig == SIGALRM ? "timed out after " + std::to_string(kCaseTimeoutS) + " s"
                               : std::string("crashed: ") + strsignal(sig);
    return r;
  }
  return decode(msg);
}

// ---------------------------------------------------------------- report

std::map<std::string, std::string> read_exclusions(const std::string& path) {
  std::map<std::string, std::string> ex;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto comma = line.find(',');
    std::string name = line.substr(0, comma), reason = comma == std::string::npos ? "" : line.substr(comma + 1);
    auto trim = [](std::string s) {
      s.erase(0, s.find_first_not_of(" \t"));
      s.erase(s.find_last_not_of(" \t\r") + 1);
      return s;
    };
    ex[trim(name)] = trim(reason);
  }
  return ex;
}

// Ops the importer supports: those with a schema, Constant (folded at import), and the
// deprecated aliases it converts.
std::set<std::string> supported_ops() {
  std::set<std::string> s;
  for (auto& n : all_schema_names())
    if (n.rfind("shardrt.", 0) != 0) s.insert(n);
  s.insert("Constant");
  if (find_schema("Resize")) s.insert("Upsample");
  if (find_schema("ScatterElements")) s.insert("Scatter");
  return s;
}

// Groups a model-level problem (no op) under a short key.
std::string problem_key(const UnsupportedModelError::Problem& p) {
  if (!p.op.empty()) return p.op;
  const std::string& d = p.detail;
  auto pos = d.find("uses opset ");
  if (pos != std::string::npos) {
    int v = std::atoi(d.c_str() + pos + 11);
    return v < kOnnxMinOpset ? "(opset < " + std::to_string(kOnnxMinOpset) + ")" : "(opset " + std::to_string(v) + ")";
  }
  pos = d.find("data type ");
  if (pos != std::string::npos) {
    std::string t = d.substr(pos + 10);
    t = t.substr(0, t.find_first_of(" ,"));
    return "(data type " + t + ")";
  }
  if (d.find("is not a tensor") != std::string::npos) return "(sequence/optional values)";
  return "(model)";
}

std::string clip(const std::string& s, size_t n) { return s.size() <= n ? s : s.substr(0, n) + " ..."; }

}  // namespace

int main(int argc, char** argv) {
  std::string root, filter, excl_path;
  bool verbose = false, use_engine = true, isolate = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--verbose" || a == "-v") verbose = true;
    else if (a == "--reference") use_engine = false;
    else if (a == "--no-fork") isolate = false;
    else if (a == "--exclusions" && i + 1 < argc) excl_path = argv[++i];
    else if (a == "--device" && i + 1 < argc) g_device = argv[++i];
    else if (a.rfind("--", 0) == 0) {
      std::fprintf(stderr, "unknown option %s\nusage: %s <suite-root> [filter] [--verbose] [--reference] "
                           "[--no-fork] [--exclusions FILE] [--device cpu|cuda]\n", a.c_str(), argv[0]);
      return 2;
    } else if (root.empty()) root = a;
    else if (filter.empty()) filter = a;
    else { std::fprintf(stderr, "too many arguments\n"); return 2; }
  }
  if (root.empty()) {
    std::fprintf(stderr, "usage: %s <suite-root> [filter] [--verbose] [--reference] [--no-fork] [--exclusions FILE] "
                         "[--device cpu|cuda]\n", argv[0]);
    return 2;
  }
  if (!fs::is_directory(root)) {
    std::printf("ONNX conformance suite not found at %s: skipping\n", root.c_str());
    return 77;
  }
  if (excl_path.empty()) {
    fs::path here = fs::path(__FILE__).parent_path() / "exclusions.txt";
    if (fs::exists(here)) excl_path = here.string();
  }
  auto exclusions = excl_path.empty() ? std::map<std::string, std::string>{} : read_exclusions(excl_path);

  auto t0 = std::chrono::steady_clock::now();
  std::vector<Case> cases = discover(root, filter);
  auto supported = supported_ops();

  struct Counts { int pass = 0, fail = 0, excl = 0, unsup = 0; };
  std::map<std::string, Counts> per_op;
  std::map<std::string, std::vector<std::string>> unsup_cases;  // key → cases
  std::map<std::string, std::string> unsup_reason;               // key → first reason
  std::vector<std::pair<std::string, std::string>> failures, excluded, passed_but_excluded;
  int n_pass = 0, n_fail = 0, n_excl = 0, n_unsup = 0;

  for (const Case& c : cases) {
    auto ct = std::chrono::steady_clock::now();
    Result r = isolate ? run_isolated(c, use_engine) : run_case(c, use_engine);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - ct).count();
    bool is_excl = exclusions.count(c.name) != 0;
    if (r.status == Result::Unsupported) {
      ++n_unsup;
      std::set<std::string> keys;
      for (auto& p : r.problems) {
        std::string k = problem_key(p);
        if (keys.insert(k).second) {
          unsup_cases[k].push_back(c.name);
          if (!unsup_reason.count(k)) {
            std::string d = p.detail;
            auto colon = d.find("): ");
            unsup_reason[k] = colon == std::string::npos ? d : d.substr(colon + 3);
          }
          if (!p.op.empty()) ++per_op[p.op].unsup;
        }
      }
    } else if (r.status == Result::Pass) {
      if (is_excl) passed_but_excluded.push_back({c.name, exclusions[c.name]});
      ++n_pass;
      for (auto& op : c.ops) ++per_op[op].pass;
    } else if (is_excl) {
      ++n_excl;
      excluded.push_back({c.name, exclusions[c.name]});
      for (auto& op : c.ops) ++per_op[op].excl;
    } else {
      ++n_fail;
      failures.push_back({c.category + "/" + c.name, r.message});
      for (auto& op : c.ops) ++per_op[op].fail;
    }
    if (verbose) {
      const char* st = r.status == Result::Pass ? "PASS" : r.status == Result::Unsupported ? "N/S " : is_excl ? "EXCL" : "FAIL";
      std::printf("%s %-60s %6.2fs %s\n", st, (c.category + "/" + c.name).c_str(), secs,
                  r.status == Result::Pass ? "" : clip(r.status == Result::Unsupported && !r.problems.empty()
                                                           ? r.problems[0].detail : r.message, 200).c_str());
      std::fflush(stdout);
    }
  }

  std::printf("\nONNX conformance (%s on %s): %zu cases under %s%s\n\n", use_engine ? "engine" : "reference run", g_device.c_str(),
              cases.size(), root.c_str(), filter.empty() ? "" : (" matching '" + filter + "'").c_str());
  std::printf("%-28s %6s %6s %6s %6s %8s\n", "op", "pass", "fail", "excl", "n/s", "present");
  for (auto& op : supported) {
    Counts k = per_op.count(op) ? per_op[op] : Counts{};
    int present = k.pass + k.fail + k.excl + k.unsup;
    if (present == 0 && !filter.empty()) continue;  // a filtered run lists only what it ran
    std::printf("%-28s %6d %6d %6d %6d %8d%s\n", op.c_str(), k.pass, k.fail, k.excl, k.unsup, present,
                present == 0 ? "   (no cases)" : (k.fail ? "   <-- failures" : ""));
  }

  std::printf("\nNot supported (refused at import; not failures): %d cases\n", n_unsup);
  for (auto& [k, v] : unsup_cases) {
    std::printf("  %-26s %4zu  %s\n", k.c_str(), v.size(), clip(unsup_reason[k], 110).c_str());
    if (verbose) {
      std::string names;
      for (auto& n : v) names += (names.empty() ? "" : " ") + n;
      std::printf("      %s\n", names.c_str());
    }
  }
  std::printf("\nExcluded (%s): %d cases\n", excl_path.empty() ? "no exclusions file" : excl_path.c_str(), n_excl);
  for (auto& [n, why] : excluded) std::printf("  %-50s %s\n", n.c_str(), why.c_str());
  for (auto& [n, why] : passed_but_excluded)
    std::printf("  %-50s PASSES now: remove it from the exclusions (%s)\n", n.c_str(), why.c_str());

  std::printf("\nFailures: %d cases\n", n_fail);
  for (auto& [n, msg] : failures) std::printf("  %s: %s\n", n.c_str(), (verbose ? msg : clip(msg, 300)).c_str());

  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\nSummary: %d passed, %d failed, %d excluded, %d not supported, of %zu cases (%.1f s)\n", n_pass,
              n_fail, n_excl, n_unsup, cases.size(), secs);
  return n_fail ? 1 : 0;
}
