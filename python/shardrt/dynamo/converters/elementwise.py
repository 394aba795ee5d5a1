"""Elementwise converters: arithmetic (with PyTorch's type promotion made explicit by
Casts), comparisons, logic, activations, casts and copies."""
from __future__ import annotations

import numbers

import torch
import torch.fx

from .context import dtype, val
from .registry import converter


def _is_num(a) -> bool:
    return isinstance(a, (numbers.Number, bool)) and not isinstance(a, torch.SymInt)


def _tensor_or_num(node: torch.fx.Node, n_args: int):
    return all(isinstance(a, torch.fx.Node) or _is_num(a) for a in node.args[:n_args])


def _binary_ok(node):
    return _tensor_or_num(node, 2) or "tensor or number operands only"


def _common_dtype(args) -> torch.dtype:
    """PyTorch's result type of two operands (0-d tensors rank below dimensioned ones)."""
    items = []
    for a in args:
        if isinstance(a, torch.fx.Node) and isinstance(val(a), torch.SymInt):
            items.append(1)  # a size: a Python int
        elif isinstance(a, torch.fx.Node):
            v = val(a)
            items.append(torch.empty((), dtype=v.dtype) if v.dim() == 0 else torch.empty((1,), dtype=v.dtype))
        else:
            items.append(a)
    return torch.result_type(items[0], items[1])


def _arith(op_type):
    def fn(ctx, node):
        out = dtype(node)
        a = ctx.tensor(node.args[0], out)
        b = ctx.tensor(node.args[1], out)
        alpha = node.kwargs.get("alpha", 1)
        if alpha != 1:
            b = ctx.op("Mul", [b, ctx.scalar(alpha, out)])
        return ctx.op(op_type, [a, b])

    return fn


converter("aten.add.Tensor", "aten.add.Scalar", capability=_binary_ok)(_arith("Add"))
converter("aten.sub.Tensor", "aten.sub.Scalar", capability=_binary_ok)(_arith("Sub"))
converter("aten.mul.Tensor", "aten.mul.Scalar", capability=_binary_ok)(_arith("Mul"))
converter("aten.div.Tensor", "aten.div.Scalar", capability=_binary_ok)(_arith("Div"))
converter("aten.maximum.default", capability=_binary_ok)(_arith("Max"))
converter("aten.minimum.default", capability=_binary_ok)(_arith("Min"))


@converter("aten.rsub.Tensor", "aten.rsub.Scalar", capability=_binary_ok)
def _rsub(ctx, node):
    out = dtype(node)
    a = ctx.tensor(node.args[0], out)
    b = ctx.tensor(node.args[1], out)
    alpha = node.kwargs.get("alpha", 1)
    if alpha != 1:
        a = ctx.op("Mul", [a, ctx.scalar(alpha, out)])
    return ctx.op("Sub", [b, a])


def _div_mode_ok(node):
    if not _tensor_or_num(node, 2):
        return "tensor or number operands only"
    return node.kwargs.get("rounding_mode") in (None, "trunc", "floor")


@converter("aten.div.Tensor_mode", "aten.div.Scalar_mode", capability=_div_mode_ok)
def _div_mode(ctx, node):
    out = dtype(node)
    mode = node.kwargs.get("rounding_mode")
    a = ctx.tensor(node.args[0], out)
    b = ctx.tensor(node.args[1], out)
    q = ctx.op("Div", [a, b])
    if mode is None:
        return q
    if out.is_floating_point:
        if mode == "floor":
            return ctx.op("Floor", [q])
        # trunc(x) = sign(x) * floor(|x|): ONNX has no Trunc
        return ctx.op("Mul", [ctx.op("Sign", [q]), ctx.op("Floor", [ctx.op("Abs", [q])])])
    if mode == "trunc":
        return q  # ONNX integer Div truncates toward zero
    # floor division of integers: (a - a mod b) / b with the divisor-signed (Python) mod
    m = ctx.op("Mod", [a, b], {"fmod": 0})
    return ctx.op("Div", [ctx.op("Sub", [a, m]), b])


@converter("aten.remainder.Tensor", "aten.remainder.Scalar", capability=_binary_ok)
def _remainder(ctx, node):
    out = dtype(node)
    a, b = ctx.tensor(node.args[0], out), ctx.tensor(node.args[1], out)
    if out.is_floating_point:  # PyTorch's own definition: a - floor(a / b) * b
        return ctx.op("Sub", [a, ctx.op("Mul", [ctx.op("Floor", [ctx.op("Div", [a, b])]), b])])
    return ctx.op("Mod", [a, b], {"fmod": 0})  # integers: the divisor's sign, as Python


@converter("aten.fmod.Tensor", "aten.fmod.Scalar", capability=_binary_ok)
def _fmod(ctx, node):
    out = dtype(node)
    return ctx.op("Mod", [ctx.tensor(node.args[0], out), ctx.tensor(node.args[1], out)], {"fmod": 1})


@converter("aten.pow.Tensor_Scalar", "aten.pow.Tensor_Tensor", "aten.pow.Scalar", capability=_binary_ok)
def _pow(ctx, node):
    out = dtype(node)
    base, exp = node.args[0], node.args[1]
    b = ctx.tensor(base, out)
    if _is_num(exp):
        if exp == 2:
            return ctx.op("Mul", [b, b])
        if exp == 1:
            return ctx.op("Identity", [b])
        if exp == 0.5 and out.is_floating_point:
            return ctx.op("Sqrt", [b])
        return ctx.op("Pow", [b, ctx.scalar(exp, out)])
    return ctx.op("Pow", [b, ctx.tensor(exp, out if out.is_floating_point else dtype(exp))])


def _compare(op_type, negate=False):
    def fn(ctx, node):
        dt = _common_dtype(node.args[:2])
        r = ctx.op(op_type, [ctx.tensor(node.args[0], dt), ctx.tensor(node.args[1], dt)])
        return ctx.op("Not", [r]) if negate else r

    return fn


for _name, _op, _neg in [("eq", "Equal", False), ("ne", "Equal", True), ("lt", "Less", False),
                         ("le", "LessOrEqual", False), ("gt", "Greater", False), ("ge", "GreaterOrEqual", False)]:
    converter(f"aten.{_name}.Tensor", f"aten.{_name}.Scalar", capability=_binary_ok)(_compare(_op, _neg))


def _logic(op_type):
    def fn(ctx, node):
        a = ctx.tensor(node.args[0], torch.bool)
        b = ctx.tensor(node.args[1], torch.bool)
        r = ctx.op(op_type, [a, b])
        return r if dtype(node) == torch.bool else ctx.cast(r, dtype(node))

    return fn


converter("aten.logical_and.default", capability=_binary_ok)(_logic("And"))
converter("aten.logical_or.default", capability=_binary_ok)(_logic("Or"))
converter("aten.logical_xor.default", capability=_binary_ok)(_logic("Xor"))


@converter("aten.logical_not.default")
def _logical_not(ctx, node):
    r = ctx.op("Not", [ctx.tensor(node.args[0], torch.bool)])
    return r if dtype(node) == torch.bool else ctx.cast(r, dtype(node))


def _bitwise(bool_op, int_op):
    def fn(ctx, node):
        out = dtype(node)
        a, b = ctx.tensor(node.args[0], out), ctx.tensor(node.args[1], out)
        return ctx.op(bool_op if out == torch.bool else int_op, [a, b])

    return fn


def _bitwise_ok(node):
    return _tensor_or_num(node, 2) and not dtype(node).is_floating_point


for _name, _b, _i in [("and", "And", "BitwiseAnd"), ("or", "Or", "BitwiseOr"), ("xor", "Xor", "BitwiseXor")]:
    converter(f"aten.bitwise_{_name}.Tensor", f"aten.bitwise_{_name}.Scalar", capability=_bitwise_ok)(_bitwise(_b, _i))


@converter("aten.bitwise_not.default", capability=lambda n: not dtype(n).is_floating_point)
def _bitwise_not(ctx, node):
    x = ctx.get(node.args[0])
    return ctx.op("Not" if dtype(node) == torch.bool else "BitwiseNot", [x])


# --- unary --------------------------------------------------------------------------------
def _unary(op_type, attrs=None):
    def fn(ctx, node):
        return ctx.op(op_type, [ctx.tensor(node.args[0], dtype(node))], attrs)

    return fn


def _float_out(node):
    return dtype(node).is_floating_point or "floating-point result only"


for _name, _op in [("exp", "Exp"), ("log", "Log"), ("sqrt", "Sqrt"), ("tanh", "Tanh"), ("sigmoid", "Sigmoid"),
                   ("erf", "Erf"), ("sin", "Sin"), ("cos", "Cos"), ("tan", "Tan"), ("reciprocal", "Reciprocal"),
                   ("floor", "Floor"), ("ceil", "Ceil"), ("asin", "Asin"), ("acos", "Acos"), ("atan", "Atan"),
                   ("sinh", "Sinh"), ("cosh", "Cosh"), ("mish", "Mish"), ("hardswish", "HardSwish")]:
    converter(f"aten.{_name}.default", capability=_float_out)(_unary(_op))
for _name, _op in [("neg", "Neg"), ("abs", "Abs"), ("relu", "Relu"), ("sign", "Sign")]:
    converter(f"aten.{_name}.default")(_unary(_op))
converter("aten.round.default", capability=_float_out)(_unary("Round"))  # both round halves to even


@converter("aten.rsqrt.default", capability=_float_out)
def _rsqrt(ctx, node):
    return ctx.op("Reciprocal", [ctx.op("Sqrt", [ctx.tensor(node.args[0], dtype(node))])])


@converter("aten.log1p.default", capability=_float_out)
def _log1p(ctx, node):
    out = dtype(node)
    return ctx.op("Log", [ctx.op("Add", [ctx.tensor(node.args[0], out), ctx.scalar(1, out)])])


@converter("aten.expm1.default", capability=_float_out)
def _expm1(ctx, node):
    out = dtype(node)
    return ctx.op("Sub", [ctx.op("Exp", [ctx.tensor(node.args[0], out)]), ctx.scalar(1, out)])


@converter("aten.gelu.default", capability=lambda n: n.kwargs.get("approximate", "none") in ("none", "tanh"))
def _gelu(ctx, node):
    approx = node.kwargs.get("approximate", node.args[1] if len(node.args) > 1 else "none")
    return ctx.op("Gelu", [ctx.get(node.args[0])], {"approximate": approx})


@converter("aten.silu.default", capability=_float_out)
def _silu(ctx, node):
    return ctx.op("shardrt.Silu", [ctx.get(node.args[0])])


@converter("aten.leaky_relu.default", capability=_float_out)
def _leaky_relu(ctx, node):
    slope = node.args[1] if len(node.args) > 1 else node.kwargs.get("negative_slope", 0.01)
    return ctx.op("LeakyRelu", [ctx.get(node.args[0])], {"alpha": float(slope)})


def _elu_ok(node):
    a = list(node.args) + [1.0, 1.0, 1.0][len(node.args) - 1:]
    return dtype(node).is_floating_point and a[2] == 1 and a[3] == 1


@converter("aten.elu.default", capability=_elu_ok)
def _elu(ctx, node):
    alpha = node.args[1] if len(node.args) > 1 else node.kwargs.get("alpha", 1.0)
    return ctx.op("Elu", [ctx.get(node.args[0])], {"alpha": float(alpha)})


@converter("aten.hardsigmoid.default", capability=_float_out)
def _hardsigmoid(ctx, node):
    return ctx.op("HardSigmoid", [ctx.get(node.args[0])], {"alpha": 1.0 / 6.0, "beta": 0.5})


@converter("aten.softplus.default",
           capability=lambda n: dtype(n).is_floating_point and (n.args[1] if len(n.args) > 1 else 1) == 1)
def _softplus(ctx, node):
    # torch returns x itself above `threshold` (20): log1p(exp(x)) equals x there to fp32 precision
    return ctx.op("Softplus", [ctx.get(node.args[0])])


@converter("aten.isnan.default")
def _isnan(ctx, node):
    return ctx.op("IsNaN", [ctx.get(node.args[0])])


@converter("aten.isinf.default")
def _isinf(ctx, node):
    return ctx.op("IsInf", [ctx.get(node.args[0])])


def _clamp_ok(node):
    return all(a is None or _is_num(a) for a in node.args[1:3]) and all(
        a is None or _is_num(a) for a in node.kwargs.values())


@converter("aten.clamp.default", "aten.hardtanh.default", capability=_clamp_ok)
def _clamp(ctx, node):
    out = dtype(node)
    x = ctx.tensor(node.args[0], out)
    is_hardtanh = str(node.target).startswith("aten.hardtanh")
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min_val" if is_hardtanh else "min", -1.0 if is_hardtanh else None)
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max_val" if is_hardtanh else "max", 1.0 if is_hardtanh else None)
    return ctx.op("Clip", [x, None if lo is None else ctx.scalar(lo, out), None if hi is None else ctx.scalar(hi, out)])


@converter("aten.clamp.Tensor")
def _clamp_tensor(ctx, node):
    out = dtype(node)
    x = ctx.tensor(node.args[0], out)
    lo = node.args[1] if len(node.args) > 1 else node.kwargs.get("min")
    hi = node.args[2] if len(node.args) > 2 else node.kwargs.get("max")
    if lo is not None:
        x = ctx.op("Max", [x, ctx.tensor(lo, out)])
    if hi is not None:
        x = ctx.op("Min", [x, ctx.tensor(hi, out)])
    return x


@converter("aten.where.self", capability=lambda n: _tensor_or_num(n, 3))
def _where(ctx, node):
    out = dtype(node)
    c, a, b = node.args[:3]
    return ctx.op("Where", [ctx.tensor(c, torch.bool), ctx.tensor(a, out), ctx.tensor(b, out)])


@converter("aten.masked_fill.Scalar", "aten.masked_fill.Tensor", capability=lambda n: _tensor_or_num(n, 3))
def _masked_fill(ctx, node):
    out = dtype(node)
    x, mask, v = node.args[:3]
    return ctx.op("Where", [ctx.tensor(mask, torch.bool), ctx.tensor(v, out), ctx.tensor(x, out)])


# --- casts and copies ------------------------------------------------------------------------
def _copy_ok(node):
    src = node.args[0]
    return isinstance(src, torch.fx.Node)


@converter("aten._to_copy.default", "aten.clone.default", "aten.alias.default", "aten.detach.default",
           "aten.lift_fresh_copy.default", "aten.contiguous.default", "prims.convert_element_type.default",
           capability=_copy_ok)
def _copy(ctx, node):
    src = node.args[0]
    if dtype(src) != dtype(node):
        return ctx.cast(ctx.get(src), dtype(node))
    return ctx.op("Identity", [ctx.get(src)])
