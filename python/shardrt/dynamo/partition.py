"""Splits an ATen FX graph into shardrt engines and PyTorch code.

Nodes with a converter whose capability accepts them (dtypes, device, argument values),
minus `torch_executed_ops`, are supported; CapabilityBasedPartitioner groups supported
nodes into partitions; partitions with fewer than `min_block_size` compute nodes stay in
PyTorch; each remaining partition is fused into a submodule, converted to a Network, built
into an engine and replaced by a ShardrtModule. Everything else runs in PyTorch as traced.

Dynamic shapes (symbolic sizes, symbolic.py): engine inputs get named symbolic dims and a
profile from the symbols' ranges; size arithmetic inside a block is computed in the engine
from its inputs' shapes. The result is then a DynamicGraph, which rebuilds the engines with
a wider profile when a call's sizes fall outside it.
"""
from __future__ import annotations

import logging
import operator
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
import torch.fx
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.operator_support import OperatorSupportBase
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions

from . import _dtypes
from ._binding import native
from ._comm import CommPlan, planning
from .converters import ConversionContext, lookup, target_name
from .converters.context import is_sym_node, val
from .runtime import ShardrtModule
from .symbolic import SymRanges, concrete, describe, dim_name, expr, materialize, placeholder_bindings, widen

log = logging.getLogger("shardrt.dynamo")

_COLLECTIVE_PREFIX = "_c10d_functional."


@dataclass
class PartitionOptions:
    min_block_size: int = 5
    torch_executed_ops: frozenset = frozenset()  # op overload names ("aten.softmax.default")
    autocast: Optional[str] = None
    optimize: bool = True
    device: str = "cpu"
    debug: bool = False
    communicator: Any = None  # None: automatic; False: none; or a Communicator
    require_full_compilation: bool = False
    pass_through_build_failures: bool = False
    disabled_passes: list = field(default_factory=list)
    sym_ranges: Optional[SymRanges] = None  # profiles of the graph's symbolic sizes (dynamic shapes)
    inputs: Optional[list] = None  # shardrt.Input per tensor argument: profile ranges of its symbolic dims


@dataclass
class PartitionReport:
    """What happened to a graph: engines built and the ops left to PyTorch (with why)."""
    engines: list = field(default_factory=list)  # (submodule name, node count)
    torch_ops: dict = field(default_factory=dict)  # op name → reason
    dynamic: bool = False  # engines with symbolic dims (one engine serves every size in its profile)
    profiles: dict = field(default_factory=dict)  # symbol → (min, opt, max) of the engines now in use
    rebuilds: int = 0  # times the engines were rebuilt for a size outside their profile
    builds: int = 0  # engine builds for this graph (len(engines) + the rebuilt ones)


def op_name(target) -> str:
    """Canonical name of an op given as a string ("torch.ops.aten.x.default", "aten.x.default",
    "aten.x") or an OpOverload / OpOverloadPacket."""
    if isinstance(target, str):
        s = target
    else:
        s = str(target)
    if s.startswith("torch.ops."):
        s = s[len("torch.ops."):]
    return s


def _executed_in_torch(name: str, excluded: frozenset) -> bool:
    # "aten.add" excludes every overload of aten.add
    return name in excluded or name.rsplit(".", 1)[0] in excluded


def _tensor_vals(node: torch.fx.Node):
    out = []

    def add(v):
        if isinstance(v, torch.Tensor):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                add(x)

    add(val(node))
    for a in node.all_input_nodes:
        add(val(a))
    return out


class ShardrtSupport(OperatorSupportBase):
    def __init__(self, opts: PartitionOptions, report: PartitionReport):
        self.opts = opts
        self.report = report
        self._cache: dict[torch.fx.Node, bool] = {}

    def _refuse(self, node, why):
        name = target_name(node) or str(node.target)
        self.report.torch_ops.setdefault(name, why)
        return False

    def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
        if node in self._cache:
            return self._cache[node]
        r = self._check(node)
        self._cache[node] = r
        return r

    def _check(self, node: torch.fx.Node) -> bool:
        if node.op != "call_function":
            return False
        name = target_name(node)
        if name == "getitem":
            src = node.args[0]
            return isinstance(src, torch.fx.Node) and self.is_node_supported(None, src)
        if name is None:
            return self._refuse(node, "not an ATen op")
        if _executed_in_torch(name, self.opts.torch_executed_ops):
            return self._refuse(node, "in torch_executed_ops")
        conv = lookup(name)
        if conv is None:
            return self._refuse(node, "no converter")
        v = val(node)
        if v is None:
            return self._refuse(node, "no example value")
        for t in _tensor_vals(node):
            if not _dtypes.supported(t.dtype):
                return self._refuse(node, f"dtype {t.dtype}")
            if t.device.type != self.opts.device:
                return self._refuse(node, f"tensor on {t.device}")
        if conv.capability is not None:
            try:
                ok = conv.capability(node)
            except Exception as e:  # an argument form the check did not foresee: leave it to PyTorch
                ok = f"capability check failed: {e}"
            if ok is not True:
                return self._refuse(node, ok if isinstance(ok, str) else "arguments not supported")
        return True


def _compute_nodes(nodes) -> int:
    return sum(1 for n in nodes if n.op == "call_function" and n.target is not operator.getitem
               and not is_sym_node(n))


def _outside_and_free(a: torch.fx.Node, nodes: set) -> bool:
    """`a` is outside the partition and does not depend on it (a graph input, or size
    arithmetic on graph inputs)."""
    if a in nodes:
        return False
    if a.op == "placeholder":
        return True
    return is_sym_node(a) and all(_outside_and_free(b, nodes) for b in a.all_input_nodes)


def _keep_sizes_inside(gm: torch.fx.GraphModule, nodes: set) -> set:
    """An engine cannot return a SymInt: size arithmetic in a partition whose value is also
    used outside it leaves the partition when it depends on graph inputs only (the block
    then rebuilds it from its expression), else it is duplicated for the outside users."""
    changed = True
    while changed:
        changed = False
        for n in sorted(nodes, key=lambda x: x.name):
            if not is_sym_node(n) or all(u in nodes for u in n.users):
                continue
            if all(_outside_and_free(a, nodes) for a in n.all_input_nodes):
                nodes.discard(n)
            else:
                with gm.graph.inserting_after(n):
                    c = gm.graph.node_copy(n)
                for u in [u for u in n.users if u not in nodes and u is not c]:
                    u.replace_input_with(n, c)
            changed = True
    return nodes


def _collectives_paired(nodes: set) -> bool:
    """A collective start and its waits must share a partition: a start's output is not
    complete until its wait, so it must not leave the engine."""
    for n in nodes:
        name = target_name(n) or ""
        if name.startswith(_COLLECTIVE_PREFIX) and name != "_c10d_functional.wait_tensor.default":
            if any(u not in nodes for u in n.users):
                return False
        if name == "_c10d_functional.wait_tensor.default" and n.args[0] not in nodes:
            return False
    return True


def partition_and_compile(gm: torch.fx.GraphModule, opts: PartitionOptions) -> tuple[torch.fx.GraphModule,
                                                                                       PartitionReport]:
    report = PartitionReport()
    plan = CommPlan(opts.communicator)
    with planning(plan):
        support = ShardrtSupport(opts, report)
        partitioner = CapabilityBasedPartitioner(gm, support, allows_single_node_partition=True)
        proposed = partitioner.propose_partitions()
    accepted = []
    for p in proposed:
        nodes = _keep_sizes_inside(gm, set(p.nodes))
        n = _compute_nodes(nodes)
        if n < opts.min_block_size:
            for node in nodes:
                report.torch_ops.setdefault(target_name(node) or str(node.target),
                                            f"in a block of {n} ops (< min_block_size {opts.min_block_size})")
            continue
        if not _collectives_paired(nodes):
            report.torch_ops.setdefault("_c10d_functional", "collective and its wait in different blocks")
            continue
        accepted.append(nodes)
    if opts.require_full_compilation:
        left = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is not operator.getitem
                and not is_sym_node(n) and not any(n in p for p in accepted)]
        if left:
            names = sorted({target_name(n) or str(n.target) for n in left})
            raise RuntimeError("shardrt: require_full_compilation=True but these ops would run in PyTorch: "
                               + ", ".join(f"{k} ({report.torch_ops.get(k, 'split')})" for k in names))
    if not accepted:
        return gm, report
    ranges = opts.sym_ranges if opts.sym_ranges is not None and opts.sym_ranges.ranges else None
    bindings = placeholder_bindings(gm) if ranges is not None else {}
    # fuse_by_partitions wants the nodes in graph order
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    parts = [{n: None for n in sorted(p, key=order.__getitem__)} for p in accepted]
    fused = fuse_by_partitions(gm, parts, prefix="_shardrt_block_", always_return_tuple=True)
    comm = plan.communicator()
    blocks = []
    for node in list(fused.graph.nodes):
        if node.op != "call_module" or not node.target.startswith("_shardrt_block_"):
            continue
        sub = getattr(fused, node.target)
        try:
            module = convert_submodule(sub, node, opts, comm, name=node.target)
        except Exception as e:
            if opts.pass_through_build_failures:
                log.warning("shardrt: %s stays in PyTorch: %s", node.target, e)
                continue
            raise
        setattr(fused, node.target, module)
        blocks.append((node.target, sub, node))
        report.engines.append((node.target, _compute_nodes(sub.graph.nodes)))
    report.builds = len(report.engines)
    fused.recompile()
    if opts.debug:
        log.warning("shardrt: %d engine(s) %s; in PyTorch: %s", len(report.engines), report.engines,
                    report.torch_ops)
    if ranges is None or not blocks:
        return fused, report
    report.dynamic = True
    report.profiles = {k: (r.lo, r.opt, r.hi) for k, r in ranges.ranges.items()}
    (log.warning if opts.debug else log.debug)("shardrt: dynamic engines, profiles %s", describe(ranges))
    return DynamicGraph(fused, blocks, bindings, opts, comm, report), report


class DynamicGraph:
    """The compiled graph when its engines have symbolic dims: checks each call's sizes
    against the engines' profiles and, when one falls outside, rebuilds every engine of the
    graph with the profiles widened to hold it (said at debug verbosity), then runs."""

    def __init__(self, fused, blocks, bindings, opts: PartitionOptions, comm, report: PartitionReport):
        self.fused = fused
        self.blocks = blocks  # (attribute name, block GraphModule, call node)
        self.bindings = bindings  # symbol → (argument position, dim or None)
        self.opts = opts
        self.comm = comm
        self.report = report

    @property
    def ranges(self) -> SymRanges:
        return self.opts.sym_ranges

    def sizes(self, args) -> dict:
        out = {}
        for name, (i, d) in self.bindings.items():
            a = args[i]
            out[name] = int(a) if d is None else int(a.shape[d])
        return out

    def __call__(self, *args):
        wider = widen(self.ranges, self.sizes(args))
        if wider is not None:
            self.rebuild(wider, args)
        return self.fused(*args)

    def rebuild(self, ranges: SymRanges, args=()) -> None:
        import dataclasses

        (log.warning if self.opts.debug else log.debug)(
            "shardrt: sizes %s outside the engine profiles %s: rebuilding %d engine(s) with %s", self.sizes(args),
            describe(self.ranges), len(self.blocks), describe(ranges))
        opts = dataclasses.replace(self.opts, sym_ranges=ranges)
        from torch._subclasses.fake_tensor import unset_fake_temporarily

        for name, sub, node in self.blocks:
            with unset_fake_temporarily():
                setattr(self.fused, name, _convert(sub, node, opts, self.comm, name))
        self.opts = opts
        self.report.rebuilds += 1
        self.report.builds += len(self.blocks)
        self.report.profiles = {k: (r.lo, r.opt, r.hi) for k, r in ranges.ranges.items()}


def _input_dims(v: torch.Tensor, ranges: Optional[SymRanges]):
    """dims (-1: symbolic), their names and, when some are symbolic, the (min, opt, max)
    profile."""
    dims, names, lo, opt, hi = [], [], [], [], []
    for d in v.shape:
        c = concrete(d)
        if c is not None:
            dims.append(c)
            names.append("")
            lo.append(c), opt.append(c), hi.append(c)
            continue
        e = expr(d)
        if ranges is None:
            raise RuntimeError(f"dynamic dim {e} without a profile range")
        a, o, b = ranges.bounds(e)
        dims.append(-1)
        names.append(dim_name(e))
        lo.append(a), opt.append(o), hi.append(b)
    profile = (lo, opt, hi) if -1 in dims else None
    return dims, names, profile


class _BlockCall(torch.nn.Module):
    """Calls an engine whose block also takes sizes (SymInts): sizes the engine rebuilds
    from its inputs' shapes are dropped, the others passed as 0-d int64 tensors."""

    def __init__(self, engine_module: ShardrtModule, plan: list):
        super().__init__()
        self.engine_module = engine_module
        self.plan = plan  # per block argument: "tensor" | "size" | "drop"

    @property
    def engine(self):
        return self.engine_module.engine

    def forward(self, *args):
        # the engine's inputs: the tensors, then the sizes (both in argument order)
        tensors = [a for a, how in zip(args, self.plan) if how == "tensor"]
        device = tensors[0].device if tensors else None  # where the engine's other inputs are
        sizes = [torch.tensor(int(a), dtype=torch.int64, device=device) for a, how in zip(args, self.plan)
                 if how == "size"]
        return self.engine_module(*tensors, *sizes)


def convert_submodule(sub: torch.fx.GraphModule, call: torch.fx.Node, opts: PartitionOptions, comm,
                      name: str) -> ShardrtModule:
    """Converts one fused partition (a GraphModule) into an engine and its runtime module."""
    from torch._subclasses.fake_tensor import unset_fake_temporarily

    with unset_fake_temporarily():  # constants made here must be real tensors
        return _convert(sub, call, opts, comm, name)


def _convert(sub, call, opts, comm, name):
    C = native()
    net = C.Network(name)
    ctx = ConversionContext(net, sub, prefix=f"{name}.")
    outer_args = list(call.args)
    input_names = []
    shapes = {}
    ranges = opts.sym_ranges if opts.sym_ranges is not None and opts.sym_ranges.ranges else None
    placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
    plan = []
    sym_dims = {}  # symbol name → (input tensor, dim): where the engine reads a size
    sizes = []  # (position, placeholder, SymInt) of the size arguments
    for i, ph in enumerate(placeholders):
        v = val(outer_args[i]) if i < len(outer_args) and isinstance(outer_args[i], torch.fx.Node) else val(ph)
        if isinstance(v, torch.SymInt):
            sizes.append((i, ph, v))
            plan.append("drop")
            continue
        if not isinstance(v, torch.Tensor):
            raise RuntimeError(f"shardrt: {name}: input {ph.name} is not a tensor ({type(v).__name__})")
        try:
            dims, dim_names, profile = _input_dims(v, ranges)
        except RuntimeError as e:
            raise RuntimeError(f"shardrt: {name}: input {ph.name} {tuple(v.shape)}: {e}") from None
        in_name = f"in{i}_{ph.name}"
        t = net.input(in_name, _dtypes.name(v.dtype), dims, dim_names)
        ctx.env[ph] = t
        if profile is not None:
            shapes[in_name] = profile
        for d, size in enumerate(v.shape):
            if concrete(size) is None and expr(size).is_Symbol:
                sym_dims.setdefault(str(expr(size)), (t, d))
        input_names.append(in_name)
        plan.append("tensor")

    def bind(sym: str):
        if sym not in sym_dims:
            return None
        t, d = sym_dims[sym]
        idx = ctx.const(torch.tensor(d, dtype=torch.int64))
        return ctx.op("Gather", [ctx.op("Shape", [t]), idx], {"axis": 0})

    for i, ph, v in sizes:  # sizes from outside: rebuilt from the inputs' shapes, else engine inputs
        ctx.node = ph
        c = concrete(v)
        try:
            ctx.env[ph] = ctx.sym(c) if c is not None else materialize(ctx, expr(v), bind)
        except RuntimeError:
            in_name = f"in{i}_{ph.name}"
            ctx.env[ph] = net.input(in_name, "int64", [])
            input_names.append(in_name)
            plan[i] = "size"
    ctx.node = None
    output_names = []
    for node in sub.graph.nodes:
        if node.op == "placeholder":
            continue
        ctx.node = node
        if node.op == "get_attr":
            ctx.env[node] = ctx.const(_resolve_attr(sub, node.target))
            continue
        if node.op == "call_function":
            if node.target is operator.getitem:
                ctx.env[node] = ctx.env[node.args[0]][node.args[1]]
                continue
            conv = lookup(node)
            if conv is None:
                raise RuntimeError(f"shardrt: {name}: no converter for {target_name(node)}")
            try:
                r = conv.fn(ctx, node)
            except Exception as e:
                raise RuntimeError(f"shardrt: {name}: converting {node.name} ({target_name(node)}): {e}") from e
            ctx.env[node] = r
            continue
        if node.op == "output":
            outs = node.args[0]
            outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            used = set()
            for k, o in enumerate(outs):
                t = ctx.env[o]
                key = id(t)
                if o.op == "placeholder" or key in used:
                    t = net.op("Identity", [t], {}, 1, f"{name}_out{k}_copy")[0]
                used.add(key)
                out_name = f"out{k}_{o.name}"
                net.output(t, out_name)
                output_names.append(out_name)
            continue
        raise RuntimeError(f"shardrt: {name}: cannot convert node {node.name} ({node.op})")
    cfg = C.BuildConfig(shapes=shapes, autocast=opts.autocast, optimize=opts.optimize, device=opts.device,
                        disabled_passes=list(opts.disabled_passes), verbose=opts.debug)
    engine = C.build_engine(net, cfg)
    module = ShardrtModule(engine, input_names, output_names, comm, name=name)
    return module if all(p == "tensor" for p in plan) else _BlockCall(module, plan)


def _resolve_attr(mod: torch.nn.Module, target: str):
    obj = mod
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
