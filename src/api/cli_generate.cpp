// `shardrt generate`, `shardrt tokenize` and `shardrt build MODEL_DIR` (a decoder
// checkpoint): option parsing, tokenizer, the mesh, printing. The generation itself is
// src/serve/generate.*.
#include "api/cli_generate.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "dist/bootstrap.h"
#include "dist/mesh.h"
#include "models/decoder.h"
#include "serve/decoder_session.h"
#include "serve/generate.h"
#include "text/bpe_tokenizer.h"

namespace fs = std::filesystem;

namespace shardrt {

namespace {

using json = nlohmann::ordered_json;

struct GenerateArgs {
  std::string path;
  std::vector<std::string> prompts, prompt_ids;
  int64_t max_new_tokens = 32;
  float temperature = 0.f;
  int64_t top_k = 0;
  float top_p = 1.f;
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;
  bool no_stop = false, stream = false, json_out = false;
  std::string device, dtype, tokenizer;
  int tp = 0, dp = 0;
  int64_t max_batch = 0, max_seq = 0;
  std::vector<std::pair<bool, size_t>> order;  // (is ids, position among its kind), command-line order
};

struct TokenizeArgs {
  std::string tokenizer, text, decode;
  bool has_text = false;
};

std::vector<int64_t> parse_ids(const std::string& s, const std::string& option) {
  std::vector<int64_t> ids;
  size_t at = 0;
  while (at <= s.size()) {
    size_t comma = s.find(',', at);
    std::string part = s.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t b = part.find_first_not_of(" \t"), e = part.find_last_not_of(" \t");
    part = b == std::string::npos ? "" : part.substr(b, e - b + 1);
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(part, &used);
    } catch (...) {
      used = std::string::npos;
    }
    if (part.empty() || used != part.size())
      throw Error(option + " takes comma-separated token ids like 1,2,3; got '" + s + "'");
    ids.push_back(v);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return ids;
}

std::optional<DType> parse_dtype(const std::string& s) {
  if (s.empty()) return std::nullopt;
  if (s == "fp32" || s == "fp16" || s == "bf16") return dtype_from_name(s);
  throw Error("--dtype takes fp32, fp16 or bf16, not '" + s + "'");
}

// The folder's tokenizer files, if any: tokenizer.json, or vocab.json + merges.txt.
bool has_tokenizer_files(const std::string& dir) {
  fs::path d(dir);
  return fs::is_regular_file(d / "tokenizer.json") ||
         (fs::is_regular_file(d / "vocab.json") && fs::is_regular_file(d / "merges.txt"));
}

// Decoding that never throws: an id the tokenizer does not know becomes U+FFFD. at_start:
// the ids begin a text (a SentencePiece-style decoder strips its leading space there); a
// continuation of a prompt decodes with at_start false, so that prompt + text is the whole.
std::string decode_safe(const text::BpeTokenizer& t, const std::vector<int64_t>& ids, bool at_start) {
  std::string s;
  for (size_t i = 0; i < ids.size(); ++i) {
    try {
      s += t.decode({ids[i]}, at_start && i == 0);
    } catch (const Error&) {
      s += "\xEF\xBF\xBD";
    }
  }
  return s;
}

// `s` with every invalid UTF-8 sequence replaced by U+FFFD (one per maximal invalid
// subpart, as Python's errors="replace"): a random or partly trained model can emit byte
// tokens that do not form characters. Decisions are local to the bytes from one lead byte
// to the next, so text cut where complete_utf8_prefix() cuts gives the same result in
// pieces as whole.
std::string sanitize_utf8(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  const size_t n = s.size();
  auto cont = [&](size_t j, unsigned lo, unsigned hi) {
    if (j >= n) return false;
    unsigned b = static_cast<unsigned char>(s[j]);
    return b >= lo && b <= hi;
  };
  for (size_t i = 0; i < n;) {
    unsigned c = static_cast<unsigned char>(s[i]);
    size_t want = 0;
    unsigned lo = 0x80, hi = 0xBF;  // the second byte's range
    if (c < 0x80) want = 1;
    else if (c >= 0xC2 && c <= 0xDF) want = 2;
    else if (c >= 0xE0 && c <= 0xEF) { want = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { want = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    size_t got = 1;
    if (want > 1 && cont(i + 1, lo, hi)) {
      got = 2;
      while (got < want && cont(i + got, 0x80, 0xBF)) ++got;
    }
    if (want && got == want) out.append(s, i, want);
    else out += "\xEF\xBF\xBD";
    i += got;
  }
  return out;
}

// Bytes of `s` that end on a complete UTF-8 character (a streamed token may end inside
// one: its remaining bytes come with the next token).
size_t complete_utf8_prefix(const std::string& s) {
  size_t n = s.size(), i = n, back = 0;
  while (i > 0 && back < 4) {
    unsigned char c = static_cast<unsigned char>(s[i - 1]);
    if ((c & 0xC0) != 0x80) {  // a lead byte (or ASCII): is its sequence complete?
      size_t want = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
      return (n - (i - 1)) >= want ? n : i - 1;
    }
    --i;
    ++back;
  }
  return n;  // only continuation bytes: invalid anyway, print them
}

// Prints the prompts' outputs in prompt order: the first unfinished prompt as its tokens
// arrive, the later ones (buffered meanwhile) as soon as it is their turn.
//   text: "[i] " (when there are several prompts), the prompt's text, the generated text
//         (a final stop token left out), a newline;
//   ids:  "[i] " and the generated ids separated by spaces, a newline.
class OrderedPrinter {
 public:
  OrderedPrinter(FILE* f, const std::vector<std::string>* prompt_texts, const text::BpeTokenizer* tok,
                 std::set<int64_t> stops, bool flush_each)
      : f_(f), texts_(prompt_texts), tok_(tok), stops_(std::move(stops)), flush_(flush_each), n_(int64_t(prompt_texts->size())) {}

  void token(int64_t idx, int64_t id, bool finished, bool stopped) {
    Row& r = rows_[idx];
    r.ids.push_back(id);
    if (finished) { r.finished = true; r.stopped = stopped; }
    pump();
  }
  void token(int64_t idx, int64_t id, bool finished) { token(idx, id, finished, finished && stops_.count(id)); }
  void result(const serve::PromptResult& p) {
    for (size_t i = 0; i < p.ids.size(); ++i)
      token(p.index, p.ids[i], i + 1 == p.ids.size(), i + 1 == p.ids.size() && p.finish_reason == "stop");
  }

 private:
  struct Row {
    std::vector<int64_t> ids;
    size_t emitted = 0;
    bool started = false, finished = false, stopped = false;
    std::string bytes;  // decoded but not yet printed (an incomplete UTF-8 character)
  };
  void pump() {
    bool wrote = false;
    while (front_ < n_) {
      auto it = rows_.find(front_);
      if (it == rows_.end()) break;
      Row& r = it->second;
      if (!r.started) {
        if (n_ > 1) std::fprintf(f_, "[%lld] ", static_cast<long long>(front_));
        if (tok_) std::fputs(sanitize_utf8((*texts_)[size_t(front_)]).c_str(), f_);
        r.started = wrote = true;
      }
      for (; r.emitted < r.ids.size(); ++r.emitted) {
        int64_t id = r.ids[r.emitted];
        bool last_stop = r.finished && r.stopped && r.emitted + 1 == r.ids.size();
        if (tok_) {
          if (!last_stop) r.bytes += decode_safe(*tok_, {id}, false);
        } else {
          std::fprintf(f_, "%s%lld", r.emitted ? " " : "", static_cast<long long>(id));
        }
        wrote = true;
      }
      size_t k = r.finished ? r.bytes.size() : complete_utf8_prefix(r.bytes);
      if (k) {
        std::string t = sanitize_utf8(r.bytes.substr(0, k));
        std::fwrite(t.data(), 1, t.size(), f_);
        r.bytes.erase(0, k);
      }
      if (!r.finished) break;
      std::fputc('\n', f_);
      rows_.erase(it);
      ++front_;
    }
    if (wrote && flush_) std::fflush(f_);
  }

  FILE* f_;
  const std::vector<std::string>* texts_;
  const text::BpeTokenizer* tok_;
  std::set<int64_t> stops_;
  bool flush_;
  int64_t n_, front_ = 0;
  std::map<int64_t, Row> rows_;
};

struct StageLog {
  explicit StageLog(bool enabled) : on(enabled) {}
  bool on;
  std::string last;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  void operator()(const std::string& stage, int, int) {
    if (!on || stage == last) return;
    last = stage;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "[%6.1fs] %s\n", s, stage.c_str());
  }
};

int cmd_generate(const GenerateArgs& a) {
  const std::string& path = a.path;
  // A file is an ONNX decoder with past/present bindings (or an engine file built from one).
  const bool from_file = serve::is_past_present_file(path);
  const bool from_checkpoint = !from_file && serve::is_checkpoint_dir(path);
  if (!from_file && !from_checkpoint && !serve::is_decoder_engine_dir(path)) {
    if (!fs::is_directory(path)) throw Error("'" + path + "' does not exist: generate takes a checkpoint folder (with "
                                             "config.json), an engine folder written by `shardrt build MODEL_DIR`, or an "
                                             "ONNX decoder file with past_key_values inputs");
    throw Error("'" + path + "' has neither config.json (a Hugging Face checkpoint) nor manifest.json + decoder.json (an "
                "engine folder written by `shardrt build MODEL_DIR -o DIR`)");
  }
  if (a.prompts.empty() && a.prompt_ids.empty()) throw Error("generate needs at least one --prompt or --prompt-ids");
  if (a.tp < 0 || a.dp < 0) throw Error("--tp and --dp take sizes >= 1");
  if (a.max_batch < 0) throw Error("--max-batch takes a count >= 1, got " + std::to_string(a.max_batch));
  if (from_file && a.tp > 1)
    throw Error("--tp " + std::to_string(a.tp) + ": '" + path + "' is an ONNX decoder, which runs whole on one rank "
                "(data parallelism with --dp works); tensor parallelism needs a checkpoint folder or an engine folder "
                "built from one");

  serve::DecoderEngineOptions eo;
  eo.max_batch = a.max_batch;
  eo.max_seq = a.max_seq;
  eo.dtype = parse_dtype(a.dtype);
  eo.device = a.device.empty() ? "cpu" : a.device;

  // What the model says about itself, before anything expensive (every rank reads it).
  int64_t vocab = 0;
  std::vector<int64_t> eos;
  int tp = a.tp ? a.tp : 1;
  // An ONNX decoder is built (or its engine file loaded) first: its vocabulary and cache
  // size are in the engine's bindings. Every rank builds its own.
  std::optional<serve::RankDecoder> file_rd;
  double file_load_s = 0;
  if (from_file) {
    auto t0 = std::chrono::steady_clock::now();
    file_rd = serve::load_past_present_decoder(path, eo);
    file_load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    vocab = file_rd->info.vocab;
    eos = file_rd->info.eos_token_ids;
  } else if (from_checkpoint) {
    models::DecoderConfig cfg = models::read_decoder_config(path);
    vocab = cfg.vocab;
    eos = cfg.eos_token_ids;
  } else {
    tp = serve::decoder_engine_dir_tp(path);
    if (a.tp && a.tp != tp)
      throw Error("--tp " + std::to_string(a.tp) + " does not match engine folder '" + path + "': it was built with --tp " +
                  std::to_string(tp) + " (manifest.json)");
    serve::DecoderInfo info = serve::read_decoder_info(path);
    vocab = info.vocab;
    eos = info.eos_token_ids;
  }
  const std::string vocab_source = from_file ? "the engine's logits" : from_checkpoint ? "config.json" : "decoder.json";

  // The mesh: dp groups of tp consecutive ranks.
  auto world = dist::communicator_from_env();
  const int W = world->size();
  if (W % tp)
    throw Error("this launch has " + std::to_string(W) + " rank(s), not a multiple of tp " + std::to_string(tp) +
                ": launch dp x tp ranks (mpirun -n " + std::to_string(tp) + " for one dp group)");
  const int dp = a.dp ? a.dp : W / tp;
  if (dp * tp != W)
    throw Error("--dp " + std::to_string(dp) + " x tp " + std::to_string(tp) + " = " + std::to_string(dp * tp) +
                " ranks, but this launch has " + std::to_string(W) + " (mpirun -n " + std::to_string(dp * tp) + ")");
  dist::Mesh mesh(*world, dp, tp);
  const bool rank0 = mesh.rank() == 0;
  const bool reporter = mesh.tp_index() == 0;

  // Tokenizer: needed for text prompts; used for printing when there is one.
  std::string tok_path = a.tokenizer;
  const std::string model_dir = from_file ? fs::path(path).parent_path().string() : path;
  if (tok_path.empty() && has_tokenizer_files(model_dir.empty() ? "." : model_dir)) tok_path = model_dir.empty() ? "." : model_dir;
  std::optional<text::BpeTokenizer> tok;
  if (!tok_path.empty()) {
    try {
      tok = text::BpeTokenizer::load(tok_path);
    } catch (const Error& e) {
      if (!a.prompts.empty() || !a.tokenizer.empty()) throw Error("tokenizer '" + tok_path + "': " + e.what());
      if (rank0) std::fprintf(stderr, "shardrt: warning: tokenizer in '%s' not loaded (%s): printing token ids\n",
                              tok_path.c_str(), e.what());
    }
  } else if (!a.prompts.empty()) {
    throw Error("--prompt TEXT needs a tokenizer: '" + (from_file ? model_dir : path) + "' has no tokenizer.json (or vocab.json + merges.txt); "
                "pass --tokenizer PATH, or give token ids with --prompt-ids");
  }
  if (tok && int64_t(tok->vocab_size()) > vocab)
    throw Error("tokenizer '" + tok_path + "' has " + std::to_string(tok->vocab_size()) + " tokens, but the model's "
                "vocabulary has " + std::to_string(vocab) + " (" + vocab_source + " vocab_size): they do not belong together");

  // Prompts in command-line order.
  std::vector<std::vector<int64_t>> prompts;
  std::vector<std::string> prompt_texts;
  for (auto [is_ids, k] : a.order) {
    if (is_ids) {
      prompts.push_back(parse_ids(a.prompt_ids[k], "--prompt-ids"));
      prompt_texts.push_back(tok ? decode_safe(*tok, prompts.back(), true) : "");
    } else {
      prompts.push_back(tok->encode(a.prompts[k]));
      prompt_texts.push_back(a.prompts[k]);
    }
  }
  const int64_t n = int64_t(prompts.size());
  std::vector<int64_t> all_indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all_indices[size_t(i)] = i;

  serve::GenerateOptions go;
  go.max_new_tokens = a.max_new_tokens;
  go.sampling = {a.temperature, a.top_k, a.top_p};
  serve::validate(go.sampling);
  if (go.max_new_tokens < 1) throw Error("--max-new-tokens takes a count >= 1, got " + std::to_string(go.max_new_tokens));
  go.seed = a.seed;
  go.stop_ids = a.no_stop ? std::vector<int64_t>{} : !a.stop_ids.empty() ? a.stop_ids : eos;
  for (int64_t s : go.stop_ids)
    if (s < 0 || s >= vocab)
      throw Error("--stop-id " + std::to_string(s) + " is outside the model's vocabulary [0, " + std::to_string(vocab) + ")");
  go.pad_id = eos.empty() || eos[0] < 0 || eos[0] >= vocab ? 0 : eos[0];
  go.max_batch = a.max_batch;
  // Cheap checks first, on every rank alike (the engine's max-seq is checked again later).
  if (from_file) {
    serve::check_prompts(prompts, all_indices, vocab, file_rd->info.max_seq, go.max_new_tokens);
  } else if (!from_checkpoint) {
    serve::DecoderInfo info = serve::read_decoder_info(path);
    serve::check_prompts(prompts, all_indices, vocab, info.max_seq, go.max_new_tokens);
  } else {
    models::DecoderBuildOptions b;
    b.max_seq = a.max_seq;
    serve::check_prompts(prompts, all_indices, vocab, models::decoder_max_seq(models::read_decoder_config(path), b),
                         go.max_new_tokens);
  }

  // This rank's engine.
  StageLog stage(rank0 && from_checkpoint);
  eo.progress = [&](const std::string& s, int d, int t) { stage(s, d, t); };
  auto t_load = std::chrono::steady_clock::now();
  serve::RankDecoder rd = from_file         ? std::move(*file_rd)
                          : from_checkpoint ? serve::build_rank_decoder(path, tp, mesh.tp_index(), eo)
                                            : serve::load_rank_decoder(path, a.tp, mesh.tp_index(), eo);
  double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_load).count() + file_load_s;
  if (rank0)
    std::fprintf(stderr, "%s %s engine%s for %s in %.1f s (%s, max-batch %lld, max-seq %lld)\n",
                 from_checkpoint || (from_file && fs::path(path).extension() == ".onnx") ? "built" : "loaded",
                 rd.info.family.c_str(), tp > 1 ? "s" : "", mesh.describe().c_str(),
                 load_s, dtype_name(rd.info.dtype), static_cast<long long>(rd.info.max_batch),
                 static_cast<long long>(rd.info.max_seq));
  serve::DecoderSession session(rd.engine, ContextOptions{a.device, &mesh});
  if (session.vocab() != vocab)
    throw Error("the engine's logits have " + std::to_string(session.vocab()) + " entries, but " + vocab_source +
                " says vocab_size " + std::to_string(vocab));

  // This dp group's prompts.
  auto [first, count] = dp_slice(n, dp, mesh.dp_index());
  std::vector<std::vector<int64_t>> mine(prompts.begin() + first, prompts.begin() + first + count);
  std::vector<int64_t> mine_idx(all_indices.begin() + first, all_indices.begin() + first + count);

  const bool stream = a.stream && rank0;
  FILE* text_out = a.json_out ? stderr : stdout;
  const text::BpeTokenizer* tp_tok = tok ? &*tok : nullptr;
  std::set<int64_t> stops(go.stop_ids.begin(), go.stop_ids.end());
  std::unique_ptr<OrderedPrinter> printer;
  if (rank0 && (!a.json_out || a.stream)) printer = std::make_unique<OrderedPrinter>(text_out, &prompt_texts, tp_tok, stops, stream);
  serve::TokenCallback on_token;
  if (stream) on_token = [&](int64_t idx, int64_t id, bool fin) { printer->token(idx, id, fin); };

  serve::GroupStats stats;
  stats.dp_index = mesh.dp_index();
  auto t_gen = std::chrono::steady_clock::now();
  auto local = serve::generate_prompts(session, mine, mine_idx, go, &mesh.tp_group(), on_token, &stats);
  serve::Gathered g = serve::gather_results(mesh.world(), reporter, local, stats);
  double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_gen).count();
  if (!rank0) return 0;

  if (printer)
    for (auto& r : g.results)
      if (!stream || r.index >= first + count) printer->result(r);  // streamed ones are out already

  // Summary on stderr.
  int64_t tokens = 0, decoded = 0;
  double slowest_decode_ms = 0, prefill_ms = 0;
  for (auto& s : g.groups) {
    tokens += s.tokens;
    decoded += s.decode_tokens;
    slowest_decode_ms = std::max(slowest_decode_ms, s.decode_ms);
    prefill_ms = std::max(prefill_ms, s.prefill_ms);
  }
  auto rate = [](int64_t toks, double ms) { return ms > 0 ? double(toks) * 1000.0 / ms : 0.0; };
  std::fprintf(stderr, "generate: %lld prompt(s), %lld token(s) generated in %.1f ms on %s, mesh dp=%d x tp=%d\n",
               static_cast<long long>(n), static_cast<long long>(tokens), wall_s * 1000.0, session.device().c_str(), dp,
               tp);
  for (auto& s : g.groups)
    std::fprintf(stderr, "  dp group %d: %lld prompt(s), prefill %lld token(s) in %.1f ms, decode %lld token(s) in %.1f ms "
                 "= %.1f tokens/s\n", s.dp_index, static_cast<long long>(s.prompts), static_cast<long long>(s.prefill_tokens),
                 s.prefill_ms, static_cast<long long>(s.decode_tokens), s.decode_ms, rate(s.decode_tokens, s.decode_ms));
  std::fprintf(stderr, "  total: decode %.1f tokens/s (all groups' decoded tokens over the slowest group's decode time)\n",
               rate(decoded, slowest_decode_ms));

  if (a.json_out) {
    json doc;
    doc["model"] = path;
    doc["mesh"] = {{"dp", dp}, {"tp", tp}};
    doc["device"] = session.device();
    json rs = json::array();
    for (auto& r : g.results) {
      json o;
      o["index"] = r.index;
      if (tok) o["prompt"] = sanitize_utf8(prompt_texts[size_t(r.index)]);
      o["prompt_ids"] = prompts[size_t(r.index)];
      o["ids"] = r.ids;
      if (tok) {
        std::vector<int64_t> body = r.ids;
        if (r.finish_reason == "stop" && !body.empty()) body.pop_back();
        o["text"] = sanitize_utf8(decode_safe(*tok, body, false));
      }
      o["finish_reason"] = r.finish_reason;
      rs.push_back(o);
    }
    doc["results"] = rs;
    json groups = json::array();
    for (auto& s : g.groups)
      groups.push_back({{"dp_index", s.dp_index}, {"prompts", s.prompts}, {"tokens", s.tokens},
                        {"prefill_tokens", s.prefill_tokens}, {"prefill_ms", s.prefill_ms},
                        {"decode_tokens", s.decode_tokens}, {"decode_ms", s.decode_ms},
                        {"decode_tokens_per_s", rate(s.decode_tokens, s.decode_ms)}});
    doc["summary"] = {{"prompts", n}, {"tokens", tokens}, {"prefill_ms", prefill_ms}, {"decode_ms", slowest_decode_ms},
                      {"decode_tokens_per_s", rate(decoded, slowest_decode_ms)}, {"wall_s", wall_s}, {"groups", groups}};
    std::string out = doc.dump(2, ' ', false, json::error_handler_t::replace);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
  }
  std::fflush(stdout);
  return 0;
}

int cmd_tokenize(const TokenizeArgs& a) {
  text::BpeTokenizer t = text::BpeTokenizer::load(a.tokenizer);
  json out = json::object();
  if (a.has_text) out["ids"] = t.encode(a.text);
  if (!a.decode.empty()) out["text"] = t.decode(parse_ids(a.decode, "--decode"));
  if (!a.has_text && a.decode.empty()) throw Error("tokenize needs --text TEXT or --decode IDS");
  std::string s = out.dump(-1, ' ', false, json::error_handler_t::replace);
  std::printf("%s\n", s.c_str());
  return 0;
}

int cmd_build_decoder(const BuildCommandRefs& b, int64_t max_batch, int64_t max_seq, const std::string& dtype) {
  if (b.dp > 1) throw Error("--dp: a decoder engine folder is built per tp rank; the data-parallel size is chosen "
                            "when launching `shardrt generate` (world size / tp)");
  serve::DecoderEngineOptions o;
  o.max_batch = max_batch;
  o.max_seq = max_seq;
  o.dtype = parse_dtype(dtype);
  o.device = b.device.empty() ? "cpu" : b.device;
  StageLog stage(true);
  o.progress = [&](const std::string& s, int d, int t) { stage(s, d, t); };
  int tp = b.tp ? b.tp : 1;
  Manifest m = serve::build_decoder_engine_dir(b.model, b.out, tp, o, [](const std::string& s) {
    std::fprintf(stderr, "%s\n", s.c_str());
  });
  std::fprintf(stderr, "wrote %s: %d decoder engine(s) for tp=%d (launch generate with dp x %d ranks)\n", b.out.c_str(),
               m.mesh.tp, m.mesh.tp, m.mesh.tp);
  return 0;
}

}  // namespace

std::function<std::optional<int>()> add_generate_commands(CLI::App& app, CLI::App* build, BuildCommandRefs refs) {
  auto ga = std::make_shared<GenerateArgs>();
  auto ta = std::make_shared<TokenizeArgs>();
  auto bmax_batch = std::make_shared<int64_t>(0), bmax_seq = std::make_shared<int64_t>(0);
  auto bdtype = std::make_shared<std::string>();

  build->add_option("--max-batch", *bmax_batch, "decoder checkpoint: rows of the KV cache (default 8)");
  build->add_option("--max-seq", *bmax_seq, "decoder checkpoint: positions of the KV cache (default: the model's, at "
                                            "most 4096)");
  build->add_option("--dtype", *bdtype, "decoder checkpoint: fp32, fp16 or bf16 (default: the checkpoint's)");

  auto* g = app.add_subcommand("generate", "generate text with a decoder checkpoint, engine folder or ONNX file (docs/generate.md)");
  g->add_option("model", ga->path, "checkpoint folder (config.json + safetensors), engine folder from `shardrt build`, "
                                  "or ONNX decoder file with past_key_values inputs")
      ->required();
  auto* o_prompt = g->add_option("--prompt", ga->prompts, "prompt text (repeatable; needs a tokenizer)")->allow_extra_args(false);
  auto* o_ids = g->add_option("--prompt-ids", ga->prompt_ids, "prompt as token ids 1,2,3 (repeatable)")->allow_extra_args(false);
  g->add_option("--max-new-tokens", ga->max_new_tokens, "tokens to generate per prompt (default 32)");
  g->add_option("--temperature", ga->temperature, "sampling temperature; 0 (default): greedy");
  g->add_option("--top-k", ga->top_k, "keep the k most likely tokens (0: all)");
  g->add_option("--top-p", ga->top_p, "nucleus sampling: keep the smallest set with probability >= p (1: all)");
  g->add_option("--seed", ga->seed, "random seed of sampling (default 0)");
  g->add_option("--stop-id", ga->stop_ids, "token id that ends a prompt's output (repeatable; default: the model's eos)")
      ->allow_extra_args(false);
  g->add_flag("--no-stop", ga->no_stop, "ignore the model's eos ids: always generate --max-new-tokens");
  g->add_flag("--stream", ga->stream, "print tokens as they are generated");
  g->add_option("--device", ga->device, "cpu or cuda (default: cpu, or the engine folder's build setting)");
  g->add_option("--tp", ga->tp, "tensor-parallel size (an engine folder's own by default; 1 for a checkpoint)");
  g->add_option("--dp", ga->dp, "data-parallel size (default: world size / tp)");
  g->add_option("--max-batch", ga->max_batch, "rows per batch (default: 8, or the engine folder's)");
  g->add_option("--max-seq", ga->max_seq, "KV cache positions (default: the model's, at most 4096)");
  g->add_option("--dtype", ga->dtype, "fp32, fp16 or bf16 (default: the checkpoint's)");
  g->add_option("--tokenizer", ga->tokenizer, "tokenizer.json, or a folder with it or vocab.json + merges.txt");
  g->add_flag("--json", ga->json_out, "print a JSON document with every prompt's ids and text on stdout");

  auto* t = app.add_subcommand("tokenize", "encode/decode with a BPE tokenizer (GPT-2, Llama-3, Llama-2/Mistral layouts; for tests)");
  t->group("");  // hidden from --help; documented in docs/cli.md
  t->add_option("--tokenizer", ta->tokenizer, "tokenizer.json, or a folder with it or vocab.json + merges.txt")->required();
  auto* o_text = t->add_option("--text", ta->text, "text to encode");
  t->add_option("--decode", ta->decode, "comma-separated ids to decode");

  return [=, &app]() -> std::optional<int> {
    (void)app;
    if (*g) {
      // Prompts in command-line order (parse_order lists every occurrence).
      size_t np = 0, ni = 0;
      for (CLI::Option* o : g->parse_order()) {
        if (o == o_prompt) ga->order.push_back({false, np++});
        if (o == o_ids) ga->order.push_back({true, ni++});
      }
      if (np != ga->prompts.size() || ni != ga->prompt_ids.size()) {  // be safe: keep the kinds in order
        ga->order.clear();
        for (size_t i = 0; i < ga->prompts.size(); ++i) ga->order.push_back({false, i});
        for (size_t i = 0; i < ga->prompt_ids.size(); ++i) ga->order.push_back({true, i});
      }
      return cmd_generate(*ga);
    }
    if (*t) {
      ta->has_text = o_text->count() > 0;
      return cmd_tokenize(*ta);
    }
    if (*build && serve::is_checkpoint_dir(refs.model)) {
      for (const char* opt : {"--shapes", "--autocast", "--mesh", "--tp-plan", "--disable-pass", "--no-optimize"})
        if (build->get_option(opt)->count())
          throw Error(std::string(opt) + " does not apply to a decoder checkpoint folder (it has config.json): its "
                      "shapes come from --max-batch/--max-seq and its precision from --dtype");
      return cmd_build_decoder(refs, *bmax_batch, *bmax_seq, *bdtype);
    }
    if (*build && (build->get_option("--max-batch")->count() || build->get_option("--max-seq")->count() ||
                   build->get_option("--dtype")->count()))
      throw Error("--max-batch, --max-seq and --dtype apply to decoder checkpoint folders (with config.json); '" +
                  refs.model + "' is not one");
    return std::nullopt;
  };
}

}  // namespace shardrt
