#include "serve/generate.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dist/communicator.h"
#include "dist/mesh.h"
#include "ir/graph.h"
#include "models/decoder.h"
#include "onnx/importer.h"
#include "serve/past_present.h"
#include "serve/decoder_session.h"
#include "shardrt/network.h"
#include "util/hash.h"

namespace fs = std::filesystem;

namespace shardrt::serve {

using json = nlohmann::ordered_json;

namespace {

constexpr const char* kDecoderJson = "decoder.json";
// The tokenizer and generation files an engine folder carries over from its checkpoint.
constexpr const char* kCopiedFiles[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                        "generation_config.json", "special_tokens_map.json"};

// manifest.json's hash of a file: hash64 over its bytes, 16 hex digits (as build/multi_rank).
std::string file_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  char b[17];
  std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(hash64(s.data(), s.size())));
  return b;
}

DecoderInfo info_from_config(const std::string& model_dir, const models::DecoderConfig& cfg, int tp,
                             const models::DecoderBuildOptions& o, int64_t max_seq) {
  DecoderInfo i;
  i.family = cfg.family;
  i.model = fs::path(model_dir).lexically_normal().filename().string();
  if (i.model.empty()) i.model = fs::path(model_dir).lexically_normal().parent_path().filename().string();
  i.vocab = cfg.vocab;
  i.eos_token_ids = cfg.eos_token_ids;
  i.bos_token_id = cfg.bos_token_id;
  i.max_positions = cfg.max_positions;
  i.tp = tp;
  i.max_batch = o.max_batch;
  i.max_seq = max_seq;
  i.dtype = o.dtype ? *o.dtype : cfg.dtype;
  return i;
}

models::DecoderBuildOptions build_options(const models::DecoderConfig& cfg, int tp, int tp_index,
                                          const DecoderEngineOptions& o, int64_t* max_seq) {
  if (o.max_batch < 0) throw Error("--max-batch takes a count >= 1, got " + std::to_string(o.max_batch));
  if (o.max_seq < 0) throw Error("--max-seq takes a count >= 1, got " + std::to_string(o.max_seq));
  if (o.dtype && *o.dtype != DType::F32 && *o.dtype != DType::F16 && *o.dtype != DType::BF16)
    throw Error(std::string("--dtype takes fp32, fp16 or bf16, not ") + dtype_name(*o.dtype));
  models::DecoderBuildOptions b;
  b.tp_rank = tp_index;
  b.tp_size = tp;
  b.max_batch = o.max_batch ? o.max_batch : 8;
  b.max_seq = o.max_seq;
  *max_seq = models::decoder_max_seq(cfg, b);
  b.max_seq = *max_seq;
  b.dtype = o.dtype;
  return b;
}

Engine build_engine_for(const std::string& model_dir, const models::DecoderConfig& cfg,
                        const models::DecoderBuildOptions& b, int64_t max_seq, const DecoderEngineOptions& o) {
  // Collective ops' shapes (the LM head's AllGather) need the tp group's size at build time.
  dist::ScopedGroupShapes groups(1, b.tp_size, b.tp_rank);
  Network net = models::build_decoder_network(model_dir, cfg, b);
  BuildConfig bc;
  bc.device = o.device.empty() ? "cpu" : o.device;
  bc.shapes = models::decoder_profiles(b, max_seq);
  bc.progress = o.progress;
  return build_engine(net, bc);
}

}  // namespace

void write_decoder_info(const std::string& dir, const DecoderInfo& i) {
  json j;
  j["format"] = "shardrt-decoder";
  j["version"] = 1;
  j["family"] = i.family;
  j["model"] = i.model;
  j["vocab_size"] = i.vocab;
  j["eos_token_ids"] = i.eos_token_ids;
  j["bos_token_id"] = i.bos_token_id;
  j["max_position_embeddings"] = i.max_positions;
  j["tp"] = i.tp;
  j["max_batch"] = i.max_batch;
  j["max_seq"] = i.max_seq;
  j["dtype"] = dtype_name(i.dtype);
  fs::path p = fs::path(dir) / kDecoderJson;
  std::ofstream f(p);
  f << j.dump(2) << "\n";
  if (!f) throw Error("cannot write " + p.string());
}

DecoderInfo read_decoder_info(const std::string& dir) {
  fs::path p = fs::path(dir) / kDecoderJson;
  std::ifstream f(p);
  if (!f) throw Error("engine folder '" + dir + "' has no " + kDecoderJson + ": it is not a decoder's (build it with "
                      "`shardrt build MODEL_DIR -o DIR` from a checkpoint folder)");
  DecoderInfo i;
  std::string field;
  try {
    json j = json::parse(f);
    auto get = [&](const char* k) -> const json& {
      field = k;
      if (!j.contains(k)) throw Error(std::string("missing field '") + k + "'");
      return j.at(k);
    };
    if (get("format").get<std::string>() != "shardrt-decoder") throw Error("field 'format' is not \"shardrt-decoder\"");
    i.family = get("family").get<std::string>();
    i.model = j.value("model", "");
    i.vocab = get("vocab_size").get<int64_t>();
    i.eos_token_ids = get("eos_token_ids").get<std::vector<int64_t>>();
    i.bos_token_id = get("bos_token_id").get<int64_t>();
    i.max_positions = get("max_position_embeddings").get<int64_t>();
    i.tp = get("tp").get<int>();
    i.max_batch = get("max_batch").get<int64_t>();
    i.max_seq = get("max_seq").get<int64_t>();
    i.dtype = dtype_from_name(get("dtype").get<std::string>());
  } catch (const Error& e) {
    throw Error(p.string() + ": " + e.what());
  } catch (const std::exception& e) {
    throw Error(p.string() + ": malformed" + (field.empty() ? "" : " field '" + field + "'") + ": " + e.what());
  }
  if (i.vocab < 1 || i.tp < 1 || i.max_batch < 1 || i.max_seq < 1)
    throw Error(p.string() + ": vocab_size, tp, max_batch and max_seq must be >= 1");
  return i;
}

bool is_checkpoint_dir(const std::string& dir) { return fs::is_regular_file(fs::path(dir) / "config.json"); }

bool is_decoder_engine_dir(const std::string& dir) {
  return fs::is_regular_file(fs::path(dir) / "manifest.json") && fs::is_regular_file(fs::path(dir) / kDecoderJson);
}

RankDecoder build_rank_decoder(const std::string& model_dir, int tp, int tp_index, const DecoderEngineOptions& o) {
  models::DecoderConfig cfg = models::read_decoder_config(model_dir);
  int64_t max_seq = 0;
  models::DecoderBuildOptions b = build_options(cfg, tp, tp_index, o, &max_seq);
  Engine e = build_engine_for(model_dir, cfg, b, max_seq, o);
  return {std::move(e), info_from_config(model_dir, cfg, tp, b, max_seq)};
}

int decoder_engine_dir_tp(const std::string& dir) {
  Manifest m = Manifest::load(dir);
  if (m.plan_source != "checkpoint" || m.mesh.dp != 1)
    throw Error("engine folder '" + dir + "' holds per-rank engines of an ONNX model (plan '" + m.plan_source +
                "', mesh " + m.mesh.str() + "), not of a decoder checkpoint: run it with `shardrt run`");
  return m.mesh.tp;
}

RankDecoder load_rank_decoder(const std::string& dir, int tp_asked, int tp_index, const DecoderEngineOptions& o) {
  Manifest m = Manifest::load(dir);
  int tp = decoder_engine_dir_tp(dir);
  DecoderInfo info = read_decoder_info(dir);
  if (tp_asked && tp_asked != tp)
    throw Error("--tp " + std::to_string(tp_asked) + " does not match engine folder '" + dir + "': it was built with --tp " +
                std::to_string(tp) + " (manifest.json); rebuild it or launch with --tp " + std::to_string(tp));
  if (info.tp != tp)
    throw Error("engine folder '" + dir + "': decoder.json says tp " + std::to_string(info.tp) + ", manifest.json " +
                std::to_string(tp));
  if (o.dtype && *o.dtype != info.dtype)
    throw Error(std::string("--dtype ") + dtype_name(*o.dtype) + ": engine folder '" + dir + "' was built for " +
                dtype_name(info.dtype) + " (decoder.json); rebuild it with --dtype to change it");
  if (o.max_seq && o.max_seq != info.max_seq)
    throw Error("--max-seq " + std::to_string(o.max_seq) + ": engine folder '" + dir + "' was built with max-seq " +
                std::to_string(info.max_seq) + " (decoder.json); rebuild it with --max-seq to change it");
  if (o.max_batch > info.max_batch)
    throw Error("--max-batch " + std::to_string(o.max_batch) + ": engine folder '" + dir + "' holds " +
                std::to_string(info.max_batch) + " rows per batch (built with --max-batch " +
                std::to_string(info.max_batch) + ")");
  Engine e = load_rank_engine(m, dir, tp_index);
  return {std::move(e), info};
}

namespace {

constexpr int64_t kOnnxDefaultMaxSeq = 512;
// Prompt tokens per step of an ONNX decoder's prefill: bounds the step's [B, S, V] logits
// (and attention scores) that the profiles let the engine size its buffers for.
constexpr int64_t kOnnxPrefillChunk = 64;

// eos / bos ids from config.json and generation_config.json beside an ONNX file (optimum
// writes them there); none when absent.
void side_config_ids(const fs::path& dir, DecoderInfo& info) {
  for (const char* f : {"config.json", "generation_config.json"}) {
    fs::path p = dir / f;
    if (!fs::is_regular_file(p)) continue;
    try {
      std::ifstream in(p);
      json j = json::parse(in);
      if (j.contains("eos_token_id")) {
        const json& e = j["eos_token_id"];
        std::vector<int64_t> ids;
        if (e.is_number_integer()) ids.push_back(e.get<int64_t>());
        else if (e.is_array())
          for (auto& x : e) ids.push_back(x.get<int64_t>());
        for (int64_t id : ids)
          if (std::find(info.eos_token_ids.begin(), info.eos_token_ids.end(), id) == info.eos_token_ids.end())
            info.eos_token_ids.push_back(id);
      }
      if (info.bos_token_id < 0 && j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
        info.bos_token_id = j["bos_token_id"].get<int64_t>();
    } catch (const std::exception& e) {
      throw Error(p.string() + ": " + e.what());
    }
  }
}

}  // namespace

bool is_past_present_file(const std::string& path) { return fs::is_regular_file(path); }

RankDecoder load_past_present_decoder(const std::string& path, const DecoderEngineOptions& o) {
  if (o.dtype)
    throw Error(std::string("--dtype ") + dtype_name(*o.dtype) + ": '" + path + "' is an ONNX decoder, which runs in "
                "its file's precision (--dtype applies to checkpoint folders)");
  if (o.max_batch < 0) throw Error("--max-batch takes a count >= 1, got " + std::to_string(o.max_batch));
  if (o.max_seq < 0) throw Error("--max-seq takes a count >= 1, got " + std::to_string(o.max_seq));
  const bool onnx = fs::path(path).extension() == ".onnx";
  std::optional<Engine> engine;
  if (onnx) {
    if (o.progress) o.progress("import", 0, 1);
    Graph g = import_onnx_file(path);
    const int64_t max_batch = o.max_batch ? o.max_batch : 8, max_seq = o.max_seq ? o.max_seq : kOnnxDefaultMaxSeq;
    BuildConfig bc;
    bc.device = o.device.empty() ? "cpu" : o.device;
    bc.shapes = past_present_profiles(g, max_batch, max_seq, std::min(kOnnxPrefillChunk, max_seq));
    bc.progress = o.progress;
    engine.emplace(build_engine_from_graph(std::move(g), bc));
  } else {
    engine.emplace(Engine::load(path));
    for (const Binding& b : engine->inputs())
      if (b.name == models::kPastLens)
        throw Error("'" + path + "' is one rank's engine of a decoder checkpoint: pass the engine folder that holds "
                    "it (with manifest.json and decoder.json)");
  }
  PastPresentLayout L = read_past_present_layout(*engine);
  if (!onnx) {
    if (o.max_seq && o.max_seq != L.max_seq)
      throw Error("--max-seq " + std::to_string(o.max_seq) + ": engine file '" + path + "' holds " +
                  std::to_string(L.max_seq) + " cache positions (its profiles); rebuild it to change them");
    if (o.max_batch > L.max_batch)
      throw Error("--max-batch " + std::to_string(o.max_batch) + ": engine file '" + path + "' takes " +
                  std::to_string(L.max_batch) + " rows per step (its profiles)");
  }
  DecoderInfo info;
  info.family = "onnx";
  info.model = fs::path(path).filename().string();
  info.vocab = L.vocab;
  info.max_positions = L.max_seq;
  info.tp = 1;
  info.max_batch = L.max_batch;
  info.max_seq = L.max_seq;
  info.dtype = L.cache_dtype;
  side_config_ids(fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path(), info);
  return {std::move(*engine), info};
}

Manifest build_decoder_engine_dir(const std::string& model_dir, const std::string& out_dir, int tp,
                                  const DecoderEngineOptions& o, const std::function<void(const std::string&)>& log) {
  if (tp < 1) throw Error("--tp takes a size >= 1, got " + std::to_string(tp));
  models::DecoderConfig cfg = models::read_decoder_config(model_dir);
  fs::create_directories(out_dir);
  Manifest man;
  man.mesh.dp = 1;
  man.mesh.tp = tp;
  man.plan_source = "checkpoint";
  DecoderInfo info;
  for (int t = 0; t < tp; ++t) {
    int64_t max_seq = 0;
    models::DecoderBuildOptions b = build_options(cfg, tp, t, o, &max_seq);
    Engine e = build_engine_for(model_dir, cfg, b, max_seq, o);
    info = info_from_config(model_dir, cfg, tp, b, max_seq);
    std::string name = "rank" + std::to_string(t) + ".engine";
    std::string path = (fs::path(out_dir) / name).string();
    e.save(path);
    man.ranks.push_back({t, 0, t, name, file_hash(path)});
    if (log) {
      char sizes[128];
      std::snprintf(sizes, sizeof sizes, "weights %.2f MB, KV cache %.2f MB per context", double(e.weight_bytes()) / 1e6,
                    double(models::kv_cache_bytes(e.graph())) / 1e6);
      log("tp rank " + std::to_string(t) + ": " + path + " (" + std::to_string(e.layer_count()) + " layers, " + sizes + ")");
    }
  }
  man.model = info.model;
  man.save(out_dir);
  write_decoder_info(out_dir, info);
  for (const char* f : kCopiedFiles) {
    fs::path src = fs::path(model_dir) / f;
    if (fs::is_regular_file(src)) fs::copy_file(src, fs::path(out_dir) / f, fs::copy_options::overwrite_existing);
  }
  return man;
}

void check_prompts(const std::vector<std::vector<int64_t>>& prompts, const std::vector<int64_t>& indices, int64_t vocab,
                   int64_t max_seq, int64_t max_new_tokens) {
  for (size_t i = 0; i < prompts.size(); ++i) {
    const auto& p = prompts[i];
    std::string who = "prompt " + std::to_string(indices[i]);
    if (p.empty()) throw Error(who + " is empty: a prompt needs at least one token");
    for (size_t j = 0; j < p.size(); ++j)
      if (p[j] < 0 || p[j] >= vocab)
        throw Error(who + ": token " + std::to_string(j) + " is " + std::to_string(p[j]) +
                    ", outside the model's vocabulary [0, " + std::to_string(vocab) + ")");
    int64_t len = int64_t(p.size());
    if (len > max_seq)
      throw Error(who + " has " + std::to_string(len) + " tokens, more than the engine's max-seq " +
                  std::to_string(max_seq) + " (build with a larger --max-seq)");
    int64_t need = len + max_new_tokens - 1;
    if (need > max_seq)
      throw Error(who + " has " + std::to_string(len) + " tokens; with --max-new-tokens " + std::to_string(max_new_tokens) +
                  " it needs " + std::to_string(need) + " KV cache positions, but the engine's max-seq is " +
                  std::to_string(max_seq) + " (lower --max-new-tokens or build with --max-seq >= " +
                  std::to_string(need) + ")");
  }
}

std::vector<PromptResult> generate_prompts(DecoderSession& session, const std::vector<std::vector<int64_t>>& prompts,
                                           const std::vector<int64_t>& indices, const GenerateOptions& o,
                                           dist::Communicator* tp_group, const TokenCallback& on_token,
                                           GroupStats* stats) {
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t0) { return std::chrono::duration<double, std::milli>(clock::now() - t0).count(); };
  if (o.max_new_tokens < 1) throw Error("--max-new-tokens takes a count >= 1, got " + std::to_string(o.max_new_tokens));
  validate(o.sampling);
  const int64_t rows_max = o.max_batch > 0 ? std::min(o.max_batch, session.max_batch()) : session.max_batch();
  const bool chooser = !tp_group || tp_group->rank() == 0;
  const std::set<int64_t> stops(o.stop_ids.begin(), o.stop_ids.end());
  check_prompts(prompts, indices, session.vocab(), session.max_seq(), o.max_new_tokens);

  std::vector<PromptResult> out;
  GroupStats st;
  for (size_t start = 0; start < prompts.size(); start += size_t(rows_max)) {
    size_t rows = std::min(prompts.size() - start, size_t(rows_max));
    std::vector<std::vector<int64_t>> batch(prompts.begin() + long(start), prompts.begin() + long(start + rows));
    std::vector<PromptResult> res(rows);
    std::vector<std::mt19937_64> rngs;
    for (size_t r = 0; r < rows; ++r) {
      res[r].index = indices[start + r];
      rngs.push_back(prompt_rng(o.seed, uint64_t(res[r].index)));
      st.prefill_tokens += int64_t(batch[r].size());
    }
    // Greedy steps fetch only the chosen ids (the argmax on the device where the engine
    // has it); sampling reads the logits.
    const bool greedy = o.sampling.greedy();
    Tensor logits;
    const std::vector<int64_t>* chosen = nullptr;
    auto t0 = clock::now();
    if (greedy) chosen = &session.prefill_greedy(batch);
    else logits = session.prefill(batch);
    st.prefill_ms += ms_since(t0);
    const int64_t V = session.vocab();
    std::vector<char> done(rows, 0);
    std::vector<int64_t> tokens(rows, o.pad_id);
    auto td = clock::now();
    for (int64_t step = 0;; ++step) {
      if (chooser)
        for (size_t r = 0; r < rows; ++r)
          tokens[r] = done[r]  ? o.pad_id
                      : greedy ? (*chosen)[r]
                               : sample_token(logits.data<float>() + int64_t(r) * V, V, o.sampling, rngs[r]);
      // Every rank of the group feeds the same tokens to its engine (its collectives need
      // matching shapes and its KV cache the same history): rank 0's choice is the group's.
      if (tp_group && tp_group->size() > 1)
        tp_group->broadcast(tokens.data(), int64_t(rows), DType::I64, 0, {"", "generate: broadcast of chosen tokens"});
      size_t live = 0;
      for (size_t r = 0; r < rows; ++r) {
        if (done[r]) continue;
        res[r].ids.push_back(tokens[r]);
        if (step > 0) ++st.decode_tokens;
        if (stops.count(tokens[r])) res[r].finish_reason = "stop";
        else if (int64_t(res[r].ids.size()) >= o.max_new_tokens) res[r].finish_reason = "length";
        done[r] = !res[r].finish_reason.empty();
        if (on_token) on_token(res[r].index, tokens[r], done[r]);
        live += !done[r];
      }
      if (!live) break;
      if (greedy) chosen = &session.decode_greedy(tokens);
      else logits = session.decode(tokens);
    }
    if (!prompts.empty()) st.decode_ms += ms_since(td);
    for (auto& r : res) {
      st.tokens += int64_t(r.ids.size());
      out.push_back(std::move(r));
    }
  }
  st.prompts = int64_t(prompts.size());
  if (stats) {
    st.dp_index = stats->dp_index;
    *stats = st;
  }
  return out;
}

Gathered gather_results(dist::Communicator& world, bool reporter, const std::vector<PromptResult>& local,
                        const GroupStats& stats) {
  // One int64 record per reporter: [n_results, dp_index, prompts, tokens, prefill_tokens,
  // decode_tokens, prefill_us, decode_us, then per result: index, finish (1 stop, 0
  // length), n, ids...]. Other ranks send nothing.
  std::vector<int64_t> mine;
  if (reporter) {
    mine = {int64_t(local.size()), stats.dp_index, stats.prompts, stats.tokens, stats.prefill_tokens, stats.decode_tokens,
            int64_t(stats.prefill_ms * 1000.0), int64_t(stats.decode_ms * 1000.0)};
    for (auto& r : local) {
      mine.push_back(r.index);
      mine.push_back(r.finish_reason == "stop" ? 1 : 0);
      mine.push_back(int64_t(r.ids.size()));
      mine.insert(mine.end(), r.ids.begin(), r.ids.end());
    }
  }
  const dist::CallSite site{"", "generate: gather of results"};
  std::vector<int64_t> counts(static_cast<size_t>(world.size()));
  int64_t n = int64_t(mine.size());
  world.all_gather(&n, counts.data(), 1, DType::I64, site);
  int64_t total = 0;
  for (auto c : counts) total += c;
  std::vector<int64_t> all(size_t(std::max<int64_t>(total, 1)));
  int64_t dummy = 0;
  world.all_gather(mine.empty() ? &dummy : mine.data(), all.data(), counts, DType::I64, site);
  Gathered g;
  if (world.rank() != 0) return g;
  size_t at = 0;
  for (int r = 0; r < world.size(); ++r) {
    size_t end = at + size_t(counts[size_t(r)]);
    if (at == end) continue;
    int64_t nres = all[at];
    GroupStats s;
    s.dp_index = int(all[at + 1]);
    s.prompts = all[at + 2];
    s.tokens = all[at + 3];
    s.prefill_tokens = all[at + 4];
    s.decode_tokens = all[at + 5];
    s.prefill_ms = double(all[at + 6]) / 1000.0;
    s.decode_ms = double(all[at + 7]) / 1000.0;
    g.groups.push_back(s);
    at += 8;
    for (int64_t i = 0; i < nres; ++i) {
      PromptResult p;
      p.index = all[at];
      p.finish_reason = all[at + 1] ? "stop" : "length";
      int64_t len = all[at + 2];
      p.ids.assign(all.begin() + long(at + 3), all.begin() + long(at + 3 + size_t(len)));
      at += 3 + size_t(len);
      g.results.push_back(std::move(p));
    }
    if (at != end) throw Error("generate: malformed results from rank " + std::to_string(r));
  }
  std::sort(g.results.begin(), g.results.end(), [](auto& a, auto& b) { return a.index < b.index; });
  std::sort(g.groups.begin(), g.groups.end(), [](auto& a, auto& b) { return a.dp_index < b.dp_index; });
  return g;
}

}  // namespace shardrt::serve
