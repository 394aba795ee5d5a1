// What the GPT-2 and Llama builders share: reading one rank's slices of a checkpoint's
// tensors (converted to the compute dtype), the split of a size between ranks, and the
// pieces of the graph that are the same for both (inputs, positions, collectives, the
// cached attention node, the tail from the last hidden state to the logits).
#pragma once
#include <cstdint>
#include <string>
#include <optional>
#include <utility>
#include <vector>

#include "models/decoder.h"
#include "util/safetensors.h"

namespace shardrt::models {

// [begin, begin + size) of `total` for rank `index` of `parts`, as torch.chunk splits it
// (ceil-sized chunks, the last ones smaller). Throws Error naming `what` when this rank's
// chunk would be empty.
std::pair<int64_t, int64_t> chunk_of(int64_t total, int parts, int index, const std::string& what);

// Tensors of a checkpoint, looked up under any of `prefixes` ("transformer.", "" ...), with
// their shapes checked, copied out (only the slice asked for) and converted to `dtype`.
class WeightReader {
 public:
  WeightReader(const std::string& dir, std::vector<std::string> prefixes, DType dtype);

  DType dtype() const { return dtype_; }
  bool contains(const std::string& name) const;
  // The whole tensor, in `to` (default: the compute dtype).
  Tensor full(const std::string& name, const Dims& dims, std::optional<DType> to = {}) const;
  // Rows [r0, r0 + n) (dim 0) of each (name, dims, r0, n), concatenated along dim 0.
  struct RowSlice {
    std::string name;
    Dims dims;
    int64_t r0, n;
  };
  Tensor rows(const std::vector<RowSlice>& parts) const;
  Tensor rows(const std::string& name, const Dims& dims, int64_t r0, int64_t n) const {
    return rows(std::vector<RowSlice>{{name, dims, r0, n}});
  }
  // Columns of a [R, C] tensor (a [C] one counts as one row): each (c0, n) range in turn,
  // concatenated along the last dim. A strided copy: row r of the result is the ranges of
  // row r of the source.
  Tensor columns(const std::string& name, const Dims& dims, const std::vector<std::pair<int64_t, int64_t>>& ranges) const;

 private:
  const Tensor& source(const std::string& name, const Dims& dims) const;
  SafetensorsCheckpoint st_;
  std::string dir_;
  std::vector<std::string> prefixes_;
  DType dtype_;
};

// n elements from `src` (type sd) to `dst` (type dd): fp32/fp16/bf16 (and fp64 sources).
void convert_elements(const void* src, DType sd, void* dst, DType dd, int64_t n);

// The three inputs of a decoder network (names in decoder.h), batch and sequence dynamic.
struct DecoderInputs {
  ITensor input_ids, past_lens, last_index;
};
DecoderInputs decoder_inputs(Network& net);

// shardrt.Linear: trans_b 1 for a [out, in] weight (torch.nn.Linear), 0 for [in, out] (Conv1D).
ITensor linear_op(Network& net, ITensor x, ITensor w, ITensor bias, bool trans_b, const std::string& activation,
                  const std::string& name);

// shardrt.AllReduce (sum over group "tp").
ITensor all_reduce(Network& net, ITensor x, const std::string& name);

struct CachedAttentionSpec {
  int64_t num_heads = 0, num_kv_heads = 0, head_dim = 0, max_batch = 0, max_seq = 0, layer = 0;
  float scale = 0.f;  // 0: 1/sqrt(head_dim)
};
// shardrt.CachedAttention over the packed qkv; `inv_freq` may be null (no rotary).
ITensor cached_attention(Network& net, ITensor qkv, ITensor past_lens, ITensor inv_freq, const CachedAttentionSpec& s,
                         const std::string& name);

// The shared tail, in two parts so that each family puts its own final norm between them:
// hidden [B, S, H] → row b's token last_index[b] → [B, H] (GatherND with batch_dims 1 on
// last_index unsqueezed to [B, 1]) ...
ITensor last_token(Network& net, ITensor hidden, ITensor last_index);
// ... then the LM head (`lm_head`: this rank's [V_local, H] vocabulary rows) → AllGather of
// the vocabulary chunks (tp_size > 1; `vocab` in all) → fp32 → output "logits" [B, V],
// and its ArgMax → output "next_token" [B] int64.
void logits_head(Network& net, ITensor h, ITensor lm_head, int64_t vocab, int tp_size);

// Checks shared by both families (max_seq against positions and sliding windows, head counts
// against tp_size); returns the KV cache positions.
int64_t check_build(const DecoderConfig& cfg, const DecoderBuildOptions& o);

// The two families (gpt2.cpp, llama.cpp); build_decoder_network picks one.
Network build_gpt2(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o);
Network build_llama(const std::string& model_dir, const DecoderConfig& cfg, const DecoderBuildOptions& o);

}  // namespace shardrt::models
