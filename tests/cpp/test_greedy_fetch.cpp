// Greedy decoding on the engine: the decoder's next_token output is ONNX ArgMax (axis -1,
// keepdims 0, select_last_index 0) over the logits, and the session fetches only it with
// ExecutionContext::outputs(names). Its choice must be the host sampler's (serve::argmax,
// which follows torch.argmax): the first maximum on ties.
#include <gtest/gtest.h>

#include <limits>

#include "error_util.h"
#include "serve/sampler.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

Engine argmax_engine(int64_t v) {
  Network net;
  ITensor x = net.input("logits", DType::F32, {-1, v}, {"batch"});
  net.output(net.relu(x), "relu");  // a second output, which outputs(names) leaves on the engine
  Network::Attrs a;
  a.i["axis"] = -1;
  a.i["keepdims"] = 0;
  a.i["select_last_index"] = 0;
  net.output(net.op("ArgMax", {x}, a, 1, "argmax")[0], "next_token");
  BuildConfig bc;
  bc.shapes["logits"] = {{1, v}, {4, v}, {4, v}};
  return build_engine(net, bc);
}

}  // namespace

TEST(GreedyFetch, ArgMaxPicksTheSamplersToken) {
  const int64_t V = 7;
  const float inf = std::numeric_limits<float>::infinity();
  // Rows: a tie between 1 and 4 (first wins), a tie at the end, -inf around one finite
  // value, all equal (index 0).
  std::vector<std::vector<float>> rows = {{0.f, 3.f, 1.f, -2.f, 3.f, 2.f, 3.f},
                                          {-1.f, -1.f, -3.f, -2.f, -5.f, 0.5f, 0.5f},
                                          {-inf, -inf, -inf, -7.f, -inf, -inf, -inf},
                                          {2.f, 2.f, 2.f, 2.f, 2.f, 2.f, 2.f}};
  Engine e = argmax_engine(V);
  ExecutionContext ctx(e);
  Tensor in(DType::F32, {int64_t(rows.size()), V});
  for (size_t r = 0; r < rows.size(); ++r) std::copy(rows[r].begin(), rows[r].end(), in.data<float>() + r * V);
  ctx.set_inputs({{"logits", in}});
  ctx.execute();
  auto out = ctx.outputs({"next_token"});
  ASSERT_EQ(out.size(), 1u);
  const Tensor& t = out.at("next_token");
  ASSERT_EQ(t.dims(), (Dims{int64_t(rows.size())}));
  ASSERT_EQ(t.dtype(), DType::I64);
  // Expected by hand (torch.argmax gives the same: 1, 5, 3, 0) and by the sampler.
  const std::vector<int64_t> want = {1, 5, 3, 0};
  for (size_t r = 0; r < rows.size(); ++r) {
    EXPECT_EQ(t.data<int64_t>()[r], want[r]) << "row " << r;
    EXPECT_EQ(serve::argmax(rows[r].data(), V), want[r]) << "row " << r;
  }
}

TEST(GreedyFetch, OutputsByNameFetchOnlyThoseAndNameUnknownOnes) {
  Engine e = argmax_engine(3);
  ExecutionContext ctx(e);
  Tensor in(DType::F32, {2, 3});
  for (int i = 0; i < 6; ++i) in.data<float>()[i] = float(i % 4) - 1.f;  // -1 0 1 2 -1 0
  ctx.set_inputs({{"logits", in}});
  ctx.execute();
  auto both = ctx.outputs({"relu", "next_token"});
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both.at("next_token").data<int64_t>()[0], 2);
  EXPECT_EQ(both.at("next_token").data<int64_t>()[1], 0);  // (2, -1, 0): the first
  EXPECT_EQ(both.at("relu").data<float>()[3], 2.f);
  // The same as outputs(), restricted.
  auto all = ctx.outputs();
  EXPECT_EQ(all.size(), 2u);
  std::string msg = any_error_of([&] { ctx.outputs({"next_token", "nope"}); });
  EXPECT_NE(msg.find("unknown output 'nope'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("next_token"), std::string::npos) << msg;
}
