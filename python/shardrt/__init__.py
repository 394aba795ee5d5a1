"""shardrt: compile PyTorch modules (or ONNX files, or networks built in code) into shardrt
engines and run them, on one process or many (Torch-TensorRT's Python API).

    import shardrt
    trt_model = shardrt.compile(model, arg_inputs=[x])      # a torch.nn.Module
    y = trt_model(x)

The native layer is shardrt._C (Network, BuildConfig, build_engine, build_engine_from_onnx,
Engine, ExecutionContext, Communicator).
"""
from __future__ import annotations

from . import _C
from ._C import (BuildConfig, Communicator, DType, Engine, Error, ExecutionContext, HostTensor,  # noqa: F401
                 ITensor, Network, build_engine, build_engine_from_onnx, build_rank_engine)
from ._input import Input

__version__ = "0.1.0"


def compile(module, arg_inputs=None, inputs=None, kwarg_inputs=None, ir="default", **settings):
    from ._compile import compile as _compile
    return _compile(module, arg_inputs=arg_inputs, inputs=inputs, kwarg_inputs=kwarg_inputs, ir=ir, **settings)


compile.__doc__ = """Compiles a torch.nn.Module for example inputs (tensors or shardrt.Input) into a module
running a shardrt engine. Settings: see shardrt._settings.SETTINGS."""


def save(compiled, path):
    """Saves a compiled module (per-rank engine files in a distributed run)."""
    from ._dist import save as _save
    return _save(compiled, path)


def load(path, device=None, comm=None, verify_checksum=True):
    """Loads a module saved by shardrt.save (this rank's engine in a distributed run)."""
    from ._dist import load as _load
    return _load(path, device=device, comm=comm, verify_checksum=verify_checksum)


def _register_torch_compile_backend():
    """`torch.compile(..., backend="shardrt")` after `import shardrt`, as Torch-TensorRT does:
    importing shardrt.dynamo registers the backend. Without torch (or with a broken backend)
    the rest of the package still works; the error shows when the backend is used."""
    global _backend_error
    try:
        import importlib
        importlib.import_module(".dynamo", __name__)
    except Exception as e:  # noqa: BLE001
        _backend_error = e


_backend_error = None
_register_torch_compile_backend()


def __getattr__(name):
    # `shardrt.distributed` without importing torch at package import.
    if name == "distributed":
        import importlib
        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module 'shardrt' has no attribute {name!r}")


__all__ = ["BuildConfig", "Communicator", "DType", "Engine", "Error", "ExecutionContext", "HostTensor", "ITensor",
           "Input", "Network", "build_engine", "build_engine_from_onnx", "build_rank_engine", "compile", "load",
           "save"]
