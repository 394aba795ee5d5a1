"""Shared set-up of the dynamo backend tests: the real `shardrt._C` when it imports, else
the ONNX-reference stand-in (dynamo_fake_c), so the converters are checked either way."""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]


def _ensure_package_path():
    try:
        import shardrt  # noqa: F401
        return
    except ImportError:
        pass
    sys.path.insert(0, str(REPO / "python"))


def setup():
    """Imports shardrt.dynamo; returns (dynamo module, whether the real engine runs)."""
    _ensure_package_path()
    real = os.environ.get("SHARDRT_DYNAMO_FAKE") != "1"
    if real:
        try:
            importlib.import_module("shardrt._C")
        except ImportError:
            real = False
    if not real:
        if str(HERE) not in sys.path:
            sys.path.insert(0, str(HERE))
        import dynamo_fake_c

        sys.modules.setdefault("shardrt._C", dynamo_fake_c)
    import shardrt.dynamo as dyn
    from shardrt.dynamo import _binding

    if not real:
        _binding.use(sys.modules["shardrt._C"])
    return dyn, real
