// `inspect` states, for each AllReduce node, its message bytes at the profile's opt and max
// shapes and the CUDA backend's rule for the path (one-shot peer under a size, else NCCL).
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "backends/cuda/peer_allreduce.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

namespace {

using namespace shardrt;

Engine allreduce_engine() {
  Graph g;
  Value* x = g.add_input("x", DType::F16, {Dim::symbol("batch"), 64});
  g.outputs = {g.add_node("shardrt.AllReduce", "ar_tp", {x}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 64}, {4, 64}, {32, 64}};
  return build_engine_from_graph(std::move(g), cfg);
}

TEST(InspectAllReduce, BytesAtOptAndMaxAndThePathRule) {
  if (std::getenv("SHARDRT_PEER_ALLREDUCE") || std::getenv("SHARDRT_PEER_ALLREDUCE_MAX_BYTES"))
    GTEST_SKIP() << "the rule printed follows these variables";
  Engine e = allreduce_engine();
  std::string text = e.inspect(false);
  // fp16 [batch, 64]: 4·64·2 = 512 bytes at opt (batch 4), 32·64·2 = 4096 at max (batch 32).
  EXPECT_NE(text.find("all-reduce 512 bytes at opt, 4096 at max"), std::string::npos) << text;
  EXPECT_NE(text.find("one-shot peer <= 262144 bytes"), std::string::npos) << text;
  std::string js = e.inspect(true);
  EXPECT_NE(js.find("\"bytes_opt\": 512"), std::string::npos) << js;
  EXPECT_NE(js.find("\"bytes_max\": 4096"), std::string::npos) << js;
}

TEST(InspectAllReduce, RuleFollowsSettings) {
  cuda::PeerAllReduceSettings off;
  off.enabled = false;
  EXPECT_NE(cuda::peer_allreduce_rule(off).find("off"), std::string::npos);
  cuda::PeerAllReduceSettings small;
  small.max_bytes = 65536;
  EXPECT_NE(cuda::peer_allreduce_rule(small).find("<= 65536 bytes"), std::string::npos);
}

}  // namespace
