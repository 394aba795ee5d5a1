"""`shardrt run --check-numerics` (and `bench`): the first node whose output holds NaN or
Inf ends the run with exit code 1 and a message naming that node (not a later one), the
counts and the first bad index; clean runs are unaffected.

The model is built with onnx.helper, so these tests need only onnx and numpy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shardrt_harness import CliResult

pytestmark = pytest.mark.requires("onnx")

OPSET = 17
PROFILE = "feat:1x4/2x4/4x4"


def assert_clean_error(r: CliResult, *needles: str, absent: tuple[str, ...] = ()) -> None:
    assert r.returncode is not None and r.returncode >= 0, f"crashed or hung: {r.describe()}"
    assert r.returncode == 1, f"expected exit code 1: {r.describe()}"
    for crash in ("terminate called", "Aborted", "Segmentation fault", "core dumped", "AddressSanitizer"):
        assert crash not in r.stderr, f"stderr suggests a crash ({crash!r}): {r.describe()}"
    for n in needles:
        assert n in r.stderr, f"the error does not mention {n!r}: {r.describe()}"
    for n in absent:
        assert n not in r.stderr, f"the error mentions {n!r}, a node after the first bad one: {r.describe()}"


def _log_model():
    """Y = Relu(Log(feat) * 3) + 1: a negative `feat` makes the Log (the first node) produce
    NaN, which the later nodes carry (node names distinctive enough to find in messages)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["N", 4])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 4])
    nodes = [
        helper.make_node("Log", ["feat"], ["l"], name="log_of_feat"),
        helper.make_node("Mul", ["l", "three"], ["m"], name="mul_after_log"),
        helper.make_node("Relu", ["m"], ["r"], name="relu_later"),
        helper.make_node("Add", ["r", "one"], ["Y"], name="add_last"),
    ]
    inits = [numpy_helper.from_array(np.array(3.0, np.float32), "three"),
             numpy_helper.from_array(np.array(1.0, np.float32), "one")]
    graph = helper.make_graph(nodes, "numerics", [x], [y], initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="shardrt-tests")
    m.ir_version = 8
    return m


@pytest.fixture(scope="module")
def engine(shardrt, tmp_path_factory) -> Path:
    import onnx

    d = tmp_path_factory.mktemp("cli_numerics")
    onnx.save(_log_model(), str(d / "log.onnx"))
    path = d / "log.engine"
    r = shardrt.build(d / "log.onnx", path, shapes=PROFILE)
    assert r.returncode == 0, f"the model does not build: {r.describe()}"
    return path


def _write(tmp: Path, feat: np.ndarray) -> dict[str, Path]:
    p = tmp / "feat.npy"
    np.save(p, feat)
    return {"feat": p}


def test_clean_run_with_check_numerics(shardrt, engine, tmp_path):
    feat = np.array([[0.5, 1.0, 2.0, 4.0], [3.0, 0.25, 1.5, 8.0]], np.float32)
    r = shardrt.run(engine, _write(tmp_path, feat), tmp_path / "out", extra=["--check-numerics"])
    assert r.returncode == 0, r.describe()
    y = np.load(tmp_path / "out" / "Y.npy")
    # One log, one multiply, one add in fp32 against numpy's fp32: a few ulp, so 1e-5.
    np.testing.assert_allclose(y, np.maximum(np.log(feat) * 3, 0) + 1, rtol=1e-5, atol=1e-5)


def test_nan_names_the_node_that_made_it(shardrt, engine, tmp_path):
    feat = np.ones((3, 4), np.float32)
    feat[2, 1] = -1.0  # log(-1) = NaN at [2,1]
    feat[0, 3] = 0.0   # log(0) = -Inf at [0,3], the first bad element
    r = shardrt.run(engine, _write(tmp_path, feat), tmp_path / "out", extra=["--check-numerics"])
    assert_clean_error(r, "check-numerics", "log_of_feat", "Log", "1 NaN and 1 Inf", "[0,3]",
                       absent=("mul_after_log", "relu_later", "add_last"))
    # Without the flag the same run succeeds (the Relu may turn the NaN into 0 on its way).
    r = shardrt.run(engine, _write(tmp_path, feat), tmp_path / "out2")
    assert r.returncode == 0, r.describe()


def test_nan_in_an_input_is_named(shardrt, engine, tmp_path):
    feat = np.ones((2, 4), np.float32)
    feat[1, 2] = np.nan
    r = shardrt.run(engine, _write(tmp_path, feat), tmp_path / "out", extra=["--check-numerics"])
    assert_clean_error(r, "input 'feat'", "1 NaN", "[1,2]", absent=("log_of_feat",))


def test_environment_variable(shardrt, engine, tmp_path):
    feat = -np.ones((1, 4), np.float32)
    args = ["run", engine, "--input", f"feat={_write(tmp_path, feat)['feat']}", "--output-dir", tmp_path / "out"]
    import shardrt_harness

    if shardrt_harness.TEST_DEVICE != "cpu":
        args += ["--device", shardrt_harness.TEST_DEVICE]
    assert_clean_error(shardrt.call(args, env_extra={"SHARDRT_CHECK_NUMERICS": "1"}), "log_of_feat")


def test_bench_with_check_numerics(shardrt, engine):
    """bench feeds N(0,1) values from a fixed seed; of 16 (a [4, 4] input) several are
    negative (the first 8 happen not to be), so the Log makes NaN."""
    args = ["bench", engine, "--shapes", "feat:4x4", "--iterations", "1", "--warmup", "0", "--min-seconds", "0",
            "--check-numerics"]
    import shardrt_harness

    if shardrt_harness.TEST_DEVICE != "cpu":
        args += ["--device", shardrt_harness.TEST_DEVICE]
    assert_clean_error(shardrt.call(args), "log_of_feat", absent=("mul_after_log",))
