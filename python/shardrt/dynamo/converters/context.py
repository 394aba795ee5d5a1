"""State shared by the converters of one partition: the Network being built, the map from
FX nodes to network tensors, and helpers for constants, casts and node metadata."""
from __future__ import annotations

import numbers
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.fx

from .. import _dtypes
from ..symbolic import concrete, is_sym


def val(x) -> Any:
    """The example value (a FakeTensor, SymInt, tuple, ...) FX recorded for a node."""
    if isinstance(x, torch.fx.Node):
        return x.meta.get("val", x.meta.get("example_value"))
    return x


def shape(x) -> list:
    return list(val(x).shape)


def static_shape(x) -> Optional[list[int]]:
    """The node's shape as ints, or None when a dim is symbolic (never int() on a symbolic
    size: that would guard the graph to the traced size)."""
    dims = []
    for d in val(x).shape:
        c = concrete(d)
        if c is None:
            return None
        dims.append(c)
    return dims


def is_sym_node(x) -> bool:
    """An FX node whose value is a SymInt/SymFloat/SymBool (size arithmetic)."""
    return isinstance(x, torch.fx.Node) and is_sym(val(x))


def static_int(a) -> Optional[int]:
    """A size argument as an int when it is one (or a constant SymInt), else None."""
    if isinstance(a, torch.fx.Node):
        v = val(a)
        return concrete(v) if isinstance(v, torch.SymInt) else None
    if isinstance(a, bool):
        return None
    return concrete(a)


def size_arg_ok(a) -> bool:
    """A size argument a converter can compute: an int, or a node holding a SymInt."""
    if isinstance(a, torch.fx.Node):
        return isinstance(val(a), torch.SymInt)
    return static_int(a) is not None


def dtype(x) -> torch.dtype:
    return val(x).dtype


def rank(x) -> int:
    return len(val(x).shape)


def norm_axis(a: int, r: int) -> int:
    return a + r if a < 0 else a


class ConversionContext:
    def __init__(self, net, module: torch.fx.GraphModule, prefix: str = ""):
        self.net = net
        self.module = module  # resolves get_attr targets
        self.prefix = prefix
        self.env: dict[torch.fx.Node, Any] = {}
        self._const_count = 0
        self._i64_cache: dict[tuple, Any] = {}
        self._names: dict[str, int] = {}
        self.node: Optional[torch.fx.Node] = None  # the node being converted
        self._sym_cache: dict[str, Any] = {}  # sympy expression text → 0-d int64 tensor

    # --- ops --------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence, attrs: Optional[dict] = None, num_outputs: int = 1):
        """Adds one node; returns its output (or the list of outputs when num_outputs > 1)."""
        base = self.node.name if self.node is not None else "op"
        k = self._names.get(base, 0)
        self._names[base] = k + 1
        name = f"{self.prefix}{base}" if k == 0 else f"{self.prefix}{base}__{k}"  # node names are unique
        outs = self.net.op(op_type, list(inputs), dict(attrs or {}), num_outputs, name)
        return outs[0] if num_outputs == 1 else list(outs)

    # --- values -----------------------------------------------------------------------
    def get(self, arg):
        """The network tensor standing for an FX node argument."""
        if isinstance(arg, torch.fx.Node):
            try:
                return self.env[arg]
            except KeyError:
                raise RuntimeError(f"shardrt: node {arg.name} used before it was converted") from None
        raise TypeError(f"shardrt: expected a tensor argument, got {arg!r}")

    def tensor(self, arg, dt: Optional[torch.dtype] = None):
        """A tensor argument (FX node or Python scalar) as a network tensor, cast to `dt` if given."""
        if is_sym_node(arg):  # a size: a 0-d int64 tensor (float sizes are not converted)
            t = self.get(arg)
            return self.cast(t, dt) if dt is not None and dt != torch.int64 else t
        if isinstance(arg, torch.fx.Node):
            t = self.get(arg)
            if dt is not None and dtype(arg) != dt:
                t = self.cast(t, dt)
            return t
        if isinstance(arg, (numbers.Number, bool)):
            return self.scalar(arg, dt if dt is not None else _scalar_dtype(arg))
        raise TypeError(f"shardrt: cannot use {arg!r} as a tensor")

    def cast(self, t, dt: torch.dtype):
        return self.op("Cast", [t], {"to": _dtypes.onnx(dt)})

    def const(self, value, dt: Optional[torch.dtype] = None):
        """A constant (numpy array, torch tensor or nested list) as a network weight."""
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if dt is not None:
                value = value.to(dt)
            if value.dtype == torch.bfloat16:
                arr = value.contiguous()  # numpy has no bfloat16: hand torch's tensor over (DLPack)
            else:
                arr = value.contiguous().numpy()
        else:
            arr = np.asarray(value, dtype=_np_dtype(dt) if dt is not None else None)
            if dt == torch.bfloat16:
                arr = torch.tensor(value, dtype=torch.bfloat16)
        self._const_count += 1
        return self.net.weight(f"{self.prefix}const{self._const_count}", arr)

    def scalar(self, v, dt: torch.dtype):
        """A 0-d constant of dtype `dt`."""
        return self.const(torch.tensor(v, dtype=dt))

    def sym(self, a):
        """A size argument (int, or node holding a SymInt) as a 0-d int64 tensor."""
        c = static_int(a)
        if c is not None:
            return self.const(torch.tensor(c, dtype=torch.int64))
        return self.get(a)

    def shape_tensor(self, sizes: Sequence, minus_one_as: Optional[int] = None):
        """A list of size arguments (ints and SymInt nodes) as a 1-D int64 tensor: runs of
        ints are one constant, each symbolic size an Unsqueeze of its 0-d tensor. With
        `minus_one_as`, -1 entries are replaced by that value."""
        parts, run = [], []
        for a in sizes:
            c = static_int(a)
            if c is not None:
                run.append(minus_one_as if (c == -1 and minus_one_as is not None) else c)
                continue
            if run:
                parts.append(self.i64(run))
                run = []
            parts.append(self.op("Unsqueeze", [self.get(a), self.i64([0])]))
        if run:
            parts.append(self.i64(run))
        if len(parts) == 1:
            return parts[0]
        return self.op("Concat", parts, {"axis": 0})

    def i64(self, values: Sequence[int]):
        """A 1-D int64 constant (axes, shapes, starts, ...), shared between uses."""
        key = tuple(int(v) for v in values)
        if key not in self._i64_cache:
            self._i64_cache[key] = self.const(np.array(key, dtype=np.int64).reshape(len(key)))
        return self._i64_cache[key]


def _scalar_dtype(v) -> torch.dtype:
    if isinstance(v, bool):
        return torch.bool
    if isinstance(v, numbers.Integral):
        return torch.int64
    return torch.get_default_dtype()


_NP = {
    torch.float32: np.float32,
    torch.float16: np.float16,
    torch.float64: np.float64,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}


def _np_dtype(dt):
    return _NP.get(dt)
