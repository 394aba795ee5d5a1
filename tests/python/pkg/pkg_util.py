"""Helpers of the package tests (tests/python/pkg): importing shardrt from a build tree and
comparing with PyTorch."""
from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def import_shardrt():
    """The shardrt package: from PYTHONPATH (scripts/test.sh sets it), else from
    $SHARDRT_PY_BUILD/python or <repo>/build/python."""
    try:
        import shardrt  # noqa: F401
        return shardrt
    except ImportError:
        pass
    for d in (os.environ.get("SHARDRT_PY_BUILD"), str(REPO / "build")):
        if d and (Path(d) / "python" / "shardrt").is_dir():
            sys.path.insert(0, str(Path(d) / "python"))
            break
    import shardrt
    return shardrt


def max_err(a, b) -> float:
    import torch
    a = torch.as_tensor(a).double()
    b = torch.as_tensor(b).double()
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a - b).abs().max()) if a.numel() else 0.0


def assert_close(got, want, atol: float, rtol: float = 0.0, what: str = ""):
    import torch
    got = torch.as_tensor(got).double()
    want = torch.as_tensor(want).double()
    assert got.shape == want.shape, f"{what}: shapes differ: {tuple(got.shape)} vs {tuple(want.shape)}"
    bad = (got - want).abs() > atol + rtol * want.abs()
    assert not bool(bad.any()), f"{what}: max |diff| {max_err(got, want):.3g} > atol {atol} + rtol {rtol}"
