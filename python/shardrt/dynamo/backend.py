"""The torch.compile backend "shardrt".

torch.compile(model, backend="shardrt", options={...}): dynamo hands over a torch-level FX
graph; aot_autograd (inference only, under no_grad) lowers it to core ATen with the core
decompositions (keeping scaled-dot-product attention whole, so it becomes
shardrt.Attention) and lifts parameters to inputs; partition.py then turns the supported
parts into shardrt engines. Graphs with dynamic shapes are compiled once per distinct set
of input shapes (each engine static).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

import torch
import torch.fx

from .partition import PartitionOptions, PartitionReport, op_name, partition_and_compile

BACKEND_NAME = "shardrt"

# Backend options beyond shardrt.compile's settings table.
EXTRA_OPTIONS = {
    "communicator": ("None: collectives run through torch.distributed when it is initialised; False: "
                     "collectives stay in PyTorch; or a shardrt Communicator"),
    "require_full_compilation": "bool: raise instead of leaving ops to PyTorch",
    "pass_through_build_failures": "bool: a block that fails to convert/build runs in PyTorch (warning)",
    "disabled_passes": "list of shardrt pass names to skip",
}

_reports: list[PartitionReport] = []


def last_reports() -> list[PartitionReport]:
    """Reports (engines, ops left to PyTorch) of the graphs compiled since reset_reports()."""
    return list(_reports)


def reset_reports() -> None:
    _reports.clear()


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
        device=s.device or "cpu",
        debug=s.debug,
        communicator=comm,
        require_full_compilation=extra.get("require_full_compilation", False),
        pass_through_build_failures=extra.get("pass_through_build_failures", False),
        disabled_passes=list(extra.get("disabled_passes", [])),
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


def _aot_backend(opts: PartitionOptions):
    from torch._dynamo.backends.common import aot_autograd

    def fw_compiler(gm: torch.fx.GraphModule, example_inputs):
        compiled, report = partition_and_compile(gm, opts)
        _reports.append(report)
        return compiled

    return aot_autograd(fw_compiler=fw_compiler, bw_compiler=_inference_only, decompositions=decompositions(),
                        keep_inference_input_mutations=True)


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
    if _has_symbolic_shapes(gm):
        return _PerShape(gm, opts)
    with torch.no_grad():
        return _aot_backend(opts)(gm, example_inputs)


class _PerShape:
    """Dynamo traced with symbolic shapes: compile one static specialisation per distinct
    set of input shapes, on first use."""

    def __init__(self, gm, opts):
        self.gm, self.opts = gm, opts
        self.cache: dict[tuple, Any] = {}

    def __call__(self, *args):
        key = tuple((tuple(a.shape), a.dtype) if isinstance(a, torch.Tensor) else a for a in args)
        fn = self.cache.get(key)
        if fn is None:
            import copy

            gm = copy.deepcopy(self.gm)
            for n in gm.graph.nodes:  # forget the symbolic example values: trace anew from the real inputs
                n.meta.pop("example_value", None)
                n.meta.pop("val", None)
            with torch.no_grad():
                fn = _aot_backend(self.opts)(gm, list(args))
            self.cache[key] = fn
        with torch.no_grad():
            return fn(*args)


def register() -> None:
    """Registers "shardrt" with torch._dynamo (idempotent)."""
    from torch._dynamo.backends import registry

    if BACKEND_NAME not in registry._COMPILER_FNS:
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
    backend options too. The module is compiled (and its engines built) by one call with
    `arg_inputs` before it is returned, so errors surface here."""
    register()
    opts = _settings_to_options(settings)
    opts.update(options)
    parse_options(opts)  # validate now rather than at the first call
    compiled = torch.compile(module, backend=BACKEND_NAME, options=opts, dynamic=False)
    args = [a.example_tensor() if hasattr(a, "example_tensor") else a for a in (arg_inputs or [])]
    with torch.no_grad():
        compiled(*args)
    return compiled
