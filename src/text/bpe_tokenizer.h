// Byte-level BPE tokenizers, as Hugging Face `tokenizers` runs them for GPT-2- and
// Llama-3-style models: special (added) tokens split first, then the pre-tokenization regex
// (GPT-2's, or Llama-3's: a Split pre-tokenizer with that pattern before a ByteLevel one
// without its own regex), each piece's bytes mapped to printable characters
// (bytes_to_unicode), BPE merges by rank, vocabulary lookup, then the post-processor's
// special tokens around the sequence (TemplateProcessing: Llama-3's <|begin_of_text|>).
// Loads tokenizer.json (model type BPE) or vocab.json + merges.txt (GPT-2). Any other
// pre-tokenizer, Split pattern, normalizer or post-processor is refused with the file named,
// so a prompt is never split differently than its model expects.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace shardrt::text {

class BpeTokenizer {
 public:
  // A folder holding tokenizer.json, or vocab.json + merges.txt; or a tokenizer.json path.
  static BpeTokenizer load(const std::string& path);
  static BpeTokenizer from_tokenizer_json(const std::string& file);
  static BpeTokenizer from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt);

  std::vector<int64_t> encode(std::string_view text) const;
  // Concatenated bytes of the tokens (special tokens as their text); ids outside the
  // vocabulary throw Error naming the id.
  std::string decode(const std::vector<int64_t>& ids) const;
  // Id of a token string (e.g. "<|endoftext|>"), or -1.
  int64_t token_id(const std::string& token) const;
  size_t vocab_size() const { return id_to_token_.size(); }

  // GPT-2's pre-tokenization (public for tests): the pieces of `text` in order.
  static std::vector<std::string_view> pre_tokenize(std::string_view text);
  // Llama-3's (public for tests): the pieces of `text` in order.
  static std::vector<std::string_view> pre_tokenize_llama3(std::string_view text);

  enum class PreTokenizer { Gpt2, Llama3 };

 private:
  void finish();  // builds the reverse tables after loading
  void bpe_piece(std::string_view piece, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::map<std::pair<std::string, std::string>, int> merge_rank_;
  std::vector<std::pair<std::string, int64_t>> added_;  // special tokens, longest first
  bool ignore_merges_ = false;
  PreTokenizer pre_ = PreTokenizer::Gpt2;
  std::vector<int64_t> prefix_ids_, suffix_ids_;  // the post-processor's special tokens around a sequence
  std::string byte_char_[256];                      // byte -> its printable character (UTF-8)
  std::unordered_map<std::string, uint8_t> char_byte_;  // and back
};

}  // namespace shardrt::text
