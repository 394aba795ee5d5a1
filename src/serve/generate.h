// Text generation with a decoder engine (src/models/decoder.h) on a dp × tp mesh: the
// engine of each rank (built in memory from a checkpoint, or loaded from an engine folder
// that `shardrt build` wrote), the batch loop (prefill, then one token per row per step,
// tokens chosen on tp rank 0 of each group and broadcast to the group), and the gathering of
// every group's results on world rank 0. docs/generate.md describes the behaviour.
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "build/multi_rank.h"
#include "serve/sampler.h"
#include "shardrt/engine.h"

namespace shardrt::dist {
class Communicator;
}

namespace shardrt::serve {

class DecoderSession;

// decoder.json of an engine folder: what generation needs of the checkpoint's config.json
// (and generation_config.json) once the checkpoint itself is gone.
struct DecoderInfo {
  std::string family;  // "gpt2" | "llama" | "onnx"
  std::string model;   // the checkpoint folder's name
  int64_t vocab = 0;
  std::vector<int64_t> eos_token_ids;
  int64_t bos_token_id = -1;
  int64_t max_positions = 0;
  int tp = 1;
  int64_t max_batch = 0, max_seq = 0;
  DType dtype = DType::F32;
};
void write_decoder_info(const std::string& dir, const DecoderInfo& info);
DecoderInfo read_decoder_info(const std::string& dir);  // errors name the file and field

// True when `dir` is a Hugging Face checkpoint folder (it has config.json).
bool is_checkpoint_dir(const std::string& dir);
// True when `dir` is an engine folder of a decoder (manifest.json and decoder.json).
bool is_decoder_engine_dir(const std::string& dir);

// How a decoder engine is built (from a checkpoint) or checked (an engine folder's).
struct DecoderEngineOptions {
  int64_t max_batch = 0;        // 0: 8 (build) / the engine's (folder)
  int64_t max_seq = 0;          // 0: min(max positions, 4096) (build) / the engine's (folder)
  std::optional<DType> dtype;   // default: the checkpoint's (build) / the engine's (folder)
  std::string device = "cpu";   // the build's device setting (tactics tuned there for cuda)
  std::function<void(const std::string&, int, int)> progress;  // build progress, or null
};

// One tensor-parallel rank's engine, built in memory from checkpoint `model_dir`.
struct RankDecoder {
  Engine engine;
  DecoderInfo info;
};
RankDecoder build_rank_decoder(const std::string& model_dir, int tp, int tp_index, const DecoderEngineOptions& o);
// Rank `tp_index`'s engine of engine folder `dir` (hash checked against manifest.json).
// Throws Error when `tp_asked` (0: any) differs from the folder's tp, when the options ask
// for another dtype or max-seq than the engine's, or for more rows than it holds.
RankDecoder load_rank_decoder(const std::string& dir, int tp_asked, int tp_index, const DecoderEngineOptions& o);
// The tp size of engine folder `dir` (its manifest), checked to be a decoder's.
int decoder_engine_dir_tp(const std::string& dir);

// True when `path` is a file (not a folder): an ONNX decoder exported with its KV cache in
// the bindings (serve/past_present.h), or an engine file built from one.
bool is_past_present_file(const std::string& path);
// Its engine: a .onnx file is imported and built in memory with profiles for
// o.max_batch rows (default 8), o.max_seq cache positions (default 512) and prompt chunks
// of up to 64 tokens; another file is loaded as an engine file (its profiles must fit the
// options: max-batch may only lower its rows, max-seq only equal or lower its positions).
// o.dtype is refused (the file's precision is the model's). eos and bos ids come from
// config.json / generation_config.json beside the file when they exist.
RankDecoder load_past_present_decoder(const std::string& path, const DecoderEngineOptions& o);

// `shardrt build MODEL_DIR -o DIR --tp N`: one engine per tp rank (rank<t>.engine) with
// manifest.json (mesh dp=1, tp=N; plan source "checkpoint"), decoder.json, and copies of the
// tokenizer files the checkpoint has. `log` receives one line per engine written.
Manifest build_decoder_engine_dir(const std::string& model_dir, const std::string& out_dir, int tp,
                                  const DecoderEngineOptions& o, const std::function<void(const std::string&)>& log);

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // a row ends after choosing one of these (it is kept)
  int64_t pad_id = 0;             // fed to finished rows until their batch ends
  int64_t max_batch = 0;          // rows per batch; 0: the engine's
};

struct PromptResult {
  int64_t index = 0;               // the prompt's position on the command line
  std::vector<int64_t> ids;        // generated tokens (a final stop token included)
  std::string finish_reason;       // "stop" | "length"
};

// One data-parallel group's figures (reported by its tp rank 0).
struct GroupStats {
  int dp_index = 0;
  int64_t prompts = 0, tokens = 0;  // tokens generated
  int64_t prefill_tokens = 0;       // prompt tokens run through prefill
  int64_t decode_tokens = 0;        // tokens chosen from decode steps' logits (real rows only)
  double prefill_ms = 0, decode_ms = 0;
};

// Called on the rank that chooses tokens, for each token of a row as it is chosen;
// `finished` is set on a row's last token.
using TokenCallback = std::function<void(int64_t prompt_index, int64_t token, bool finished)>;

// Throws Error naming the prompt when one is empty, has a token outside [0, vocab), or
// needs more KV cache positions than `max_seq` (prompt + max_new_tokens - 1: the last
// token chosen is never fed back).
void check_prompts(const std::vector<std::vector<int64_t>>& prompts, const std::vector<int64_t>& indices, int64_t vocab,
                   int64_t max_seq, int64_t max_new_tokens);

// Runs `prompts` (command-line positions `indices`) on `session` as successive batches of
// up to o.max_batch rows. Every rank of a tp group calls this with the same arguments; rank
// 0 of `tp_group` (null: a group of one) chooses the tokens and broadcasts them. Results
// and `on_token` calls are made on every rank of the group. Stats go to `stats` if given.
std::vector<PromptResult> generate_prompts(DecoderSession& session, const std::vector<std::vector<int64_t>>& prompts,
                                           const std::vector<int64_t>& indices, const GenerateOptions& o,
                                           dist::Communicator* tp_group, const TokenCallback& on_token,
                                           GroupStats* stats);

// Every group's results and stats on world rank 0 (collective over `world`; `reporter`
// ranks, tp rank 0 of each group, contribute theirs). Other ranks get empty vectors.
struct Gathered {
  std::vector<PromptResult> results;  // sorted by index
  std::vector<GroupStats> groups;     // sorted by dp index
};
Gathered gather_results(dist::Communicator& world, bool reporter, const std::vector<PromptResult>& local,
                        const GroupStats& stats);

}  // namespace shardrt::serve
