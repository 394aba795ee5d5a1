// Tensor-parallel sharding plans, in the vocabulary of PyTorch's parallelize_module:
// placements (Replicate, Shard(d), Partial(sum)) and, per module/parameter name pattern, a
// parallel style (colwise, rowwise, sequence, prepare_input). docs/parallel.md describes
// the JSON file format.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace shardrt {
struct Graph;
}

namespace shardrt::dist {

struct Placement {
  enum Kind { Replicate, Shard, Partial } kind = Replicate;
  int64_t dim = 0;            // Shard: the dimension (may be negative: from the end)
  std::string reduce = "sum";  // Partial: the pending reduction

  static Placement replicate() { return {}; }
  static Placement shard(int64_t d) { Placement p; p.kind = Shard; p.dim = d; return p; }
  static Placement partial(std::string r = "sum") { Placement p; p.kind = Partial; p.reduce = std::move(r); return p; }
  bool is_shard() const { return kind == Shard; }
  bool is_replicate() const { return kind == Replicate; }
  bool is_partial() const { return kind == Partial; }
  // "Replicate", "Shard(1)", "Partial(sum)".
  std::string str() const;
  bool operator==(const Placement& o) const {
    return kind == o.kind && (kind != Shard || dim == o.dim) && (kind != Partial || reduce == o.reduce);
  }
  // The same placement with a negative Shard dim made positive for a tensor of `rank`.
  Placement normalized(int64_t rank) const;
};

// Parses "Replicate", "Shard(2)", "Shard(-1)", "Partial", "Partial(sum)" (case-insensitive
// style name, spaces ignored); returns nullopt when `s` is none of those.
std::optional<Placement> parse_placement(const std::string& s);

struct PlanEntry {
  std::string pattern;  // glob (* any run, ? one char) over node / parameter names
  std::string style;    // "colwise" | "rowwise" | "sequence" | "prepare_input"
  std::optional<Placement> input_layout;          // colwise/rowwise/prepare_input
  std::optional<Placement> output_layout;         // colwise/rowwise
  std::optional<Placement> desired_input_layout;  // prepare_input
  bool use_local_output = true;
  int64_t sequence_dim = 1;  // sequence
  std::string origin;        // "FILE: tp_plan['x']" for messages

  // The layouts the style assumes when the entry does not give them (PyTorch's defaults).
  Placement input_or_default() const;
  Placement output_or_default() const;
  std::string str() const;  // "colwise(input_layouts=Shard(0))"
};

struct ShardingPlan {
  std::vector<PlanEntry> entries;  // first match wins
  std::string source;              // file name, "auto", or "" (built in code)

  // The first entry whose pattern matches one of `names`; null when none does.
  const PlanEntry* match(const std::vector<std::string>& names) const;
  // One line per entry: "  *.attn.c_attn: colwise(...)".
  std::string str() const;
  // The JSON file form (round-trips through parse_plan_json).
  std::string to_json() const;
};

// Parses a plan file's text; errors (shardrt::Error) name `source`, the line of a syntax
// error, or the key of a bad entry.
ShardingPlan parse_plan_json(const std::string& text, const std::string& source);
ShardingPlan load_plan_file(const std::string& path);

bool glob_match(const std::string& pattern, const std::string& s);

// `--tp-plan auto`: recognises transformer blocks in a fused graph (attention: Q/K/V
// column-wise, the output projection row-wise; MLP: up/gate column-wise, down row-wise;
// token embedding row-wise, LM head column-wise with a replicated output). Key/value
// projections stay replicated when the kv heads do not divide by tp. Entries name nodes
// exactly. `report` receives one line per choice.
ShardingPlan auto_plan(const Graph& g, int tp, std::string& report);

}  // namespace shardrt::dist
