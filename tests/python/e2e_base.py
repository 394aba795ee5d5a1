"""The end-to-end checks shared by every model: a test class per model subclasses
E2EModelTests and sets `spec` (a model_zoo.ModelSpec) and the tolerances.

Per (model, exporter), once (class-scoped fixture, everything computed lazily and cached,
failures included, so each test reports the step that broke):
  torch module -> ONNX export -> torch fp32 and ONNX Runtime outputs at the two test shapes
  -> `shardrt build` (fp32, and with --autocast bf16; profile covering both shapes)
  -> `shardrt run` at each shape (SHARDRT_POISON=1).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shardrt_harness import (EXPORTERS, FP32_TOL_FACTOR, ExportFailed, Shardrt, ShardrtError, compare, export_onnx,
                             input_dims, onnx_op_summary, ort_run, shapes_arg, torch_forward)

SHAPES = [0, 1]  # index into spec.test_sizes


class _Cached:
    """Computes a value once; a failure is stored and raised again on every later get()."""

    def __init__(self, fn):
        self.fn, self.done, self.value, self.error = fn, False, None, None

    def get(self):
        if not self.done:
            self.done = True
            try:
                self.value = self.fn()
            except Exception as e:
                self.error = e
        if self.error is not None:
            raise self.error
        return self.value


class ModelCase:
    def __init__(self, spec, exporter: str, shardrt: Shardrt, work: Path):
        self.spec, self.exporter, self.shardrt, self.work = spec, exporter, shardrt, work
        lo, _, hi = spec.profile_sizes
        for sizes in spec.test_sizes:  # a spec mistake, not a shardrt failure: say so
            assert all(lo[d] <= sizes[d] <= hi[d] for d in sizes), f"{spec.name}: test shape {sizes} outside the profile"
        self.onnx_path = work / f"{spec.name}.onnx"
        self.module = _Cached(spec.make_module)
        self.exported = _Cached(lambda: export_onnx(self.module.get(), spec, exporter, self.onnx_path))
        # Inputs differ per shape and are seeded by the shape index.
        self.inputs = [spec.make_inputs(s, np.random.default_rng(100 + i)) for i, s in enumerate(spec.test_sizes)]
        self.torch_out = [_Cached(lambda i=i: torch_forward(self.module.get(), self.inputs[i], spec.input_names))
                          for i in SHAPES]
        self.ort_out = [_Cached(lambda i=i: self._ort(i)) for i in SHAPES]
        self.engines = {p: _Cached(lambda p=p: self._build(p)) for p in ("fp32", "bf16")}
        self.outs = {(p, i): _Cached(lambda p=p, i=i: self._run(p, i)) for p in ("fp32", "bf16") for i in SHAPES}

    def need_export(self):
        """The ONNX file; xfails the test (non-strict) where the exporter cannot export the model."""
        try:
            self.exported.get()
        except ExportFailed as e:
            pytest.xfail(str(e))
        return self.onnx_path

    def _ort(self, i):
        self.need_export()
        return ort_run(self.onnx_path, self.inputs[i], self.spec.output_name)

    def _build(self, precision):
        self.need_export()
        engine = self.work / f"{self.spec.name}.{precision}.engine"
        shapes = shapes_arg(self.spec, lambda n, sizes: input_dims(self.spec, n, sizes))
        self.shardrt.build_or_raise(self.onnx_path, engine, shapes=shapes,
                                    autocast=None if precision == "fp32" else precision)
        return engine

    def _run(self, precision, i):
        engine = self.engines[precision].get()
        out = self.shardrt.run_arrays(engine, self.inputs[i], self.work / f"run_{precision}_{i}",
                                      [self.spec.output_name])
        return out[self.spec.output_name]

    def shardrt_out(self, precision, i):
        """shardrt's output, or the test fails with the CLI's error (build or run)."""
        self.need_export()
        try:
            return self.outs[(precision, i)].get()
        except ShardrtError as e:
            err = e  # failed outside the except block: no chained traceback in the report
        pytest.fail(f"{self.spec.name} ({self.exporter} export, {precision}, shape {self.spec.test_sizes[i]}): "
                    f"{err}\nmodel: {onnx_op_summary(self.onnx_path)}", pytrace=False)

    def label(self, i, what):
        return f"{self.spec.name} [{self.exporter} export] shape {self.spec.test_sizes[i]}: {what}"


class E2EModelTests:
    """Mix-in of the per-model tests (not collected itself: its name has no Test prefix)."""

    spec = None
    # fp32 tolerances: shardrt and torch/ORT sum dot products (K <= 128 terms here) and
    # reductions in different orders and may use fused kernels (attention, layer norm), so
    # each op differs by a few ulp (~1e-7 relative) times sqrt(K); through ~10 layers with
    # normalisations that amplify small differences that reaches ~1e-5..1e-4 of the output
    # scale. 1e-3 relative + 1e-4 absolute keeps a 10x margin above that while a real bug
    # (wrong mask, wrong head mapping, missed bias) gives errors of order 1e-1..1.
    # (FP32_TOL_FACTOR: 1 on both devices, see shardrt_harness.py.)
    fp32_rtol = 1e-3 * FP32_TOL_FACTOR
    fp32_atol = 1e-4 * FP32_TOL_FACTOR
    # bf16 (--autocast bf16) against torch fp32: bf16 keeps 8 bits of mantissa, so every
    # rounding of an operand or result is off by up to 2^-9 ~ 2e-3 relative; a chain of ops
    # per layer and the layers compound that. Measured: the same torch module run wholly in
    # bf16 is 4e-3..6e-3 (relative L2) off its fp32 output for the 2-layer models here.
    # `bf16_rel_l2` (set per model, with its reason) leaves ~5x over that for different
    # choices of what stays fp32, while a wrong kernel or mask gives errors of order 1. The
    # elementwise bound (a fraction of the output's largest magnitude) catches localised
    # garbage, such as one wrong row, that an L2 norm over the whole output could dilute.
    bf16_rel_l2 = 3e-2
    bf16_atol_frac = 0.1

    @pytest.fixture(scope="class", params=EXPORTERS)
    @classmethod
    def case(cls, request, shardrt, tmp_path_factory):
        exporter = request.param
        return ModelCase(cls.spec, exporter, shardrt, tmp_path_factory.mktemp(f"{cls.spec.name}_{exporter}"))

    @pytest.mark.parametrize("shape", SHAPES)
    def test_reference_ort_matches_torch(self, case, shape):
        """Checks the export itself (not shardrt): when this fails, the *_vs_torch tests of
        this exporter are expected to fail too, and *_vs_ort is the one to trust."""
        expected = case.torch_out[shape].get()
        got = case.ort_out[shape].get()
        compare(got, expected, rtol=self.fp32_rtol, atol=self.fp32_atol,
                what=case.label(shape, "ONNX Runtime vs torch (exporter check)"))

    def test_build_and_inspect(self, case):
        """Both engines build; `inspect --json` parses and names the model's inputs and output."""
        case.need_export()
        texts = []
        for precision in ("fp32", "bf16"):
            engine, err = None, None
            try:
                engine = case.engines[precision].get()
            except ShardrtError as e:
                err = e
            if err is not None:
                pytest.fail(f"{case.spec.name} [{case.exporter}] {precision}: {err}\nmodel: "
                            f"{onnx_op_summary(case.onnx_path)}", pytrace=False)
            r = case.shardrt.inspect(engine, json_out=True)
            assert r.returncode == 0, r.describe()
            try:
                info = json.loads(r.stdout)
            except json.JSONDecodeError as e:
                pytest.fail(f"inspect --json printed invalid JSON ({e}): {r.stdout[:500]}")
            texts.append(json.dumps(info))
        for name in [*case.spec.input_names, case.spec.output_name]:
            assert all(name in t for t in texts), f"inspect --json does not mention binding '{name}'"

    @pytest.mark.parametrize("shape", SHAPES)
    def test_fp32_vs_torch(self, case, shape):
        got = case.shardrt_out("fp32", shape)
        expected = case.torch_out[shape].get()
        try:
            compare(got, expected, rtol=self.fp32_rtol, atol=self.fp32_atol,
                    what=case.label(shape, "shardrt fp32 vs torch fp32"))
        except AssertionError as e:
            # Say whether the export itself is faithful, to route the failure.
            try:
                ort_err = float(np.abs(case.ort_out[shape].get() - expected).max())
                note = f"\n(ONNX Runtime vs torch max abs err on this file: {ort_err:.3g})"
            except Exception as oe:
                note = f"\n(ONNX Runtime could not run this file: {oe})"
            raise AssertionError(str(e) + note) from None

    @pytest.mark.parametrize("shape", SHAPES)
    def test_fp32_vs_ort(self, case, shape):
        got = case.shardrt_out("fp32", shape)
        expected = case.ort_out[shape].get()
        compare(got, expected, rtol=self.fp32_rtol, atol=self.fp32_atol,
                what=case.label(shape, "shardrt fp32 vs ONNX Runtime"))

    @pytest.mark.parametrize("shape", SHAPES)
    def test_bf16_vs_torch(self, case, shape):
        got = case.shardrt_out("bf16", shape)
        expected = case.torch_out[shape].get()
        compare(got.astype(np.float32), expected, rtol=self.bf16_atol_frac,
                atol=self.bf16_atol_frac * float(np.abs(expected).max()), max_rel_l2=self.bf16_rel_l2,
                what=case.label(shape, "shardrt --autocast bf16 vs torch fp32"))
