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
echo "== C++ tests and ONNX conformance (ctest)"
(cd "$BUILD" && SHARDRT_POISON=1 ctest --output-on-failure -j "$JOBS")
echo "== end-to-end tests (pytest)"
SHARDRT_BIN="$BUILD/shardrt" SHARDRT_POISON=1 "$VENV/bin/python" -m pytest -q tests/python
