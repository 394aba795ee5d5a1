"""Moving tensors between PyTorch and shardrt without copies where possible.

Inputs: a CPU tensor is handed to the engine through __dlpack__ (the engine reads the
tensor's own memory); it is detached and made contiguous first (a copy only when it was not
contiguous). CUDA tensors are copied to the host: the C++ ExecutionContext takes host
tensors today. Outputs: shardrt's HostTensor exposes its buffer through __dlpack__, and
torch.from_dlpack wraps it without a copy.
"""
from __future__ import annotations

from typing import Any

import torch


def to_host(t: torch.Tensor) -> torch.Tensor:
    """`t` as a contiguous CPU tensor an engine can borrow (no copy for one that is already)."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()  # device tensors go through the host (see the module docstring)
    return t if t.is_contiguous() else t.contiguous()


def from_host(h: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """A torch tensor over a HostTensor's memory (moved to `device` when that is not the CPU)."""
    t = torch.from_dlpack(h)
    if device is not None and torch.device(device).type != "cpu":
        t = t.to(device)
    return t
