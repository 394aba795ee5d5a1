"""Where the dynamo backend gets the native module from.

Normally `shardrt._C`; tests may install a stand-in with the same surface (Network,
BuildConfig, build_engine, ExecutionContext, Communicator) through `use()`.
"""
from __future__ import annotations

_override = None


def use(module) -> None:
    """Routes every later conversion/build/run to `module` (None restores `shardrt._C`)."""
    global _override
    _override = module


def native():
    if _override is not None:
        return _override
    from shardrt import _C  # imported late: the converters do not need it to load

    return _C
