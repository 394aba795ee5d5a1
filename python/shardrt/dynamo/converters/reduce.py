"""Reductions (axes as input 1, canonical form), softmax, variance, cumulative sums."""
from __future__ import annotations

import torch
import torch.fx

from .context import dtype, norm_axis, rank, shape, static_int
from .registry import converter


def _dims(arg, r):
    if arg is None:
        return []
    if isinstance(arg, int):
        arg = [arg]
    return sorted({norm_axis(int(d), r) for d in arg})


def _reduce(op_type, dims_pos=1, keep_pos=2):
    def fn(ctx, node):
        x = node.args[0]
        r = rank(x)
        a = list(node.args)
        dims = a[dims_pos] if len(a) > dims_pos else node.kwargs.get("dim")
        keep = a[keep_pos] if len(a) > keep_pos else node.kwargs.get("keepdim", False)
        axes = _dims(dims, r)
        out = dtype(node)
        t = ctx.tensor(x, out if op_type not in ("ReduceMax", "ReduceMin") or out != torch.bool else None)
        if op_type in ("ReduceMax", "ReduceMin") and dtype(x) != out:
            t = ctx.cast(ctx.get(x), out)
        if r == 0:
            return ctx.op("Identity", [t])
        axes = axes or list(range(r))  # no dims: every axis, spelled out (unambiguous for any backend)
        return ctx.op(op_type, [t, ctx.i64(axes)], {"keepdims": int(bool(keep))})

    return fn


converter("aten.mean.dim", "aten.mean.default")(_reduce("ReduceMean"))
converter("aten.sum.dim_IntList", "aten.sum.default")(_reduce("ReduceSum"))
converter("aten.amax.default")(_reduce("ReduceMax"))
converter("aten.amin.default")(_reduce("ReduceMin"))
converter("aten.prod.dim_int", "aten.prod.default")(_reduce("ReduceProd"))


@converter("aten.any.dim", "aten.any.dims", "aten.any.default", "aten.all.dim", "aten.all.dims", "aten.all.default")
def _any_all(ctx, node):
    x = node.args[0]
    r = rank(x)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    axes = _dims(dims, r)
    op_type = "ReduceMax" if ".any." in str(node.target) else "ReduceMin"  # on bools: or / and
    t = ctx.tensor(x, torch.bool)
    if r == 0:
        return ctx.op("Identity", [t])
    return ctx.op(op_type, [t, ctx.i64(axes or list(range(r)))], {"keepdims": int(bool(keep))})


@converter("aten.max.dim", "aten.min.dim")
def _max_dim(ctx, node):
    x = node.args[0]
    axis = norm_axis(node.args[1], rank(x))
    keep = int(bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)))
    is_max = str(node.target).startswith("aten.max")
    values = ctx.op("ReduceMax" if is_max else "ReduceMin", [ctx.get(x), ctx.i64([axis])], {"keepdims": keep})
    idx = ctx.op("ArgMax" if is_max else "ArgMin", [ctx.get(x)], {"axis": axis, "keepdims": keep})
    return [values, idx]


@converter("aten.argmax.default", "aten.argmin.default")
def _argmax(ctx, node):
    x = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = int(bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)))
    op_type = "ArgMax" if "argmax" in str(node.target) else "ArgMin"
    t = ctx.get(x)
    if dim is None:  # over the flattened tensor
        t = ctx.op("Reshape", [t, ctx.i64([-1])])
        y = ctx.op(op_type, [t], {"axis": 0, "keepdims": 0})
        return ctx.op("Reshape", [y, ctx.i64([1] * rank(x))]) if keep else y
    return ctx.op(op_type, [t], {"axis": norm_axis(dim, rank(x)), "keepdims": keep})


def _var_axes(node):
    x = node.args[0]
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return _dims(dims, rank(x)) or list(range(rank(x)))


def _var_ok(node):
    if not dtype(node).is_floating_point:
        return "floating-point only"
    xs = shape(node.args[0])
    # the divisor is the reduced element count: the reduced dims must be static
    return all(static_int(xs[a]) is not None for a in _var_axes(node)) or "symbolic size along a reduced axis"


@converter("aten.var.correction", "aten.var.dim", capability=_var_ok)
def _var(ctx, node):
    x = node.args[0]
    r = rank(x)
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    axes = _dims(dims, r) or list(range(r))
    if str(node.target) == "aten.var.dim":
        unbiased = node.args[2] if len(node.args) > 2 else node.kwargs.get("unbiased", True)
        correction = 1 if unbiased else 0
        keep = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
    else:
        correction = node.kwargs.get("correction", 1)
        correction = 1 if correction is None else correction
        keep = node.kwargs.get("keepdim", False)
    n = 1
    for a in axes:
        n *= static_int(shape(x)[a])
    out = dtype(node)
    t = ctx.tensor(x, out)
    mean = ctx.op("ReduceMean", [t, ctx.i64(axes)], {"keepdims": 1})
    d = ctx.op("Sub", [t, mean])
    ss = ctx.op("ReduceSum", [ctx.op("Mul", [d, d]), ctx.i64(axes)], {"keepdims": int(bool(keep))})
    return ctx.op("Div", [ss, ctx.scalar(max(n - correction, 0), out)])


@converter("aten._softmax.default", "aten._log_softmax.default", "aten.softmax.int", "aten.log_softmax.int")
def _softmax(ctx, node):
    x = node.args[0]
    axis = norm_axis(node.args[1], rank(x))
    op_type = "LogSoftmax" if "log_softmax" in str(node.target) else "Softmax"
    if rank(x) == 0:
        return ctx.op("Identity", [ctx.get(x)]) if op_type == "Softmax" else ctx.op("Sub", [ctx.get(x), ctx.get(x)])
    return ctx.op(op_type, [ctx.tensor(x, dtype(node))], {"axis": axis})


@converter("aten.cumsum.default", capability=lambda n: dtype(n) in (torch.float32, torch.float16, torch.bfloat16,
                                                                     torch.float64, torch.int32, torch.int64))
def _cumsum(ctx, node):
    x = node.args[0]
    axis = norm_axis(node.args[1], rank(x))
    return ctx.op("CumSum", [ctx.tensor(x, dtype(node)), ctx.const(torch.tensor(axis, dtype=torch.int64))])
