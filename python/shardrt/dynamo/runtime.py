"""The module that replaces an accepted partition: it runs the partition's engine."""
from __future__ import annotations

from typing import Any, Optional

import torch

from ._binding import native


class ShardrtModule(torch.nn.Module):
    """Runs one shardrt engine. Inputs are passed as torch tensors (borrowed, no copy when
    contiguous); outputs come back through DLPack without a copy. Always returns a tuple
    (the partition's call site unpacks it)."""

    def __init__(self, engine, input_names: list[str], output_names: list[str], comm: Optional[Any] = None,
                 name: str = "shardrt_engine"):
        super().__init__()
        self.engine = engine
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.comm = comm
        self.engine_name = name
        self._ctx = native().ExecutionContext(engine, "", comm) if comm is not None else \
            native().ExecutionContext(engine)

    def forward(self, *args: torch.Tensor):
        if len(args) != len(self.input_names):
            raise RuntimeError(f"shardrt engine {self.engine_name}: expected {len(self.input_names)} inputs, "
                               f"got {len(args)}")
        feeds = {}
        for name, a in zip(self.input_names, args):
            a = a.detach()
            if not a.is_contiguous():
                a = a.contiguous()
            feeds[name] = a
        outs = self._ctx.run(feeds)
        return tuple(torch.from_dlpack(outs[n]) for n in self.output_names)

    def extra_repr(self) -> str:
        return f"{self.engine_name}: inputs={self.input_names}, outputs={self.output_names}"
