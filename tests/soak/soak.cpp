// Soak test: one engine run many times through one ExecutionContext, with fresh inputs
// (new tensors, new values, a batch size that changes from run to run) each time, watching
// the process's resident memory. A leak of anything per run (an input or output copy, a
// per-shape plan, a cache entry) shows as resident memory that keeps growing after the
// warm-up, when every shape the runs use has been seen and the allocator has its pools.
//
//   shardrt_soak [--runs N] [--warmup W] [--bound-mb MB] [--engine FILE] [--device cpu|cuda]
//
// Without --engine it builds a small MLP with the Network API (64 → 256 → 256 → 32, ReLU,
// batch 1..16). With --engine it loads that engine file and makes inputs from its bindings
// (dynamic dims vary within their profiles; float inputs random, integer inputs zero).
// Prints the resident set (from /proc/self/statm) at the start, after the warm-up and at
// every 10 % of the runs; exits 1 when it grew by more than the bound after the warm-up.
//
// With `--device cuda` (a CUDA build) it also prints the GPU memory in use (cudaMemGetInfo:
// total minus free, the whole device's view) and applies the same bound to its growth.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>

#include "shardrt/engine.h"
#include "shardrt/network.h"

#ifdef SHARDRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace shardrt;

namespace {

// GPU memory in use on the current device, MB (0 without CUDA or a GPU).
double gpu_used_mb() {
#ifdef SHARDRT_WITH_CUDA
  size_t free_b = 0, total_b = 0;
  if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return double(total_b - free_b) / (1024.0 * 1024.0);
#else
  return 0;
#endif
}

double rss_mb() {
  std::ifstream f("/proc/self/statm");
  long pages_total = 0, pages_resident = 0;
  f >> pages_total >> pages_resident;
  return double(pages_resident) * double(sysconf(_SC_PAGESIZE)) / (1024.0 * 1024.0);
}

Tensor random_tensor(DType t, const Dims& d, std::mt19937& rng) {
  Tensor x(t, d);
  if (is_float(t)) {
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0; i < x.numel(); ++i) x.set_f(i, nd(rng));
  }
  return x;  // integer and bool inputs stay zero: valid for indices and masks alike
}

Engine build_mlp() {
  std::mt19937 rng(7);
  const std::vector<int64_t> sizes = {64, 256, 256, 32};
  Network net("soak_mlp");
  ITensor h = net.input("x", DType::F32, {-1, sizes[0]}, {"batch"});
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    std::string nm = "fc" + std::to_string(l);
    Tensor w = random_tensor(DType::F32, {sizes[l + 1], sizes[l]}, rng);
    for (int64_t i = 0; i < w.numel(); ++i) w.data<float>()[i] /= std::sqrt(float(sizes[l]));
    ITensor wt = net.weight(nm + ".weight", std::move(w));
    ITensor b = net.weight(nm + ".bias", random_tensor(DType::F32, {sizes[l + 1]}, rng));
    h = net.linear(h, wt, b, l + 2 < sizes.size() ? Activation::Relu : Activation::None, nm);
  }
  net.output(h, "y");
  BuildConfig cfg;
  cfg.shapes["x"] = ShapeProfile{{1, sizes[0]}, {8, sizes[0]}, {16, sizes[0]}};
  return build_engine(net, cfg);
}

// Dims for one run of input `b`: fixed dims as they are; dynamic ones cycle through their
// profile's range so that every shape recurs (and is seen during the warm-up).
Dims dims_for_run(const Binding& b, size_t run) {
  Dims d;
  for (size_t i = 0; i < b.dims.size(); ++i) {
    const std::string& s = b.dims[i];
    bool fixed = !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
    if (fixed) { d.push_back(std::stoll(s)); continue; }
    if (!b.profile) throw Error("input '" + b.name + "' has a dynamic dim and no profile");
    int64_t lo = b.profile->min[i], hi = b.profile->max[i];
    d.push_back(lo + int64_t(run % size_t(hi - lo + 1)));
  }
  return d;
}

}  // namespace

int main(int argc, char** argv) {
  size_t runs = 100000, warmup = 1000;
  // 8 MB over the runs after the warm-up. A run allocates and frees a few KB: inputs of
  // 1..16 × 64 floats (2.2 KB on average), outputs of 1..16 × 32 floats; the arena is
  // planned once. A leak of one input per run grows the resident set by ~2 MB per 1,000
  // runs: over 200 MB in the full soak, 8.7 MB in ctest's 5,000-run version (4,000 after
  // the warm-up); a leak of one output per run (~1.1 KB) by over 100 MB in the full soak.
  // What may legitimately move after the warm-up stays well under 8 MB: glibc's per-thread
  // malloc arenas keep freed chunks up to their 128 KB trim threshold, OpenMP worker stacks
  // get touched a little deeper, libstdc++ grows an I/O buffer.
  double bound_mb = 8.0;
  std::string engine_path, device;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) { std::fprintf(stderr, "shardrt_soak: %s needs a value\n", a.c_str()); std::exit(2); }
      return argv[++i];
    };
    if (a == "--runs") runs = std::stoull(next());
    else if (a == "--warmup") warmup = std::stoull(next());
    else if (a == "--bound-mb") bound_mb = std::stod(next());
    else if (a == "--engine") engine_path = next();
    else if (a == "--device") device = next();
    else {
      std::fprintf(stderr, "usage: shardrt_soak [--runs N] [--warmup W] [--bound-mb MB] [--engine FILE] [--device cpu|cuda]\n");
      return 2;
    }
  }
  if (warmup >= runs) {
    std::fprintf(stderr, "shardrt_soak: --runs must be larger than --warmup (%zu)\n", warmup);
    return 2;
  }
  try {
    Engine engine = engine_path.empty() ? build_mlp() : Engine::load(engine_path);
    ContextOptions opts;
    opts.device = device;
    ExecutionContext ctx(engine, opts);
    std::mt19937 rng(1234);
    std::printf("soak: engine %s, device %s, %zu runs, warm-up %zu, bound %.1f MB\n",
                engine_path.empty() ? "soak_mlp (built)" : engine_path.c_str(), ctx.device().c_str(), runs, warmup,
                bound_mb);
    auto t0 = std::chrono::steady_clock::now();
    auto secs = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    std::printf("soak: %8s runs %9.2f s  rss %8.2f MB  (start)\n", "0", 0.0, rss_mb());
    std::fflush(stdout);
    double rss_warm = 0, rss_max_after = 0, checksum = 0, gpu_warm = 0, gpu_max_after = 0;
    size_t step = std::max<size_t>(runs / 10, 1);
    for (size_t r = 1; r <= runs; ++r) {
      std::map<std::string, Tensor> inputs;
      for (const Binding& b : engine.inputs()) inputs[b.name] = random_tensor(b.dtype, dims_for_run(b, r), rng);
      auto outs = ctx.run(inputs);
      for (auto& [name, t] : outs)
        if (t.numel() && is_float(t.dtype())) checksum += t.get_f(0);  // the results are used
      if (r == warmup) {
        rss_warm = rss_mb();
        gpu_warm = gpu_used_mb();
        std::printf("soak: %8zu runs %9.2f s  rss %8.2f MB  gpu %9.2f MB  (after warm-up)\n", r, secs(), rss_warm, gpu_warm);
        std::fflush(stdout);
      }
      if (r % step == 0) {
        double m = rss_mb(), gm = gpu_used_mb();
        if (r > warmup) {
          rss_max_after = std::max(rss_max_after, m);
          gpu_max_after = std::max(gpu_max_after, gm);
        }
        std::printf("soak: %8zu runs %9.2f s  rss %8.2f MB  gpu %9.2f MB  (%zu %%)\n", r, secs(), m, gm, r * 100 / runs);
        std::fflush(stdout);
      }
    }
    double grew = rss_max_after - rss_warm, gpu_grew = gpu_max_after - gpu_warm;
    bool ok = grew <= bound_mb && gpu_grew <= bound_mb && std::isfinite(checksum);
    if (gpu_warm > 0)
      std::printf("soak: gpu memory in use after warm-up %.2f MB, highest later %.2f MB: %+.2f MB\n", gpu_warm,
                  gpu_max_after, gpu_grew);
    std::printf("soak: %zu runs in %.1f s (%.1f µs/run); rss after warm-up %.2f MB, highest later %.2f MB: %+.2f MB "
                "(bound %.1f MB): %s\n",
                runs, secs(), 1e6 * secs() / double(runs), rss_warm, rss_max_after, grew, bound_mb,
                ok ? "OK" : (std::isfinite(checksum) ? "GREW" : "NON-FINITE OUTPUTS"));
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardrt_soak: error: %s\n", e.what());
    return 2;
  }
}
