#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (AddressSanitizer + UndefinedBehaviorSanitizer),
# makes seed corpora from the ONNX conformance suite and the tests' files, and runs each
# target for RUNS executions (default 10 million), one after another, logging to
# build-fuzz/logs/<target>.log. Findings (crash-*, leak-*, timeout-*) land in
# build-fuzz/findings/<target>/; fixed ones are kept in tests/fuzz/regressions/<target>/ and
# replayed by `scripts/fuzz.sh --replay` (and by ctest in the sanitizer build).
# --time S stops each target after S seconds even if it has not done N runs (libFuzzer's
# -max_total_time); the log's stat::number_of_executed_units says how many it did.
#   scripts/fuzz.sh [--runs N] [--time S] [--only TARGET] [--replay]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=10000000 only="" replay=0 time=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --replay) replay=1; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
b=build-fuzz
CC=clang CXX=clang++ cmake -S . -B $b -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHARDRT_FUZZ=ON \
  -DSHARDRT_WITH_CUDA=OFF -DSHARDRT_WITH_MPI=OFF -DSHARDRT_WITH_DNNL=OFF -DSHARDRT_BUILD_TESTS=OFF \
  -DSHARDRT_BUILD_BENCH=OFF -DSHARDRT_CPU_ARCH= \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
targets="fuzz_onnx_import fuzz_engine_load fuzz_plan fuzz_npy"
[ -n "$only" ] && targets=$only
ninja -C $b -j"${JOBS:-2}" $targets
mkdir -p $b/logs
conf=${SHARDRT_CONFORMANCE_DIR:-../shared/onnx-conformance}
for t in $targets; do
  corpus=$b/corpus/$t
  mkdir -p "$corpus" "$b/findings/$t" "tests/fuzz/regressions/$t"
  if [ -z "$(ls -A "$corpus")" ]; then
    case $t in
      fuzz_onnx_import) find "$conf" -name model.onnx -size -64k | sort | sed -n 1,400p | while read -r f; do cp "$f" "$corpus/$(echo "$f" | md5sum | cut -c1-16)"; done ;;
      fuzz_npy) find tests "$conf" -name '*.npy' -size -64k 2>/dev/null | sort | sed -n 1,200p | while read -r f; do cp "$f" "$corpus/$(echo "$f" | md5sum | cut -c1-16)"; done
                python3 - "$corpus" <<'PY'
import sys, struct
d = sys.argv[1]
for i, (descr, shape, n) in enumerate([("<f4", "(2, 3)", 24), ("<i8", "(4,)", 32), ("|b1", "()", 1), ("<f2", "(1, 2, 2)", 8), ("bfloat16", "(3,)", 6)]):
    h = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape)
    h += " " * ((64 - (10 + len(h) + 1) % 64) % 64) + "\n"
    open("%s/seed%d" % (d, i), "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() + bytes(n))
PY
                ;;
      fuzz_plan) find tests examples docs -name '*plan*.json' 2>/dev/null | while read -r f; do cp "$f" "$corpus/"; done
                 printf '%s' '{"plan":{"fc1":"colwise","fc2":{"style":"rowwise","input_layouts":"Shard(-1)"}}}' > "$corpus/seed0"
                 printf '%s' 'Shard(1)' > "$corpus/seed1" ;;
      fuzz_engine_load) f=$(mktemp -d)
                 for m in $(find "$conf" -name model.onnx -size -8k | sort | sed -n 1,30p); do
                   ./build/shardrt build "$m" -o "$f/$(echo "$m" | md5sum | cut -c1-16)" >/dev/null 2>&1 || true
                 done
                 cp "$f"/* "$corpus/" 2>/dev/null || true; rm -rf "$f" ;;
    esac
  fi
  if [ $replay = 1 ]; then
    if [ -n "$(ls -A tests/fuzz/regressions/$t)" ]; then ./$b/tests/fuzz/$t tests/fuzz/regressions/$t/*; fi
    continue
  fi
  echo "== $t: $runs runs (log: $b/logs/$t.log)"
  ./$b/tests/fuzz/$t "$corpus" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb="${FUZZ_RSS_MB:-2048}" \
     -artifact_prefix="$b/findings/$t/" -print_final_stats=1 -max_total_time="$time" > "$b/logs/$t.log" 2>&1 || { echo "FINDING in $t:"; tail -40 "$b/logs/$t.log"; exit 1; }
  grep -E "stat::number_of_executed_units|Done" "$b/logs/$t.log" | tail -2
done
