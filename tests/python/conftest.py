"""pytest configuration of the Python end-to-end tests.

- The `shardrt` binary comes from $SHARDRT_BIN (the test command sets it), else
  <repo>/build/shardrt.
- Tests marked `@pytest.mark.requires("torch", ...)` are skipped, with the import error
  as the reason, where one of those modules cannot be imported.
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(HERE) not in sys.path:  # the helper modules beside this file
    sys.path.insert(0, str(HERE))

from shardrt_harness import Shardrt  # noqa: E402

_import_errors: dict[str, str | None] = {}


def import_error(module: str) -> str | None:
    """None when `module` imports, else why not (cached)."""
    if module not in _import_errors:
        try:
            importlib.import_module(module)
            _import_errors[module] = None
        except Exception as e:  # ImportError, or a broken install raising something else
            _import_errors[module] = f"{type(e).__name__}: {e}"
    return _import_errors[module]


def pytest_configure(config):
    config.addinivalue_line("markers", "requires(*modules): skip unless these Python modules import")


def pytest_collection_modifyitems(config, items):
    for item in items:
        for mark in item.iter_markers(name="requires"):
            for module in mark.args:
                err = import_error(module)
                if err:
                    item.add_marker(pytest.mark.skip(reason=f"'{module}' is not importable ({err})"))
                    break


def shardrt_binary_path() -> Path:
    env = os.environ.get("SHARDRT_BIN")
    return Path(env) if env else REPO / "build" / "shardrt"


@pytest.fixture(scope="session")
def shardrt() -> Shardrt:
    path = shardrt_binary_path()
    if not path.is_file() or not os.access(path, os.X_OK):
        how = "$SHARDRT_BIN" if os.environ.get("SHARDRT_BIN") else "the default (set SHARDRT_BIN to override)"
        pytest.fail(f"no executable shardrt binary at {path} (from {how}); build the shardrt_cli target first",
                    pytrace=False)
    return Shardrt(path)
