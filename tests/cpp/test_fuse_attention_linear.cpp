// The fuse_attention_linear pass and the CPU kernel of shardrt.CachedAttention with an output
// projection: the default pipeline folds the Linear that projects a cached attention's output
// into the attention node (inputs W, B; the attention survives as its second output), the
// fused engine gives the unfused engine's outputs exactly over prefill and decode steps (the
// CPU kernel runs the same attention and Linear kernels, one KV cache per node), and
// look-alikes stay unfused. The attention and Linear kernels are checked against references
// in their own tests; the CUDA path in tests/cpp/cuda/test_cuda_cached_attention.cpp.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "op_test_util.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;
using optest::random_tensor;

namespace {

constexpr int64_t kHq = 4, kHkv = 2, kD = 16, kMaxSeq = 40, kN = 24;

enum class Variant { Plain, Gelu, AttnAlsoOutput };

Engine make(DType t, Variant v, bool fuse) {
  Network net("attn_proj");
  const int64_t W = (kHq + 2 * kHkv) * kD;
  ITensor qkv = net.input("qkv", t, {-1, -1, W}, {"batch", "seq"});
  ITensor past = net.input("past", DType::I64, {-1}, {"batch"});
  Tensor f(DType::F32, {kD / 2});
  for (int64_t j = 0; j < kD / 2; ++j) f.data<float>()[j] = std::pow(10000.0f, -float(2 * j) / float(kD));
  ITensor a = net.cached_attention(qkv, past, net.weight("inv_freq", f), kHq, kHkv, kD, 2, kMaxSeq, 0);
  ITensor y = net.linear(a, net.weight("w_o", random_tensor(t, {kN, kHq * kD}, -0.25, 0.25, 3)),
                         net.weight("b_o", random_tensor(t, {kN}, -0.5, 0.5, 4)),
                         v == Variant::Gelu ? Activation::Gelu : Activation::None);
  net.output(y, "y");
  if (v == Variant::AttnAlsoOutput) net.output(a, "attn");
  BuildConfig cfg;
  cfg.shapes["qkv"] = {{1, 1, W}, {1, 1, W}, {2, kMaxSeq, W}};
  cfg.shapes["past"] = {{1}, {1}, {2}};
  if (!fuse) cfg.disabled_passes.push_back("fuse_attention_linear");
  return build_engine(net, cfg);
}

int fused_nodes(const Engine& e) {
  int k = 0;
  for (auto& n : e.graph().nodes)
    k += !n->dead && n->op == "shardrt.CachedAttention" && n->inputs.size() > 3 && n->inputs[3];
  return k;
}
int live(const Engine& e, const std::string& op) {
  int k = 0;
  for (auto& n : e.graph().nodes) k += !n->dead && n->op == op;
  return k;
}

Tensor lens(std::vector<int64_t> v) {
  Tensor t(DType::I64, {int64_t(v.size())});
  for (size_t i = 0; i < v.size(); ++i) t.data<int64_t>()[i] = v[i];
  return t;
}

}  // namespace

TEST(FuseAttentionLinear, FusesTheProjectionAndMatchesTheUnfusedEngineExactly) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    SCOPED_TRACE(dtype_name(t));
    Engine fused = make(t, Variant::Plain, true);
    Engine plain = make(t, Variant::Plain, false);
    EXPECT_EQ(fused_nodes(fused), 1);
    EXPECT_EQ(live(fused, "shardrt.Linear"), 0);
    EXPECT_EQ(fused_nodes(plain), 0);
    EXPECT_EQ(live(plain, "shardrt.Linear"), 1);
    ExecutionContext cf(fused, ContextOptions{"cpu"});
    ExecutionContext cp(plain, ContextOptions{"cpu"});
    // Prefill of two rows of different lengths, then decode steps: the caches evolve alike.
    struct Step {
      int64_t S;
      std::vector<int64_t> past;
    };
    std::vector<Step> steps{{5, {0, 0}}, {1, {5, 3}}, {1, {6, 4}}, {3, {7, 5}}, {1, {10, 8}}};
    for (size_t i = 0; i < steps.size(); ++i) {
      std::map<std::string, Tensor> in;
      const int64_t B = int64_t(steps[i].past.size());
      in["qkv"] = random_tensor(t, {B, steps[i].S, (kHq + 2 * kHkv) * kD}, -1.0, 1.0, 100 + unsigned(i));
      in["past"] = lens(steps[i].past);
      Tensor a = cf.run(in).at("y"), b = cp.run(in).at("y");
      ASSERT_EQ(a.dims(), b.dims()) << "step " << i;
      ASSERT_EQ(a.nbytes(), b.nbytes());
      EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0) << "step " << i << ": fused and unfused differ";
    }
  }
}

TEST(FuseAttentionLinear, LookAlikesStayUnfused) {
  // A Linear with an activation, and an attention output that is also a graph output.
  EXPECT_EQ(fused_nodes(make(DType::F32, Variant::Gelu, true)), 0);
  Engine e = make(DType::F32, Variant::AttnAlsoOutput, true);
  EXPECT_EQ(fused_nodes(e), 0);
  EXPECT_EQ(live(e, "shardrt.Linear"), 1);
}
