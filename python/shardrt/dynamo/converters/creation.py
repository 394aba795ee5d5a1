"""Tensor factories. With no tensor inputs and a static shape the result is a constant:
it is computed here by PyTorch itself and stored as a weight. *_like factories become an
Expand of a scalar over the input's runtime shape (so they also work with dynamic dims)."""
from __future__ import annotations

import torch
import torch.fx
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .context import dtype, static_shape
from .registry import converter

_FACTORIES = [
    "aten.arange.default", "aten.arange.start", "aten.arange.start_step", "aten.full.default",
    "aten.zeros.default", "aten.ones.default", "aten.empty.memory_format", "aten.scalar_tensor.default",
    "prims.iota.default", "aten.empty_strided.default", "aten.eye.default", "aten.linspace.default",
]


def _no_tensor_args(node) -> bool:
    flat = torch.fx.node.map_arg((node.args, node.kwargs), lambda n: n)
    found = []
    torch.fx.node.map_arg(flat, found.append)
    return not found


def _hashable_static(node):
    if not _no_tensor_args(node):
        return "tensor arguments"
    if static_shape(node) is None:
        return "dynamic shape"
    ok = []

    def visit(a):
        if isinstance(a, torch.SymInt) or isinstance(a, torch.SymFloat):
            ok.append(False)
        elif isinstance(a, (list, tuple)):
            for x in a:
                visit(x)

    visit(list(node.args) + list(node.kwargs.values()))
    return all(ok) or "symbolic arguments"


def _cpu_kwargs(kw):
    kw = dict(kw)
    if "device" in kw:
        kw["device"] = torch.device("cpu")
    if "pin_memory" in kw:
        kw["pin_memory"] = False
    return kw


@converter(*_FACTORIES, capability=_hashable_static)
def _factory(ctx, node):
    with unset_fake_temporarily():
        value = node.target(*node.args, **_cpu_kwargs(node.kwargs))
    if str(node.target) in ("aten.empty.memory_format", "aten.empty_strided.default"):
        value = torch.zeros_like(value)  # any content is valid; zeros keep engines reproducible
    return ctx.const(value)


def _like_value(node):
    t = str(node.target)
    if t.startswith("aten.zeros_like") or t.startswith("aten.empty_like") or t.startswith("aten.new_zeros") \
            or t.startswith("aten.new_empty"):
        return 0
    if t.startswith("aten.ones_like") or t.startswith("aten.new_ones"):
        return 1
    return node.args[1] if t.startswith("aten.full_like") else node.args[2]


def _like_ok(node):
    v = _like_value(node)
    return not isinstance(v, (torch.SymInt, torch.SymFloat, torch.fx.Node)) or "symbolic fill value"


@converter("aten.full_like.default", "aten.zeros_like.default", "aten.ones_like.default", "aten.empty_like.default",
           capability=_like_ok)
def _like(ctx, node):
    x = node.args[0]
    s = ctx.scalar(_like_value(node), dtype(node))
    return ctx.op("Expand", [s, ctx.op("Shape", [ctx.get(x)])])


def _new_ok(node):
    if static_shape(node) is None:
        return "dynamic shape"
    return _like_ok(node)


@converter("aten.new_zeros.default", "aten.new_ones.default", "aten.new_empty.default", "aten.new_full.default",
           capability=_new_ok)
def _new(ctx, node):
    return ctx.const(torch.full(static_shape(node), _like_value(node), dtype=dtype(node)))
