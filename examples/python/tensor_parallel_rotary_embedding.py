"""Tensor parallelism on an attention block with rotary embeddings (Torch-TensorRT's
tensor_parallel_rotary_embedding.py, with shardrt as the torch.compile backend).

The block (Llama-style: rotary embedding of q and k in the rotate-half layout, causal
scaled-dot-product attention) is sharded by parallelize_module: the q/k/v projections are
column-wise, so each rank owns whole heads and computes their rotary embedding and
attention locally; the output projection is row-wise, its partial sums all-reduced. The
compiled graph (projections, rotary, attention and the all-reduce) becomes one shardrt
engine per rank; its collective runs through torch.distributed (gloo on the CPU). The
output is checked against the uncompiled sharded module.

    torchrun --nproc_per_node 2 examples/python/tensor_parallel_rotary_embedding.py

(PYTHONPATH=<build>/python, or shardrt installed with `pip install .`.) Heads (8) must be
divisible by the number of processes. Torch-TensorRT's version rotates in complex numbers
(torch.polar / view_as_complex): that form works too, but complex tensors have no shardrt
type, so those few ops would run in PyTorch between two engines.
"""
import time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

import shardrt  # noqa: F401  (registers the "shardrt" torch.compile backend)
import shardrt.dynamo

B, S, H, D = 2, 64, 8, 32  # batch, sequence, heads, head dim
E = H * D


def rope_cos_sin(seq: int, dim: int, theta: float = 10000.0):
    inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ang = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
    emb = torch.cat([ang, ang], dim=-1)  # rotate-half layout: [cos(a), cos(a)] over the two halves
    return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


class RotaryAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq = nn.Linear(E, E, bias=False)
        self.wk = nn.Linear(E, E, bias=False)
        self.wv = nn.Linear(E, E, bias=False)
        self.wo = nn.Linear(E, E, bias=False)
        cos, sin = rope_cos_sin(S, D)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x):
        b, s, _ = x.shape
        # after the column-wise projections each rank holds H / world heads: -1 finds how many
        q = self.wq(x).view(b, s, -1, D).transpose(1, 2)
        k = self.wk(x).view(b, s, -1, D).transpose(1, 2)
        v = self.wv(x).view(b, s, -1, D).transpose(1, 2)
        cos, sin = self.cos[:s], self.sin[:s]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.wo(a.transpose(1, 2).reshape(b, s, -1))


dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
mesh = init_device_mesh("cpu", (world,))

torch.manual_seed(0)  # every rank the same weights and input
model = RotaryAttention().eval()
tp_model = parallelize_module(model, mesh, {"wq": ColwiseParallel(), "wk": ColwiseParallel(),
                                            "wv": ColwiseParallel(), "wo": RowwiseParallel()})
x = torch.randn(B, S, E) * 0.5
with torch.no_grad():
    expected = tp_model(x)

t0 = time.perf_counter()
compiled = torch.compile(tp_model, backend="shardrt", options={"min_block_size": 1})
with torch.no_grad():
    out = compiled(x)  # the first call traces and builds the engine
compile_s = time.perf_counter() - t0
with torch.no_grad():
    t = time.perf_counter()
    for _ in range(10):
        out = compiled(x)
    per_call = (time.perf_counter() - t) / 10

engines = [e for r in shardrt.dynamo.last_reports() for e in r.engines]
in_torch = sorted({op for r in shardrt.dynamo.last_reports() for op in r.torch_ops})
# fp32 projections of 256 terms and attention over 64 keys, the output projection's partial
# sums added across ranks in another order: ~1e-6 relative; 1e-4 catches a wrong shard
err = (out - expected).abs().max().item()
ok = err < 1e-4
print(f"[rank {rank} of {world}] engines {engines}, ops left to PyTorch {in_torch or 'none'}; compile "
      f"{compile_s:.2f} s, {1e3 * per_call:.2f} ms/call; max |diff| vs PyTorch {err:.3g} -> "
      f"{'OK' if ok else 'MISMATCH'}")
dist.destroy_process_group()
raise SystemExit(0 if ok else 1)
