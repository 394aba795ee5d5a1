"""Helpers of the end-to-end tests: drive the `shardrt` CLI, export torch modules to ONNX
with either exporter, run ONNX Runtime, and compare outputs with readable messages.

torch and onnxruntime are imported inside the functions that need them, so that this
module imports (and the tests skip cleanly) where they are missing.
"""
from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import warnings
from pathlib import Path

import numpy as np

EXPORTERS = ["dynamo", "torchscript"]
# The TorchScript exporter's opset: 17 is the newest it supports fully (and what most
# deployed models carry); the dynamo exporter picks its own (currently 18+).
TORCHSCRIPT_OPSET = 17
# Each CLI call takes well under a second on these tiny models; this bound (with a wide
# margin for a loaded machine) turns a hang into a failure instead of a stuck suite.
CLI_TIMEOUT_S = 60

# Where the engines of the end-to-end tests run: SHARDRT_TEST_DEVICE=cuda builds them with
# `--device cuda` and runs them with `--device cuda` (scripts/gpu_test.sh sets it).
TEST_DEVICE = os.environ.get("SHARDRT_TEST_DEVICE", "cpu") or "cpu"
if TEST_DEVICE not in ("cpu", "cuda"):
    raise ValueError(f"SHARDRT_TEST_DEVICE={TEST_DEVICE!r}: expected cpu or cuda")
# Factor on the fp32 tolerances of the end-to-end tests. 1 on both devices: the CUDA GEMMs
# compute in fp32 (TF32 is never used), so a GPU run differs from torch only as the CPU
# backend does, by the order of summation and the exp/erf implementations (a few ulp per op),
# which the fp32 tolerances already cover with a 10x margin. Were TF32 ever enabled (10-bit
# mantissa, ~5e-4 relative per product) it would need about 100x, and a stated reason.
FP32_TOL_FACTOR = float(os.environ.get("SHARDRT_TEST_FP32_TOL_FACTOR", "1"))


# ---------------------------------------------------------------------------------------
# The CLI

@dataclasses.dataclass
class CliResult:
    args: list[str]
    returncode: int | None  # None: killed by the harness after `timed_out` seconds
    stdout: str
    stderr: str
    timed_out: float | None = None

    def describe(self) -> str:
        rc = self.returncode
        if rc is None:
            how = f"did not finish within {self.timed_out:g} s (hang?) and was killed"
        elif rc < 0:
            how = f"killed by signal {signal.Signals(-rc).name}"
        else:
            how = f"exit code {rc}"
        tail = self.stderr.strip()[-4000:]
        return f"`shardrt {' '.join(self.args)}` -> {how}\nstderr:\n{tail}"


def escape_file_name(name: str) -> str:
    """The CLI's output file naming (src/api/cli_util.h): bytes other than A-Z a-z 0-9 _ - .
    become %XX (upper-case hex), as does a leading '.'; an empty name is '%'."""
    if not name:
        return "%"
    out = []
    for i, b in enumerate(name.encode()):
        c = chr(b)
        if re.fullmatch(r"[A-Za-z0-9_\-.]", c) and not (i == 0 and c == "."):
            out.append(c)
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


class ShardrtError(Exception):
    """A CLI call that did not succeed; the message carries its stderr."""


class Shardrt:
    def __init__(self, binary: Path):
        self.binary = Path(binary)

    def call(self, args, env_extra=None, timeout=CLI_TIMEOUT_S) -> CliResult:
        env = dict(os.environ)
        env.update(env_extra or {})
        try:
            p = subprocess.run([str(self.binary), *map(str, args)], capture_output=True, text=True, env=env,
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:  # a hang: report it as such, with what it printed
            def text(x):
                return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")
            return CliResult([str(a) for a in args], None, text(e.stdout), text(e.stderr), timed_out=timeout)
        return CliResult([str(a) for a in args], p.returncode, p.stdout, p.stderr)

    def build(self, model: Path, engine: Path, shapes: str | None = None, autocast: str | None = None,
              extra=()) -> CliResult:
        args = ["build", model, "-o", engine]
        if TEST_DEVICE != "cpu":
            args += ["--device", TEST_DEVICE]
        if shapes:
            args += ["--shapes", shapes]
        if autocast:
            args += ["--autocast", autocast]
        return self.call([*args, *extra])

    def run(self, engine: Path, inputs: dict[str, Path], out_dir: Path, extra=()) -> CliResult:
        args = ["run", engine]
        for name, path in inputs.items():
            args += ["--input", f"{name}={path}"]
        args += ["--output-dir", out_dir, *extra]
        if TEST_DEVICE != "cpu" and "--device" not in map(str, extra):
            args += ["--device", TEST_DEVICE]
        # Poisoned activation buffers: a kernel that leaves part of its output unwritten
        # produces garbage instead of a lucky zero.
        return self.call(args, env_extra={"SHARDRT_POISON": "1"})

    def inspect(self, engine: Path, json_out: bool = False) -> CliResult:
        return self.call(["inspect", engine, *(["--json"] if json_out else [])])

    def build_or_raise(self, *a, **kw) -> None:
        r = self.build(*a, **kw)
        if r.returncode != 0:
            raise ShardrtError("engine build failed: " + r.describe())

    def run_arrays(self, engine: Path, inputs: dict[str, np.ndarray], work_dir: Path,
                   output_names: list[str]) -> dict[str, np.ndarray]:
        """Writes `inputs` as .npy files, runs the engine, reads back the named outputs."""
        work_dir.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, arr in inputs.items():
            p = work_dir / f"in_{escape_file_name(name)}.npy"
            np.save(p, np.ascontiguousarray(arr))
            paths[name] = p
        out_dir = work_dir / "out"
        r = self.run(engine, paths, out_dir)
        if r.returncode != 0:
            raise ShardrtError("engine run failed: " + r.describe())
        outs = {}
        for name in output_names:
            p = out_dir / (escape_file_name(name) + ".npy")
            if not p.exists():
                have = sorted(x.name for x in out_dir.iterdir()) if out_dir.exists() else []
                raise ShardrtError(f"run wrote no {p.name} for output '{name}' (it wrote {have})")
            outs[name] = np.load(p)
        return outs


def shapes_arg(spec, sizes_of_input) -> str:
    """--shapes value NAME:MIN/OPT/MAX,... for a ModelSpec's profile."""
    parts = []
    for name in spec.input_names:
        dims = [
            "x".join(str(d) for d in sizes_of_input(name, sizes))
            for sizes in spec.profile_sizes
        ]
        parts.append(f"{name}:{'/'.join(dims)}")
    return ",".join(parts)


# ---------------------------------------------------------------------------------------
# Export

class ExportFailed(Exception):
    pass


def export_onnx(module, spec, exporter: str, path: Path) -> None:
    """Exports `module` (forward takes spec.input_names, returns one tensor) to `path` with
    the given exporter, batch/sequence (etc.) axes dynamic. Raises ExportFailed with the
    exporter's own error."""
    import torch

    rng = np.random.default_rng(1234)
    example = spec.make_inputs(spec.example_sizes, rng)
    args = tuple(torch.from_numpy(example[n]) for n in spec.input_names)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                dims = {d: torch.export.Dim(d, min=lo, max=hi) for d, (lo, hi) in spec.dim_ranges.items()}
                dynamic_shapes = {n: {ax: dims[d] for ax, d in spec.dynamic_axes.get(n, {}).items()}
                                  for n in spec.input_names}
                torch.onnx.export(module, args, str(path), dynamo=True, input_names=spec.input_names,
                                  output_names=[spec.output_name], dynamic_shapes=dynamic_shapes)
            elif exporter == "torchscript":
                axes = {n: dict(spec.dynamic_axes.get(n, {})) for n in spec.input_names}
                axes[spec.output_name] = dict(spec.output_axes)
                torch.onnx.export(module, args, str(path), dynamo=False, input_names=spec.input_names,
                                  output_names=[spec.output_name], dynamic_axes=axes,
                                  opset_version=TORCHSCRIPT_OPSET)
            else:
                raise ValueError(exporter)
    except Exception as e:  # the exporter's own failure, whatever its type
        msg = f"{type(e).__name__}: {e}".strip().splitlines()
        # The last line of a chained exporter error is usually the real cause.
        short = msg[0][:300] + (" ... " + msg[-1][:300] if len(msg) > 1 else "")
        raise ExportFailed(f"{exporter} exporter cannot export {spec.name}: {short}") from e


def input_dims(spec, name: str, sizes: dict[str, int]) -> list[int]:
    """Concrete dims of input `name` at `sizes`, from the spec's own input generator."""
    arrays = spec.make_inputs(sizes, np.random.default_rng(0))
    return list(arrays[name].shape)


def torch_forward(module, inputs: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    import torch

    with torch.no_grad():
        y = module(*(torch.from_numpy(inputs[n]) for n in names))
    return y.detach().float().numpy()


def ort_run(onnx_path: Path, inputs: dict[str, np.ndarray], output_name: str) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2  # the machine's cores; keep ORT from oversubscribing
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    feed = {i.name: inputs[i.name] for i in sess.get_inputs()}
    return sess.run([output_name], feed)[0]


def onnx_op_summary(onnx_path: Path) -> str:
    """'opset N; ops A, B, ...' of a model (for failure messages)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), None)
    ops = sorted({n.op_type for n in m.graph.node})
    return f"opset {opset}; ops: {', '.join(ops)}"


# ---------------------------------------------------------------------------------------
# Comparison

def compare(actual: np.ndarray, expected: np.ndarray, *, rtol: float, atol: float,
            max_rel_l2: float | None = None, what: str = "") -> None:
    """Asserts allclose(actual, expected, rtol, atol) and, when given, a bound on the
    relative L2 error ||a - e|| / ||e||; the message says where and by how much it misses."""
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, expected {expected.shape}"
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    problems = []
    if not np.all(np.isfinite(a)):
        problems.append(f"{int(np.sum(~np.isfinite(a)))} non-finite values")
    err = np.abs(a - e)
    bound = atol + rtol * np.abs(e)
    bad = err > bound
    rel_l2 = float(np.linalg.norm(a - e) / max(np.linalg.norm(e), 1e-30))
    if bad.any():
        worst = np.unravel_index(np.argmax(np.where(np.isfinite(err), err - bound, np.inf)), err.shape)
        problems.append(
            f"{int(bad.sum())}/{bad.size} elements outside atol={atol:g} rtol={rtol:g}; "
            f"worst at {tuple(int(i) for i in worst)}: got {a[worst]:.6g}, expected {e[worst]:.6g}")
    if max_rel_l2 is not None and not rel_l2 <= max_rel_l2:
        problems.append(f"relative L2 error {rel_l2:.3g} > {max_rel_l2:g}")
    if problems:
        raise AssertionError(
            f"{what}: " + "; ".join(problems) +
            f" (max abs err {np.nanmax(err):.3g}, rel L2 {rel_l2:.3g}, |expected| max {np.abs(e).max():.3g})")
