#include "text/bpe_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shardrt/engine.h"  // shardrt::Error
#include "text/bpe_metaspace.h"
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

// The regexes of the Split pre-tokenizers this tokenizer runs by hand, as tokenizer.json spells them.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// Qwen2's: Llama-3's with single digits.
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A ByteLevel pre-tokenizer: no prefix space; its own GPT-2 regex on (alone) or off (after a Split).
void check_byte_level(const nlohmann::json& p, bool regex, const std::string& file) {
  if (p.value("add_prefix_space", false)) throw Error("tokenizer '" + file + "': add_prefix_space=true is not supported");
  if (p.value("use_regex", true) != regex)
    throw Error("tokenizer '" + file + "': a ByteLevel pre-tokenizer with use_regex=" + (regex ? "false" : "true") +
                (regex ? " and no Split before it" : " after a Split") + " is not supported");
}

// GPT-2: ByteLevel (alone or as a one-element Sequence). Llama-3: Sequence [Split(Regex with
// Llama-3's pattern, Isolated), ByteLevel(use_regex false)]; GPT-2's pattern in that Split is
// GPT-2 again.
BpeTokenizer::PreTokenizer read_pre_tokenizer(const nlohmann::json& pre, const std::string& file) {
  const std::string supported = " (supported: ByteLevel, as GPT-2's; Sequence [Split with GPT-2's, Llama-3's or Qwen2's regex, "
                                "ByteLevel with use_regex false], as Llama-3's)";
  if (type_of(pre) == "ByteLevel") {
    check_byte_level(pre, true, file);
    return BpeTokenizer::PreTokenizer::Gpt2;
  }
  if (type_of(pre) != "Sequence") throw Error("tokenizer '" + file + "': pre-tokenizer '" + type_of(pre) + "' is not supported" + supported);
  const nlohmann::json ps = pre.value("pretokenizers", nlohmann::json::array());
  std::string types;
  for (const auto& p : ps) types += (types.empty() ? "" : ", ") + type_of(p);
  if (ps.size() == 1 && type_of(ps[0]) == "ByteLevel") {
    check_byte_level(ps[0], true, file);
    return BpeTokenizer::PreTokenizer::Gpt2;
  }
  if (ps.size() != 2 || type_of(ps[0]) != "Split" || type_of(ps[1]) != "ByteLevel")
    throw Error("tokenizer '" + file + "': pre-tokenizer Sequence [" + types + "] is not supported" + supported);
  const nlohmann::json& sp = ps[0];
  const nlohmann::json pat = sp.value("pattern", nlohmann::json());
  const std::string regex = pat.is_object() ? pat.value("Regex", std::string()) : std::string();
  if (regex.empty()) throw Error("tokenizer '" + file + "': the Split pre-tokenizer has no Regex pattern" + supported);
  if (sp.value("behavior", std::string()) != "Isolated" || sp.value("invert", false))
    throw Error("tokenizer '" + file + "': a Split pre-tokenizer with behavior '" + sp.value("behavior", std::string()) +
                "'" + (sp.value("invert", false) ? " inverted" : "") + " is not supported (Isolated only)");
  check_byte_level(ps[1], false, file);
  if (regex == kLlama3Pattern) return BpeTokenizer::PreTokenizer::Llama3;
  if (regex == kQwen2Pattern) return BpeTokenizer::PreTokenizer::Qwen2;
  if (regex == kGpt2Pattern) return BpeTokenizer::PreTokenizer::Gpt2;
  throw Error("tokenizer '" + file + "': the Split pre-tokenizer's regex " + regex + " is not one shardrt runs" + supported);
}

// The special tokens that the post-processor puts before and after a single sequence:
// TemplateProcessing's "single" template (alone or in a Sequence beside ByteLevel, which
// only adjusts offsets); none for no post-processor or ByteLevel alone.
void read_post_processor(const nlohmann::json& post, const std::string& file, std::vector<int64_t>& prefix,
                         std::vector<int64_t>& suffix) {
  if (post.is_null()) return;
  std::vector<nlohmann::json> procs;
  if (type_of(post) == "Sequence") {
    for (const auto& p : post.value("processors", nlohmann::json::array())) procs.push_back(p);
  } else {
    procs.push_back(post);
  }
  for (const auto& p : procs) {
    const std::string ty = type_of(p);
    if (ty == "ByteLevel") continue;
    if (ty != "TemplateProcessing")
      throw Error("tokenizer '" + file + "': post-processor '" + ty + "' is not supported (ByteLevel, TemplateProcessing)");
    const nlohmann::json specials = p.value("special_tokens", nlohmann::json::object());
    bool seen_a = false;
    for (const auto& item : p.at("single")) {
      if (item.contains("Sequence")) {
        if (seen_a) throw Error("tokenizer '" + file + "': the single-sequence template holds the sequence twice");
        seen_a = true;
        continue;
      }
      const std::string name = item.at("SpecialToken").at("id").get<std::string>();
      if (!specials.contains(name))
        throw Error("tokenizer '" + file + "': the template's special token '" + name + "' is not in its special_tokens");
      for (const auto& id : specials.at(name).at("ids")) (seen_a ? suffix : prefix).push_back(id.get<int64_t>());
    }
    if (!seen_a) throw Error("tokenizer '" + file + "': the single-sequence template does not hold the sequence ($A)");
  }
}

// A pre-tokenizer's pass over the decoded characters of one text: run(j, cls) is the end of
// the run of class `cls` from character j; piece(a, b) appends characters [a, b) as a piece.
struct CharScan {
  std::vector<Utf8Char> cs;
  std::vector<std::string_view> out;
  explicit CharScan(std::string_view text) : cs(utf8_chars(text)) {}
  size_t run(size_t j, bool (*cls)(char32_t)) const {
    while (j < cs.size() && cls(cs[j].cp)) ++j;
    return j;
  }
  void piece(size_t a, size_t b) {
    const char* p = cs[a].bytes.data();
    const char* e = cs[b - 1].bytes.data() + cs[b - 1].bytes.size();
    out.emplace_back(p, size_t(e - p));
  }
};

}  // namespace

// GPT-2's regex, matched by hand (leftmost alternative wins, as the regex engine does):
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::vector<std::string_view> BpeTokenizer::pre_tokenize(std::string_view text) {
  CharScan sc(text);
  const std::vector<Utf8Char>& cs = sc.cs;
  const size_t n = cs.size();
  size_t i = 0;
  while (i < n) {
    char32_t c = cs[i].cp;
    if (c == '\'' && i + 1 < n) {
      char32_t d = cs[i + 1].cp;
      if (d == 's' || d == 't' || d == 'm' || d == 'd') { sc.piece(i, i + 2); i += 2; continue; }
      if (i + 2 < n) {
        char32_t e = cs[i + 2].cp;
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) { sc.piece(i, i + 3); i += 3; continue; }
      }
    }
    // ` ?X+` for the three classes: with the optional space first, then without.
    bool matched = false;
    for (auto cls : {&is_letter, &is_number, &is_other}) {
      size_t s = (c == ' ' && i + 1 < n && cls(cs[i + 1].cp)) ? i + 1 : i;
      if (!cls(cs[s].cp)) continue;
      size_t e = sc.run(s, cls);
      sc.piece(i, e);
      i = e;
      matched = true;
      break;
    }
    if (matched) continue;
    // Whitespace: \s+(?!\S) leaves the run's last space to the word that follows it.
    size_t e = sc.run(i, &is_space);
    if (e < n && e - i > 1) e -= 1;
    sc.piece(i, e);
    i = e;
  }
  return std::move(sc.out);
}

// Llama-3's regex, matched by hand (at each position the first alternative that matches
// wins; within one, greedy with backtracking, as the regex engine does):
//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
//   \s*[\r\n]+|\s+(?!\S)|\s+
// Qwen2's is the same with \p{N} (one digit) for \p{N}{1,3}: `digits` is 3 or 1.
std::vector<std::string_view> BpeTokenizer::pre_tokenize_llama3(std::string_view text) { return pre_tokenize_split(text, 3); }
std::vector<std::string_view> BpeTokenizer::pre_tokenize_qwen2(std::string_view text) { return pre_tokenize_split(text, 1); }

std::vector<std::string_view> BpeTokenizer::pre_tokenize_split(std::string_view text, size_t digits) {
  CharScan sc(text);
  const std::vector<Utf8Char>& cs = sc.cs;
  const size_t n = cs.size();
  size_t i = 0;
  auto take = [&](size_t b) {  // characters [i, b) as the next piece
    sc.piece(i, b);
    i = b;
  };
  auto lower = [&](size_t j) -> char32_t { return j < n && cs[j].cp < 128 ? char32_t(std::tolower(int(cs[j].cp))) : 0; };
  auto crlf = [](char32_t c) { return c == '\r' || c == '\n'; };
  while (i < n) {
    const char32_t c = cs[i].cp;
    // (?i:'s|'t|'re|'ve|'m|'ll|'d): ASCII case-insensitive.
    if (c == '\'') {
      const char32_t d = lower(i + 1), e = lower(i + 2);
      if (d == 's' || d == 't' || d == 'm' || d == 'd') { take(i + 2); continue; }
      if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) { take(i + 3); continue; }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!crlf(c) && !is_letter(c) && !is_number(c) && i + 1 < n && is_letter(cs[i + 1].cp)) {
      take(sc.run(i + 1, &is_letter));
      continue;
    }
    if (is_letter(c)) { take(sc.run(i, &is_letter)); continue; }
    // \p{N}{1,3} (Qwen2: \p{N})
    if (is_number(c)) {
      size_t e = i;
      while (e < n && e < i + digits && is_number(cs[e].cp)) ++e;
      take(e);
      continue;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    {
      const size_t s0 = (c == ' ' && i + 1 < n && is_other(cs[i + 1].cp)) ? i + 1 : i;
      if (is_other(cs[s0].cp)) {
        size_t e = sc.run(s0, &is_other);
        while (e < n && crlf(cs[e].cp)) ++e;
        take(e);
        continue;
      }
    }
    // Whitespace from here on (every other character matched above).
    const size_t r = sc.run(i, &is_space);
    // \s*[\r\n]+: up to the run's last newline.
    size_t last_nl = n;
    for (size_t j = i; j < r; ++j)
      if (crlf(cs[j].cp)) last_nl = j;
    if (last_nl != n) { take(last_nl + 1); continue; }
    // \s+(?!\S) leaves the run's last space to what follows; \s+ otherwise (one space).
    if (r < n && r - i > 1) { take(r - 1); continue; }
    take(r);  // r > i: c is whitespace
  }
  return std::move(sc.out);
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
                "' is not supported (BPE only)");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (m.contains(k) && !m[k].is_null() && !(m[k].is_string() && m[k].get<std::string>().empty()))
      throw Error("tokenizer '" + file + "': the BPE model's " + k + " is not supported");
  if (m.contains("dropout") && !m["dropout"].is_null()) throw Error("tokenizer '" + file + "': BPE dropout is not supported");
  try {
    // NFC before a byte-level pre-tokenizer (Qwen2): checked per text (check_nfc_inert).
    const nlohmann::json norm = j.value("normalizer", nlohmann::json());
    const nlohmann::json pre = j.value("pre_tokenizer", nlohmann::json());
    t.nfc_ = type_of(norm) == "NFC" && !pre.is_null() && type_of(pre) != "Metaspace";
    t.pre_ = !t.nfc_ && read_metaspace_layout(j, file, t.ms_) ? PreTokenizer::Metaspace : read_pre_tokenizer(pre, file);
    read_post_processor(j.value("post_processor", nlohmann::json()), file, t.prefix_ids_, t.suffix_ids_);
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
    if (t.pre_ == PreTokenizer::Metaspace && m.contains("unk_token") && m["unk_token"].is_string()) {
      const std::string unk = m["unk_token"].get<std::string>();
      auto it = t.vocab_.find(unk);
      if (it == t.vocab_.end()) throw Error("tokenizer '" + file + "': the unknown token '" + unk + "' is not in the vocabulary");
      t.ms_.unk_id = it->second;
    }
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

void BpeTokenizer::merge(std::vector<std::string>& word) const {
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
  merge(word);
  for (const std::string& s : word) {
    auto it = vocab_.find(s);
    if (it == vocab_.end()) throw Error("tokenizer: symbol '" + s + "' is not in the vocabulary (no unknown token in byte-level BPE)");
    out.push_back(it->second);
  }
}

// The NFC normalizer (Qwen2's): shardrt does not compose or reorder characters, so it takes
// the texts that NFC leaves as they are (no character that NFC may change, reorder or
// combine) and refuses the others, naming the first such character.
void BpeTokenizer::check_nfc_inert(std::string_view part, size_t offset) const {
  for (const Utf8Char& c : utf8_chars(part)) {
    if (nfc_inert(c.cp)) continue;
    char cp[16];
    std::snprintf(cp, sizeof cp, "U+%04X", unsigned(c.cp));
    throw Error(std::string("tokenizer: the text has ") + cp + " at byte " +
                std::to_string(offset + size_t(c.bytes.data() - part.data())) +
                ", which the tokenizer's NFC normalizer may change or combine; shardrt runs NFC only on texts it leaves "
                "unchanged (no combining marks, no characters NFC maps elsewhere): give the text precomposed, or token ids");
  }
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out = prefix_ids_;
  size_t start = 0, i = 0;
  auto plain = [&](size_t a, size_t b) {
    const std::string_view part = text.substr(a, b - a);
    if (pre_ == PreTokenizer::Metaspace) return metaspace_segment(part, a == 0, out);
    if (nfc_) check_nfc_inert(part, a);
    const auto pieces = pre_ == PreTokenizer::Llama3  ? pre_tokenize_llama3(part)
                        : pre_ == PreTokenizer::Qwen2 ? pre_tokenize_qwen2(part)
                                                      : pre_tokenize(part);
    for (std::string_view p : pieces) bpe_piece(p, out);
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
  out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids, bool at_start) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    const int64_t id = ids[i];
    auto added = std::find_if(added_.begin(), added_.end(), [&](auto& a) { return a.second == id; });
    if (added != added_.end()) { out += added->first; continue; }
    if (id < 0 || size_t(id) >= id_to_token_.size() || id_to_token_[size_t(id)].empty())
      throw Error("tokenizer: id " + std::to_string(id) + " is not in the vocabulary (size " + std::to_string(vocab_size()) + ")");
    if (pre_ == PreTokenizer::Metaspace) {
      metaspace_token(id, at_start && i == 0, out);
      continue;
    }
    for (const Utf8Char& c : utf8_chars(id_to_token_[size_t(id)])) {
      auto it = char_byte_.find(std::string(c.bytes));
      if (it == char_byte_.end()) throw Error("tokenizer: token of id " + std::to_string(id) + " holds a character outside the byte alphabet");
      out += char(it->second);
    }
  }
  if (pre_ == PreTokenizer::Metaspace && at_start)  // the decoder's Strip: leading spaces
    for (int k = 0; k < ms_.strip && !out.empty() && out[0] == ' '; ++k) out.erase(0, 1);
  return out;
}

int64_t BpeTokenizer::token_id(const std::string& token) const {
  for (auto& [tok, id] : added_)
    if (tok == token) return id;
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

}  // namespace shardrt::text
