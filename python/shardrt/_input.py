"""shardrt.Input: an engine input's shape range and dtype (Torch-TensorRT's Input)."""
from __future__ import annotations

from typing import Any, Sequence


class Input:
    """One input of a compiled module.

    Static: Input(shape=(8, 16), dtype=torch.float32). Dynamic: Input(min_shape=(1, 16),
    opt_shape=(8, 16), max_shape=(32, 16)): every dim within [min, max], the engine tuned for
    opt. `name` names the engine input (default input_<i>). Dims that differ between min and
    max are dynamic.
    """

    def __init__(self, min_shape: Sequence[int] | None = None, opt_shape: Sequence[int] | None = None,
                 max_shape: Sequence[int] | None = None, dtype: Any = None, name: str | None = None, *,
                 shape: Sequence[int] | None = None, format: Any = None, torch_tensor: Any = None):
        if shape is not None:
            if min_shape is not None or max_shape is not None:
                raise ValueError("shardrt.Input: give either shape or min_shape/opt_shape/max_shape")
            min_shape = opt_shape = max_shape = shape
        if opt_shape is None and min_shape is not None and max_shape is None:
            opt_shape = max_shape = min_shape  # Input((2, 3)) as a static shape
        if min_shape is None or max_shape is None:
            if opt_shape is None:
                raise ValueError("shardrt.Input: needs shape=..., or min_shape, opt_shape and max_shape")
            min_shape = min_shape if min_shape is not None else opt_shape
            max_shape = max_shape if max_shape is not None else opt_shape
        if opt_shape is None:
            opt_shape = max_shape
        self.min_shape = tuple(int(d) for d in min_shape)
        self.opt_shape = tuple(int(d) for d in opt_shape)
        self.max_shape = tuple(int(d) for d in max_shape)
        if not (len(self.min_shape) == len(self.opt_shape) == len(self.max_shape)):
            raise ValueError(f"shardrt.Input: min/opt/max ranks differ: {self.min_shape}, {self.opt_shape}, "
                             f"{self.max_shape}")
        for lo, op, hi in zip(self.min_shape, self.opt_shape, self.max_shape):
            if not (0 <= lo <= op <= hi):
                raise ValueError(f"shardrt.Input: needs min <= opt <= max in every dim: {self.min_shape}, "
                                 f"{self.opt_shape}, {self.max_shape}")
        import torch
        self.dtype = dtype if dtype is not None else torch.float32
        if isinstance(self.dtype, str):
            self.dtype = getattr(torch, self.dtype)
        self.name = name
        self.torch_tensor = torch_tensor

    @classmethod
    def from_tensor(cls, t, name: str | None = None) -> "Input":
        return cls(shape=tuple(t.shape), dtype=t.dtype, name=name, torch_tensor=t)

    @property
    def is_dynamic(self) -> bool:
        return self.min_shape != self.max_shape

    def dynamic_dims(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.min_shape, self.max_shape)) if a != b]

    def example_shape(self) -> tuple[int, ...]:
        """The shape an export traces with: opt, except that a dynamic dim of size 0 or 1 (which
        torch.export would specialise) takes the smallest value >= 2 in its range."""
        out = []
        for i, (lo, op, hi) in enumerate(zip(self.min_shape, self.opt_shape, self.max_shape)):
            if lo != hi and op < 2:
                op = min(max(2, lo), hi)
            out.append(op)
        return tuple(out)

    def example_tensor(self):
        import torch
        if self.torch_tensor is not None and tuple(self.torch_tensor.shape) == self.example_shape():
            return self.torch_tensor
        shape = self.example_shape()
        if self.dtype.is_floating_point:
            return torch.randn(shape, dtype=self.dtype)
        if self.dtype == torch.bool:
            return torch.ones(shape, dtype=torch.bool)
        return torch.zeros(shape, dtype=self.dtype)  # indices: 0 is valid for any table

    def __repr__(self) -> str:
        if not self.is_dynamic:
            return f"Input(shape={self.opt_shape}, dtype={self.dtype}, name={self.name!r})"
        return (f"Input(min_shape={self.min_shape}, opt_shape={self.opt_shape}, max_shape={self.max_shape}, "
                f"dtype={self.dtype}, name={self.name!r})")
