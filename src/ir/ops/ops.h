// Registration of op schemas, one function per op family (each in its own file here).
#pragma once
#include <cstddef>
#include <string>

namespace shardrt {

struct Graph;

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

// The KV cache bytes that the graph's shardrt.CachedAttention nodes hold per execution
// context (2 caches of [max_batch, Hkv, max_seq, D] in QKV's dtype per node), and a line
// describing them for inspect ("" when there are none).
size_t cached_attention_state_bytes(const Graph& g);
std::string cached_attention_state_summary(const Graph& g);

}  // namespace shardrt
