"""One rank of the tensor-parallel dynamo test (launched by torchrun from
test_dynamo_dtensor.py): a small MLP and an attention-free transformer MLP block sharded
with parallelize_module, compiled with backend="shardrt", must give the outputs of the
uncompiled sharded module. Prints "OK <rank>" on success."""
from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor import Replicate, Shard
from torch.distributed.tensor.parallel import (ColwiseParallel, PrepareModuleInput, RowwiseParallel,
                                               SequenceParallel, parallelize_module)

from dynamo_support import setup

dyn, REAL = setup()


class MLP(torch.nn.Module):
    def __init__(self, d=16, h=32):
        super().__init__()
        self.up = torch.nn.Linear(d, h)
        self.down = torch.nn.Linear(h, d)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


class SPBlock(torch.nn.Module):
    """LayerNorm under SequenceParallel, then a Colwise/Rowwise MLP (Megatron-style SP)."""

    def __init__(self, d=16, h=32):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d)
        self.mlp = MLP(d, h)

    def forward(self, x):
        return self.mlp(self.norm(x))


def compare(name, model, x, plan, mesh, atol):
    torch.manual_seed(0)
    sharded = parallelize_module(model, mesh, plan).eval()
    with torch.no_grad():
        ref = sharded(x)
        torch._dynamo.reset()
        dyn.reset_reports()
        got = torch.compile(sharded, backend="shardrt", options={"min_block_size": 1})(x)
    ref = ref.full_tensor() if hasattr(ref, "full_tensor") else ref
    got = got.full_tensor() if hasattr(got, "full_tensor") else got
    torch.testing.assert_close(got, ref, atol=atol, rtol=1e-5)
    reports = dyn.last_reports()
    converted = [op for r in reports for op in r.torch_ops if op.startswith("_c10d_functional")]
    assert sum(len(r.engines) for r in reports) >= 1, reports
    assert not converted, f"{name}: collectives left to PyTorch: {reports}"
    print(f"{name}: engines {[r.engines for r in reports]}", flush=True)


def main():
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    torch.manual_seed(1234)  # the same input and weights on every rank
    x = torch.randn(4, 16)
    torch.manual_seed(1)
    # fp32 GEMMs of 16/32 terms, summed across ranks in a different order than one GEMM would:
    # rounding of a few ulp on O(1) values
    compare("mlp", MLP(), x, {"up": ColwiseParallel(), "down": RowwiseParallel()}, mesh, atol=1e-5)
    torch.manual_seed(2)
    xs = torch.randn(2, 8, 16)
    plan = {
        "norm": SequenceParallel(),
        "mlp": PrepareModuleInput(input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),)),
        "mlp.up": ColwiseParallel(),
        "mlp.down": RowwiseParallel(output_layouts=Shard(1)),
    }
    compare("sequence-parallel block", SPBlock(), xs, plan, mesh, atol=1e-5)
    dist.barrier()
    dist.destroy_process_group()
    print(f"OK {rank}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
