// Host-side driver of a decoder engine (src/models/decoder.h): keeps each row's cached
// length, runs the prompt (prefill) and then one token per row per step (decode), and
// checks every length against the engine's KV cache before it runs anything.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "shardrt/engine.h"

namespace shardrt::serve {

class DecoderSession {
 public:
  // `engine` must outlive the session. The engine's KV cache size (max_batch, max_seq) is
  // read from its shardrt.CachedAttention nodes; an engine without them is refused.
  DecoderSession(const Engine& engine, const ContextOptions& options);
  ~DecoderSession();

  int64_t max_batch() const;
  int64_t max_seq() const;
  int64_t vocab() const;  // from the logits binding
  const std::string& device() const;

  // Starts a new batch: row b's cache is reset to the prompt `prompts[b]` (1..max_seq
  // tokens; rows ≤ max_batch). Returns logits [rows, V] fp32 of each row's last prompt token.
  Tensor prefill(const std::vector<std::vector<int64_t>>& prompts);
  // Appends tokens[b] to row b (one per row of the last prefill) and returns logits
  // [rows, V]. Throws Error when a row would exceed max_seq.
  Tensor decode(const std::vector<int64_t>& tokens);
  // Tokens cached per row.
  const std::vector<int64_t>& lengths() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardrt::serve
