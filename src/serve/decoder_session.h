// Host-side driver of a decoder engine: keeps each row's cached length, runs the prompt
// (prefill) and then one token per row per step (decode), and checks every length against
// the engine's KV cache before it runs anything. Two engine layouts:
//   - native (src/models/decoder.h): the KV cache lives in the execution context
//     (shardrt.CachedAttention nodes); rows are right-padded and independent;
//   - past/present (an ONNX export, serve/past_present.h): the cache travels through the
//     bindings; the session keeps the presents and feeds them back as the next step's
//     pasts, and builds attention_mask and position_ids (rows are left-padded, as
//     transformers pads for generation).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "shardrt/engine.h"

namespace shardrt::serve {

class DecoderSession {
 public:
  // `engine` must outlive the session. A native engine's KV cache size (max_batch,
  // max_seq) is read from its shardrt.CachedAttention nodes, a past/present engine's from
  // its bindings' profiles; an engine that is neither is refused.
  DecoderSession(const Engine& engine, const ContextOptions& options);
  ~DecoderSession();

  int64_t max_batch() const;
  int64_t max_seq() const;
  int64_t vocab() const;  // from the logits binding
  const std::string& device() const;
  bool past_present() const;  // the cache travels through the bindings (an ONNX export)

  // Starts a new batch: row b's cache is reset to the prompt `prompts[b]` (1..max_seq
  // tokens; rows ≤ max_batch). Returns logits [rows, V] fp32 of each row's last prompt token.
  Tensor prefill(const std::vector<std::vector<int64_t>>& prompts);
  // Appends tokens[b] to row b (one per row of the last prefill) and returns logits
  // [rows, V]. Throws Error when a row would exceed max_seq.
  Tensor decode(const std::vector<int64_t>& tokens);

  // The same steps for greedy decoding: they return each row's argmax (the first maximum
  // on ties, as torch.argmax). With device_argmax() only those ids leave the engine
  // (output next_token); otherwise the logits are fetched and reduced on the host.
  const std::vector<int64_t>& prefill_greedy(const std::vector<std::vector<int64_t>>& prompts);
  const std::vector<int64_t>& decode_greedy(const std::vector<int64_t>& tokens);
  // True when the engine has output next_token and it is in use (default; off with
  // set_device_argmax(false) or the environment variable SHARDRT_HOST_ARGMAX=1).
  bool device_argmax() const;
  void set_device_argmax(bool on);  // on: only if the engine has next_token

  // Tokens cached per row (a row's own tokens: left padding is not counted).
  const std::vector<int64_t>& lengths() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardrt::serve
