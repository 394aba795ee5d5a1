"""Communicators for the collectives of compiled graphs.

Functional collectives name a torch.distributed process group. shardrt runs a graph's
collectives through one communicator (its "tp" group), so a collective converts only when
a communicator can be had for its group: the `communicator` option when given (used for
every group of its size), else one built over the group with Communicator.from_callbacks
that calls torch.distributed (gloo on the CPU). `communicator=False` keeps every
collective in PyTorch. One graph uses one group: collectives over any other group stay in
PyTorch.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Optional

import torch

from ._binding import native

_plan: contextvars.ContextVar[Optional["CommPlan"]] = contextvars.ContextVar("shardrt_comm_plan", default=None)
_CACHE: dict[str, Any] = {}  # group name → callback communicator (one per process group)


class CommPlan:
    """Which process group (if any) the engines of one compiled graph run collectives on."""

    def __init__(self, option: Any):
        self.option = option  # None: automatic; False: none; else a Communicator
        self.group_name: Optional[str] = None

    def supports(self, group_name: str) -> bool:
        if self.option is False:
            return False
        if self.group_name is not None:
            return group_name == self.group_name
        pg = _resolve(group_name)
        if pg is None:
            return False
        if self.option is not None:
            size = getattr(self.option, "size", None)
            if size is not None and size != pg.size():
                return False
        self.group_name = group_name
        return True

    def communicator(self):
        """The communicator engines of this graph get (None when no collective converted)."""
        if self.group_name is None:
            return None
        if self.option is not None:
            return self.option
        if self.group_name not in _CACHE:
            _CACHE[self.group_name] = _callback_communicator(_resolve(self.group_name))
        return _CACHE[self.group_name]


@contextlib.contextmanager
def planning(plan: CommPlan):
    token = _plan.set(plan)
    try:
        yield plan
    finally:
        _plan.reset(token)


def group_supported(group_name) -> bool:
    plan = _plan.get()
    return plan is not None and isinstance(group_name, str) and plan.supports(group_name)


def _resolve(group_name: str):
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    try:
        from torch.distributed.distributed_c10d import _resolve_process_group

        return _resolve_process_group(group_name)
    except Exception:
        return None



def _reduce_op(op: str):
    import torch.distributed as dist

    return {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN,
            "prod": dist.ReduceOp.PRODUCT}[op]


def _work_dtype(t: torch.Tensor) -> torch.dtype:
    # gloo reduces neither bool nor (everywhere) the half types: reduce those in a wider type
    # (half types in fp32 and round once, as shardrt's communicators do; bool as uint8)
    if t.dtype in (torch.float16, torch.bfloat16):
        return torch.float32
    if t.dtype == torch.bool:
        return torch.uint8
    return t.dtype


def _callback_communicator(pg):
    """A shardrt Communicator whose collectives run on torch.distributed process group `pg`."""
    import torch.distributed as dist

    rank, size = dist.get_rank(pg), pg.size()

    def all_reduce(send, recv, op):
        s, r = torch.from_dlpack(send), torch.from_dlpack(recv)
        wd = _work_dtype(r)
        if r.dtype == torch.bool:
            op = {"sum": "max", "prod": "min"}.get(op, op)  # bool: sum/max are "or", prod/min "and"
        w = s.to(wd, copy=True)
        dist.all_reduce(w, op=_reduce_op(op), group=pg)
        r.copy_(w)

    def all_gather(send, recv, counts):
        s, r = torch.from_dlpack(send), torch.from_dlpack(recv)
        wd = torch.uint8 if s.dtype == torch.bool else s.dtype
        n = max(counts)
        padded = torch.zeros(n, dtype=wd)
        padded[: s.numel()] = s.to(wd)
        parts = [torch.empty(n, dtype=wd) for _ in range(size)]
        dist.all_gather(parts, padded, group=pg)  # padded to the largest chunk: gloo wants equal sizes
        off = 0
        for c, p in zip(counts, parts):
            r[off:off + c] = p[:c].to(r.dtype)
            off += c

    def broadcast(buf, root):
        b = torch.from_dlpack(buf)
        w = b.to(torch.uint8) if b.dtype == torch.bool else b
        dist.broadcast(w, src=dist.get_global_rank(pg, root), group=pg)
        if w is not b:
            b.copy_(w)

    def barrier():
        dist.barrier(group=pg)

    return native().Communicator.from_callbacks(rank, size, all_reduce, all_gather, broadcast, barrier=barrier,
                                                backend="torch.distributed", name="tp")
