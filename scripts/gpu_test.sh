#!/usr/bin/env bash
# The GPU tests, on a machine with an NVIDIA GPU and a build configured with CUDA:
#   scripts/gpu_test.sh [BUILD_DIR]        (default: build)
# 1. shardrt_tests' CUDA tests (per-op kernels against the CPU backend, the CUDA executor);
#    SHARDRT_GPU_TEST_ALL=1 runs every test of the binary instead.
# 2. The end-to-end tests of tests/python with engines built and run with --device cuda
#    (SHARDRT_TEST_DEVICE=cuda), when pytest is installed.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BUILD="${1:-$ROOT/build}"
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
PY="${SHARDRT_PYTHON:-python3}"
status=0

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_test: no GPU visible (nvidia-smi -L fails); the CUDA tests would only skip" >&2
fi
TESTS="$BUILD/tests/shardrt_tests"
if [ ! -x "$TESTS" ]; then
  echo "gpu_test: $TESTS not found: build it first (ninja -C $BUILD shardrt_cli shardrt_tests)" >&2
  exit 2
fi

echo "== C++ CUDA tests ($TESTS)"
FILTER='Cuda*:*Cuda*:DeviceOption*'
[ "${SHARDRT_GPU_TEST_ALL:-0}" = 1 ] && FILTER='*'
SHARDRT_POISON=1 "$TESTS" --gtest_filter="$FILTER" || status=1

echo "== end-to-end tests with --device cuda (pytest)"
if "$PY" -c "import pytest" >/dev/null 2>&1; then
  SHARDRT_BIN="$BUILD/shardrt" SHARDRT_TEST_DEVICE=cuda SHARDRT_POISON=1 \
    "$PY" -m pytest -q "$ROOT/tests/python" || status=1
else
  echo "gpu_test: pytest is not installed for $PY: end-to-end tests SKIPPED" >&2
  echo "          (install it with '$PY -m pip install pytest', or set SHARDRT_PYTHON)" >&2
fi
exit $status
