// Tensor parallelism on the seed's simple model: the MLP 10→3200→1600→500→100 with ReLUs,
// built with the Network API and sharded as PyTorch's tensor_parallel_example does:
// in_proj and in_proj2 ColwiseParallel(input_layouts=Shard(0)), out_proj and out_proj2
// RowwiseParallel(output_layouts=Shard(0)). Each rank holds a slice of the 20×10 batch,
// which is all-gathered before each column-wise layer; the row-wise layers' partial sums
// are reduce-scattered back to each rank's rows. Rank 0 gathers the rows and checks them
// against a single-rank engine of the same network.
//
//   mpirun -n 2 tensor_parallel_simple      (any rank count whose size divides 3200, 1600, 500)
#include <cmath>
#include <cstdio>
#include <random>

#include "build/multi_rank.h"
#include "dist/bootstrap.h"
#include "dist/collective_exec.h"
#include "passes/shard.h"
#include "shardrt/engine.h"
#include "shardrt/network.h"

using namespace shardrt;

namespace {

Tensor random_tensor(Dims d, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  Tensor t(DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

// Every rank builds the same network (same seeds, so the same weights).
Graph make_mlp() {
  Network net("tensor_parallel_simple");
  const int64_t widths[] = {10, 3200, 1600, 500, 100};
  const char* names[] = {"in_proj", "out_proj", "in_proj2", "out_proj2"};
  ITensor x = net.input("x", DType::F32, {20, 10});
  for (int l = 0; l < 4; ++l) {
    float scale = 1.f / std::sqrt(float(widths[l]));
    ITensor w = net.weight(std::string(names[l]) + ".weight", random_tensor({widths[l + 1], widths[l]}, 100 + l, scale));
    ITensor b = net.weight(std::string(names[l]) + ".bias", random_tensor({widths[l + 1]}, 200 + l, 0.1f));
    x = net.linear(x, w, b, l < 3 ? Activation::Relu : Activation::None, names[l]);
  }
  net.output(x, "y");
  return std::move(*net.release());
}

}  // namespace

int main() {
  try {
    auto world = dist::communicator_from_env();
    const int tp = world->size(), rank = world->rank();
    // The plan, as a user would write it in a plan file (docs/parallel.md).
    dist::ShardingPlan plan = dist::parse_plan_json(R"J({"tp_plan": {
        "in_proj":   {"style": "colwise", "input_layouts": "Shard(0)"},
        "out_proj":  {"style": "rowwise", "output_layouts": "Shard(0)"},
        "in_proj2":  {"style": "colwise", "input_layouts": "Shard(0)"},
        "out_proj2": {"style": "rowwise", "output_layouts": "Shard(0)"}}})J",
                                                    "tensor_parallel_simple");
    ShardResult report;
    Engine engine = build_rank_engine(make_mlp(), plan, MeshShape{1, tp}, rank, {}, &report);
    if (rank == 0) std::printf("rank 0 of %d:\n%s", tp, report.report().substr(0, report.report().find("placements:")).c_str());

    // The global batch; this rank's rows are its torch.chunk piece of dim 0.
    Tensor x = random_tensor({20, 10}, 7, 1.f);
    auto rows = dist::chunk_sizes(20, tp);
    int64_t start = 0;
    for (int r = 0; r < rank; ++r) start += rows[size_t(r)];
    Tensor mine(DType::F32, {rows[size_t(rank)], 10});
    std::copy(x.data<float>() + start * 10, x.data<float>() + (start + rows[size_t(rank)]) * 10, mine.data<float>());

    ExecutionContext ctx(engine, *world);
    Tensor y = ctx.run({{"x", mine}}).at("y");  // this rank's rows of the output

    // Gather the rows on every rank (rank order is row order).
    std::vector<int64_t> counts;
    for (int64_t r : rows) counts.push_back(r * 100);
    Tensor all(DType::F32, {20, 100});
    world->all_gather(y.raw(), all.raw(), counts, DType::F32);
    if (rank == 0) {
      Graph g = make_mlp();
      Engine single = build_engine_from_graph(std::move(g), {});
      Tensor ref = ExecutionContext(single).run({{"x", x}}).at("y");
      double worst = 0;
      for (int64_t i = 0; i < ref.numel(); ++i)
        worst = std::max(worst, double(std::fabs(ref.data<float>()[i] - all.data<float>()[i])));
      // fp32 sums over up to 3200 terms, regrouped across ranks: ~1e-6 relative on values of
      // size ~1; 1e-3 leaves a wide margin while catching any wrong slice (errors of size ~1).
      bool ok = worst < 1e-3;
      std::printf("tensor parallel (tp=%d) vs single rank: max |diff| = %.3g -> %s\n", tp, worst, ok ? "OK" : "MISMATCH");
      return ok ? 0 : 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tensor_parallel_simple: error: %s\n", e.what());
    return 1;
  }
}
