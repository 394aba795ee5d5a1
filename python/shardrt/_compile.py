"""shardrt.compile: a torch.nn.Module in, a torch.nn.Module out whose forward runs a shardrt
engine (Torch-TensorRT's `torch_tensorrt.compile`).

The default path exports the module to ONNX (torch.onnx.export's dynamo exporter, else the
TorchScript exporter), builds an engine from the file and runs it in an ExecutionContext.
With use_distributed_mode_trace=True the module goes through the torch.compile backend
(shardrt.dynamo) instead: the path for DTensor parameters and collective ops.
"""
from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
import warnings
from typing import Any, Sequence

import torch
from torch.utils import _pytree as pytree

from . import _C
from ._dlpack import run_context
from ._input import Input
from ._settings import CompileSettings, parse_settings

_COLLECTIVE_OPS = ("shardrt.AllReduce", "shardrt.AllGather", "shardrt.ReduceScatter", "shardrt.Wait")


class CompiledModule(torch.nn.Module):
    """The module shardrt.compile returns: forward(*args) runs the engine on the tensors the
    module was compiled for (same positions; non-tensor arguments were fixed at compile time)
    and returns outputs in the module's own structure (tensors, tuples, dicts, ModelOutput)."""

    def __init__(self, engine, input_names: Sequence[str], output_names: Sequence[str], out_spec: Any,
                 device: str, arg_is_tensor: Sequence[bool], kwarg_names: Sequence[str] = (), comm: Any = None,
                 run_device: str = "cpu", compile_seconds: float = 0.0, cuda_index: int | None = None):
        super().__init__()
        self.engine = engine
        self.input_names = list(input_names)
        self.output_names = list(output_names)
        self.out_spec = out_spec
        self.device = device
        self.arg_is_tensor = list(arg_is_tensor)
        self.kwarg_names = list(kwarg_names)
        self.comm = comm
        self.run_device = run_device
        self.compile_seconds = compile_seconds
        self._bound = {b["name"] for b in engine.inputs}
        self.context = _new_context(engine, run_device, comm, cuda_index)

    def _flat_inputs(self, args, kwargs) -> list:
        if len(args) > len(self.arg_is_tensor):
            raise TypeError(f"shardrt: the compiled module takes {len(self.arg_is_tensor)} positional "
                            f"arguments, got {len(args)}")
        flat = [a for a, is_t in zip(args, self.arg_is_tensor) if is_t]
        for k in self.kwarg_names:
            if k not in kwargs:
                raise TypeError(f"shardrt: the compiled module needs keyword argument '{k}'")
            flat.append(kwargs[k])
        extra = set(kwargs) - set(self.kwarg_names)
        if extra:
            raise TypeError(f"shardrt: unexpected keyword argument(s) {sorted(extra)} (compiled with "
                            f"{self.kwarg_names})")
        return flat

    def forward(self, *args, **kwargs):
        flat = self._flat_inputs(args, kwargs)
        if len(flat) != len(self.input_names):
            raise TypeError(f"shardrt: expected {len(self.input_names)} tensor inputs, got {len(flat)}")
        # CUDA tensors stay on the GPU when the context runs there (the current torch stream
        # orders the run); otherwise the engine borrows host tensors (see _dlpack.py).
        feed = {n: t for n, t in zip(self.input_names, flat) if n in self._bound}
        tensors = run_context(self.context, feed, self.output_names, self.device)
        if self.out_spec is None:
            return tensors[0] if len(tensors) == 1 else tuple(tensors)
        return pytree.tree_unflatten(tensors, self.out_spec)

    def extra_repr(self) -> str:
        return (f"inputs={self.input_names}, outputs={self.output_names}, device={self.device!r}, "
                f"layers={self.engine.layer_count}")


def _new_context(engine, run_device: str, comm: Any, cuda_index: int | None):
    """An ExecutionContext; on "cuda" created on GPU `cuda_index` (the inputs' GPU; None: the
    current one), since a context runs on the GPU current when it is created."""
    if run_device == "cuda" and cuda_index is not None:
        with torch.cuda.device(cuda_index):
            return _C.ExecutionContext(engine, device=run_device, comm=comm)
    return _C.ExecutionContext(engine, device=run_device, comm=comm)


class _Positional(torch.nn.Module):
    """The module called with its tensor inputs only, positionally (what the exporters see):
    non-tensor arguments are fixed, keyword tensors come after the positional ones."""

    def __init__(self, module, args, arg_is_tensor, kwarg_names, fixed_kwargs):
        super().__init__()
        self.module = module
        self.args = list(args)
        self.arg_is_tensor = list(arg_is_tensor)
        self.kwarg_names = list(kwarg_names)
        self.fixed_kwargs = dict(fixed_kwargs)

    def forward(self, *tensors):
        it = iter(tensors)
        args = [next(it) if is_t else a for a, is_t in zip(self.args, self.arg_is_tensor)]
        kwargs = dict(self.fixed_kwargs)
        for k in self.kwarg_names:
            kwargs[k] = next(it)
        return self.module(*args, **kwargs)


def _as_input(x: Any, name: str) -> Input | None:
    if isinstance(x, Input):
        if x.name is None:
            x.name = name
        return x
    if isinstance(x, torch.Tensor):
        return Input.from_tensor(x, name=name)
    return None  # a non-tensor argument: fixed at compile time


def _module_device(module: torch.nn.Module) -> torch.device:
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def _export_onnx(module, example: tuple, specs: list[Input], path: str, output_count: int) -> str:
    names = [s.name for s in specs]
    out_names = [f"output_{i}" for i in range(output_count)]
    try:
        Dim = torch.export.Dim
        # One entry: the wrapper's forward(*tensors) takes the tensors as one var-positional.
        dynamic = (tuple({d: Dim.DYNAMIC for d in s.dynamic_dims()} or None for s in specs),)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(module, example, path, input_names=names, output_names=out_names,
                              dynamic_shapes=dynamic if any(s.is_dynamic for s in specs) else None,
                              dynamo=True, external_data=False, verbose=False)
        return "dynamo"
    except Exception as e:  # the dynamo exporter does not take every model: TorchScript's may
        first = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    dynamic_axes = {s.name: {d: f"{s.name}_d{d}" for d in s.dynamic_dims()} for s in specs if s.is_dynamic}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, example, path, input_names=names, output_names=out_names,
                          dynamic_axes=dynamic_axes or None, opset_version=18, dynamo=False)
    warnings.warn(f"shardrt.compile: the dynamo ONNX export failed ({first}); the module was exported with "
                  "the TorchScript exporter instead", stacklevel=3)
    return "torchscript"


def _compile_onnx(module, args: list, kwargs: dict, s: CompileSettings) -> CompiledModule:
    t0 = time.perf_counter()
    arg_specs = [_as_input(a, f"input_{i}") for i, a in enumerate(args)]
    kw_specs = {k: _as_input(v, k) for k, v in kwargs.items()}
    fixed_kwargs = {k: v for k, v in kwargs.items() if kw_specs[k] is None}
    kwarg_names = [k for k, spec in kw_specs.items() if spec is not None]
    arg_is_tensor = [spec is not None for spec in arg_specs]
    specs = [x for x in arg_specs if x is not None] + [kw_specs[k] for k in kwarg_names]
    if len({x.name for x in specs}) != len(specs):
        raise ValueError(f"shardrt.compile: input names repeat: {[x.name for x in specs]}")

    in_device = next((a.device for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)), None)
    device = s.device or (in_device.type if in_device is not None else _module_device(module).type)
    mdev = _module_device(module)
    example = tuple(x.example_tensor().to(mdev) for x in specs)
    wrapped = _Positional(module, args, arg_is_tensor, kwarg_names, fixed_kwargs).eval()

    with torch.no_grad():
        eager = wrapped(*example)
    flat, spec = pytree.tree_flatten(eager)
    if not all(isinstance(t, torch.Tensor) for t in flat):
        spec = None  # outputs with non-tensor leaves come back as a flat tuple of the tensors
        flat = [t for t in flat if isinstance(t, torch.Tensor)]

    with tempfile.TemporaryDirectory(prefix="shardrt_compile_") as tmp:
        path = os.path.join(tmp, "model.onnx")
        with torch.no_grad():
            _export_onnx(wrapped, example, specs, path, len(flat))
        cfg = _C.BuildConfig(
            shapes={x.name: (list(x.min_shape), list(x.opt_shape), list(x.max_shape)) for x in specs if x.is_dynamic},
            autocast=s.autocast, optimize=s.optimize, device="cpu", verbose=s.debug)
        engine = _C.build_engine_from_onnx(path, cfg)

    out_names = [b["name"] for b in engine.outputs]
    if len(out_names) != len(flat):
        spec = None  # the exporter dropped or added outputs: hand back what the engine makes
    cuda_index = in_device.index if in_device is not None and in_device.type == "cuda" else None
    return CompiledModule(engine, [x.name for x in specs], out_names, spec, device, arg_is_tensor, kwarg_names,
                          run_device=_run_device(device), compile_seconds=time.perf_counter() - t0,
                          cuda_index=cuda_index)


def _run_device(device: str) -> str:
    # Without a CUDA build the engine runs on the CPU; CUDA tensors are staged through the host.
    # With one, CUDA tensors go to the engine in place (_dlpack.run_cuda).
    return "cuda" if device == "cuda" and _C.with_cuda else "cpu"


def compile(module: torch.nn.Module, arg_inputs: Sequence[Any] | None = None, inputs: Sequence[Any] | None = None,
            kwarg_inputs: dict[str, Any] | None = None, ir: str = "default", **settings: Any) -> torch.nn.Module:
    """Compiles `module` for the example inputs `arg_inputs` (tensors or shardrt.Input; `inputs`
    is the older name of the same argument). Returns a torch.nn.Module running a shardrt engine.
    The settings are those of shardrt._settings.SETTINGS (Torch-TensorRT's names)."""
    if arg_inputs is not None and inputs is not None:
        raise ValueError("shardrt.compile: give arg_inputs or inputs, not both")
    if ir not in ("default", "dynamo"):
        raise ValueError(f"shardrt.compile: ir={ir!r}: shardrt compiles through 'default' (ONNX export) or "
                         "'dynamo'; for torch.compile use backend='shardrt'")
    s = parse_settings(**settings)
    args = list(arg_inputs if arg_inputs is not None else (inputs or []))
    kwargs = dict(kwarg_inputs or {})
    if isinstance(module, torch.nn.Module):
        module = module.eval()
    if s.use_distributed_mode_trace:
        try:
            from .dynamo import compile_with_dynamo
        except ImportError as e:
            raise RuntimeError("shardrt.compile: use_distributed_mode_trace=True needs the torch.compile backend "
                               f"(shardrt.dynamo.compile_with_dynamo), which is not available here: {e}") from e
        if kwargs:
            raise ValueError("shardrt.compile: kwarg_inputs are not supported with use_distributed_mode_trace")
        return compile_with_dynamo(module, args, s)
    if not args and not kwargs:
        raise ValueError("shardrt.compile: needs example inputs (arg_inputs=[tensor or shardrt.Input, ...])")
    return _compile_onnx(module, args, kwargs, s)


def compiled_uses_collectives(engine) -> bool:
    text = engine.inspect(False)
    return any(op in text for op in _COLLECTIVE_OPS)
