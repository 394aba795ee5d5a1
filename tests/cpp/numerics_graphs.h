// Graphs and inputs shared by the CPU and CUDA --check-numerics tests.
#pragma once
#include <string>

#include "ir/graph.h"
#include "shardrt/engine.h"

// y = relu_last(add_after(sqrt_node(mul_scale(x, 2)), 1)), x fp32 [N, 4] with N in 1..8,
// built for `device`: a negative x makes the Sqrt (the second node) produce NaN, which the
// later nodes carry.
inline shardrt::Engine sqrt_chain(const std::string& device) {
  using namespace shardrt;
  Graph g;
  Value* x = g.add_input("x", DType::F32, {Dim::symbol("N"), 4});
  Value* two = g.add_constant("two", Tensor::from_f32({}, {2.0f}));
  Value* one = g.add_constant("one", Tensor::from_f32({}, {1.0f}));
  Value* a = g.add_node("Mul", "mul_scale", {x, two}, {"a"})->outputs[0];
  Value* b = g.add_node("Sqrt", "sqrt_node", {a}, {"b"})->outputs[0];
  Value* c = g.add_node("Add", "add_after", {b, one}, {"c"})->outputs[0];
  g.outputs = {g.add_node("Relu", "relu_last", {c}, {"y"})->outputs[0]};
  BuildConfig cfg;
  cfg.shapes["x"] = {{1, 4}, {2, 4}, {8, 4}};
  cfg.device = device;
  return build_engine_from_graph(std::move(g), cfg);
}

// Finite, positive fp32 values (0.25, 1.25, ...; cycling below 100).
inline shardrt::Tensor positive(shardrt::Dims d) {
  shardrt::Tensor t(shardrt::DType::F32, d);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = 0.25f + float(i % 100);
  return t;
}
