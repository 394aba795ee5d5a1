"""Symbolic sizes: torch's SymInts (dynamic=True, mark_dynamic) as shardrt dims and profiles.

Dynamo traces a dynamic dim as a sympy symbol (s0, s1, ...) with a range in the shape env
(mark_dynamic's min/max; [2, inf) for dynamic=True) and a hint (the size at the call that
traced). An engine input dim whose size is an expression of symbols is a named symbolic
dim (the expression's text, so equal sizes get equal names); its profile is the
expression's value at the symbols' bounds (min, max) and at their hints (opt).

An unbounded symbol gets max = DEFAULT_MAX_FACTOR × its hint (at least its lower bound):
the activation arena is sized for the max shapes, so an unbounded max cannot be used. A
later call outside the profile rebuilds the engines with that symbol's max raised (to at
least twice the old max), see DynamicGraph.

Nothing here may call int()/bool() on a SymInt or compare one: that would add a guard to
the shape env and specialise the graph to the traced size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

log = logging.getLogger("shardrt.dynamo")

DEFAULT_MAX_FACTOR = 4


def is_sym(v) -> bool:
    return isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool))


def concrete(d) -> Optional[int]:
    """The int value of a size that is an int or a SymInt known to be constant, else None
    (no guard is added)."""
    if isinstance(d, int) and not isinstance(d, torch.SymInt):
        return int(d)
    if isinstance(d, torch.SymInt):
        from torch.fx.experimental.symbolic_shapes import is_concrete_int

        if is_concrete_int(d):
            return int(d)  # constant: no guard
    return None


def expr(d):
    """The sympy expression of a size (an int gives a sympy Integer)."""
    import sympy

    if isinstance(d, torch.SymInt):
        return d.node.expr
    return sympy.Integer(int(d))


def dim_name(e) -> str:
    return str(e).replace(" ", "")


@dataclass
class SymRange:
    lo: int
    opt: int
    hi: int
    upper: Optional[int]  # torch's upper bound (None: unbounded)


@dataclass
class SymRanges:
    """Profile range of every symbol of a graph, by symbol name."""
    ranges: dict = field(default_factory=dict)  # name → SymRange

    def copy(self) -> "SymRanges":
        return SymRanges({k: SymRange(r.lo, r.opt, r.hi, r.upper) for k, r in self.ranges.items()})

    def bounds(self, e) -> tuple[int, int, int]:
        """(min, opt, max) of expression `e` over the symbols' ranges. The sizes torch
        produces (sums, products, floor divisions of sizes) grow with each symbol, so the
        extremes are at the bounds; min/max of both ends guards against the rest."""
        syms = sorted(e.free_symbols, key=str)
        missing = [str(s) for s in syms if str(s) not in self.ranges]
        if missing:
            raise RuntimeError(f"no range for symbolic size(s) {', '.join(missing)} (data-dependent?)")

        def at(pick):
            v = e.subs({s: pick(self.ranges[str(s)]) for s in syms})
            return int(v)

        a, b = at(lambda r: r.lo), at(lambda r: r.hi)
        return min(a, b), at(lambda r: r.opt), max(a, b)


def _int_bound(b) -> Optional[int]:
    if not getattr(b, "is_Integer", isinstance(b, int)):  # int_oo, -int_oo, or no bound
        return None
    try:
        v = int(b)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if v >= 2**62 else v


def collect_ranges(gm: torch.fx.GraphModule, overrides: Optional[dict] = None) -> SymRanges:
    """The symbols in `gm`'s placeholder shapes with their profile ranges. `overrides`:
    symbol name → (min, opt, max) given by the user (shardrt.Input)."""
    shape_env = None
    syms = {}
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        v = n.meta.get("val", n.meta.get("example_value"))
        sizes = [v] if isinstance(v, torch.SymInt) else list(v.shape) if isinstance(v, torch.Tensor) else []
        for d in sizes:
            if isinstance(d, torch.SymInt) and concrete(d) is None:
                shape_env = shape_env or d.node.shape_env
                for s in d.node.expr.free_symbols:
                    syms[str(s)] = s
    out = SymRanges()
    if shape_env is None:
        return out
    hints = getattr(shape_env, "backed_var_to_val", None)
    if hints is None:
        hints = shape_env.var_to_val
    for name, s in syms.items():
        vr = shape_env.var_to_range.get(s)
        lo = _int_bound(vr.lower) if vr is not None else None
        upper = _int_bound(vr.upper) if vr is not None else None
        lo = max(lo or 0, 0)
        hint = hints.get(s)
        opt = int(hint) if hint is not None else lo
        if upper is not None:
            hi = upper
        else:
            hi = max(lo, DEFAULT_MAX_FACTOR * max(opt, 1))
        ov = (overrides or {}).get(name)
        if ov is not None:  # the user's range, within torch's bound (the guards hold no more)
            lo, opt, hi = (int(x) for x in ov)
            hi = min(hi, upper) if upper is not None else hi
            lo = min(lo, hi)
        out.ranges[name] = SymRange(lo, min(max(opt, lo), hi), hi, upper)
    return out


def placeholder_bindings(gm: torch.fx.GraphModule) -> dict:
    """symbol name → (placeholder position, dim or None) where a call's value of the symbol
    can be read: a SymInt argument that is the symbol, or a tensor argument's dim."""
    out = {}
    i = 0
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        v = n.meta.get("val", n.meta.get("example_value"))
        if isinstance(v, torch.SymInt) and v.node.expr.is_Symbol:
            out.setdefault(str(v.node.expr), (i, None))
        elif isinstance(v, torch.Tensor):
            for d, size in enumerate(v.shape):
                if isinstance(size, torch.SymInt) and size.node.expr.is_Symbol:
                    out.setdefault(str(size.node.expr), (i, d))
        i += 1
    return out


def widen(ranges: SymRanges, values: dict) -> Optional[SymRanges]:
    """A copy of `ranges` whose profiles hold `values` (symbol → size), or None when they
    already do. A max is raised to at least twice the old one (a few rebuilds cover growing
    sizes), within torch's own bound."""
    out = None
    for name, v in values.items():
        r = ranges.ranges.get(name)
        if r is None or r.lo <= v <= r.hi:
            continue
        out = out or ranges.copy()
        nr = out.ranges[name]
        if v < nr.lo:
            nr.lo = v
        if v > nr.hi:
            hi = max(v, 2 * nr.hi)
            nr.hi = min(hi, nr.upper) if nr.upper is not None else hi
    return out


def describe(ranges: SymRanges) -> str:
    return ", ".join(f"{k}=[{r.lo}, {r.hi}] (opt {r.opt})" for k, r in sorted(ranges.ranges.items())) or "none"


# --- expressions as network ops -----------------------------------------------------------
def materialize(ctx, e, bind) -> Any:
    """A 0-d int64 network tensor computing sympy expression `e`. `bind(symbol_name)` gives a
    0-d int64 tensor for a symbol (or None when the block cannot see it)."""
    import sympy
    from torch.utils._sympy import functions as F

    cache = ctx._sym_cache
    key = str(e)
    if key in cache:
        return cache[key]

    def rec(x):
        return materialize(ctx, x, bind)

    if e.is_Integer:
        t = ctx.const(torch.tensor(int(e), dtype=torch.int64))
    elif e.is_Symbol:
        t = bind(str(e))
        if t is None:
            raise RuntimeError(f"symbolic size {e} is not a dim of any input of the block")
    elif isinstance(e, sympy.Add):
        args = [rec(a) for a in e.args]
        t = args[0]
        for a in args[1:]:
            t = ctx.op("Add", [t, a])
    elif isinstance(e, sympy.Mul):
        args = [rec(a) for a in e.args]
        t = args[0]
        for a in args[1:]:
            t = ctx.op("Mul", [t, a])
    elif isinstance(e, sympy.Pow) and e.exp.is_Integer and int(e.exp) >= 1:
        b = rec(e.base)
        t = b
        for _ in range(int(e.exp) - 1):
            t = ctx.op("Mul", [t, b])
    elif isinstance(e, F.FloorDiv):
        # sizes are non-negative: integer Div (truncating) is floor division here
        t = ctx.op("Div", [rec(e.args[0]), rec(e.args[1])])
    elif isinstance(e, (F.Mod, F.PythonMod)):
        t = ctx.op("Mod", [rec(e.args[0]), rec(e.args[1])], {"fmod": 0})
    elif isinstance(e, _kinds(sympy.Max, getattr(F, "Max", None))):
        t = ctx.op("Max", [rec(a) for a in e.args])
    elif isinstance(e, _kinds(sympy.Min, getattr(F, "Min", None))):
        t = ctx.op("Min", [rec(a) for a in e.args])
    elif isinstance(e, _kinds(getattr(F, "CeilDiv", None))):
        a, b = rec(e.args[0]), rec(e.args[1])
        one = ctx.const(torch.tensor(1, dtype=torch.int64))
        t = ctx.op("Div", [ctx.op("Sub", [ctx.op("Add", [a, b]), one]), b])
    else:
        raise RuntimeError(f"symbolic size {e} ({type(e).__name__}) has no shardrt form")
    cache[key] = t
    return t



def _kinds(*types) -> tuple:
    return tuple(t for t in types if isinstance(t, type))
