#include "text/bpe_tokenizer.h"

#include <algorithm>
#include <climits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shardrt/engine.h"  // shardrt::Error
#include "text/unicode.h"

namespace shardrt::text {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open tokenizer file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

nlohmann::json parse_json(const std::string& path) {
  try {
    return nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error("tokenizer file '" + path + "' is not valid JSON: " + e.what());
  }
}

// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 + n.
void byte_table(std::string (&out)[256]) {
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    out[b].clear();
    append_utf8(out[b], printable ? char32_t(b) : char32_t(256 + n++));
  }
}

bool is_other(char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); }

}  // namespace

// GPT-2's regex, matched by hand (leftmost alternative wins, as the regex engine does):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::string_view> BpeTokenizer::pre_tokenize(std::string_view text) {
  std::vector<Utf8Char> cs = utf8_chars(text);
  std::vector<std::string_view> out;
  size_t n = cs.size(), i = 0;
  auto piece = [&](size_t a, size_t b) {  // chars [a, b)
    const char* p = cs[a].bytes.data();
    const char* e = cs[b - 1].bytes.data() + cs[b - 1].bytes.size();
    out.emplace_back(p, size_t(e - p));
  };
  auto run = [&](size_t j, bool (*cls)(char32_t)) {
    while (j < n && cls(cs[j].cp)) ++j;
    return j;
  };
  while (i < n) {
    char32_t c = cs[i].cp;
    if (c == '\'' && i + 1 < n) {
      char32_t d = cs[i + 1].cp;
      if (d == 's' || d == 't' || d == 'm' || d == 'd') { piece(i, i + 2); i += 2; continue; }
      if (i + 2 < n) {
        char32_t e = cs[i + 2].cp;
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) { piece(i, i + 3); i += 3; continue; }
      }
    }
    // ` ?X+` for the three classes: with the optional space first, then without.
    bool matched = false;
    for (auto cls : {&is_letter, &is_number, &is_other}) {
      size_t s = (c == ' ' && i + 1 < n && cls(cs[i + 1].cp)) ? i + 1 : i;
      if (!cls(cs[s].cp)) continue;
      size_t e = run(s, cls);
      piece(i, e);
      i = e;
      matched = true;
      break;
    }
    if (matched) continue;
    // Whitespace: \s+(?!\S) leaves the run's last space to the word that follows it.
    size_t e = run(i, &is_space);
    if (e < n && e - i > 1) e -= 1;
    piece(i, e);
    i = e;
  }
  return out;
}

BpeTokenizer BpeTokenizer::load(const std::string& path) {
  namespace fs = std::filesystem;
  if (fs::is_directory(path)) {
    if (fs::exists(fs::path(path) / "tokenizer.json")) return from_tokenizer_json((fs::path(path) / "tokenizer.json").string());
    if (fs::exists(fs::path(path) / "vocab.json") && fs::exists(fs::path(path) / "merges.txt"))
      return from_vocab_merges((fs::path(path) / "vocab.json").string(), (fs::path(path) / "merges.txt").string());
    throw Error("folder '" + path + "' holds neither tokenizer.json nor vocab.json + merges.txt");
  }
  return from_tokenizer_json(path);
}

BpeTokenizer BpeTokenizer::from_tokenizer_json(const std::string& file) {
  nlohmann::json j = parse_json(file);
  BpeTokenizer t;
  const auto& m = j.value("model", nlohmann::json::object());
  if (m.value("type", std::string()) != "BPE")
    throw Error("tokenizer '" + file + "': model type '" + m.value("type", std::string("?")) +
                "' is not supported (byte-level BPE only)");
  const auto& pre = j.value("pre_tokenizer", nlohmann::json());
  bool byte_level = pre.is_object() && pre.value("type", std::string()) == "ByteLevel";
  if (pre.is_object() && pre.value("type", std::string()) == "Sequence")
    for (const auto& p : pre.value("pretokenizers", nlohmann::json::array()))
      byte_level |= p.value("type", std::string()) == "ByteLevel";
  if (!byte_level) throw Error("tokenizer '" + file + "': only a ByteLevel pre-tokenizer (GPT-2 style) is supported");
  if (pre.value("add_prefix_space", false))
    throw Error("tokenizer '" + file + "': add_prefix_space=true is not supported");
  if (!j.value("normalizer", nlohmann::json()).is_null())
    throw Error("tokenizer '" + file + "': normalizers are not supported");
  try {
    for (auto& [tok, id] : m.at("vocab").items()) t.vocab_[tok] = id.get<int64_t>();
    int rank = 0;
    for (const auto& mg : m.at("merges")) {
      std::string a, b;
      if (mg.is_string()) {
        std::string s = mg.get<std::string>();
        size_t sp = s.find(' ');
        if (sp == std::string::npos) throw Error("tokenizer '" + file + "': merge '" + s + "' has no space");
        a = s.substr(0, sp), b = s.substr(sp + 1);
      } else {
        a = mg.at(0).get<std::string>(), b = mg.at(1).get<std::string>();
      }
      t.merge_rank_.emplace(std::make_pair(a, b), rank++);
    }
    t.ignore_merges_ = m.value("ignore_merges", false);
    for (const auto& at : j.value("added_tokens", nlohmann::json::array()))
      t.added_.emplace_back(at.at("content").get<std::string>(), at.at("id").get<int64_t>());
  } catch (const nlohmann::json::exception& e) {
    throw Error("tokenizer '" + file + "' is malformed: " + e.what());
  }
  t.finish();
  return t;
}

BpeTokenizer BpeTokenizer::from_vocab_merges(const std::string& vocab_json, const std::string& merges_txt) {
  BpeTokenizer t;
  nlohmann::json v = parse_json(vocab_json);
  if (!v.is_object()) throw Error("vocabulary '" + vocab_json + "' is not a JSON object of token -> id");
  for (auto& [tok, id] : v.items()) {
    if (!id.is_number_integer()) throw Error("vocabulary '" + vocab_json + "': id of '" + tok + "' is not an integer");
    t.vocab_[tok] = id.get<int64_t>();
  }
  std::istringstream in(read_file(merges_txt));
  std::string line;
  int rank = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t sp = line.find(' ');
    if (sp == std::string::npos)
      throw Error("merges '" + merges_txt + "' line " + std::to_string(lineno) + ": expected two tokens");
    t.merge_rank_.emplace(std::make_pair(line.substr(0, sp), line.substr(sp + 1)), rank++);
  }
  // GPT-2's vocab.json holds <|endoftext|>; treat tokens of that shape as special.
  for (auto& [tok, id] : t.vocab_)
    if (tok.size() > 4 && tok.rfind("<|", 0) == 0 && tok.compare(tok.size() - 2, 2, "|>") == 0) t.added_.emplace_back(tok, id);
  t.finish();
  return t;
}

void BpeTokenizer::finish() {
  byte_table(byte_char_);
  for (int b = 0; b < 256; ++b) char_byte_[byte_char_[b]] = uint8_t(b);
  int64_t max_id = -1;
  for (auto& [tok, id] : vocab_) max_id = std::max(max_id, id);
  for (auto& [tok, id] : added_) max_id = std::max(max_id, id);
  id_to_token_.assign(size_t(max_id + 1), std::string());
  for (auto& [tok, id] : vocab_) {
    if (id < 0) throw Error("tokenizer: token '" + tok + "' has negative id " + std::to_string(id));
    id_to_token_[size_t(id)] = tok;
  }
  std::sort(added_.begin(), added_.end(), [](auto& a, auto& b) { return a.first.size() > b.first.size(); });
}

void BpeTokenizer::bpe_piece(std::string_view piece, std::vector<int64_t>& out) const {
  std::vector<std::string> word;
  std::string whole;
  for (unsigned char b : piece) {
    word.push_back(byte_char_[b]);
    whole += byte_char_[b];
  }
  if (ignore_merges_) {
    auto it = vocab_.find(whole);
    if (it != vocab_.end()) { out.push_back(it->second); return; }
  }
  while (word.size() > 1) {
    int best = INT_MAX;
    size_t at = 0;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      auto it = merge_rank_.find({word[k], word[k + 1]});
      if (it != merge_rank_.end() && it->second < best) best = it->second, at = k;
    }
    if (best == INT_MAX) break;
    // Merge every occurrence of the best pair, left to right (non-overlapping).
    std::string a = word[at], b = word[at + 1];
    std::vector<std::string> next;
    for (size_t k = 0; k < word.size(); ++k) {
      if (k + 1 < word.size() && word[k] == a && word[k + 1] == b) {
        next.push_back(a + b);
        ++k;
      } else {
        next.push_back(word[k]);
      }
    }
    word.swap(next);
  }
  for (const std::string& s : word) {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) throw Error("tokenizer: symbol '" + s + "' is not in the vocabulary (no unknown token in byte-level BPE)");
    out.push_back(it->second);
  }
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  size_t start = 0, i = 0;
  auto plain = [&](size_t a, size_t b) {
    for (std::string_view p : pre_tokenize(text.substr(a, b - a))) bpe_piece(p, out);
  };
  while (i < text.size()) {
    bool hit = false;
    for (auto& [tok, id] : added_) {
      if (!tok.empty() && text.compare(i, tok.size(), tok) == 0) {
        plain(start, i);
        out.push_back(id);
        i += tok.size();
        start = i;
        hit = true;
        break;
      }
    }
    if (!hit) ++i;
  }
  plain(start, text.size());
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    auto added = std::find_if(added_.begin(), added_.end(), [&](auto& a) { return a.second == id; });
    if (added != added_.end()) { out += added->first; continue; }
    if (id < 0 || size_t(id) >= id_to_token_.size() || id_to_token_[size_t(id)].empty())
      throw Error("tokenizer: id " + std::to_string(id) + " is not in the vocabulary (size " + std::to_string(vocab_size()) + ")");
    for (const Utf8Char& c : utf8_chars(id_to_token_[size_t(id)])) {
      auto it = char_byte_.find(std::string(c.bytes));
      if (it == char_byte_.end()) throw Error("tokenizer: token of id " + std::to_string(id) + " holds a character outside the byte alphabet");
      out += char(it->second);
    }
  }
  return out;
}

int64_t BpeTokenizer::token_id(const std::string& token) const {
  for (auto& [tok, id] : added_)
    if (tok == token) return id;
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

}  // namespace shardrt::text
