#include <gtest/gtest.h>

#include <cmath>

#include "ir/graph.h"
#include "ir/op_schema.h"

using namespace shardrt;

TEST(DType, HalfRoundTrip) {
  // Values exactly representable in fp16 must round-trip bit-exactly.
  for (float f : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.9604645e-08f})
    EXPECT_EQ(half_to_float(float_to_half(f)), f) << f;
  EXPECT_TRUE(std::isinf(half_to_float(float_to_half(1e6f))));
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties go to even (1.0).
  EXPECT_EQ(half_to_float(float_to_half(1.0f + 1.0f / 2048)), 1.0f);
}

TEST(DType, BF16RoundTrip) {
  for (float f : {0.0f, 1.0f, -3.0f, 256.0f}) EXPECT_EQ(bf16_to_float(float_to_bf16(f)), f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(NAN))));
}

TEST(Graph, ReplaceUsesKeepsOutputName) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2)});
  Node* a = g.add_node("Relu", "a", {x}, {"y"});
  Node* b = g.add_node("Relu", "b", {a->outputs[0]}, {"z"});
  g.outputs = {b->outputs[0]};
  g.replace_all_uses(b->outputs[0], a->outputs[0]);
  g.remove_node(b);
  g.compact();
  ASSERT_EQ(g.outputs.size(), 1u);
  EXPECT_EQ(g.outputs[0]->name, "z");
  EXPECT_EQ(g.outputs[0]->producer, a);
}

TEST(Graph, SortDetectsCycle) {
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim(2)});
  Node* a = g.add_node("Add", "a", {x, x}, {"y"});
  Node* b = g.add_node("Add", "b", {a->outputs[0], x}, {"z"});
  g.set_input(a, 1, b->outputs[0]);
  EXPECT_THROW(g.sort(), GraphError);
}
