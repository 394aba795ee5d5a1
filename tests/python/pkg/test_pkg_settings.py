"""shardrt.compile's settings: the table, validation, the deprecated enabled_precisions and
the torch.compile path switch."""
import sys
import warnings

import pytest
import torch

from pkg_util import import_shardrt

shardrt = import_shardrt()
from shardrt._settings import SETTINGS, parse_settings  # noqa: E402

TORCH_TRT_NAMES = {"use_distributed_mode_trace", "use_explicit_typing", "enable_autocast", "autocast_dtype",
                   "min_block_size", "torch_executed_ops", "use_python_runtime", "device", "enabled_precisions"}


def test_table_has_the_torch_tensorrt_names_and_defaults():
    assert TORCH_TRT_NAMES <= set(SETTINGS)
    s = parse_settings()
    assert s.use_distributed_mode_trace is False and s.use_explicit_typing is True
    assert s.min_block_size == 5 and s.torch_executed_ops == frozenset() and s.autocast is None


def test_unknown_setting_lists_the_known_ones():
    with pytest.raises(TypeError) as e:
        shardrt.compile(torch.nn.ReLU(), arg_inputs=[torch.ones(2)], no_such_setting=1)
    msg = str(e.value)
    assert "no_such_setting" in msg and all(n in msg for n in TORCH_TRT_NAMES)


def test_bad_values():
    with pytest.raises(TypeError, match="min_block_size"):
        parse_settings(min_block_size=0)
    with pytest.raises(TypeError, match="autocast_dtype"):
        parse_settings(autocast_dtype=torch.float32)
    with pytest.raises(ValueError, match="use_explicit_typing=False"):
        parse_settings(enable_autocast=True)
    assert parse_settings(use_explicit_typing=False, enable_autocast=True,
                          autocast_dtype=torch.bfloat16).autocast == "bfloat16"


def test_enabled_precisions_is_deprecated():
    with pytest.warns(DeprecationWarning, match="use_explicit_typing"):
        s = parse_settings(enabled_precisions={torch.float32, torch.float16})
    assert s.autocast == "float16"  # the old meaning: fp16 allowed
    with pytest.warns(DeprecationWarning):
        assert parse_settings(enabled_precisions={torch.float32}).autocast is None


def test_accepted_compatibility_settings():
    s = parse_settings(use_python_runtime=True, truncate_long_and_double=True, torch_executed_ops={"aten.add"})
    assert s.use_python_runtime and s.torch_executed_ops == frozenset({"aten.add"})


def test_distributed_mode_trace_calls_the_dynamo_path(monkeypatch):
    import types
    called = {}
    fake = types.ModuleType("shardrt.dynamo")

    def compile_with_dynamo(module, arg_inputs, settings):
        called.update(module=module, args=arg_inputs, settings=settings)
        return "compiled"

    fake.compile_with_dynamo = compile_with_dynamo
    monkeypatch.setitem(sys.modules, "shardrt.dynamo", fake)
    m = torch.nn.ReLU()
    assert shardrt.compile(m, arg_inputs=[torch.ones(2)], use_distributed_mode_trace=True,
                           min_block_size=1) == "compiled"
    assert called["module"] is m and called["settings"].min_block_size == 1


def test_distributed_mode_trace_without_the_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "shardrt.dynamo", None)  # import fails
    with pytest.raises(RuntimeError, match="torch.compile backend"):
        shardrt.compile(torch.nn.ReLU(), arg_inputs=[torch.ones(2)], use_distributed_mode_trace=True)
