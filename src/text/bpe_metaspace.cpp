// SentencePiece-style BPE tokenizers (Llama-2, Mistral) as Hugging Face `tokenizers` runs
// the tokenizer.json layouts that `transformers` writes for them:
//   legacy:    normalizer Sequence [Prepend "▁", Replace " " → "▁"], no pre-tokenizer;
//   Metaspace: no normalizer, pre-tokenizer Metaspace (replacement "▁", prepend_scheme
//              first / always / never, split false);
// model BPE (byte_fallback, unk_token, fuse_unk), decoder Sequence [Replace "▁" → " ",
// ByteFallback, Fuse, Strip " " (n, 0)] or Metaspace. Each segment between special tokens
// is one BPE word of its characters (split false: no pieces), merged by rank; a symbol
// outside the vocabulary becomes the <0xXX> tokens of its bytes (byte fallback) or the
// unknown token.
#include "text/bpe_metaspace.h"

#include <cctype>
#include <cstdio>

#include "shardrt/engine.h"  // shardrt::Error
#include "text/unicode.h"

namespace shardrt::text {

namespace {

constexpr const char* kSpace = "\xE2\x96\x81";  // U+2581 "▁"

// A Replace normalizer/decoder's (pattern String, content) pair; "" pattern when it is not a String.
std::pair<std::string, std::string> replace_of(const nlohmann::json& r) {
  const nlohmann::json pat = r.value("pattern", nlohmann::json());
  const std::string from = pat.is_object() ? pat.value("String", std::string()) : std::string();
  return {from, r.value("content", std::string())};
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size())) s.replace(at, from.size(), to);
  return s;
}

}  // namespace

bool read_metaspace_layout(const nlohmann::json& j, const std::string& file, BpeTokenizer::Metaspace& ms) {
  const nlohmann::json norm = j.value("normalizer", nlohmann::json());
  const nlohmann::json pre = j.value("pre_tokenizer", nlohmann::json());
  if (norm.is_null() && !pre.is_null() && type_of(pre) != "Metaspace") return false;
  const std::string what = "tokenizer '" + file + "': ";
  const std::string supported =
      " (SentencePiece-style layouts: normalizer Sequence [Prepend \xE2\x96\x81, Replace ' ' \xE2\x86\x92 \xE2\x96\x81] "
      "with no pre-tokenizer, or no normalizer and a Metaspace pre-tokenizer with split false)";
  if (!norm.is_null()) {
    const nlohmann::json ns = type_of(norm) == "Sequence" ? norm.value("normalizers", nlohmann::json::array())
                                                          : nlohmann::json::array({norm});
    std::string types;
    for (const auto& n : ns) types += (types.empty() ? "" : ", ") + type_of(n);
    const bool legacy = ns.size() == 2 && type_of(ns[0]) == "Prepend" && ns[0].value("prepend", std::string()) == kSpace &&
                        type_of(ns[1]) == "Replace" && replace_of(ns[1]) == std::make_pair(std::string(" "), std::string(kSpace));
    if (!legacy) throw Error(what + "normalizer [" + types + "] is not supported" + supported);
    if (!pre.is_null()) throw Error(what + "pre-tokenizer '" + type_of(pre) + "' after the Prepend normalizer is not supported" + supported);
    ms.prepend = BpeTokenizer::Metaspace::kEvery;
  } else if (pre.is_null()) {
    throw Error(what + "neither a normalizer nor a pre-tokenizer: not a layout shardrt runs" + supported);
  } else {
    if (pre.value("replacement", std::string()) != kSpace)
      throw Error(what + "a Metaspace pre-tokenizer with replacement '" + pre.value("replacement", std::string()) +
                  "' is not supported (\xE2\x96\x81 only)");
    if (pre.value("split", true)) throw Error(what + "a Metaspace pre-tokenizer with split true is not supported" + supported);
    const std::string scheme = pre.value("prepend_scheme", std::string("always"));
    if (scheme != "first" && scheme != "always" && scheme != "never")
      throw Error(what + "Metaspace prepend_scheme '" + scheme + "' is not supported (first, always, never)");
    ms.prepend = scheme == "first"    ? BpeTokenizer::Metaspace::kFirst
                 : scheme == "always" ? BpeTokenizer::Metaspace::kAlways
                                      : BpeTokenizer::Metaspace::kNever;
  }
  const nlohmann::json& m = j.at("model");
  ms.byte_fallback = m.value("byte_fallback", false);
  ms.fuse_unk = m.value("fuse_unk", false);

  // The decoder: how many leading spaces a decoded text loses.
  const nlohmann::json dec = j.value("decoder", nlohmann::json());
  if (type_of(dec) == "Metaspace") {
    // As tokenizers' Metaspace decoder: the first token's "▁" all vanish (not only one).
    ms.drop_first = dec.value("prepend_scheme", std::string("always")) != "never";
    if (ms.byte_fallback) throw Error(what + "a Metaspace decoder with byte fallback tokens is not supported (no ByteFallback decoder)");
  } else {
    const nlohmann::json ds = type_of(dec) == "Sequence" ? dec.value("decoders", nlohmann::json::array()) : nlohmann::json::array();
    std::string types;
    for (const auto& d : ds) types += (types.empty() ? "" : ", ") + type_of(d);
    const bool ok = ds.size() == 4 && type_of(ds[0]) == "Replace" && replace_of(ds[0]) == std::make_pair(std::string(kSpace), std::string(" ")) &&
                    type_of(ds[1]) == "ByteFallback" && type_of(ds[2]) == "Fuse" && type_of(ds[3]) == "Strip" &&
                    ds[3].value("content", std::string()) == " " && ds[3].value("stop", 0) == 0;
    if (!ok)
      throw Error(what + "decoder " + (ds.empty() ? "'" + type_of(dec) + "'" : "Sequence [" + types + "]") +
                  " is not supported (Sequence [Replace \xE2\x96\x81 \xE2\x86\x92 ' ', ByteFallback, Fuse, Strip ' ' (n, 0)], or Metaspace)");
    ms.strip = ds[3].value("start", 0);
  }
  return true;
}

void BpeTokenizer::metaspace_segment(std::string_view seg, bool first, std::vector<int64_t>& out) const {
  if (seg.empty()) return;
  std::string norm = replace_all(std::string(seg), " ", kSpace);
  const bool starts = norm.rfind(kSpace, 0) == 0;
  const Metaspace::Prepend pp = ms_.prepend;
  if (pp == Metaspace::kEvery || (!starts && (pp == Metaspace::kAlways || (pp == Metaspace::kFirst && first))))
    norm = kSpace + norm;
  if (ignore_merges_) {
    auto it = vocab_.find(norm);
    if (it != vocab_.end()) { out.push_back(it->second); return; }
  }
  std::vector<std::string> word;
  for (const Utf8Char& c : utf8_chars(norm)) word.emplace_back(c.bytes);
  merge(word);
  bool last_unk = false;
  auto unk = [&](const std::string& sym) {
    if (ms_.unk_id < 0)
      throw Error("tokenizer: symbol '" + sym + "' is not in the vocabulary and the tokenizer has no unknown token");
    if (!(ms_.fuse_unk && last_unk)) out.push_back(ms_.unk_id);
    last_unk = true;
  };
  for (const std::string& s : word) {
    auto it = vocab_.find(s);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      last_unk = false;
      continue;
    }
    if (!ms_.byte_fallback) {
      unk(s);
      continue;
    }
    // Byte fallback: every byte's <0xXX> token, all of them or (one missing) the unknown token.
    std::vector<int64_t> bytes;
    for (unsigned char b : s) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      auto bt = vocab_.find(name);
      if (bt == vocab_.end()) break;
      bytes.push_back(bt->second);
    }
    if (bytes.size() == s.size()) {
      out.insert(out.end(), bytes.begin(), bytes.end());
      last_unk = false;
    } else {
      unk(s);
    }
  }
}

void BpeTokenizer::metaspace_token(int64_t id, bool first, std::string& out) const {
  const std::string& tok = id_to_token_[size_t(id)];
  unsigned b = 0;
  if (ms_.byte_fallback && tok.size() == 6 && tok.rfind("<0x", 0) == 0 && tok[5] == '>' &&
      std::sscanf(tok.c_str() + 3, "%2X", &b) == 1 && std::isxdigit(static_cast<unsigned char>(tok[3])) &&
      std::isxdigit(static_cast<unsigned char>(tok[4]))) {
    out += char(b);
    return;
  }
  out += replace_all(tok, kSpace, first && ms_.drop_first ? "" : " ");
}

}  // namespace shardrt::text
