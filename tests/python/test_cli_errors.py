"""Malformed input to the `shardrt` CLI is a clear error: exit code 1, a message on stderr
that names what is wrong, and no crash (no signal, no abort, no uncaught exception).

The models are built with onnx.helper, so these tests need only onnx and numpy."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from shardrt_harness import CliResult

pytestmark = pytest.mark.requires("onnx")

OPSET = 17
# A bias whose bytes are easy to find in the engine file (the flipped-weight test).
BIAS = np.array([1.2345678, -2.3456789, 3.4567891, -4.5678912], dtype=np.float32)
PROFILE = "feat:1x4/2x4/4x4,gain:1x4/2x4/4x4"


def assert_clean_error(r: CliResult, *needles: str) -> None:
    """Exit code 1 (the CLI's error exit), stderr carries an error message naming each of
    `needles`, and nothing suggests a crash."""
    assert r.returncode is not None and r.returncode >= 0, f"crashed or hung: {r.describe()}"
    assert r.returncode == 1, f"expected exit code 1: {r.describe()}"
    err = r.stderr
    assert "error" in err.lower(), f"no error message on stderr: {r.describe()}"
    for crash in ("terminate called", "Aborted", "Segmentation fault", "core dumped", "AddressSanitizer",
                  "std::bad_alloc"):
        assert crash not in err, f"stderr suggests a crash ({crash!r}): {r.describe()}"
    for n in needles:
        assert n in err, f"the error does not mention {n!r}: {r.describe()}"


def _model(nodes, inputs, outputs, initializers=(), opset=OPSET, name="cli_errors"):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="shardrt-tests")
    m.ir_version = 8  # the IR version of opset 17's release: accepted everywhere
    return m


def _valid_model():
    """Y = Relu(feat) * gain + BIAS, feat and gain float [N, 4] with N dynamic (input names
    distinctive enough that finding them in a message means the message names them)."""
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4])
    s = helper.make_tensor_value_info("gain", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])
    nodes = [
        helper.make_node("Relu", ["feat"], ["r"], name="relu"),
        helper.make_node("Mul", ["r", "gain"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "bias"], ["Y"], name="add_bias"),
    ]
    return _model(nodes, [x, s], [y], [numpy_helper.from_array(BIAS, "bias")])


def _save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def _inputs(n=2, dtype=np.float32):
    rng = np.random.default_rng(7)
    return {"feat": rng.standard_normal((n, 4)).astype(dtype), "gain": rng.standard_normal((n, 4)).astype(dtype)}


def _write_inputs(tmp: Path, arrays: dict[str, np.ndarray]) -> dict[str, Path]:
    paths = {}
    for k, v in arrays.items():
        p = tmp / f"{k}.npy"
        np.save(p, v)
        paths[k] = p
    return paths


@pytest.fixture(scope="module")
def valid_onnx(tmp_path_factory) -> Path:
    return _save(_valid_model(), tmp_path_factory.mktemp("cli_errors") / "valid.onnx")


@pytest.fixture(scope="module")
def engine(shardrt, valid_onnx) -> Path:
    path = valid_onnx.with_suffix(".engine")
    r = shardrt.build(valid_onnx, path, shapes=PROFILE)
    assert r.returncode == 0, f"the valid model does not build: {r.describe()}"
    return path


# ---------------------------------------------------------------------------------------
# Positive control: without it, every error test below could pass for the wrong reason.

def test_valid_model_runs_correctly(shardrt, engine, tmp_path):
    ins = _inputs()
    r = shardrt.run(engine, _write_inputs(tmp_path, ins), tmp_path / "out")
    assert r.returncode == 0, r.describe()
    y = np.load(tmp_path / "out" / "Y.npy")
    # Relu, one multiply and one add per element: exact up to one rounding of the Mul/Add
    # (no fused multiply-add is assumed either way), so 1e-6 relative.
    np.testing.assert_allclose(y, np.maximum(ins["feat"], 0) * ins["gain"] + BIAS, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Malformed ONNX files (shardrt build)

def test_truncated_onnx(shardrt, valid_onnx, tmp_path):
    data = valid_onnx.read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    assert_clean_error(shardrt.build(bad, tmp_path / "e.engine", shapes=PROFILE), str(bad))
    assert not (tmp_path / "e.engine").exists(), "a failed build left an engine file behind"


def test_empty_onnx(shardrt, tmp_path):
    bad = tmp_path / "empty.onnx"
    bad.write_bytes(b"")
    assert_clean_error(shardrt.build(bad, tmp_path / "e.engine"), str(bad))


def test_missing_onnx_file(shardrt, tmp_path):
    assert_clean_error(shardrt.build(tmp_path / "nope.onnx", tmp_path / "e.engine"), "nope.onnx")


def _corrupt_structurally(data: bytes) -> bytes:
    """Overwrites 16 bytes near the middle with 0xFF (an over-long varint) at the first
    offset where protobuf itself rejects the result, so the expected outcome is a parse error
    and not a model with a few different weight bytes."""
    import onnx
    from google.protobuf.message import DecodeError

    mid = len(data) // 2
    for off in [mid + d for d in range(0, len(data) // 2 - 16)] + list(range(mid, 0, -1)):
        cand = data[:off] + b"\xff" * 16 + data[off + 16:]
        try:
            onnx.load_from_string(cand)
        except (DecodeError, RuntimeError, ValueError):
            return cand
    pytest.fail("could not find an offset where protobuf rejects the corruption (test setup)")


def test_corrupted_onnx_bytes(shardrt, valid_onnx, tmp_path):
    bad = tmp_path / "corrupted.onnx"
    bad.write_bytes(_corrupt_structurally(valid_onnx.read_bytes()))
    assert_clean_error(shardrt.build(bad, tmp_path / "e.engine", shapes=PROFILE), str(bad))


def test_dangling_node_input(shardrt, tmp_path):
    """A protobuf-valid model whose node reads a tensor nothing defines."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node("Add", ["X", "ghost_tensor"], ["Y"], name="add_ghost")]
    path = _save(_model(nodes, [x], [y]), tmp_path / "dangling.onnx")
    assert_clean_error(shardrt.build(path, tmp_path / "e.engine"), "ghost_tensor")


def test_unsupported_made_up_op(shardrt, tmp_path):
    """Every unsupported node is listed with its name, op type and the model's opset."""
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 4])
    nodes = [
        helper.make_node("FrobnicateXYZ", ["X"], ["f"], name="first_frob"),
        helper.make_node("Relu", ["f"], ["g"], name="relu"),
        helper.make_node("Quuxify", ["g"], ["Y"], name="second_quux"),
    ]
    path = _save(_model(nodes, [x], [y]), tmp_path / "made_up.onnx")
    r = shardrt.build(path, tmp_path / "e.engine")
    assert_clean_error(r, "first_frob", "FrobnicateXYZ", "second_quux", "Quuxify")
    assert re.search(rf"opset\D{{0,3}}{OPSET}\b", r.stderr), f"the error does not name opset {OPSET}: {r.describe()}"


def test_unsupported_if(shardrt, tmp_path):
    """`If` (control flow with subgraphs) is refused with node name, op type and opset."""
    from onnx import TensorProto, helper

    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [2, 4])

    def branch(op, name):
        out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2, 4])
        return helper.make_graph([helper.make_node(op, ["X"], [f"{name}_out"], name=f"{name}_node")], name, [], [out])

    node = helper.make_node("If", ["cond"], ["Y"], name="branchy_if",
                            then_branch=branch("Relu", "then"), else_branch=branch("Neg", "else"))
    path = _save(_model([node], [cond, x], [y]), tmp_path / "if.onnx")
    r = shardrt.build(path, tmp_path / "e.engine")
    assert_clean_error(r, "branchy_if", "If")
    assert re.search(rf"opset\D{{0,3}}{OPSET}\b", r.stderr), f"the error does not name opset {OPSET}: {r.describe()}"


def test_bad_shapes_argument(shardrt, valid_onnx, tmp_path):
    """A malformed --shapes value is an error naming the offending text."""
    r = shardrt.build(valid_onnx, tmp_path / "e.engine", shapes="feat:1xfoo/2x4/4x4,gain:1x4/2x4/4x4")
    assert_clean_error(r, "foo")


# ---------------------------------------------------------------------------------------
# Damaged engine files (shardrt run)

def test_truncated_engine(shardrt, engine, tmp_path):
    data = engine.read_bytes()
    ins = _write_inputs(tmp_path, _inputs())
    for cut in (len(data) // 2, len(data) - 1, 40):  # mid-file, last byte gone, inside the fixed header
        bad = tmp_path / f"truncated_{cut}.engine"
        bad.write_bytes(data[:cut])
        assert_clean_error(shardrt.run(bad, ins, tmp_path / "out"), bad.name)


def test_flipped_weight_byte_fails_checksum(shardrt, engine, tmp_path):
    data = bytearray(engine.read_bytes())
    at = data.find(BIAS.tobytes())
    # The bias is stored as written unless a pass rewrote it; then the last byte of the file
    # (inside the last weight tensor) is the fallback.
    pos = at + 5 if at >= 0 else len(data) - 1
    data[pos] ^= 0x40
    bad = tmp_path / "flipped.engine"
    bad.write_bytes(bytes(data))
    ins = _write_inputs(tmp_path, _inputs())
    assert_clean_error(shardrt.run(bad, ins, tmp_path / "out"), "checksum")
    # The damage is in the weights only: skipping the check loads and runs the engine.
    r = shardrt.run(bad, ins, tmp_path / "out2", extra=["--skip-checksum"])
    assert r.returncode == 0, f"with --skip-checksum the engine should still run: {r.describe()}"


def test_not_an_engine(shardrt, valid_onnx, tmp_path):
    assert_clean_error(shardrt.run(valid_onnx, _write_inputs(tmp_path, _inputs()), tmp_path / "out"),
                       str(valid_onnx))


def test_missing_engine_file(shardrt, tmp_path):
    assert_clean_error(shardrt.run(tmp_path / "nope.engine", _write_inputs(tmp_path, _inputs()), tmp_path / "out"),
                       "nope.engine")


def test_inspect_damaged_engine(shardrt, engine, tmp_path):
    bad = tmp_path / "truncated.engine"
    bad.write_bytes(engine.read_bytes()[: 100])
    assert_clean_error(shardrt.inspect(bad), bad.name)


# ---------------------------------------------------------------------------------------
# Wrong inputs (shardrt run)

def test_wrong_input_name(shardrt, engine, tmp_path):
    ins = _inputs()
    paths = _write_inputs(tmp_path, {"feat_typo": ins["feat"], "gain": ins["gain"]})
    assert_clean_error(shardrt.run(engine, paths, tmp_path / "out"), "feat_typo")


def test_input_shape_outside_profile(shardrt, engine, tmp_path):
    # The profile's max batch is 4.
    assert_clean_error(shardrt.run(engine, _write_inputs(tmp_path, _inputs(n=8)), tmp_path / "out"), "feat", "8")


def test_input_wrong_static_dim(shardrt, engine, tmp_path):
    ins = {"feat": np.zeros((2, 5), np.float32), "gain": np.zeros((2, 4), np.float32)}
    assert_clean_error(shardrt.run(engine, _write_inputs(tmp_path, ins), tmp_path / "out"), "feat")


def test_input_wrong_rank(shardrt, engine, tmp_path):
    ins = {"feat": np.zeros((2, 4, 1), np.float32), "gain": np.zeros((2, 4), np.float32)}
    assert_clean_error(shardrt.run(engine, _write_inputs(tmp_path, ins), tmp_path / "out"), "feat")


def test_input_wrong_dtype(shardrt, engine, tmp_path):
    ins = _inputs()
    ins["gain"] = ins["gain"].astype(np.float64)
    r = shardrt.run(engine, _write_inputs(tmp_path, ins), tmp_path / "out")
    assert_clean_error(r, "gain")
    assert re.search(r"fp64|float64|double", r.stderr), f"the error does not name the dtype given: {r.describe()}"


def test_missing_input(shardrt, engine, tmp_path):
    ins = _inputs()
    del ins["gain"]
    assert_clean_error(shardrt.run(engine, _write_inputs(tmp_path, ins), tmp_path / "out"), "gain")


def test_missing_npy_file(shardrt, engine, tmp_path):
    paths = _write_inputs(tmp_path, _inputs())
    paths["gain"] = tmp_path / "does_not_exist.npy"
    assert_clean_error(shardrt.run(engine, paths, tmp_path / "out"), "does_not_exist.npy")


def test_malformed_npy_file(shardrt, engine, tmp_path):
    paths = _write_inputs(tmp_path, _inputs())
    bad = tmp_path / "garbage.npy"
    bad.write_bytes(b"\x93NUMPY\x01\x00garbage that is no header")
    paths["gain"] = bad
    assert_clean_error(shardrt.run(engine, paths, tmp_path / "out"), "garbage.npy")


def test_input_argument_without_equals(shardrt, engine, tmp_path):
    r = shardrt.call(["run", engine, "--input", "feat", "--output-dir", tmp_path / "out"])
    assert_clean_error(r, "NAME=FILE.npy")
