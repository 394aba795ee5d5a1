"""The converter registry: aten op overload name → function building Network ops.

A converter is `fn(ctx, node)` returning the ITensor (or list of ITensors, one per output)
that stands for `node`'s result. Its optional `capability(node)` says whether it can
convert this particular node (dtypes, argument values): True, or False / a string saying
why not. Nodes refused stay in PyTorch.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
import torch.fx

Capability = Callable[[torch.fx.Node], Union[bool, str]]


@dataclass
class Converter:
    target: str
    fn: Callable
    capability: Optional[Capability] = None


_REGISTRY: dict[str, Converter] = {}


def converter(*targets: str, capability: Optional[Capability] = None):
    """Registers the decorated function for each op overload name, e.g. "aten.addmm.default".

    A later registration of the same name replaces the earlier one (so users can override)."""

    def deco(fn):
        for t in targets:
            _REGISTRY[t] = Converter(t, fn, capability)
        return fn

    return deco


def target_name(node: torch.fx.Node) -> Optional[str]:
    """"aten.addmm.default" for an op overload call, "getitem" for tuple indexing,
    "operator.mul" for Python arithmetic (on sizes), else the function's name or None."""
    if node.op != "call_function":
        return None
    t = node.target
    if t is operator.getitem:
        return "getitem"
    if isinstance(t, (torch._ops.OpOverload, torch._ops.HigherOrderOperator)):
        return str(t)
    if getattr(t, "__module__", None) == "_operator":  # size arithmetic: operator.mul, ...
        return f"operator.{t.__name__}"
    return getattr(t, "__name__", None)


def lookup(node_or_name) -> Optional[Converter]:
    name = node_or_name if isinstance(node_or_name, str) else target_name(node_or_name)
    return _REGISTRY.get(name) if name else None


def registered() -> list[str]:
    """Every op overload name that has a converter, sorted."""
    return sorted(_REGISTRY)
