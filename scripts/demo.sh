#!/usr/bin/env bash
# The main job on the built-in example: builds shardrt, compiles the example model into an
# engine and runs it (on the CPU when there is no GPU), checking the result.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
BUILD="${SHARDRT_BUILD_DIR:-$ROOT/build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDRT_BUILD_TESTS=OFF -DSHARDRT_BUILD_BENCH=OFF
cmake --build "$BUILD" -j "$(nproc)" --target simple_mlp shardrt_cli
"$BUILD/examples/simple_mlp" "$BUILD/simple_mlp.engine"
"$BUILD/shardrt" inspect "$BUILD/simple_mlp.engine" | head -20
