// GPT-2 pre-tokenization and byte-level BPE (src/text). The expected pieces were produced by
// Hugging Face `tokenizers` 0.23 (pre_tokenizers.Split with GPT-2's regex, "isolated"), pasted
// here as JSON; the end-to-end comparison with a trained tokenizer is in
// tests/python/test_tokenizer.py.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "shardrt/engine.h"
#include "text/bpe_tokenizer.h"
#include "text/unicode.h"

using shardrt::text::BpeTokenizer;

TEST(BpeTokenizer, PreTokenizeMatchesHuggingFace) {
  auto cases = nlohmann::json::parse(R"json([["Hello world", ["Hello", " world"]], ["  two  spaces  ", [" ", " two", " ", " spaces", "  "]], ["it's we're I'll they've 'S", ["it", "'s", " we", "'re", " I", "'ll", " they", "'ve", " '", "S"]], ["tab\tnew\nline\r\n", ["tab", "\t", "new", "\n", "line", "\r\n"]], ["x  \n\ny", ["x", "  \n", "\n", "y"]], ["123abc 4.5e-3", ["123", "abc", " 4", ".", "5", "e", "-", "3"]], ["h\u00e9llo w\u00f6rld \u00f1", ["h\u00e9llo", " w\u00f6rld", " \u00f1"]], ["\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u6f22\u5b57", ["\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", " \u6f22\u5b57"]], ["emoji \ud83d\ude42\ud83d\ude42 ok!!", ["emoji", " \ud83d\ude42\ud83d\ude42", " ok", "!!"]], ["a , b ;; c", ["a", " ,", " b", " ;;", " c"]], ["   ", ["   "]], ["", []], ["end with space ", ["end", " with", " space", " "]], ["\u00fcn\u00efc\u00f6d\u00e9  \u00a0 nbsp", ["\u00fcn\u00efc\u00f6d\u00e9", "  \u00a0", " nbsp"]], ["\u0663\u0664 arabic digits", ["\u0663\u0664", " arabic", " digits"]], ["mixed123numbers456", ["mixed", "123", "numbers", "456"]]])json");
  for (auto& c : cases) {
    std::string text = c[0].get<std::string>();
    std::vector<std::string> want = c[1].get<std::vector<std::string>>();
    std::vector<std::string> got;
    for (auto p : BpeTokenizer::pre_tokenize(text)) got.emplace_back(p);
    EXPECT_EQ(got, want) << "text: " << text;
  }
}

TEST(BpeTokenizer, InvalidUtf8KeepsEveryByte) {
  std::string s = "ok\xff\xfe bad \xc3";
  std::string joined;
  for (auto p : BpeTokenizer::pre_tokenize(s)) joined += std::string(p);
  EXPECT_EQ(joined, s);
}

TEST(BpeTokenizer, TinyVocabularyEncodesAndDecodes) {
  // Byte alphabet for the letters used plus two merges: "h e" then "he l".
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "shardrt_bpe_tiny";
  fs::create_directories(dir);
  nlohmann::json vocab;
  int id = 0;
  for (const char* t : {"h", "e", "l", "o", "\u0120"}) vocab[nlohmann::json::parse(std::string("\"") + t + "\"").get<std::string>()] = id++;
  vocab["he"] = id++;
  vocab["hel"] = id++;
  vocab["<|endoftext|>"] = id++;
  std::ofstream(dir / "vocab.json") << vocab.dump();
  std::ofstream(dir / "merges.txt") << "#version: 0.2\nh e\nhe l\n";
  BpeTokenizer t = BpeTokenizer::load(dir.string());
  // "hello" -> "hel" "l" "o"; " " is byte 0x20 -> U+0120; the special token splits first.
  std::vector<int64_t> ids = t.encode("hello <|endoftext|>");
  EXPECT_EQ(ids, (std::vector<int64_t>{6, 2, 3, 4, 7}));
  EXPECT_EQ(t.decode(ids), "hello <|endoftext|>");
  EXPECT_EQ(t.token_id("<|endoftext|>"), 7);
  EXPECT_THROW(t.decode({99}), shardrt::Error);
  EXPECT_THROW(t.encode("xyz"), shardrt::Error);  // bytes outside this vocabulary
  fs::remove_all(dir);
}
