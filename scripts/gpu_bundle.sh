#!/usr/bin/env bash
# Builds shardrt with the CUDA backend into build-gpu/ and gathers what a GPU machine
# without this machine's development packages needs into .gpu/: the binaries (CLI, tests,
# conformance runner, examples) and the shared libraries they link that such a machine may
# lack (protobuf, OpenBLAS and its Fortran runtime, OpenMPI's C++ bindings, Google Benchmark),
# packed into .gpu/bundle.tar.xz. oneDNN is left
# out (-DSHARDRT_WITH_DNNL=OFF: fp32 CPU GEMMs then go through OpenBLAS).
# On the GPU machine: export LD_LIBRARY_PATH=$PWD/.gpu/lib:$LD_LIBRARY_PATH, with cuDNN's
# folder added when the system has no libcudnn.so.9 (PyTorch's wheel ships one under
# site-packages/nvidia/cudnn/lib).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${SHARDRT_GPU_BUILD:-build-gpu}
cmake -S . -B "$build" -G Ninja -DSHARDRT_WITH_CUDA=ON -DSHARDRT_WITH_DNNL=OFF -DSHARDRT_BUILD_BENCH=ON >/dev/null
ninja -C "$build" -j"${JOBS:-2}"
rm -rf .gpu/bin .gpu/lib && mkdir -p .gpu/bin .gpu/lib
cp "$build/shardrt" "$build/tests/shardrt_tests" "$build/tests/conformance/shardrt_conformance" .gpu/bin/
for b in "$build/bench/shardrt_decode_bench" "$build/tests/shardrt_decode_logits"; do [ -x "$b" ] && cp "$b" .gpu/bin/; done
find "$build/examples" -maxdepth 2 -type f -perm -u+x -exec cp {} .gpu/bin/ \; 2>/dev/null || true
find "$build/tests/mpi" -maxdepth 1 -type f -perm -u+x -exec cp {} .gpu/bin/ \; 2>/dev/null || true
for lib in libprotobuf.so.32 libopenblas.so.0 libgfortran.so.5 libquadmath.so.0 libmpi_cxx.so.40 libbenchmark.so.1debian; do
  p=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
  [ -n "$p" ] && cp -L "$p" .gpu/lib/
done
strip --strip-unneeded .gpu/bin/* 2>/dev/null || true
# One archive of both folders: what the GPU machine unpacks.
tar cf - -C .gpu bin lib | xz -T2 -1 > .gpu/bundle.tar.xz
# The ONNX conformance suite's node cases, for `shardrt_conformance --device cuda` there.
suite=${SHARDRT_CONFORMANCE_SUITE:-../shared/onnx-conformance}
[ -d "$suite/node" ] && tar cf - -C "$suite" node | xz -T2 -1 > .gpu/conformance.tar.xz
du -sh .gpu
