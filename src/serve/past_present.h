// Decoders exported to ONNX with their KV cache in the bindings (torch.onnx.export of a
// model called with past_key_values, or Hugging Face optimum): each step takes the cache so
// far as inputs and returns it grown by the step's tokens as outputs, which the host feeds
// back. docs/generate.md lists the accepted names:
//   inputs   input_ids                 [B, S]        int64
//            attention_mask (optional) [B, P + S]    int64 | int32 | bool | float (1: attend)
//            position_ids   (optional) [B, S]        int64
//            past_key_values.N.key     [B, Hkv, P, D]  for N = 0 .. L-1, and .value alike
//   outputs  logits                    [B, S, V]     fp32 | fp16 | bf16
//            present.N.key             [B, Hkv, P + S, D], and .value alike
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shardrt/engine.h"

namespace shardrt {
struct Graph;
}

namespace shardrt::serve {

struct PastPresentLayout {
  std::string attention_mask, position_ids;  // empty: the engine has no such input
  DType mask_dtype = DType::I64;
  struct Layer {
    std::string past_key, past_value, present_key, present_value;
    int64_t kv_heads = 0, head_dim = 0;
  };
  std::vector<Layer> layers;  // by layer index N
  DType cache_dtype = DType::F32;
  DType logits_dtype = DType::F32;
  int64_t vocab = 0;
  // From the bindings' profiles: rows per step, tokens per step (longer prompts prefill in
  // chunks of this many), and the cache positions a row may reach (P + S).
  int64_t max_batch = 0, max_chunk = 0, max_seq = 0;
  // Rows of different lengths share a step only with both attention_mask and position_ids
  // (left padding masked out, positions counted per row); otherwise one row per batch.
  bool can_pad() const { return !attention_mask.empty() && !position_ids.empty(); }
};

inline constexpr const char* kPastPrefix = "past_key_values.";
inline constexpr const char* kPresentPrefix = "present.";

// True when the named bindings include a past_key_values.N.key|value input.
bool has_past_inputs(const std::vector<std::string>& input_names);

// The layout of `engine`'s bindings; throws Error naming the binding that does not fit (an
// input the host loop cannot fill, a layer without its present, a past whose length cannot
// start at 0, ...).
PastPresentLayout read_past_present_layout(const Engine& engine);

// Build profiles for an imported ONNX graph of this layout: B in [1, max_batch], S in
// [1, chunk], past lengths P in [0, max_seq - 1], attention_mask lengths in [1, max_seq].
// The kv heads and head dims must be fixed in the file (they are in exports).
std::map<std::string, ShapeProfile> past_present_profiles(const Graph& g, int64_t max_batch, int64_t max_seq,
                                                          int64_t chunk);

}  // namespace shardrt::serve
