#include "dist/plan.h"

#include <algorithm>
#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "shardrt/engine.h"

namespace shardrt::dist {

using ojson = nlohmann::ordered_json;

std::string Placement::str() const {
  switch (kind) {
    case Replicate: return "Replicate";
    case Shard: return "Shard(" + std::to_string(dim) + ")";
    case Partial: return "Partial(" + reduce + ")";
  }
  return "?";
}

Placement Placement::normalized(int64_t rank) const {
  Placement p = *this;
  if (p.kind == Shard && p.dim < 0) p.dim += rank;
  return p;
}

std::optional<Placement> parse_placement(const std::string& s0) {
  std::string s;
  for (char c : s0)
    if (!std::isspace(static_cast<unsigned char>(c))) s += char(std::tolower(static_cast<unsigned char>(c)));
  if (s == "replicate" || s == "replicate()") return Placement::replicate();
  if (s == "partial" || s == "partial()" || s == "partial(sum)") return Placement::partial();
  for (const char* r : {"max", "min", "prod"})
    if (s == std::string("partial(") + r + ")") return Placement::partial(r);
  if (s.rfind("shard(", 0) == 0 && s.back() == ')') {
    std::string num = s.substr(6, s.size() - 7);
    if (num.rfind("dim=", 0) == 0) num = num.substr(4);
    if (num.empty()) return std::nullopt;
    size_t i = num[0] == '-' ? 1 : 0;
    if (i == num.size()) return std::nullopt;
    for (size_t k = i; k < num.size(); ++k)
      if (!std::isdigit(static_cast<unsigned char>(num[k]))) return std::nullopt;
    // No tensor has a billion dims: longer numbers are not a placement (and would not fit
    // in stoll's range).
    if (num.size() - i > 9) return std::nullopt;
    return Placement::shard(std::stoll(num));
  }
  return std::nullopt;
}

Placement PlanEntry::input_or_default() const {
  if (input_layout) return *input_layout;
  if (style == "rowwise") return Placement::shard(-1);
  if (style == "sequence") return Placement::shard(sequence_dim);
  return Placement::replicate();
}

Placement PlanEntry::output_or_default() const {
  if (output_layout) return *output_layout;
  if (style == "colwise") return Placement::shard(-1);
  if (style == "sequence") return Placement::shard(sequence_dim);
  return Placement::replicate();
}

std::string PlanEntry::str() const {
  std::vector<std::string> args;
  if (input_layout) args.push_back("input_layouts=" + input_layout->str());
  if (output_layout) args.push_back("output_layouts=" + output_layout->str());
  if (desired_input_layout) args.push_back("desired_input_layouts=" + desired_input_layout->str());
  if (!use_local_output) args.push_back("use_local_output=false");
  if (style == "sequence") args.push_back("sequence_dim=" + std::to_string(sequence_dim));
  std::string s = style + "(";
  for (size_t i = 0; i < args.size(); ++i) s += (i ? ", " : "") + args[i];
  return s + ")";
}

bool glob_match(const std::string& p, const std::string& s) {
  // Iterative matcher with backtracking to the last '*'.
  size_t pi = 0, si = 0, star = std::string::npos, mark = 0;
  while (si < s.size()) {
    if (pi < p.size() && (p[pi] == '?' || p[pi] == s[si])) { ++pi; ++si; }
    else if (pi < p.size() && p[pi] == '*') { star = pi++; mark = si; }
    else if (star != std::string::npos) { pi = star + 1; si = ++mark; }
    else return false;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

const PlanEntry* ShardingPlan::match(const std::vector<std::string>& names) const {
  for (auto& e : entries)
    for (auto& n : names)
      if (!n.empty() && glob_match(e.pattern, n)) return &e;
  return nullptr;
}

std::string ShardingPlan::str() const {
  std::string s;
  for (auto& e : entries) s += "  " + e.pattern + ": " + e.str() + "\n";
  return s;
}

std::string ShardingPlan::to_json() const {
  ojson plan = ojson::object();
  for (auto& e : entries) {
    ojson j = {{"style", e.style}};
    if (e.input_layout) j["input_layouts"] = e.input_layout->str();
    if (e.output_layout) j["output_layouts"] = e.output_layout->str();
    if (e.desired_input_layout) j["desired_input_layouts"] = e.desired_input_layout->str();
    if (!e.use_local_output) j["use_local_output"] = false;
    if (e.style == "sequence") j["sequence_dim"] = e.sequence_dim;
    plan[e.pattern] = j;
  }
  return ojson{{"tp_plan", plan}}.dump(2);
}

namespace {

[[noreturn]] void bad(const std::string& where, const std::string& msg) {
  throw Error("sharding plan " + where + ": " + msg);
}

Placement layout_of(const ojson& v, const std::string& where) {
  const ojson* x = &v;
  // PyTorch takes a tuple of layouts (one per input); a plan names the first input's.
  if (v.is_array()) {
    if (v.size() != 1) bad(where, "give one layout (a string or a list of one), got " + std::to_string(v.size()));
    x = &v[0];
  }
  // Names the JSON type rather than dumping the value: a deeply nested one would recurse.
  if (!x->is_string()) bad(where, std::string("a layout is a string such as \"Shard(0)\", \"Replicate\" or \"Partial(sum)\", got a JSON ") + x->type_name());
  auto p = parse_placement(x->get<std::string>());
  if (!p) bad(where, "'" + x->get<std::string>() + "' is not a placement (Replicate, Shard(d), Partial(sum))");
  return *p;
}

int line_of(const std::string& text, size_t byte) {
  int line = 1;
  for (size_t i = 0; i < byte && i < text.size(); ++i) line += text[i] == '\n';
  return line;
}

}  // namespace

ShardingPlan parse_plan_json(const std::string& text, const std::string& source) {
  ojson doc;
  try {
    doc = ojson::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Error("sharding plan " + source + ": line " + std::to_string(line_of(text, e.byte ? e.byte - 1 : 0)) +
                ": JSON syntax error: " + e.what());
  } catch (const nlohmann::json::exception& e) {
    // Not a syntax error but a value JSON cannot hold, such as a number beyond a double's
    // range (out_of_range 406).
    throw Error("sharding plan " + source + ": invalid JSON: " + e.what());
  }
  if (!doc.is_object() || !doc.contains("tp_plan"))
    bad(source, "the file must be a JSON object with a \"tp_plan\" key (see docs/parallel.md)");
  for (auto& [k, v] : doc.items())
    if (k != "tp_plan") bad(source + ": key '" + k + "'", "unknown top-level key (only \"tp_plan\")");
  const ojson& tp = doc["tp_plan"];
  if (!tp.is_object()) bad(source + ": key 'tp_plan'", "must be an object mapping name patterns to styles");
  ShardingPlan plan;
  plan.source = source;
  static const std::vector<std::string> styles = {"colwise", "rowwise", "sequence", "prepare_input"};
  for (auto& [pattern, spec] : tp.items()) {
    std::string where = source + ": tp_plan['" + pattern + "']";
    if (pattern.empty()) bad(where, "empty name pattern");
    PlanEntry e;
    e.pattern = pattern;
    e.origin = where;
    // A reference, not a copy: copying a JSON value recurses through its nesting, which
    // the file controls (a deeply nested value would overflow the stack).
    ojson wrapped;
    if (spec.is_string()) wrapped = ojson{{"style", spec}};
    const ojson& obj = spec.is_string() ? wrapped : spec;
    if (!obj.is_object()) bad(where, "must be a style name or an object with \"style\"");
    if (!obj.contains("style") || !obj.at("style").is_string()) bad(where, "needs \"style\": one of colwise, rowwise, sequence, prepare_input");
    e.style = obj.at("style").get<std::string>();
    if (std::find(styles.begin(), styles.end(), e.style) == styles.end())
      bad(where + ".style", "'" + e.style + "' is not a style (colwise, rowwise, sequence, prepare_input)");
    for (auto& [k, v] : obj.items()) {
      std::string kw = where + "." + k;
      if (k == "style") continue;
      if (k == "input_layouts" && e.style != "sequence") e.input_layout = layout_of(v, kw);
      else if (k == "output_layouts" && (e.style == "colwise" || e.style == "rowwise")) e.output_layout = layout_of(v, kw);
      else if (k == "desired_input_layouts" && e.style == "prepare_input") e.desired_input_layout = layout_of(v, kw);
      else if (k == "use_local_output" && e.style != "prepare_input") {
        if (!v.is_boolean()) bad(kw, "must be true or false");
        e.use_local_output = v.get<bool>();
      } else if (k == "sequence_dim" && e.style == "sequence") {
        if (!v.is_number_integer()) bad(kw, "must be an integer");
        e.sequence_dim = v.get<int64_t>();
      } else {
        bad(kw, "not a key of style " + e.style);
      }
    }
    if (e.style == "prepare_input" && !e.input_layout && !e.desired_input_layout)
      bad(where, "prepare_input needs input_layouts and/or desired_input_layouts");
    for (auto* l : {&e.input_layout, &e.output_layout, &e.desired_input_layout})
      if (*l && (*l)->is_partial() && !(e.style == "rowwise" && l == &e.input_layout))
        bad(where, "Partial is not a layout a module's input or output can be asked for here");
    plan.entries.push_back(std::move(e));
  }
  return plan;
}

ShardingPlan load_plan_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("sharding plan " + path + ": cannot open the file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_plan_json(ss.str(), path);
}

}  // namespace shardrt::dist
