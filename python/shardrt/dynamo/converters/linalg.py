"""Matrix products. A torch.nn.Linear traces as addmm/mm with a transposed weight; that
pattern becomes shardrt.Linear with trans_b=1 so the weight is read as stored."""
from __future__ import annotations

import torch
import torch.fx

from .context import dtype, rank, shape, static_int
from .registry import converter

_FLOAT = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _same_dtype(node):
    ts = [a for a in node.args if isinstance(a, torch.fx.Node)]
    return len({dtype(t) for t in ts}) == 1 or "operands of one dtype only"


def _transposed_weight(b):
    """W when `b` is W.t() / W.permute(1, 0) of a 2-D W, else None."""
    if not isinstance(b, torch.fx.Node) or b.op != "call_function":
        return None
    t = str(b.target)
    if t == "aten.t.default" and rank(b.args[0]) == 2:
        return b.args[0]
    if t == "aten.permute.default" and list(b.args[1]) in ([1, 0], [-1, -2], [1, -2], [-1, 0]):
        return b.args[0]
    if t == "aten.transpose.int" and rank(b.args[0]) == 2:
        return b.args[0]
    return None


@converter("aten.mm.default", "aten.bmm.default", "aten.matmul.default", capability=_same_dtype)
def _mm(ctx, node):
    a, b = node.args[:2]
    w = _transposed_weight(b) if str(node.target) == "aten.mm.default" and dtype(node) in _FLOAT else None
    if w is not None:
        return ctx.op("shardrt.Linear", [ctx.get(a), ctx.get(w)], {"trans_b": 1, "activation": "none"})
    return ctx.op("MatMul", [ctx.get(a), ctx.get(b)])


def _addmm_ok(node):
    if not all(isinstance(a, torch.fx.Node) for a in node.args[:3]):
        return "tensor operands only"
    return _same_dtype(node)


@converter("aten.addmm.default", capability=_addmm_ok)
def _addmm(ctx, node):
    bias, a, b = node.args[:3]
    beta = node.kwargs.get("beta", 1)
    alpha = node.kwargs.get("alpha", 1)
    out = dtype(node)
    w = _transposed_weight(b)
    n = shape(node)[-1]
    if w is not None and beta == 1 and alpha == 1 and out in _FLOAT and rank(bias) == 1 \
            and static_int(shape(bias)[0]) is not None and static_int(shape(bias)[0]) == static_int(n):
        return ctx.op("shardrt.Linear", [ctx.get(a), ctx.get(w), ctx.get(bias)], {"trans_b": 1, "activation": "none"})
    y = ctx.op("MatMul", [ctx.get(a), ctx.get(b)])
    if alpha != 1:
        y = ctx.op("Mul", [y, ctx.scalar(alpha, out)])
    c = ctx.get(bias)
    if beta != 1:
        c = ctx.op("Mul", [c, ctx.scalar(beta, out)])
    return ctx.op("Add", [y, c])


@converter("aten.linear.default", capability=_same_dtype)
def _linear(ctx, node):
    x, w = node.args[:2]
    b = node.args[2] if len(node.args) > 2 else None
    ins = [ctx.get(x), ctx.get(w)] + ([ctx.get(b)] if b is not None else [])
    return ctx.op("shardrt.Linear", ins, {"trans_b": 1, "activation": "none"})
