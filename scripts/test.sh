#!/usr/bin/env bash
# The whole test suite: setup, build, C++ unit and per-op tests, the ONNX conformance suite,
# and the end-to-end tests against PyTorch and ONNX Runtime.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
VENV="${SHARDRT_VENV:-$HOME/.cache/shardrt/venv}"
BUILD="${SHARDRT_BUILD_DIR:-$ROOT/build}"
JOBS="${SHARDRT_JOBS:-$(nproc)}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPython3_EXECUTABLE="$VENV/bin/python" \
  -DSHARDRT_BUILD_BENCH=OFF
cmake --build "$BUILD" -j "$JOBS"
echo "== C++ unit, per-op, MPI and example tests (ctest)"
(cd "$BUILD" && SHARDRT_POISON=1 ctest --output-on-failure -j "$JOBS" -E onnx_conformance)
SUITE="${SHARDRT_CONFORMANCE_SUITE:-$ROOT/../shared/onnx-conformance}"
echo "== ONNX conformance suite ($SUITE)"
if [ -d "$SUITE/node" ]; then
  SHARDRT_POISON=1 "$BUILD/tests/conformance/shardrt_conformance" "$SUITE" \
    --exclusions tests/conformance/exclusions.txt
else
  echo "conformance suite not found: skipped (set SHARDRT_CONFORMANCE_SUITE)"
fi
echo "== end-to-end tests (pytest)"
SHARDRT_BIN="$BUILD/shardrt" SHARDRT_POISON=1 "$VENV/bin/python" -m pytest -q tests/python
