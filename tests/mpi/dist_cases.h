// The distributed test body, written once and run against every communicator the machine
// has: tests/cpp/test_dist_single.cpp instantiates it with the single communicator,
// tests/mpi/test_dist_mpi.cpp with MPI (under mpirun -n 2 and -n 4) and single. Each
// binary defines dist_test_comm(kind), the world communicator of that kind.
//
// Every rank's data is a formula of (rank, index), so each rank computes what every other
// rank sent, and the expected result by a plain loop. The values are small integers: sums
// and products of a few of them are exact in fp32, so half-type results must equal the
// fp32 result rounded once (which is what reducing in fp32 gives): comparisons are exact.
#pragma once
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "dist/collective_exec.h"
#include "dist/communicator.h"
#include "dist/mesh.h"
#include "ir/graph.h"
#include "shardrt/engine.h"

shardrt::dist::Communicator& dist_test_comm(const std::string& kind);

namespace dist_cases {

using namespace shardrt;
using shardrt::dist::Communicator;
using shardrt::dist::ReduceOp;

// Rank r's element i: in [-3, 3] (in [0, 6] for unsigned, 0/1 for bool).
inline double val(int r, int64_t i, DType t) {
  int64_t v = (r * 3 + i * 5 + 1) % 7;
  if (t == DType::U8) return double(v);
  if (t == DType::Bool) return double((r + i) % 3 == 0);
  return double(v - 3);
}

inline Tensor rank_tensor(int r, Dims d, DType t) {
  Tensor x(t, d);
  for (int64_t i = 0; i < x.numel(); ++i) x.set_f(i, val(r, i, t));
  return x;
}

inline double reduce_ref(ReduceOp op, int n, int64_t i, DType t) {
  double acc = val(0, i, t);
  for (int r = 1; r < n; ++r) {
    double v = val(r, i, t);
    switch (op) {
      case ReduceOp::Sum: acc += v; break;
      case ReduceOp::Max: acc = std::max(acc, v); break;
      case ReduceOp::Min: acc = std::min(acc, v); break;
      case ReduceOp::Prod: acc *= v; break;
    }
  }
  if (t == DType::Bool) acc = acc != 0;  // sum/max of bools is "or", prod/min "and"
  if (t == DType::I8) acc = double(int8_t(int64_t(acc)));
  return acc;
}

// The expected value as stored in dtype `t` (rounded once from the exact result).
inline double stored(double v, DType t) {
  Tensor x(t, {1});
  x.set_f(0, v);
  return x.get_f(0);
}

class DistCollectives : public ::testing::TestWithParam<std::string> {
 protected:
  Communicator& comm() { return dist_test_comm(GetParam()); }
};

TEST_P(DistCollectives, AllReduceEveryDtypeAndOp) {
  Communicator& c = comm();
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I64,
                         DType::I32, DType::I8,  DType::U8,   DType::Bool};
  const ReduceOp ops[] = {ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min, ReduceOp::Prod};
  for (DType t : types)
    for (ReduceOp op : ops)
      for (int64_t n : {int64_t(1), int64_t(37)}) {
        if (t == DType::U8 && op == ReduceOp::Prod) continue;  // 6^4 overflows uint8 (it wraps, as MPI's does)
        Tensor x = rank_tensor(c.rank(), {n}, t), y(t, {n});
        c.all_reduce(x.raw(), y.raw(), n, t, op, {"", "AllReduce"});
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(y.get_f(i), stored(reduce_ref(op, c.size(), i, t), t))
              << dtype_name(t) << " " << dist::reduce_op_name(op) << " i=" << i;
      }
  // In place.
  Tensor x = rank_tensor(c.rank(), {5}, DType::F32);
  c.all_reduce(x.raw(), x.raw(), 5, DType::F32, ReduceOp::Sum);
  for (int64_t i = 0; i < 5; ++i) EXPECT_EQ(x.get_f(i), reduce_ref(ReduceOp::Sum, c.size(), i, DType::F32));
}

TEST_P(DistCollectives, AllGatherEvenAndUneven) {
  Communicator& c = comm();
  for (DType t : {DType::F32, DType::BF16, DType::I64, DType::Bool}) {
    // Uneven: rank r sends r + 1 elements, the last rank none (when there are several).
    std::vector<int64_t> counts;
    for (int r = 0; r < c.size(); ++r) counts.push_back(c.size() > 1 && r == c.size() - 1 ? 0 : r + 1);
    int64_t total = 0;
    for (int64_t k : counts) total += k;
    Tensor x = rank_tensor(c.rank(), {counts[size_t(c.rank())]}, t), y(t, {total});
    c.all_gather(x.raw(), y.raw(), counts, t);
    int64_t o = 0;
    for (int r = 0; r < c.size(); ++r)
      for (int64_t i = 0; i < counts[size_t(r)]; ++i, ++o) ASSERT_EQ(y.get_f(o), val(r, i, t)) << dtype_name(t);
    // Even.
    Tensor x2 = rank_tensor(c.rank(), {3}, t), y2(t, {3 * c.size()});
    c.all_gather(x2.raw(), y2.raw(), 3, t);
    for (int r = 0; r < c.size(); ++r)
      for (int64_t i = 0; i < 3; ++i) ASSERT_EQ(y2.get_f(r * 3 + i), val(r, i, t));
  }
}

TEST_P(DistCollectives, ReduceScatterUneven) {
  Communicator& c = comm();
  for (DType t : {DType::F32, DType::F16, DType::I32}) {
    std::vector<int64_t> counts;
    for (int r = 0; r < c.size(); ++r) counts.push_back(2 * r + 1);
    int64_t total = 0, off = 0;
    for (int64_t k : counts) total += k;
    for (int r = 0; r < c.rank(); ++r) off += counts[size_t(r)];
    Tensor x = rank_tensor(c.rank(), {total}, t), y(t, {counts[size_t(c.rank())]});
    c.reduce_scatter(x.raw(), y.raw(), counts, t, ReduceOp::Sum);
    for (int64_t i = 0; i < y.numel(); ++i)
      ASSERT_EQ(y.get_f(i), stored(reduce_ref(ReduceOp::Sum, c.size(), off + i, t), t)) << dtype_name(t);
  }
}

TEST_P(DistCollectives, BroadcastAndBarrier) {
  Communicator& c = comm();
  int root = c.size() - 1;
  Tensor x = rank_tensor(c.rank(), {11}, DType::F16);
  c.broadcast(x.raw(), 11, DType::F16, root);
  for (int64_t i = 0; i < 11; ++i) ASSERT_EQ(x.get_f(i), val(root, i, DType::F16));
  c.barrier();
  EXPECT_THROW(c.broadcast(x.raw(), 11, DType::F16, c.size()), Error);
}

TEST_P(DistCollectives, ErrorsNameRankAndCollective) {
  Communicator& c = comm();
  Tensor x(DType::F32, {4});
  try {
    // One count too many: refused before any communication, on every rank alike.
    c.reduce_scatter(x.raw(), x.raw(), std::vector<int64_t>(size_t(c.size() + 1), 1), DType::F32, ReduceOp::Sum,
                     {"rs_node", "ReduceScatter"});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("rank " + std::to_string(c.world_rank())), std::string::npos) << m;
    EXPECT_NE(m.find("ReduceScatter of node 'rs_node'"), std::string::npos) << m;
  }
}

// Every dp × tp factorisation of the world: indices, and that a group's all-reduce sums
// exactly its members.
TEST_P(DistCollectives, MeshGroups) {
  Communicator& c = comm();
  int n = c.size();
  for (int tp = 1; tp <= n; ++tp) {
    if (n % tp) continue;
    dist::Mesh m(c, n / tp, tp);
    EXPECT_EQ(m.dp_index() * tp + m.tp_index(), c.rank());
    EXPECT_EQ(m.tp_group().size(), tp);
    EXPECT_EQ(m.dp_group().size(), n / tp);
    EXPECT_EQ(m.tp_group().rank(), m.tp_index());
    EXPECT_EQ(m.dp_group().rank(), m.dp_index());
    EXPECT_EQ(&m.group("world"), &c);
    int64_t mine = c.rank(), sum = 0;
    m.group("tp").all_reduce(&mine, &sum, 1, DType::I64, ReduceOp::Sum);
    int64_t want = 0;
    for (int t = 0; t < tp; ++t) want += m.dp_index() * tp + t;
    EXPECT_EQ(sum, want);
    m.group("dp").all_reduce(&mine, &sum, 1, DType::I64, ReduceOp::Sum);
    want = 0;
    for (int d = 0; d < n / tp; ++d) want += d * tp + m.tp_index();
    EXPECT_EQ(sum, want);
    EXPECT_EQ(m.tp_group().world_rank_of(0), m.dp_index() * tp);
  }
  EXPECT_THROW(dist::Mesh(c, n + 1, 1), Error);
}

// The collective ops inside an engine: X [5, 6] per rank → AllReduce (tp, as a Start/Wait
// pair) → AllGather along axis 1 (tp) and ReduceScatter along axis 0 (world; rows split as
// torch.chunk splits them: [3, 2] on 2 ranks, [2, 2, 1, 0] on 4). Built with and without
// the group shapes known, optimised (Start/Wait fused) and not (the Start and Wait kernels
// run).
inline Graph collective_graph() {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {5, 6});
  Value* ys = g.add_node("shardrt.AllReduceStart", "ar_start", {x}, {"ar_s"},
                         {{"reduce", Attr::of(std::string("sum"))}, {"group", Attr::of(std::string("tp"))}})
                  ->outputs[0];
  Value* y = g.add_node("shardrt.Wait", "ar_wait", {ys}, {"ar"})->outputs[0];
  Value* z = g.add_node("shardrt.AllGather", "ag", {y}, {"ag"},
                        {{"axis", Attr::of(int64_t(1))}, {"group", Attr::of(std::string("tp"))}})
                 ->outputs[0];
  Value* w = g.add_node("shardrt.ReduceScatter", "rs", {y}, {"rs"},
                        {{"axis", Attr::of(int64_t(0))}, {"group", Attr::of(std::string("world"))}})
                 ->outputs[0];
  g.outputs = {z, w};
  return g;
}

TEST_P(DistCollectives, EngineRunsCollectiveOps) {
  Communicator& c = comm();
  int n = c.size();
  int tp = n >= 2 ? 2 : 1;
  dist::Mesh mesh(c, n / tp, tp);
  for (int known_shapes = 0; known_shapes < 2; ++known_shapes)
    for (int optimize = 0; optimize < 2; ++optimize) {
      BuildConfig cfg;
      cfg.optimize = optimize;
      Engine e = [&] {
        if (!known_shapes) return build_engine_from_graph(collective_graph(), cfg);
        dist::ScopedGroupShapes shapes(mesh);
        return build_engine_from_graph(collective_graph(), cfg);
      }();
      bool has_start = false;
      for (auto& nd : e.graph().nodes) has_start |= nd->op == "shardrt.AllReduceStart";
      EXPECT_EQ(has_start, !optimize) << "fuse_collectives turns the Start/Wait pair into an AllReduce";
      ExecutionContext ctx(e, mesh);
      auto out = ctx.run({{"x", rank_tensor(c.rank(), {5, 6}, DType::F32)}});
      // AllReduce over the tp group: the sum of the tp group's ranks' tensors.
      auto ar = [&](int member_dp, int64_t i) {
        double s = 0;
        for (int t = 0; t < tp; ++t) s += val(member_dp * tp + t, i, DType::F32);
        return s;
      };
      const Tensor& ag = out.at("ag");
      ASSERT_EQ(ag.dims(), (Dims{5, 6 * tp}));
      // Every tp member holds the same reduced tensor: the gather repeats it along axis 1.
      for (int64_t i = 0; i < 5; ++i)
        for (int64_t j = 0; j < 6 * tp; ++j) ASSERT_EQ(ag.get_f(i * 6 * tp + j), ar(mesh.dp_index(), i * 6 + j % 6));
      // ReduceScatter over the world along axis 0: this rank's torch.chunk rows of the sum of
      // every rank's reduced tensor.
      std::vector<int64_t> rows = dist::chunk_sizes(5, n);
      int64_t r0 = 0;
      for (int r = 0; r < c.rank(); ++r) r0 += rows[size_t(r)];
      const Tensor& rs = out.at("rs");
      ASSERT_EQ(rs.dims(), (Dims{rows[size_t(c.rank())], 6}));
      for (int64_t i = 0; i < rs.dim(0); ++i)
        for (int64_t j = 0; j < 6; ++j) {
          double s = 0;
          for (int d = 0; d < n / tp; ++d) s += tp * ar(d, (r0 + i) * 6 + j);
          ASSERT_EQ(rs.get_f(i * 6 + j), s);
        }
    }
}

// AllGather with torch.chunk-uneven chunks along an inner axis: `gathered_size` 5 over the
// tp group (world here): rank r holds chunk_sizes(5, n)[r] columns.
TEST_P(DistCollectives, EngineUnevenAllGather) {
  Communicator& c = comm();
  int n = c.size();
  std::vector<int64_t> cols = dist::chunk_sizes(5, n);
  int64_t mine = cols[size_t(c.rank())];
  Graph g;
  Value* x = g.add_input("x", DType::BF16, {3, mine});
  Value* y = g.add_node("shardrt.AllGather", "ag", {x}, {"y"},
                        {{"axis", Attr::of(int64_t(-1))}, {"gathered_size", Attr::of(int64_t(5))}})
                 ->outputs[0];
  g.outputs = {y};
  Engine e = build_engine_from_graph(std::move(g), BuildConfig{});
  ExecutionContext ctx(e, c);
  auto out = ctx.run({{"x", rank_tensor(c.rank(), {3, mine}, DType::BF16)}});
  const Tensor& t = out.at("y");
  ASSERT_EQ(t.dims(), (Dims{3, 5}));
  for (int64_t i = 0; i < 3; ++i) {
    int64_t col = 0;
    for (int r = 0; r < n; ++r)
      for (int64_t j = 0; j < cols[size_t(r)]; ++j, ++col) ASSERT_EQ(t.get_f(i * 5 + col), val(r, i * cols[size_t(r)] + j, DType::BF16));
  }
}

}  // namespace dist_cases
