"""Tensor factories. With no tensor inputs and a static shape the result is a constant:
it is computed here by PyTorch itself and stored as a weight. With symbolic sizes (dynamic
shapes) arange becomes Range and full/zeros/ones/empty/new_* an Expand of a scalar over
the computed shape. *_like factories become an Expand of a scalar over the input's runtime
shape (so they also work with dynamic dims)."""
from __future__ import annotations

import torch
import torch.fx
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .context import dtype, is_sym_node, size_arg_ok, static_shape
from .registry import converter

_FACTORIES = [
    "aten.arange.default", "aten.arange.start", "aten.arange.start_step", "aten.full.default",
    "aten.zeros.default", "aten.ones.default", "aten.empty.memory_format", "aten.scalar_tensor.default",
    "prims.iota.default", "aten.empty_strided.default", "aten.eye.default", "aten.linspace.default",
]


def _no_tensor_args(node, allow_sizes=False) -> bool:
    found = []
    torch.fx.node.map_arg((node.args, node.kwargs), found.append)
    return not [n for n in found if not (allow_sizes and is_sym_node(n))]


_SYMBOLIC = {  # factories that have a form with symbolic sizes: where their size list is
    "aten.full.default": 0, "aten.zeros.default": 0, "aten.ones.default": 0, "aten.empty.memory_format": 0,
    "aten.empty_strided.default": 0,
}
_ARANGE = ("aten.arange.default", "aten.arange.start", "aten.arange.start_step")


def _symbolic_ok(node):
    name = str(node.target)
    if not _no_tensor_args(node, allow_sizes=True):
        return "tensor arguments"
    if name in _ARANGE:
        return all(size_arg_ok(a) for a in node.args) or "non-integer bounds"
    if name == "aten.scalar_tensor.default":
        return size_arg_ok(node.args[0]) or "not an int or SymInt"
    if name == "aten.full.default" and isinstance(node.args[1], torch.fx.Node):
        return "symbolic fill value"
    if name in _SYMBOLIC:
        return all(size_arg_ok(a) for a in node.args[_SYMBOLIC[name]]) or "sizes that are not ints or SymInts"
    return "dynamic shape"


def _hashable_static(node):
    if not _no_tensor_args(node) or static_shape(node) is None:
        return _symbolic_ok(node)
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
    if not _no_tensor_args(node) or static_shape(node) is None:
        return _symbolic_factory(ctx, node)
    with unset_fake_temporarily():
        value = node.target(*node.args, **_cpu_kwargs(node.kwargs))
    if str(node.target) in ("aten.empty.memory_format", "aten.empty_strided.default"):
        value = torch.zeros_like(value)  # any content is valid; zeros keep engines reproducible
    return ctx.const(value)


def _fill(node) -> float:
    name = str(node.target)
    if name == "aten.full.default":
        return node.args[1]
    return 1 if name == "aten.ones.default" else 0  # empty: any content is valid, zeros reproducible


def _symbolic_factory(ctx, node):
    name = str(node.target)
    out = dtype(node)
    if name in _ARANGE:
        a = list(node.args)
        start, end, step = (0, a[0], 1) if len(a) == 1 else (a[0], a[1], a[2] if len(a) > 2 else 1)
        # Range on 0-d operands of the output type (sizes are int64; a float arange casts them)
        ops = [ctx.tensor(v, out) if is_sym_node(v) else ctx.scalar(v, out) for v in (start, end, step)]
        return ctx.op("Range", ops)
    if name == "aten.scalar_tensor.default":  # torch.tensor(x.shape[0]): the size, in the output type
        return ctx.tensor(node.args[0], out)
    sizes = node.args[_SYMBOLIC[name]]
    return ctx.op("Expand", [ctx.scalar(_fill(node), out), ctx.shape_tensor(sizes)])


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
    if static_shape(node) is None and not all(size_arg_ok(a) for a in node.args[1]):
        return "sizes that are not ints or SymInts"
    return _like_ok(node)


@converter("aten.new_zeros.default", "aten.new_ones.default", "aten.new_empty.default", "aten.new_full.default",
           capability=_new_ok)
def _new(ctx, node):
    s = static_shape(node)
    if s is not None:
        return ctx.const(torch.full(s, _like_value(node), dtype=dtype(node)))
    return ctx.op("Expand", [ctx.scalar(_like_value(node), dtype(node)), ctx.shape_tensor(node.args[1])])
