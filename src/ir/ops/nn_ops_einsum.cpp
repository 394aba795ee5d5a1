#include "ir/ops/nn_ops_einsum.h"

#include <algorithm>
#include <cctype>
#include <map>

namespace shardrt {

namespace {

bool fail(std::string* err, const std::string& m) {
  if (err) *err = m;
  return false;
}

// Turns one term into labels with '.' for "..."; false on bad syntax.
bool parse_term(const std::string& t, std::string& out, std::string* err) {
  out.clear();
  bool ell = false;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '.') {
      if (t.compare(i, 3, "...") != 0 || ell) return fail(err, "bad ellipsis in einsum term '" + t + "'");
      ell = true;
      out.push_back('.');
      i += 2;
    } else if (std::isalpha(static_cast<unsigned char>(t[i]))) {
      out.push_back(t[i]);
    } else {
      return fail(err, std::string("bad character '") + t[i] + "' in einsum equation");
    }
  }
  return true;
}

bool split(const std::string& eq_in, std::vector<std::string>& ins, std::string& out, bool& explicit_out,
           std::string* err) {
  std::string eq;
  for (char ch : eq_in)
    if (!std::isspace(static_cast<unsigned char>(ch))) eq.push_back(ch);
  const size_t arrow = eq.find("->");
  const std::string lhs = arrow == std::string::npos ? eq : eq.substr(0, arrow);
  explicit_out = arrow != std::string::npos;
  if (explicit_out && !parse_term(eq.substr(arrow + 2), out, err)) return false;
  ins.clear();
  size_t start = 0;
  while (true) {
    size_t comma = lhs.find(',', start);
    std::string term;
    if (!parse_term(lhs.substr(start, comma == std::string::npos ? std::string::npos : comma - start), term, err))
      return false;
    ins.push_back(term);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

}  // namespace

bool einsum_syntax_ok(const std::string& eq, size_t n_inputs, std::string* err) {
  std::vector<std::string> ins;
  std::string out;
  bool ex;
  if (!split(eq, ins, out, ex, err)) return false;
  if (ins.size() != n_inputs)
    return fail(err, "einsum equation '" + eq + "' has " + std::to_string(ins.size()) + " terms for " +
                         std::to_string(n_inputs) + " inputs");
  return true;
}

bool parse_einsum(const std::string& eq, const std::vector<size_t>& ranks, EinsumSpec& spec,
                  std::string* err) {
  bool ex;
  if (!split(eq, spec.inputs, spec.output, ex, err)) return false;
  if (spec.inputs.size() != ranks.size())
    return fail(err, "einsum equation '" + eq + "' has " + std::to_string(spec.inputs.size()) +
                         " terms for " + std::to_string(ranks.size()) + " inputs");
  spec.ellipsis_rank.assign(ranks.size(), 0);
  spec.out_ellipsis_rank = 0;
  std::map<char, int> count;
  bool any_ell = false;
  for (size_t i = 0; i < ranks.size(); ++i) {
    const std::string& t = spec.inputs[i];
    const bool has_ell = t.find('.') != std::string::npos;
    const size_t letters = t.size() - (has_ell ? 1 : 0);
    if (has_ell ? ranks[i] < letters : ranks[i] != letters)
      return fail(err, "einsum term '" + t + "' does not match input " + std::to_string(i) + " of rank " +
                           std::to_string(ranks[i]));
    if (has_ell) {
      any_ell = true;
      spec.ellipsis_rank[i] = ranks[i] - letters;
      spec.out_ellipsis_rank = std::max(spec.out_ellipsis_rank, spec.ellipsis_rank[i]);
    }
    for (char l : t)
      if (l != '.') ++count[l];
  }
  if (!ex) {
    spec.output = any_ell ? "." : "";
    for (auto& [l, k] : count)
      if (k == 1) spec.output.push_back(l);
  } else {
    std::string seen;
    for (char l : spec.output) {
      if (l == '.') continue;
      if (!count.count(l)) return fail(err, std::string("output label '") + l + "' is not in any input");
      if (seen.find(l) != std::string::npos) return fail(err, std::string("output label '") + l + "' repeats");
      seen.push_back(l);
    }
    // An output without "..." sums over the ellipsis dims (as ONNX's reference does).
  }
  return true;
}

}  // namespace shardrt
