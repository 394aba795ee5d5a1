// One decode step of a decoder engine built from a Hugging Face checkpoint (src/models),
// timed at a fixed cached length with Google Benchmark.
//
// For each batch size B: the rows are filled by a prefill of `past` random tokens, then the
// same decode step (one token per row at position `past`) is run over and over: a decode
// step writes its K/V at position past_lens[b] and reads positions 0..past_lens[b], so
// repeating it with the same inputs leaves the cache as it was (the cached length stays
// `past`, as the peers' scripts keep theirs with DynamicCache.crop). On CUDA the step is a
// replayed CUDA graph after the first run. Each iteration is execute() + synchronize().
// decode_step_queued runs the same step 8 times per synchronize() and reports the time per
// step: the GPU's time for a step without the host's launch-and-wait round trip (what a
// loop that keeps its next inputs on the device would see), beside the per-token figure.
//
// Counters: bytes the step must read (the weights every step touches — tables only
// gathered from, such as an untied token embedding, are left out — plus the K/V cache up to
// the cached length) and that over the time, in GB/s; with --copy-bandwidth, a
// device-to-device copy of 1 GiB timed the same way (bytes read + written per second) as
// the machine's measured memory bandwidth.
//
//   shardrt_decode_bench MODEL_DIR --batch 1,32 --past 1024 --dtype bf16 --device cuda
//       [--max-seq N] [--copy-bandwidth] [--benchmark_format=json ...]
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "models/decoder.h"
#include "shardrt/engine.h"

#ifdef SHARDRT_HAVE_CUDA_RUNTIME
#include <cuda_runtime.h>
#endif

using namespace shardrt;

namespace {

struct Args {
  std::string model_dir, device = "cuda", dtype;
  std::vector<int64_t> batches{1};
  int64_t past = 512, max_seq = 0;
  bool copy_bandwidth = false;
};

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    v.push_back(std::stoll(s.substr(i, j - i)));
    i = j + 1;
  }
  return v;
}

// Bytes of constants a decode step reads: every constant input of a node, except tables
// that only Gather nodes read from (one row per token).
size_t step_weight_bytes(const Graph& g) {
  std::map<const Value*, bool> gather_only;
  for (auto& n : g.nodes)
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const Value* v = n->inputs[i];
      if (!v || !v->constant) continue;
      bool g_only = n->op == "Gather" && i == 0;
      auto it = gather_only.find(v);
      gather_only[v] = (it == gather_only.end() ? true : it->second) && g_only;
    }
  size_t bytes = 0;
  for (auto& [v, only] : gather_only)
    if (!only) bytes += size_t(numel(v->constant->dims())) * dtype_size(v->constant->dtype());
  return bytes;
}

// K and V bytes a step reads at cached length `len` for `batch` rows.
size_t step_cache_bytes(const Graph& g, int64_t batch, int64_t len) {
  size_t bytes = 0;
  for (auto& n : g.nodes) {
    if (n->op != "shardrt.CachedAttention") continue;
    int64_t hkv = n->attr_i("num_kv_heads", 0), d = n->attr_i("head_dim", 0);
    bytes += size_t(2 * batch * hkv * len * d) * dtype_size(n->inputs[0]->dtype);
  }
  return bytes;
}

Tensor ids_tensor(int64_t b, int64_t s, int64_t vocab, uint64_t seed) {
  Tensor t(DType::I64, {b, s});
  std::mt19937_64 rng(seed);
  for (int64_t i = 0; i < b * s; ++i) t.data<int64_t>()[i] = int64_t(rng() % uint64_t(vocab));
  return t;
}
Tensor fill_i64(int64_t n, int64_t v) {
  Tensor t(DType::I64, {n});
  for (int64_t i = 0; i < n; ++i) t.data<int64_t>()[i] = v;
  return t;
}

void decode_step(benchmark::State& st, const Engine* engine, const Args* a, int64_t batch, int64_t vocab,
                 int per_sync) {
  ExecutionContext ctx(*engine, ContextOptions{a->device, nullptr});
  // Prefill `past` tokens per row, then the decode inputs stay in place.
  ctx.run({{models::kInputIds, ids_tensor(batch, a->past, vocab, 1)},
           {models::kPastLens, fill_i64(batch, 0)},
           {models::kLastIndex, fill_i64(batch, a->past - 1)}});
  ctx.set_inputs({{models::kInputIds, ids_tensor(batch, 1, vocab, 2)},
                  {models::kPastLens, fill_i64(batch, a->past)},
                  {models::kLastIndex, fill_i64(batch, 0)}});
  for (int i = 0; i < 3; ++i) {  // the eager run, the capture, a replay
    ctx.execute();
    ctx.synchronize();
  }
  const auto t0 = std::chrono::steady_clock::now();
  for (auto _ : st) {
    for (int i = 0; i < per_sync; ++i) ctx.execute();
    ctx.synchronize();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.counters["step_ms"] = st.iterations() ? 1e3 * secs / double(st.iterations() * per_sync) : 0.0;
  const Graph& g = engine->graph();
  double bytes = double(step_weight_bytes(g) + step_cache_bytes(g, batch, a->past + 1));
  st.counters["bytes_per_step"] = bytes;
  st.counters["GBps"] = benchmark::Counter(per_sync * bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["tokens_per_s"] = benchmark::Counter(double(per_sync * batch), benchmark::Counter::kIsIterationInvariantRate);
  st.counters["batch"] = double(batch);
  st.counters["past"] = double(a->past);
}

#ifdef SHARDRT_HAVE_CUDA_RUNTIME
void copy_bandwidth(benchmark::State& st) {
  const size_t n = size_t(1) << 30;
  void *src = nullptr, *dst = nullptr;
  if (cudaMalloc(&src, n) != cudaSuccess || cudaMalloc(&dst, n) != cudaSuccess) {
    st.SkipWithError("cudaMalloc of 2 GiB failed");
    return;
  }
  cudaMemset(src, 1, n);
  for (auto _ : st) {
    cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
  }
  st.counters["GBps"] = benchmark::Counter(2.0 * double(n) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  cudaFree(src);
  cudaFree(dst);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--batch") a.batches = parse_list(val());
    else if (k == "--past") a.past = std::stoll(val());
    else if (k == "--max-seq") a.max_seq = std::stoll(val());
    else if (k == "--dtype") a.dtype = val();
    else if (k == "--device") a.device = val();
    else if (k == "--copy-bandwidth") a.copy_bandwidth = true;
    else if (!k.empty() && k[0] != '-' && a.model_dir.empty()) a.model_dir = k;
    else {
      std::fprintf(stderr, "unknown argument '%s'\nusage: %s MODEL_DIR [--batch 1,32] [--past N] [--max-seq N] "
                   "[--dtype fp32|fp16|bf16] [--device cpu|cuda] [--copy-bandwidth] [benchmark flags]\n",
                   k.c_str(), argv[0]);
      return 2;
    }
  }
  if (a.model_dir.empty()) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [--batch 1,32] [--past N] ...\n", argv[0]);
    return 2;
  }
  try {
    models::DecoderConfig cfg = models::read_decoder_config(a.model_dir);
    models::DecoderBuildOptions o;
    o.max_batch = 1;
    for (int64_t b : a.batches) o.max_batch = std::max(o.max_batch, b);
    o.max_seq = a.max_seq ? a.max_seq : a.past + 16;
    if (!a.dtype.empty()) o.dtype = dtype_from_name(a.dtype);
    Network net = models::build_decoder_network(a.model_dir, cfg, o);
    BuildConfig bc;
    bc.device = a.device;
    bc.shapes = models::decoder_profiles(o, o.max_seq);
    std::fprintf(stderr, "building %s (%s, %lld layers) for %s...\n", a.model_dir.c_str(), cfg.family.c_str(),
                 (long long)cfg.layers, a.device.c_str());
    static Engine engine = build_engine(net, bc);
    static Args args = a;
#ifdef SHARDRT_HAVE_CUDA_RUNTIME
    if (a.copy_bandwidth) benchmark::RegisterBenchmark("copy_bandwidth_1GiB", copy_bandwidth)->UseRealTime();
#endif
    for (int64_t b : a.batches)
      for (int per_sync : {1, 8})
        benchmark::RegisterBenchmark(((per_sync == 1 ? "decode_step/batch:" : "decode_step_queued/batch:") +
                                      std::to_string(b) + "/past:" + std::to_string(a.past))
                                         .c_str(),
                                     decode_step, &engine, &args, b, cfg.vocab, per_sync)
            ->UseRealTime()
            ->Unit(benchmark::kMillisecond);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "error: %s\n", ex.what());
    return 1;
  }
  return 0;
}
