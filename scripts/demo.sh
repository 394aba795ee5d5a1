#!/usr/bin/env bash
# The main job on the built-in example: builds shardrt, then compiles the seed's MLP
# (10→3200→1600→500→100 with ReLUs) into one engine per rank and runs it tensor-parallel on
# 2 ranks under mpirun (CPU ranks; MPI collectives), checking the result against a
# single-rank engine. Then the same model through the CLI: build, inspect, run.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh
BUILD="${SHARDRT_BUILD_DIR:-$ROOT/build}"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSHARDRT_BUILD_TESTS=OFF -DSHARDRT_BUILD_BENCH=OFF
cmake --build "$BUILD" -j "$(nproc)" --target tensor_parallel_simple simple_mlp shardrt_cli
MPI_FLAGS=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && MPI_FLAGS+=(--allow-run-as-root)
echo "== tensor parallel on 2 ranks: mpirun -n 2 tensor_parallel_simple"
mpirun "${MPI_FLAGS[@]}" -n 2 "$BUILD/examples/tensor_parallel_simple"
echo "== single rank through the engine file: simple_mlp, then shardrt inspect"
"$BUILD/examples/simple_mlp" "$BUILD/simple_mlp.engine"
"$BUILD/shardrt" inspect "$BUILD/simple_mlp.engine" | head -16
