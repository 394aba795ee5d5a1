// Tensor parallelism on an attention block with Llama-3 rotary embeddings, built with the
// Network API (shardrt.Rotary and shardrt.Attention): the input [2, 128, 4, 128] (batch,
// sequence, heads, head dim) is flattened to [2, 128, 512]; the Q and K projections (and V,
// whose heads must follow Q's) are column-wise, so each rank computes its own heads, the
// rotary embedding and the attention locally; the output projection is row-wise, its
// partial sums all-reduced. Rank 0 checks the result against a single-rank engine.
//
//   mpirun -n 2 tensor_parallel_rotary_embedding      (1, 2 or 4 ranks: 4 heads)
#include <cmath>
#include <cstdio>
#include <random>

#include "build/multi_rank.h"
#include "dist/bootstrap.h"
#include "passes/shard.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

constexpr int64_t B = 2, S = 128, H = 4, D = 128, E = H * D;

Tensor random_tensor(Dims d, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// Llama-3's rotary frequencies (rope_theta 500000, with its long-context scaling: factor 8,
// low/high frequency factors 1 and 4, original context 8192), rotate-half layout.
void llama3_cos_sin(Tensor& cos, Tensor& sin) {
  const double theta = 500000.0, factor = 8.0, low = 1.0, high = 4.0, orig = 8192.0;
  for (int64_t i = 0; i < D / 2; ++i) {
    double inv = std::pow(theta, -2.0 * double(i) / double(D));
    double wavelen = 2 * M_PI / inv;
    if (wavelen > orig / low) inv /= factor;
    else if (wavelen >= orig / high) {
      double smooth = (orig / wavelen - low) / (high - low);
      inv = (1 - smooth) * inv / factor + smooth * inv;
    }
    for (int64_t s = 0; s < S; ++s) {
      double a = double(s) * inv;
      for (int64_t k : {i, i + D / 2}) {
        cos.data<float>()[s * D + k] = float(std::cos(a));
        sin.data<float>()[s * D + k] = float(std::sin(a));
      }
    }
  }
}

Graph make_block() {
  Network net("tensor_parallel_rotary_embedding");
  ITensor x = net.reshape(net.input("x", DType::F32, {B, S, H, D}), {B, S, E}, "flatten_heads");
  float ws = 1.f / std::sqrt(float(E));
  auto heads = [&](const char* name, uint32_t seed) {
    ITensor p = net.linear(x, net.weight(std::string(name) + ".weight", random_tensor({E, E}, seed, ws)), {}, Activation::None, name);
    return net.transpose(net.reshape(p, {B, S, H, D}, std::string(name) + "/heads"), {0, 2, 1, 3}, std::string(name) + "/bhsd");
  };
  ITensor q = heads("q_proj", 1), k = heads("k_proj", 2), v = heads("v_proj", 3);
  Tensor cos(DType::F32, {1, 1, S, D}), sin(DType::F32, {1, 1, S, D});
  llama3_cos_sin(cos, sin);
  ITensor c = net.weight("rope.cos", cos), s = net.weight("rope.sin", sin);
  q = net.rotary(q, c, s, false, "q_rotary");
  k = net.rotary(k, c, s, false, "k_rotary");
  ITensor a = net.attention(q, k, v, {}, /*causal=*/true, 0.f, "attention");
  ITensor m = net.reshape(net.transpose(a, {0, 2, 1, 3}, "merge/bshd"), {B, S, E}, "merge_heads");
  ITensor o = net.linear(m, net.weight("o_proj.weight", random_tensor({E, E}, 4, ws)), {}, Activation::None, "o_proj");
  net.output(o, "y");
  return std::move(*net.release());
}

}  // namespace

int main() {
  try {
    auto world = dist::communicator_from_env();
    const int tp = world->size(), rank = world->rank();
    dist::ShardingPlan plan = dist::parse_plan_json(R"J({"tp_plan": {
        "q_proj": "colwise", "k_proj": "colwise", "v_proj": "colwise", "o_proj": "rowwise"}})J",
                                                    "tensor_parallel_rotary_embedding");
    ShardResult report;
    Engine engine = build_rank_engine(make_block(), plan, MeshShape{1, tp}, rank, {}, &report);
    if (rank == 0) std::printf("rank 0 of %d:\n%s", tp, report.report().substr(0, report.report().find("placements:")).c_str());
    Tensor x = random_tensor({B, S, H, D}, 9, 1.f);  // every rank holds the whole input
    ExecutionContext ctx(engine, *world);
    Tensor y = ctx.run({{"x", x}}).at("y");  // replicated after the all-reduce
    if (rank != 0) return 0;
    Engine single = build_engine_from_graph(make_block(), {});
    Tensor ref = ExecutionContext(single).run({{"x", x}}).at("y");
    double worst = 0;
    for (int64_t i = 0; i < ref.numel(); ++i)
      worst = std::max(worst, double(std::fabs(ref.data<float>()[i] - y.data<float>()[i])));
    // fp32 projections of 512 terms and softmax over 128 keys, regrouped across ranks:
    // ~1e-6 relative on values of size ~1; 1e-3 still catches any wrong head or slice.
    bool ok = worst < 1e-3;
    std::printf("tensor parallel (tp=%d) vs single rank: max |diff| = %.3g -> %s\n", tp, worst, ok ? "OK" : "MISMATCH");
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tensor_parallel_rotary_embedding: error: %s\n", e.what());
    return 1;
  }
}
