"""The module that replaces an accepted partition: it runs the partition's engine."""
from __future__ import annotations

from typing import Any, Optional

import torch

from .._dlpack import run_context
from ._binding import native


class ShardrtModule(torch.nn.Module):
    """Runs one shardrt engine. Inputs are passed as torch tensors (borrowed, no copy when
    contiguous; CUDA tensors stay on the GPU when the engine runs there); outputs come back
    through DLPack without a copy. Always returns a tuple (the partition's call site unpacks it)."""

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
        # CPU tensors are borrowed by the engine; on a context on "cuda", CUDA tensors stay on
        # the GPU, ordered by torch's current stream (shardrt._dlpack.run_context).
        feeds = dict(zip(self.input_names, args))
        return tuple(run_context(self._ctx, feeds, self.output_names))

    def extra_repr(self) -> str:
        return f"{self.engine_name}: inputs={self.input_names}, outputs={self.output_names}"
