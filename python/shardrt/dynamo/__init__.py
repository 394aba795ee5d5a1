"""shardrt as a torch.compile backend: `torch.compile(model, backend="shardrt", options={...})`.

Importing this package registers the backend. `converter` registers (or overrides) an aten
op converter; `compile_with_dynamo` is what shardrt.compile(use_distributed_mode_trace=True)
calls.
"""
from .backend import (BACKEND_NAME, compile_with_dynamo, known_options, last_reports, register,  # noqa: F401
                      reset_reports, shardrt_backend, stats)
from .converters import ConversionContext, converter, registered  # noqa: F401
from .partition import PartitionReport  # noqa: F401

register()
