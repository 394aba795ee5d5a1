"""PyTorch functional collectives (what DTensor / tensor parallelism trace to) as shardrt's
asynchronous collectives: X → shardrt.*Start → shardrt.Wait; the build's fuse_collectives
pass fuses each pair. They are converted only when the compiled engine will have a
communicator for the process group the collective names (see dynamo/_comm.py); otherwise
they stay in PyTorch."""
from __future__ import annotations

import torch

from .. import _comm
from .context import static_shape
from .registry import converter

_REDUCE = {"sum": "sum", "max": "max", "min": "min", "product": "prod", "prod": "prod"}


def _group_ok(group_name) -> bool:
    return _comm.group_supported(group_name)


def _allreduce_ok(node):
    if node.args[1] not in _REDUCE:
        return f"reduce op {node.args[1]!r}"
    return _group_ok(node.args[2]) or "no shardrt communicator for this process group"


@converter("_c10d_functional.all_reduce.default", capability=_allreduce_ok)
def _all_reduce(ctx, node):
    return ctx.op("shardrt.AllReduceStart", [ctx.get(node.args[0])], {"reduce": _REDUCE[node.args[1]], "group": "tp"})


@converter("_c10d_functional.all_gather_into_tensor.default",
           capability=lambda n: _group_ok(n.args[2]) or "no shardrt communicator for this process group")
def _all_gather(ctx, node):
    attrs = {"axis": 0, "group": "tp"}
    out = static_shape(node)
    if out:
        attrs["gathered_size"] = out[0]  # the gathered length is known here even where the group size is not
    return ctx.op("shardrt.AllGatherStart", [ctx.get(node.args[0])], attrs)


def _reduce_scatter_ok(node):
    if node.args[1] not in _REDUCE:
        return f"reduce op {node.args[1]!r}"
    return _group_ok(node.args[3]) or "no shardrt communicator for this process group"


@converter("_c10d_functional.reduce_scatter_tensor.default", capability=_reduce_scatter_ok)
def _reduce_scatter(ctx, node):
    return ctx.op("shardrt.ReduceScatterStart", [ctx.get(node.args[0])],
                  {"axis": 0, "reduce": _REDUCE[node.args[1]], "group": "tp"})


def _wait_ok(node):
    src = node.args[0]
    from .registry import lookup, target_name

    if not isinstance(src, torch.fx.Node) or lookup(src) is None or not target_name(src).startswith("_c10d_functional"):
        return "waits on something shardrt does not run"
    conv = lookup(src)
    return conv.capability is None or conv.capability(src) is True


@converter("_c10d_functional.wait_tensor.default", capability=_wait_ok)
def _wait(ctx, node):
    return ctx.op("shardrt.Wait", [ctx.get(node.args[0])])
