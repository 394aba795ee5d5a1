// Einsum equation parsing shared by the shape rule and the CPU kernel.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

namespace shardrt {

struct EinsumSpec {
  // Labels of each input and of the output; '.' stands for the ellipsis (at most once each).
  std::vector<std::string> inputs;
  std::string output;
  std::vector<size_t> ellipsis_rank;  // dims the ellipsis covers in each input
  size_t out_ellipsis_rank = 0;       // the broadcast ellipsis rank (max over inputs)
};

// Parses `eq` for inputs of the given ranks; implicit output (no "->") is the ellipsis
// followed by the labels used exactly once, sorted.
bool parse_einsum(const std::string& eq, const std::vector<size_t>& ranks, EinsumSpec& spec,
                  std::string* err);
// Checks the equation's syntax and term count without ranks (for import-time validation).
bool einsum_syntax_ok(const std::string& eq, size_t n_inputs, std::string* err);

}  // namespace shardrt
