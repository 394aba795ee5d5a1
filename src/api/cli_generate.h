// The LLM commands of the command line: `generate`, the hidden `tokenize`, and `build` of a
// decoder checkpoint folder (docs/generate.md).
#pragma once
#include <functional>
#include <optional>
#include <string>

namespace CLI {
class App;
}

namespace shardrt {

// The build command's own settings, read after parsing (cli.cpp owns them).
struct BuildCommandRefs {
  const std::string& model;
  const std::string& out;
  const int& tp;
  const int& dp;
  const std::string& device;
};

// Adds `generate` and `tokenize` to `app` and the decoder options (--max-batch, --max-seq,
// --dtype) to `build`. The function returned runs what the parsed command line chose among
// these (a `build` whose model is a folder with config.json counts) and returns its exit
// code, or nullopt when it chose something else. It throws Error like the other commands.
std::function<std::optional<int>()> add_generate_commands(CLI::App& app, CLI::App* build, BuildCommandRefs build_refs);

}  // namespace shardrt
