"""Two processes: a tensor-parallel engine whose collectives go through
Communicator.from_callbacks (torch.distributed/gloo under torchrun) or Communicator.from_mpi
(mpirun), compared with the single-process engine and with torch."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pkg_util import assert_close, import_shardrt

shardrt = import_shardrt()
HERE = Path(__file__).resolve().parent
WORKER = HERE / "tp_worker.py"
# A collective that never completes ends the job after gloo's / shardrt's timeouts; this
# bound only catches a stuck launcher.
TIMEOUT_S = 300


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # the shardrt this test imported
    return env


def _check(out: Path, world: int, backend: str):
    for r in range(world):
        d = torch.load(out / f"rank{r}.pt")
        assert d["world"] == world and d["backend"] == backend
        # Partial sums over 32 of 64 terms added across ranks vs one 64-term sum: fp32
        # reassociation, ~1e-7 relative on values of size ~1.
        assert_close(d["y_plan"], d["y_single"], atol=1e-5, rtol=1e-5, what=f"rank {r} plan engine")
        assert_close(d["y_manual"], d["y_single"], atol=1e-5, rtol=1e-5, what=f"rank {r} hand-sharded engine")
        assert torch.equal(d["h_gathered"], torch.relu(d["h_gathered"]))
        # the gathered hidden layer: each rank's exact relu(x W^T + b) slice (fp32 vs torch, 16 terms)
        assert_close(d["h_gathered"], d["h_ref"], atol=1e-5, rtol=1e-5, what=f"rank {r} all-gather")
        assert_close(d["y_single"], d["y_ref"], atol=1e-5, rtol=1e-5, what="single engine vs torch")


def test_torchrun_two_processes_gloo(tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    cmd = [str(torchrun), "--nproc_per_node", "2", "--master_port", str(29500 + os.getpid() % 1000), str(WORKER), "torch",
           str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=HERE)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    _check(tmp_path, 2, "torch.distributed")


@pytest.mark.skipif(shutil.which("mpirun") is None, reason="mpirun is not installed")
def test_mpirun_two_processes(tmp_path):
    if not shardrt._C.with_mpi:
        pytest.skip("shardrt was built without MPI")
    cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-n", "2", sys.executable, str(WORKER), "mpi",
           str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=_env(), cwd=HERE)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    _check(tmp_path, 2, "mpi")
