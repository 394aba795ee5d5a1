"""Size arithmetic (dynamic shapes): nodes whose value is a SymInt become 0-d int64
tensors computed from the inputs' shapes, so ops that take sizes (view, expand, slice,
arange, full, ...) get them at run time.

Such nodes come from aten.sym_size (a tensor's dim) and Python arithmetic on sizes that FX
records as operator.add/mul/floordiv... calls. A SymInt that enters a block from outside
(a graph input, or arithmetic left in PyTorch) is rebuilt in the block from its expression
(partition.py)."""
from __future__ import annotations

import torch

from .context import size_arg_ok, val
from .registry import converter


def _sym_int_ok(node):
    if not isinstance(val(node), torch.SymInt):
        return "float or bool size arithmetic"
    return all(size_arg_ok(a) for a in node.args) or "operands that are not ints or SymInts"


@converter("aten.sym_size.int", capability=lambda n: isinstance(val(n), torch.SymInt) or "not an int size")
def _sym_size(ctx, node):
    x, dim = node.args[:2]
    idx = ctx.const(torch.tensor(dim, dtype=torch.int64))  # 0-d index: Gather gives a 0-d size
    return ctx.op("Gather", [ctx.op("Shape", [ctx.get(x)]), idx], {"axis": 0})


@converter("aten.sym_numel.default", capability=lambda n: isinstance(val(n), torch.SymInt) or "not an int size")
def _sym_numel(ctx, node):
    return ctx.op("ReduceProd", [ctx.op("Shape", [ctx.get(node.args[0])]), ctx.i64([0])], {"keepdims": 0})


def _binary(op_type, attrs=None):
    def fn(ctx, node):
        a, b = node.args[:2]
        return ctx.op(op_type, [ctx.sym(a), ctx.sym(b)], attrs or {})

    return fn


converter("operator.add", capability=_sym_int_ok)(_binary("Add"))
converter("operator.sub", capability=_sym_int_ok)(_binary("Sub"))
converter("operator.mul", capability=_sym_int_ok)(_binary("Mul"))
converter("sym_max", capability=_sym_int_ok)(_binary("Max"))
converter("sym_min", capability=_sym_int_ok)(_binary("Min"))
# Python's // and % round toward -inf and take the divisor's sign: Mod with fmod=0 does; the
# quotient is (a - a % b) / b, exact, so truncating Div gives floor division
converter("operator.mod", capability=_sym_int_ok)(_binary("Mod", {"fmod": 0}))


@converter("operator.floordiv", capability=_sym_int_ok)
def _floordiv(ctx, node):
    a, b = ctx.sym(node.args[0]), ctx.sym(node.args[1])
    m = ctx.op("Mod", [a, b], {"fmod": 0})
    return ctx.op("Div", [ctx.op("Sub", [a, m]), b])


@converter("operator.neg", capability=_sym_int_ok)
def _neg(ctx, node):
    return ctx.op("Neg", [ctx.sym(node.args[0])])
