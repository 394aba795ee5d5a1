"""The Python examples (examples/python) under torchrun with two processes: each checks its
results against PyTorch itself and exits non-zero on a mismatch."""
import os
import sys
from pathlib import Path
import subprocess

import pytest

from pkg_util import REPO, import_shardrt

shardrt = import_shardrt()
TORCHRUN = Path(sys.executable).parent / "torchrun"
TIMEOUT_S = 400  # compiles on both ranks; bounds a stuck launcher only


def _torchrun(script, *args):
    if not TORCHRUN.exists():
        pytest.skip("torchrun is not installed beside this python")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [str(TORCHRUN), "--nproc_per_node", "2", "--master_port", str(29000 + os.getpid() % 1000),
           str(REPO / "examples" / "python" / script), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return p.stdout


def test_data_parallel_gpt2():
    pytest.importorskip("accelerate")
    out = _torchrun("data_parallel_gpt2.py", "--tiny", "--max-length", "12")
    assert out.count("tokens match") == 2 and "[rank 1 of 2]" in out


def test_tensor_parallel_simple_example():
    if shardrt._backend_error is not None:
        pytest.skip(f"the torch.compile backend is unavailable: {shardrt._backend_error}")
    out = _torchrun("tensor_parallel_simple_example.py")
    assert out.count("-> OK") == 2


def test_data_parallel_stable_diffusion(tmp_path):
    pytest.importorskip("accelerate")
    pytest.importorskip("diffusers")
    if shardrt._backend_error is not None:
        pytest.skip(f"the torch.compile backend is unavailable: {shardrt._backend_error}")
    out = _torchrun("data_parallel_stable_diffusion.py", "--tiny", "--out-dir", str(tmp_path))
    # Each rank compares its image with the uncompiled pipeline's and needs >= 1 engine.
    assert out.count("-> OK") == 2, out
    assert (tmp_path / "result_0.png").is_file() and (tmp_path / "result_1.png").is_file()
