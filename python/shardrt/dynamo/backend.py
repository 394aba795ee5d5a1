"""The torch.compile backend "shardrt".

torch.compile(model, backend="shardrt", options={...}): dynamo hands over a torch-level FX
graph; aot_autograd (inference only, under no_grad) lowers it to core ATen with the core
decompositions (keeping scaled-dot-product attention whole, so it becomes
shardrt.Attention) and lifts parameters to inputs; partition.py then turns the supported
parts into shardrt engines. Graphs with dynamic shapes (dynamic=True, mark_dynamic) get
engines with symbolic dims whose profiles come from torch's ranges of the symbols
(symbolic.py): one engine serves every size in range; a size beyond it rebuilds.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Optional

import torch
import torch.fx

from .partition import PartitionOptions, PartitionReport, op_name, partition_and_compile
from .symbolic import collect_ranges

BACKEND_NAME = "shardrt"
log = logging.getLogger("shardrt.dynamo")

# Backend options beyond shardrt.compile's settings table.
EXTRA_OPTIONS = {
    "communicator": ("None: collectives run through torch.distributed when it is initialised; False: "
                     "collectives stay in PyTorch; or a shardrt Communicator"),
    "require_full_compilation": "bool: raise instead of leaving ops to PyTorch",
    "pass_through_build_failures": "bool: a block that fails to convert/build runs in PyTorch (warning)",
    "disabled_passes": "list of shardrt pass names to skip",
    "inputs": ("list of shardrt.Input (or None), one per tensor argument of the compiled function in order: "
               "min/opt/max of the dims the trace made symbolic (dynamic=True or mark_dynamic)"),
}

_reports: list[PartitionReport] = []


def last_reports() -> list[PartitionReport]:
    """Reports (engines, ops left to PyTorch) of the graphs compiled since reset_reports()."""
    return list(_reports)


def reset_reports() -> None:
    _reports.clear()


def stats() -> dict:
    """Counts over the graphs compiled since reset_reports(): graphs, engines (in use),
    builds (engine builds, rebuilds included), rebuilds (profile widenings)."""
    return {"graphs": len(_reports), "engines": sum(len(r.engines) for r in _reports),
            "builds": sum(r.builds for r in _reports), "rebuilds": sum(r.rebuilds for r in _reports)}


def known_options() -> list[str]:
    from .._settings import SETTINGS

    return sorted(set(SETTINGS) | set(EXTRA_OPTIONS))


def parse_options(options: Optional[dict]) -> PartitionOptions:
    """Validates torch.compile's `options` (unknown name: TypeError listing the known ones)."""
    from .._settings import SETTINGS, parse_settings

    options = dict(options or {})
    unknown = sorted(k for k in options if k not in SETTINGS and k not in EXTRA_OPTIONS)
    if unknown:
        raise TypeError(f"shardrt backend: unknown option(s) {', '.join(unknown)}; the options are: "
                        f"{', '.join(known_options())}")
    extra = {k: options.pop(k) for k in list(options) if k in EXTRA_OPTIONS}
    for k in ("require_full_compilation", "pass_through_build_failures"):
        if k in extra and not isinstance(extra[k], bool):
            raise TypeError(f"shardrt backend: option {k}={extra[k]!r}: expected bool")
    if "disabled_passes" in extra and not (isinstance(extra["disabled_passes"], (list, tuple)) and
                                           all(isinstance(p, str) for p in extra["disabled_passes"])):
        raise TypeError("shardrt backend: option disabled_passes: expected a list of pass names")
    inputs = extra.get("inputs")
    if inputs is not None and not (isinstance(inputs, (list, tuple)) and
                                   all(i is None or hasattr(i, "min_shape") for i in inputs)):
        raise TypeError("shardrt backend: option inputs: expected a list of shardrt.Input (or None)")
    comm = extra.get("communicator")
    if comm not in (None, False) and not hasattr(comm, "rank"):
        raise TypeError(f"shardrt backend: option communicator={comm!r}: expected None, False or a "
                        "shardrt Communicator")
    s = parse_settings(**options)
    return PartitionOptions(
        min_block_size=s.min_block_size,
        torch_executed_ops=frozenset(op_name(o) for o in s.torch_executed_ops),
        autocast=s.autocast,
        optimize=s.optimize,
        device=s.device or "",  # "": where the traced graph's inputs are (see _aot_backend)
        debug=s.debug,
        communicator=comm,
        require_full_compilation=extra.get("require_full_compilation", False),
        pass_through_build_failures=extra.get("pass_through_build_failures", False),
        disabled_passes=list(extra.get("disabled_passes", [])),
        inputs=list(inputs) if inputs is not None else None,
    )


def decompositions() -> dict:
    """Core ATen decompositions, minus those that would split ops shardrt runs whole."""
    from torch._decomp import core_aten_decompositions

    table = dict(core_aten_decompositions())
    aten = torch.ops.aten
    for op in (aten._scaled_dot_product_flash_attention_for_cpu.default,):
        table.pop(op, None)
    return table


def _inference_only(*_a, **_k):
    raise RuntimeError("shardrt backend: inference only (run the compiled module under torch.no_grad())")


def _aot_backend(opts: PartitionOptions, overrides: Optional[dict] = None):
    from torch._dynamo.backends.common import aot_autograd

    def fw_compiler(gm: torch.fx.GraphModule, example_inputs):
        o = opts
        if not o.device:
            o = dataclasses.replace(o, device=_input_device(example_inputs))
        if _has_symbolic_shapes(gm):
            o = dataclasses.replace(o, sym_ranges=collect_ranges(gm, overrides))
        compiled, report = partition_and_compile(gm, o)
        _reports.append(report)
        return compiled

    return aot_autograd(fw_compiler=fw_compiler, bw_compiler=_inference_only, decompositions=decompositions(),
                        keep_inference_input_mutations=True)


def _input_device(example_inputs) -> str:
    """The engines' device when the settings name none: "cuda" when the graph's tensors
    (inputs, lifted parameters) are on a GPU and this shardrt has the CUDA backend, else "cpu"
    (CUDA tensors then stay in PyTorch: the partitioner refuses nodes on another device)."""
    from .. import _C

    types = {t.device.type for t in example_inputs if isinstance(t, torch.Tensor)}
    if "cuda" in types:
        if _C.with_cuda:
            return "cuda"
        log.warning("shardrt: the graph's tensors are on a GPU but this shardrt was built without CUDA: "
                    "they stay in PyTorch")
    return "cpu"


def _has_symbolic_shapes(gm: torch.fx.GraphModule) -> bool:
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        v = n.meta.get("example_value", n.meta.get("val"))
        if isinstance(v, (torch.SymInt, torch.SymFloat)):
            return True
        if isinstance(v, torch.Tensor) and any(not isinstance(d, int) for d in v.shape):
            return True
    return False


def shardrt_backend(gm: torch.fx.GraphModule, example_inputs, options: Optional[dict] = None, mode=None, **kw):
    """The torch.compile backend (also usable as `backend=shardrt_backend`)."""
    if kw:
        raise TypeError(f"shardrt backend: unexpected argument(s) {sorted(kw)}; pass settings in options={{...}}")
    opts = parse_options(options)
    overrides = _input_ranges(gm, opts.inputs) if opts.inputs else None
    with torch.no_grad():
        return _aot_backend(opts, overrides)(gm, example_inputs)


def _user_inputs(gm: torch.fx.GraphModule) -> list:
    """The example values of the traced function's own tensor arguments, in order (not the
    parameters and buffers dynamo lifts, nor the sizes it adds)."""
    out = []
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        v = n.meta.get("example_value", n.meta.get("val"))
        ga = n.meta.get("grapharg")
        src = getattr(ga, "source", None)
        if not isinstance(v, torch.Tensor) or src is None:
            continue
        from torch._dynamo.source import LocalSource

        if isinstance(src, LocalSource) and src.local_name != "self":
            out.append(v)
    return out


def _input_ranges(gm: torch.fx.GraphModule, inputs: list) -> dict:
    """symbol name → (min, opt, max) from the `inputs` option: each Input's range for the dims
    of its argument that the trace made symbolic. A dynamic Input dim that was traced static
    cannot become dynamic here: that is logged (trace with dynamic=True or mark_dynamic)."""
    from .symbolic import concrete, expr

    out = {}
    vals = _user_inputs(gm)
    for k, (inp, v) in enumerate(zip(inputs, vals)):
        if inp is None:
            continue
        if len(inp.min_shape) != v.dim():
            raise ValueError(f"shardrt backend: option inputs[{k}] has rank {len(inp.min_shape)}, the argument "
                             f"has shape {tuple(v.shape)}")
        for d, size in enumerate(v.shape):
            if concrete(size) is None and expr(size).is_Symbol:
                out[str(expr(size))] = (inp.min_shape[d], inp.opt_shape[d], inp.max_shape[d])
            elif inp.min_shape[d] != inp.max_shape[d]:
                log.warning("shardrt: option inputs[%d]: dim %d is dynamic in the Input but was traced static "
                            "(%s); compile with dynamic=True or torch._dynamo.mark_dynamic for one engine over "
                            "the range", k, d, size)
    return out


def register() -> None:
    """Registers "shardrt" with torch._dynamo (idempotent)."""
    from torch._dynamo.backends import registry

    if BACKEND_NAME in registry._COMPILER_FNS:
        return
    if registry._BACKENDS.get(BACKEND_NAME) is not None:
        # torch found the installed package's entry point (pyproject.toml) and registers the
        # backend itself when it loads it: that load imports this package, and registering
        # here as well would make torch's own registration fail ("duplicate name")
        return
    registry.register_backend(compiler_fn=shardrt_backend, name=BACKEND_NAME)


def _settings_to_options(settings: Any) -> dict:
    if settings is None:
        return {}
    if isinstance(settings, dict):
        d = dict(settings)
    elif dataclasses.is_dataclass(settings):
        d = dataclasses.asdict(settings)
    else:
        d = dict(vars(settings))
    from .._settings import SETTINGS

    out = {k: v for k, v in d.items() if v is not None and (k in SETTINGS or k in EXTRA_OPTIONS)}
    out.pop("enabled_precisions", None)  # already folded into the autocast settings
    if "torch_executed_ops" in out:
        out["torch_executed_ops"] = set(out["torch_executed_ops"])
    return out


def compile_with_dynamo(module: torch.nn.Module, arg_inputs, settings: Any = None, **options):
    """shardrt.compile(..., use_distributed_mode_trace=True): torch.compile with this backend.

    `settings` is the CompileSettings (or a dict of options); extra keyword arguments are
    backend options too. A dynamic shardrt.Input(min_shape, opt_shape, max_shape) marks its
    example tensor (opt_shape) dynamic with torch._dynamo.mark_dynamic(min=, max=) in each
    dim that varies, so the engines get that range (torch specialises sizes 0 and 1, so a
    range from 1 starts at 2 and a size-1 call compiles its own graph). The module is
    compiled (and its engines built) by one call with `arg_inputs` before it is returned,
    so errors surface here."""
    register()
    opts = _settings_to_options(settings)
    opts.update(options)
    parse_options(opts)  # validate now rather than at the first call
    args, dynamic = [], False
    for a in (arg_inputs or []):
        if hasattr(a, "example_tensor"):
            t = a.example_tensor()
            if getattr(a, "is_dynamic", False):
                t = t.clone()  # mark_dynamic marks the tensor object: not the user's own
                for d in a.dynamic_dims():
                    torch._dynamo.mark_dynamic(t, d, min=a.min_shape[d], max=a.max_shape[d])
                dynamic = True
            args.append(t)
        else:
            args.append(a)
    compiled = torch.compile(module, backend=BACKEND_NAME, options=opts, dynamic=None if dynamic else False)
    with torch.no_grad():
        compiled(*args)
    return compiled
