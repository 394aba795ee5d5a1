"""Moving tensors between PyTorch and shardrt without copies where possible.

Host path: a CPU tensor is handed to the engine through __dlpack__ (the engine reads the
tensor's own memory); it is detached and made contiguous first (a copy only when it was not
contiguous). Outputs: shardrt's HostTensor exposes its buffer through __dlpack__, and
torch.from_dlpack wraps it without a copy.

CUDA path (a context on "cuda" and CUDA inputs): the tensors' device memory goes to the
engine through DLPack, ordered after torch's current stream (the engine copies them on the
GPU into its own input buffers); the outputs are allocated with torch.empty on the inputs'
device (torch's caching allocator, current stream) and filled on the GPU, ordered before
that stream. Nothing crosses to the host.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

_TORCH_DTYPES = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64,
    "int64": torch.int64, "int32": torch.int32, "int8": torch.int8, "uint8": torch.uint8, "bool": torch.bool,
}


def to_host(t: torch.Tensor) -> torch.Tensor:
    """`t` as a contiguous CPU tensor an engine can borrow (no copy for one that is already)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()  # a context on the CPU reads host memory only
    return t if t.is_contiguous() else t.contiguous()


def from_host(h: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """A torch tensor over a HostTensor's memory (moved to `device` when that is not the CPU)."""
    t = torch.from_dlpack(h)
    if device is not None and torch.device(device).type != "cpu":
        t = t.to(device)
    return t


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a shardrt dtype name ("float32", "bfloat16", ...)."""
    return _TORCH_DTYPES[name]


def _cuda_device_of(feed: Mapping[str, Any]) -> torch.device | None:
    for t in feed.values():
        if isinstance(t, torch.Tensor) and t.is_cuda:
            return t.device
    return None


def run_cuda(context: Any, feed: Mapping[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Runs a context on "cuda" on torch tensors of `device` without host copies; returns
    every output as a torch tensor on `device`, ordered before torch's current stream."""
    inputs = {}
    for name, t in feed.items():
        t = t.detach()
        if t.device != device:
            # A CPU tensor among CUDA ones (e.g. an index built on the host): one upload, as the
            # engine would do; a tensor on another GPU is left to the engine's clear refusal.
            if t.device.type == "cpu":
                t = t.to(device)
        inputs[name] = t if t.is_contiguous() else t.contiguous()
    stream = torch.cuda.current_stream(device).cuda_stream

    def alloc(name: str, shape: Sequence[int], dtype: str) -> torch.Tensor:
        return torch.empty(tuple(shape), dtype=_TORCH_DTYPES[dtype], device=device)

    return context.run(inputs, stream=stream, outputs=alloc)


def run_context(context: Any, feed: Mapping[str, torch.Tensor], output_names: Sequence[str],
                out_device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Runs `context` on torch tensors by name; returns the outputs named, in order.

    On a context on "cuda" with CUDA inputs, tensors stay on the GPU (see the module
    docstring) and the outputs are on the inputs' device. Otherwise the inputs go through
    the host and the outputs are moved to `out_device` (when that is not the CPU)."""
    cuda_dev = _cuda_device_of(feed)
    if cuda_dev is not None and context.device == "cuda":
        outs = run_cuda(context, feed, cuda_dev)
        return [outs[n] for n in output_names]
    host = {n: to_host(t) for n, t in feed.items()}  # referenced until run() returns: the engine borrows them
    outs = context.run(host)
    return [from_host(outs[n], out_device) for n in output_names]
