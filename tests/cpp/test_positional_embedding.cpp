// shardrt.PositionalEmbedding(Ids, PastLens, Tokens, Positions) on the CPU against the ops it
// replaces, each run by its own CPU kernel: Gather(Tokens, Ids), Gather(Positions,
// PastLens[b] + s) and their Add (fp32, fp16, bf16; int64 and int32 ids; rows with different
// past lengths). Both round the same fp32 sum once, so they must agree bit for bit. Also:
// the shape rule (symbolic B and S kept), and the errors for an id or a position outside
// its table.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernels.h"
#include "ir/graph.h"
#include "ir/op_schema.h"
#include "op_test_util.h"

using namespace shardrt;

namespace {

Tensor rnd(DType t, Dims d, unsigned seed) { return optest::random_tensor(t, std::move(d), -2, 2, seed); }

Node node(const std::string& op, const std::string& name) {
  Node n = optest::make_node(op);
  n.name = name;
  return n;
}

// The unfused ops' result: Gather, Gather and Add, each evaluated by its CPU kernel.
Tensor unfused(const Tensor& ids, const Tensor& past, const Tensor& tok, const Tensor& pos) {
  const int64_t B = ids.dims()[0], S = ids.dims()[1];
  Tensor positions(DType::I64, {B, S});
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s) positions.data<int64_t>()[b * S + s] = past.data<int64_t>()[b] + s;
  Node g1 = node("Gather", "wte"), g2 = node("Gather", "wpe"), add = node("Add", "embed");
  Tensor a = cpu::eval_node(g1, {&tok, &ids})[0];
  Tensor p = cpu::eval_node(g2, {&pos, &positions})[0];
  return cpu::eval_node(add, {&a, &p})[0];
}

bool same_bytes(const Tensor& x, const Tensor& y) {
  return x.dtype() == y.dtype() && x.dims() == y.dims() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

}  // namespace

TEST(PositionalEmbedding, EqualsGatherGatherAddBitForBit) {
  const int64_t V = 50, P = 40, E = 24, B = 3, S = 5;
  for (DType t : {DType::F32, DType::F16, DType::BF16})
    for (DType it : {DType::I64, DType::I32}) {
      Tensor tok = rnd(t, {V, E}, 1), pos = rnd(t, {P, E}, 2);
      Tensor ids64(DType::I64, {B, S});
      for (int64_t i = 0; i < B * S; ++i) ids64.data<int64_t>()[i] = (i * 17 + 3) % V;
      const Tensor ids = it == DType::I64 ? ids64 : ids64.cast(DType::I32);
      Tensor past = Tensor::from_i64({0, 7, P - S});  // the last row ends at the table's last position
      Node n = node("shardrt.PositionalEmbedding", "embed_fused");
      std::vector<Tensor> got = cpu::eval_node(n, {&ids, &past, &tok, &pos});
      ASSERT_EQ(got.size(), 1u);
      EXPECT_EQ(got[0].dims(), (Dims{B, S, E}));
      EXPECT_TRUE(same_bytes(got[0], unfused(ids64, past, tok, pos))) << dtype_name(t) << " ids " << dtype_name(it);
    }
}

TEST(PositionalEmbedding, ShapeRuleKeepsSymbolicDims) {
  Graph g;
  Value* ids = g.add_input("ids", DType::I64, {Dim::symbol("batch"), Dim::symbol("seq")});
  Value* past = g.add_input("past", DType::I64, {Dim::symbol("batch")});
  Value* tok = g.add_input("tok", DType::F16, {Dim(10), Dim(8)});
  Value* pos = g.add_input("pos", DType::F16, {Dim(6), Dim(8)});
  Node& n = *g.add_node("shardrt.PositionalEmbedding", "embed", {ids, past, tok, pos}, {"embed_out"});
  infer_node(g, n);
  EXPECT_EQ(n.outputs[0]->dtype, DType::F16);
  EXPECT_EQ(shape_str(n.outputs[0]->shape), "[batch,seq,8]");
}

TEST(PositionalEmbedding, IdOrPositionOutsideItsTableFailsNamingTheNode) {
  Tensor tok = rnd(DType::F32, {10, 4}, 1), pos = rnd(DType::F32, {6, 4}, 2);
  Node n = node("shardrt.PositionalEmbedding", "embed_fused");
  auto message = [&](const Tensor& ids, const Tensor& past) {
    try {
      cpu::eval_node(n, {&ids, &past, &tok, &pos});
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  std::string m = message(Tensor::from_i64({1, 10}).reshaped({1, 2}), Tensor::from_i64({0}));
  EXPECT_NE(m.find("embed_fused"), std::string::npos) << m;
  EXPECT_NE(m.find("token id 10 at [0, 1] is outside the 10 rows of Tokens"), std::string::npos) << m;
  m = message(Tensor::from_i64({1, 2}).reshaped({1, 2}), Tensor::from_i64({5}));
  EXPECT_NE(m.find("position 6 at [0, 1] (PastLens[b] + s) is outside the 6 rows of Positions"), std::string::npos) << m;
  m = message(Tensor::from_i64({-1, 2}).reshaped({1, 2}), Tensor::from_i64({0}));
  EXPECT_NE(m.find("token id -1 at [0, 0]"), std::string::npos) << m;
}
