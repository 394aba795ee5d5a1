// BPE tokenizers, as Hugging Face `tokenizers` runs them for GPT-2-, Llama-3- and
// Llama-2/Mistral-style models: special (added) tokens split first, then
// - byte-level (GPT-2, Llama-3, Qwen2): the pre-tokenization regex (GPT-2's, or Llama-3's or
//   Qwen2's: a Split pre-tokenizer with that pattern before a ByteLevel one without its own
//   regex), each piece's bytes mapped to printable characters (bytes_to_unicode); Qwen2's
//   NFC normalizer is run on texts that NFC leaves unchanged and refuses the others;
// - SentencePiece-style (Llama-2, Mistral; bpe_metaspace.cpp): spaces become "▁" and one is
//   put before the text, the whole segment is one BPE word of characters, and a symbol not
//   in the vocabulary becomes its bytes' <0xXX> tokens (byte fallback) or the unknown token;
// BPE merges by rank, vocabulary lookup, then the post-processor's special tokens around the
// sequence (TemplateProcessing: Llama-3's <|begin_of_text|>, Llama-2's <s>). Loads
// tokenizer.json (model type BPE) or vocab.json + merges.txt (GPT-2). Any other
// pre-tokenizer, Split pattern, normalizer, decoder or post-processor is refused with the
// file named, so a prompt is never split differently than its model expects.
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
  // vocabulary throw Error naming the id. SentencePiece-style: "▁" decodes as a space and,
  // with at_start (the ids begin a text), the decoder's leading space is removed (the one that
  // encoding put before the text: Strip's leading spaces, or every "▁" of the first token as
  // the Metaspace decoder does); pieces of a longer text decode with at_start false.
  std::string decode(const std::vector<int64_t>& ids, bool at_start = true) const;
  // Id of a token string (e.g. "<|endoftext|>"), or -1.
  int64_t token_id(const std::string& token) const;
  size_t vocab_size() const { return id_to_token_.size(); }

  // GPT-2's pre-tokenization (public for tests): the pieces of `text` in order.
  static std::vector<std::string_view> pre_tokenize(std::string_view text);
  // Llama-3's and Qwen2's (public for tests): the pieces of `text` in order.
  static std::vector<std::string_view> pre_tokenize_llama3(std::string_view text);
  static std::vector<std::string_view> pre_tokenize_qwen2(std::string_view text);

  enum class PreTokenizer { Gpt2, Llama3, Qwen2, Metaspace };

  // The SentencePiece-style layout's settings (bpe_metaspace.cpp reads them).
  struct Metaspace {
    // Where a "▁" goes before a segment between special tokens: never; the text's first
    // segment or every segment, unless it starts with "▁" (Metaspace's prepend_scheme first /
    // always); every non-empty segment (the Prepend normalizer).
    enum Prepend { kNever, kFirst, kAlways, kEvery };
    Prepend prepend = kNever;
    bool byte_fallback = false;  // unknown symbols as <0xXX> tokens
    bool fuse_unk = false;       // consecutive unknown tokens as one
    int64_t unk_id = -1;
    int strip = 0;               // the decoder's leading spaces removed from a text (Strip)
    bool drop_first = false;     // a text's first token loses every "▁" (the Metaspace decoder)
  };

 private:
  static std::vector<std::string_view> pre_tokenize_split(std::string_view text, size_t digits);
  void check_nfc_inert(std::string_view part, size_t offset) const;  // throws naming the character
  void finish();  // builds the reverse tables after loading
  void bpe_piece(std::string_view piece, std::vector<int64_t>& out) const;
  void merge(std::vector<std::string>& word) const;  // BPE merges by rank, in place
  // SentencePiece-style (bpe_metaspace.cpp): one segment between special tokens (`first`:
  // it starts the text), and one token's bytes.
  void metaspace_segment(std::string_view seg, bool first, std::vector<int64_t>& out) const;
  void metaspace_token(int64_t id, bool first, std::string& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::map<std::pair<std::string, std::string>, int> merge_rank_;
  std::vector<std::pair<std::string, int64_t>> added_;  // special tokens, longest first
  bool ignore_merges_ = false;
  bool nfc_ = false;  // the NFC normalizer (Qwen2): texts it would change are refused
  PreTokenizer pre_ = PreTokenizer::Gpt2;
  Metaspace ms_;
  std::vector<int64_t> prefix_ids_, suffix_ids_;  // the post-processor's special tokens around a sequence
  std::string byte_char_[256];                      // byte -> its printable character (UTF-8)
  std::unordered_map<std::string, uint8_t> char_byte_;  // and back
};

}  // namespace shardrt::text
