// GPT-2 and Llama-3 pre-tokenization and byte-level BPE (src/text). The expected pieces were
// produced by Hugging Face `tokenizers` 0.23 (pre_tokenizers.Split with the model's regex,
// "isolated"), pasted here as JSON; the end-to-end comparisons with trained tokenizers are in
// tests/python/test_generate.py.
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

// Llama-3's pre-tokenization regex (a Split pre-tokenizer before ByteLevel without its own
// regex); the expected pieces from `tokenizers` 0.23.3 (pre_tokenizers.Split with that regex,
// "isolated"): newline runs, digit triples, one non-letter before a word, case-insensitive
// contractions (ASCII only: 'ſ is no contraction).
TEST(BpeTokenizer, PreTokenizeLlama3MatchesHuggingFace) {
  auto cases = nlohmann::json::parse(R"json([["Hello world", ["Hello", " world"]], ["  two  spaces  ", [" ", " two", " ", " spaces", "  "]], ["it's we're I'll they've 'S IT'S We'RE 'Ll '\u017f", ["it", "'s", " we", "'re", " I", "'ll", " they", "'ve", " '", "S", " IT", "'S", " We", "'RE", " '", "Ll", " '", "\u017f"]], ["tab\tnew\nline\r\n", ["tab", "\tnew", "\n", "line", "\r\n"]], ["x  \n\ny", ["x", "  \n\n", "y"]], ["a\n\n\n  b", ["a", "\n\n\n", " ", " b"]], ["  \n  \n  x", ["  \n  \n", " ", " x"]], ["end\n ", ["end", "\n", " "]], [" \n", [" \n"]], ["\r\n\r\n", ["\r\n\r\n"]], ["\t\n\tz", ["\t\n", "\tz"]], ["123abc 4.5e-3", ["123", "abc", " ", "4", ".", "5", "e", "-", "3"]], ["1234567 12 1", ["123", "456", "7", " ", "12", " ", "1"]], ["h\u00e9llo w\u00f6rld \u00f1", ["h\u00e9llo", " w\u00f6rld", " \u00f1"]], ["\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u6f22\u5b57", ["\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", " \u6f22\u5b57"]], ["emoji \ud83d\ude42\ud83d\ude42 ok!!", ["emoji", " \ud83d\ude42\ud83d\ude42", " ok", "!!"]], ["a , b ;; c", ["a", " ,", " b", " ;;", " c"]], ["   ", ["   "]], ["", []], ["end with space ", ["end", " with", " space", " "]], ["\u00fcn\u00efc\u00f6d\u00e9  \u00a0 nbsp", ["\u00fcn\u00efc\u00f6d\u00e9", "  \u00a0", " nbsp"]], ["\u0663\u0664\u0665\u0666 arabic digits", ["\u0663\u0664\u0665", "\u0666", " arabic", " digits"]], ["mixed123numbers456", ["mixed", "123", "numbers", "456"]], [".hello ,world (x) [y]", [".hello", " ,", "world", " (", "x", ")", " [", "y", "]"]], ["\"quoted\" 'single'", ["\"quoted", "\"", " '", "single", "'"]], ["!!\n\nfoo", ["!!\n\n", "foo"]], ["??  \r\n bar", ["??", "  \r\n", " bar"]], ["a-b_c", ["a", "-b", "_c"]], ["$100.00 50%", ["$", "100", ".", "00", " ", "50", "%"]], ["\u00a0word \u3000word", ["\u00a0word", " ", "\u3000word"]], ["x\n", ["x", "\n"]], ["\n", ["\n"]], ["'", ["'"]], ["'s", ["'s"]], ["don't", ["don", "'t"]], ["D'Artagnan", ["D", "'Artagnan"]], ["  \u00a0\n", ["  \u00a0\n"]], ["foo\u2028bar", ["foo", "\u2028bar"]], ["tab\t\tx", ["tab", "\t", "\tx"]], ["line1\nline2\n\nline4  \n  end", ["line", "1", "\n", "line", "2", "\n\n", "line", "4", "  \n", " ", " end"]]])json");
  for (auto& c : cases) {
    std::string text = c[0].get<std::string>();
    std::vector<std::string> want = c[1].get<std::vector<std::string>>();
    std::vector<std::string> got;
    for (auto p : BpeTokenizer::pre_tokenize_llama3(text)) got.emplace_back(p);
    EXPECT_EQ(got, want) << "text: " << nlohmann::json(text).dump();
  }
  std::string joined, bad = "ok\xff\xfe bad \xc3";
  for (auto p : BpeTokenizer::pre_tokenize_llama3(bad)) joined += std::string(p);
  EXPECT_EQ(joined, bad);  // invalid UTF-8 keeps every byte
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
