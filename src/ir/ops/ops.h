// Registration of op schemas, one function per op family (each in its own file here).
#pragma once

namespace shardrt {

void register_all_op_schemas();  // ops/all_ops.cpp calls every family below

void register_elementwise_schemas();  // unary, binary (broadcasting), Where, Cast, Clip, ...
void register_reduce_schemas();       // Reduce*, ArgMax/Min, Softmax, CumSum, TopK
void register_shape_schemas();        // Reshape, Transpose, Concat, Slice, Gather, Shape, ...
void register_nn_schemas();           // MatMul, Gemm, Conv, pools, norms, Resize, Einsum
void register_fused_linear_schemas();     // shardrt.Linear, activations (Gelu/Silu/SwiGLU)
void register_fused_attention_schemas();  // shardrt.Attention, norms, rotary
void register_collective_schemas();       // shardrt.AllReduce/AllGather/ReduceScatter, Start forms, Wait
void register_fused_norm_schemas();       // shardrt.AddLayerNorm / shardrt.AddRMSNorm (residual + norm)

}  // namespace shardrt
