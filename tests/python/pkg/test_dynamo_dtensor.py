"""Tensor parallelism through torch.compile: two processes under torchrun (gloo, CPU)
compile modules sharded with parallelize_module; their functional collectives run as
shardrt collectives through Communicator.from_callbacks over torch.distributed. The
worker (dynamo_tp_worker.py) compares each rank's output with the uncompiled sharded
module's."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

HERE = Path(__file__).resolve().parent


def test_tensor_parallel_modules_compile_per_rank(tmp_path):
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed is not available")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "0",
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "localhost:0", str(HERE / "dynamo_tp_worker.py")]
    r = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "OK 0" in out and "OK 1" in out, out[-6000:]
