"""The settings of `shardrt.compile`: one table, names and meanings as Torch-TensorRT's.

Each entry: default value, a check, and what it means. `parse_settings(**kw)` validates a
call's keyword arguments against the table (unknown name: TypeError listing the known ones).
"""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable

_FLOAT_LOW = ("float16", "bfloat16")


def _dtype_name(d: Any) -> str:
    """'float16' for torch.float16, numpy's float16, 'float16', 'fp16', 'half'..."""
    s = str(d).split(".")[-1]
    return {"half": "float16", "fp16": "float16", "bf16": "bfloat16", "float": "float32",
            "fp32": "float32", "double": "float64"}.get(s, s)


@dataclasses.dataclass(frozen=True)
class Setting:
    default: Any
    check: Callable[[Any], bool]
    doc: str
    expected: str


def _is_bool(v):
    return isinstance(v, bool)


SETTINGS: dict[str, Setting] = {
    "use_distributed_mode_trace": Setting(
        False, _is_bool,
        "Compile through the torch.compile (FX) backend instead of the ONNX export: required for "
        "modules with DTensor parameters (parallelize_module) and for collective ops.", "bool"),
    "use_explicit_typing": Setting(
        True, _is_bool,
        "Respect the model's dtypes (the engine computes in the types the model has). False, with "
        "enable_autocast=True, lets shardrt lower float math to autocast_dtype.", "bool"),
    "enable_autocast": Setting(
        False, _is_bool,
        "With use_explicit_typing=False: run float math in autocast_dtype (fp32 accumulation where "
        "the kernels accumulate).", "bool"),
    "autocast_dtype": Setting(
        "float16", lambda v: _dtype_name(v) in _FLOAT_LOW,
        "The autocast type: torch.float16 or torch.bfloat16.", "torch.float16 | torch.bfloat16"),
    "min_block_size": Setting(
        5, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "Smallest number of ops worth a shardrt engine; smaller partitions stay in PyTorch "
        "(torch.compile path; the ONNX path compiles the whole module).", "int >= 1"),
    "torch_executed_ops": Setting(
        frozenset(), lambda v: isinstance(v, (set, frozenset, list, tuple)),
        "Ops left in PyTorch (names such as 'torch.ops.aten.softmax.default' or the op objects; "
        "torch.compile path).", "set of op names"),
    "use_python_runtime": Setting(
        None, lambda v: v is None or _is_bool(v),
        "Accepted for Torch-TensorRT compatibility; shardrt always runs its C++ runtime.", "bool"),
    "device": Setting(
        None, lambda v: v is None or str(v).split(":")[0] in ("cpu", "cuda"),
        "'cpu' or 'cuda' (default: where the example inputs are).", "'cpu' | 'cuda'"),
    "enabled_precisions": Setting(
        None, lambda v: v is None or isinstance(v, (set, frozenset, list, tuple)),
        "Deprecated (as in Torch-TensorRT): use use_explicit_typing / enable_autocast. A set with "
        "float16 or bfloat16 turns autocast on to that type.", "set of dtypes"),
    "truncate_long_and_double": Setting(
        False, _is_bool,
        "Accepted for Torch-TensorRT compatibility: shardrt runs int64 and float64 natively, so "
        "nothing is truncated.", "bool"),
    "debug": Setting(False, _is_bool, "Print what each build pass did (BuildConfig.verbose).", "bool"),
    "optimize": Setting(True, _is_bool, "Run shardrt's pass pipeline (fusions, folding).", "bool"),
}


@dataclasses.dataclass
class CompileSettings:
    use_distributed_mode_trace: bool = False
    use_explicit_typing: bool = True
    enable_autocast: bool = False
    autocast_dtype: str = "float16"
    min_block_size: int = 5
    torch_executed_ops: frozenset = frozenset()
    use_python_runtime: bool | None = None
    device: str | None = None
    enabled_precisions: frozenset | None = None
    truncate_long_and_double: bool = False
    debug: bool = False
    optimize: bool = True

    @property
    def autocast(self) -> str | None:
        """The BuildConfig.autocast these settings ask for ('float16', 'bfloat16' or None)."""
        if self.enable_autocast and not self.use_explicit_typing:
            return self.autocast_dtype
        return None


def known_settings() -> str:
    return ", ".join(sorted(SETTINGS))


def parse_settings(**kw: Any) -> CompileSettings:
    unknown = sorted(k for k in kw if k not in SETTINGS)
    if unknown:
        raise TypeError(f"shardrt.compile: unknown setting(s) {', '.join(unknown)}; the settings are: "
                        f"{known_settings()}")
    for k, v in kw.items():
        s = SETTINGS[k]
        if not s.check(v):
            raise TypeError(f"shardrt.compile: setting {k}={v!r}: expected {s.expected}")
    out = CompileSettings(**{k: v for k, v in kw.items()})
    out.autocast_dtype = _dtype_name(out.autocast_dtype)
    out.torch_executed_ops = frozenset(out.torch_executed_ops)
    if out.device is not None:
        out.device = str(out.device).split(":")[0]
    if out.enabled_precisions is not None:
        names = {_dtype_name(d) for d in out.enabled_precisions}
        low = [d for d in _FLOAT_LOW if d in names]
        what = (f"it turns autocast to {low[0]} on (use_explicit_typing=False, enable_autocast=True, "
                f"autocast_dtype={low[0]})" if low else "it has no effect here")
        warnings.warn("shardrt.compile: enabled_precisions is deprecated; use use_explicit_typing / "
                      f"enable_autocast / autocast_dtype instead ({what})", DeprecationWarning, stacklevel=3)
        if low and "enable_autocast" not in kw and "use_explicit_typing" not in kw:
            out.use_explicit_typing, out.enable_autocast, out.autocast_dtype = False, True, low[0]
    if out.enable_autocast and out.use_explicit_typing:
        raise ValueError("shardrt.compile: enable_autocast=True needs use_explicit_typing=False (with explicit "
                         "typing the engine keeps the model's dtypes)")
    return out
