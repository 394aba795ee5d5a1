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
# tests/python/pkg imports the Python package from the build tree (shardrt._C beside the sources).
PYTHONPATH="$BUILD/python${PYTHONPATH:+:$PYTHONPATH}" SHARDRT_BIN="$BUILD/shardrt" SHARDRT_POISON=1 \
  "$VENV/bin/python" -m pytest -q tests/python

# The same suite (ctest, conformance, pytest through the instrumented CLI) in a separate
# build under AddressSanitizer + UndefinedBehaviorSanitizer (CUDA off: nothing here runs it;
# SHARDRT_SKIP_SANITIZERS=1 skips this stage for quick local runs). Leak checking is off:
# OpenMPI and protobuf keep process-lifetime allocations that LeakSanitizer reports.
if [ "${SHARDRT_SKIP_SANITIZERS:-0}" != 1 ]; then
  echo "== the suite again under AddressSanitizer + UndefinedBehaviorSanitizer"
  ASAN_BUILD="${SHARDRT_ASAN_BUILD_DIR:-$ROOT/build-asan}"
  # -O1 -g1: ASan's recommended optimisation, line tables for its reports, and a build about
  # half as long as RelWithDebInfo's on two cores.
  SAN="-O1 -g1 -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
  cmake -S . -B "$ASAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=None -DPython3_EXECUTABLE="$VENV/bin/python" \
    -DSHARDRT_BUILD_BENCH=OFF -DSHARDRT_WITH_CUDA=OFF -DSHARDRT_PYTHON=OFF -DCMAKE_CXX_FLAGS="$SAN" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" >/dev/null
  cmake --build "$ASAN_BUILD" -j "$JOBS"
  export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # The soak test is left out here: ASan's quarantine keeps freed blocks resident on purpose,
  # so resident memory grows by design (it runs in the plain build above).
  (cd "$ASAN_BUILD" && SHARDRT_POISON=1 ctest --output-on-failure -j "$JOBS" -E "onnx_conformance|soak")
  if [ -d "$SUITE/node" ]; then
    SHARDRT_POISON=1 "$ASAN_BUILD/tests/conformance/shardrt_conformance" "$SUITE" \
      --exclusions tests/conformance/exclusions.txt | tail -3
  fi
  # The package tests load shardrt._C into the (uninstrumented) interpreter: plain build only.
  SHARDRT_BIN="$ASAN_BUILD/shardrt" SHARDRT_POISON=1 "$VENV/bin/python" -m pytest -q -x tests/python \
    --ignore=tests/python/pkg
fi
