// Test tool (not installed): builds a Hugging Face decoder checkpoint into an engine with
// src/models and drives it with serve::DecoderSession — a prefill of the given prompts, then
// --steps greedy decode steps (each row fed its own argmax) — writing every step's logits.
//
//   shardrt_decoder_logits MODEL_DIR --prompt-ids 1,2,3 [--prompt-ids 4,5 ...] --steps N
//                          --out DIR [--dtype fp32|fp16|bf16] [--device cpu|cuda]
//                          [--max-seq N] [--max-batch N] [--tp N] [--no-optimize] [--disable-pass P] [--inspect]
//
// With --tp N, run under `mpirun -n N`: rank r builds tensor-parallel rank r's engine (its
// slices of the weights) and the engines' collectives go through the world communicator.
// Rank 0 writes DIR/step_K.npy (logits [rows, V] fp32 after the prefill, K = 0, and after
// each decode step K = 1..N) and DIR/tokens.npy ([rows, N + 1] int64: each step's argmax).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "dist/bootstrap.h"
#include "models/decoder.h"
#include "serve/decoder_session.h"
#include "shardrt/engine.h"
#include "shardrt/npy.h"

using namespace shardrt;

namespace {

std::vector<int64_t> parse_ids(const std::string& s) {
  std::vector<int64_t> ids;
  std::stringstream ss(s);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    char* end = nullptr;
    long long v = std::strtoll(tok.c_str(), &end, 10);
    if (tok.empty() || *end != '\0' || v < 0) throw Error("--prompt-ids: '" + s + "' is not a list of token ids");
    ids.push_back(v);
  }
  if (ids.empty()) throw Error("--prompt-ids: empty prompt");
  return ids;
}

int64_t parse_int(const std::string& opt, const std::string& s, int64_t min) {
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || v < min) throw Error(opt + ": expected an integer >= " + std::to_string(min));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string model, out, device = "cpu";
    std::vector<std::vector<int64_t>> prompts;
    int64_t steps = 0, tp = 1;
    bool optimize = true, inspect = false;
    std::vector<std::string> disabled;
    models::DecoderBuildOptions o;
    o.max_batch = 0;
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw Error(a + " needs a value");
        return argv[++i];
      };
      if (a == "--prompt-ids") prompts.push_back(parse_ids(value()));
      else if (a == "--steps") steps = parse_int(a, value(), 0);
      else if (a == "--out") out = value();
      else if (a == "--dtype") o.dtype = dtype_from_name(value());
      else if (a == "--device") device = value();
      else if (a == "--max-seq") o.max_seq = parse_int(a, value(), 1);
      else if (a == "--max-batch") o.max_batch = parse_int(a, value(), 1);
      else if (a == "--tp") tp = parse_int(a, value(), 1);
      else if (a == "--no-optimize") optimize = false;
      else if (a == "--disable-pass") disabled.push_back(value());
      else if (a == "--inspect") inspect = true;
      else if (!a.empty() && a[0] == '-') throw Error("unknown option '" + a + "'");
      else if (model.empty()) model = a;
      else throw Error("unexpected argument '" + a + "'");
    }
    if (model.empty() || out.empty() || prompts.empty())
      throw Error("usage: shardrt_decoder_logits MODEL_DIR --prompt-ids 1,2,3 [...] --steps N --out DIR "
                  "[--dtype T] [--device D] [--max-seq N] [--max-batch N] [--tp N]");
    if (o.max_batch == 0) o.max_batch = int64_t(prompts.size());

    auto world = dist::communicator_from_env();
    if (world->size() != tp)
      throw Error("--tp " + std::to_string(tp) + " needs a launch of as many ranks, this one has " +
                  std::to_string(world->size()));
    o.tp_size = int(tp);
    o.tp_rank = world->rank();

    models::DecoderConfig cfg = models::read_decoder_config(model);
    Network net = models::build_decoder_network(model, cfg, o);
    BuildConfig bc;
    bc.shapes = models::decoder_profiles(o, models::decoder_max_seq(cfg, o));
    bc.device = device;
    bc.optimize = optimize;
    bc.disabled_passes = disabled;
    Engine engine = build_engine(net, bc);
    if (inspect && world->rank() == 0) std::printf("%s\n", engine.inspect(false).c_str());

    ContextOptions co;
    co.device = device;
    if (tp > 1) co.comm = world.get();
    serve::DecoderSession session(engine, co);

    const int64_t rows = int64_t(prompts.size());
    std::vector<std::vector<int64_t>> chosen(static_cast<size_t>(rows));
    auto record = [&](int64_t k, const Tensor& logits) {
      std::vector<int64_t> next(static_cast<size_t>(rows));
      for (int64_t b = 0; b < rows; ++b) {
        const float* p = logits.data<float>() + b * logits.dim(1);
        next[size_t(b)] = int64_t(std::max_element(p, p + logits.dim(1)) - p);
        chosen[size_t(b)].push_back(next[size_t(b)]);
      }
      if (world->rank() == 0) write_npy(out + "/step_" + std::to_string(k) + ".npy", logits);
      return next;
    };
    if (world->rank() == 0) std::filesystem::create_directories(out);
    std::vector<int64_t> next = record(0, session.prefill(prompts));
    for (int64_t k = 1; k <= steps; ++k) next = record(k, session.decode(next));
    if (world->rank() == 0) {
      Tensor toks(DType::I64, {rows, steps + 1});
      for (int64_t b = 0; b < rows; ++b)
        std::copy(chosen[size_t(b)].begin(), chosen[size_t(b)].end(), toks.data<int64_t>() + b * (steps + 1));
      write_npy(out + "/tokens.npy", toks);
      std::printf("%s: %lld rows, %lld decode steps, KV cache %.1f KB per context\n", cfg.model_type.c_str(),
                  (long long)rows, (long long)steps, double(models::kv_cache_bytes(engine.graph())) / 1e3);
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "shardrt_decoder_logits: error: %s\n", e.what());
    return 1;
  }
}
