"""Tensor parallelism on a toy MLP: Torch-TensorRT's tensor_parallel_simple_example.py with
shardrt as the torch.compile backend.

The model (10 -> 3200 -> 1600 -> 500 -> 100) is sharded by PyTorch's parallelize_module
(ColwiseParallel / RowwiseParallel on a 1-D device mesh), then compiled with
use_distributed_mode_trace=True: the DTensor graph, collectives included, becomes a shardrt
engine per rank whose collectives run through torch.distributed (gloo on CPU). The output
is checked against the PyTorch tensor-parallel module; compile time and time per call are
printed.

    torchrun --nproc_per_node 2 examples/python/tensor_parallel_simple_example.py

(PYTHONPATH=<build>/python, or shardrt installed with `pip install .`.)
"""
import os
import time

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed._tensor import Shard
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

import shardrt  # noqa: F401  (registers the "shardrt" torch.compile backend)


class ToyModel(nn.Module):
    """MLP based model"""

    def __init__(self):
        super(ToyModel, self).__init__()
        self.in_proj = nn.Linear(10, 3200)
        self.relu = nn.ReLU()
        self.out_proj = nn.Linear(3200, 1600)
        self.in_proj2 = nn.Linear(1600, 500)
        self.out_proj2 = nn.Linear(500, 100)

    def forward(self, x):
        x = self.out_proj(self.relu(self.in_proj(x)))
        x = self.relu(x)
        x = self.out_proj2(self.relu(self.in_proj2(x)))
        return x


device_type = "cuda" if torch.cuda.is_available() and shardrt._C.with_cuda else "cpu"
dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
rank, world = dist.get_rank(), dist.get_world_size()
device_mesh = init_device_mesh(device_type=device_type, mesh_shape=(world,))

torch.manual_seed(0)  # every rank the same weights
tp_model = ToyModel().to(device_type)
tp_model = parallelize_module(
    module=tp_model,
    device_mesh=device_mesh,
    parallelize_plan={
        "in_proj": ColwiseParallel(input_layouts=Shard(0)),
        "out_proj": RowwiseParallel(output_layouts=Shard(0)),
        "in_proj2": ColwiseParallel(input_layouts=Shard(0)),
        "out_proj2": RowwiseParallel(output_layouts=Shard(0)),
    },
)
torch.manual_seed(0)
inp = torch.rand(20, 10, device=device_type)
with torch.no_grad():
    python_result = tp_model(inp)

t0 = time.perf_counter()
trt_model = torch.compile(
    tp_model,
    backend="shardrt",
    options={
        "truncate_long_and_double": True,
        "use_python_runtime": True,
        "min_block_size": 1,
        "use_distributed_mode_trace": True,
    },
    dynamic=None,
)
with torch.no_grad():
    out = trt_model(inp)  # the first call compiles
compile_s = time.perf_counter() - t0
with torch.no_grad():
    t = time.perf_counter()
    n = 20
    for _ in range(n):
        out = trt_model(inp)
    per_call = (time.perf_counter() - t) / n
    t = time.perf_counter()
    for _ in range(n):
        tp_model(inp)
    eager_call = (time.perf_counter() - t) / n

# fp32 partial sums of up to 3200 terms reassociated across ranks: ~1e-6 relative; 1e-3
# catches any wrong shard (errors of order 1).
err = (out - python_result).abs().max().item()
ok = err < 1e-3
print(f"[rank {rank} of {world}] compile {compile_s:.2f} s; {1e3 * per_call:.2f} ms/call with shardrt, "
      f"{1e3 * eager_call:.2f} ms/call in PyTorch; max |diff| vs PyTorch {err:.3g} -> {'OK' if ok else 'MISMATCH'}")
dist.destroy_process_group()
raise SystemExit(0 if ok else 1)
