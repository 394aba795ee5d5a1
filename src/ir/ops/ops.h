// Registration of op schemas, one function per op family (each in its own file here).
#pragma once
#include <cstddef>
#include <string>

#include "ir/graph.h"

namespace shardrt {

struct InferCtx;

void register_all_op_schemas();  // ops/all_ops.cpp calls every family below

void register_elementwise_schemas();  // unary, binary (broadcasting), Where, Cast, Clip, ...
void register_reduce_schemas();       // Reduce*, ArgMax/Min, Softmax, CumSum, TopK
void register_shape_schemas();        // Reshape, Transpose, Concat, Slice, Gather, Shape, ...
void register_nn_schemas();           // MatMul, Gemm, Conv, pools, norms, Resize, Einsum
void register_fused_linear_schemas();     // shardrt.Linear, activations (Gelu/Silu/SwiGLU)
void register_fused_attention_schemas();  // shardrt.Attention, norms, rotary
void register_collective_schemas();       // shardrt.AllReduce/AllGather/ReduceScatter, Start forms, Wait
void register_fused_norm_schemas();       // shardrt.AddLayerNorm / shardrt.AddRMSNorm (residual + norm)
void register_cached_attention_schemas(); // shardrt.CachedAttention (stateful: KV cache per context)

// shardrt.Linear's shape rule over inputs X, W, [B] at those positions of c's node (trans_b and
// activation read from the node): checks dtypes, K and B, returns Y's shape.
Shape linear_output_shape(const InferCtx& c, size_t x, size_t w, size_t b);
// The same with X given by its shape and dtype (an op whose X is an intermediate of its own).
Shape linear_output_shape(const InferCtx& c, const Shape& x, DType xt, size_t w, size_t b);
// shardrt.Linear's trans_b / activation checks for a node of any op with those attributes
// ("" when fine; the message starts with the node's op).
std::string linear_attr_error(const Node& n);

// shardrt.PositionalEmbedding's check of row (b, s): its token id against Tokens' V rows and
// its position PastLens[b] + s against Positions' P rows ("" when both are inside; the
// message names the row and the value). The CPU kernel and the CUDA kernel's host check.
std::string positional_embedding_row_error(int64_t b, int64_t s, int64_t id, int64_t p, int64_t V, int64_t P);

// The KV cache bytes that the graph's shardrt.CachedAttention nodes hold per execution
// context (2 caches of [max_batch, Hkv, max_seq, D] in QKV's dtype per node), and a line
// describing them for inspect ("" when there are none).
size_t cached_attention_state_bytes(const Graph& g);
std::string cached_attention_state_summary(const Graph& g);

}  // namespace shardrt
