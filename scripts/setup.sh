#!/usr/bin/env bash
# Installs what shardrt needs on Debian 12: system packages (apt) and a Python virtual
# environment with the test and reference packages (pinned). The environment lives outside
# the checkout (SHARDRT_VENV, default ~/.cache/shardrt/venv) so that PyPI's large torch
# wheel is installed once per machine and reused by every clone.
set -euo pipefail

APT_PACKAGES=(build-essential cmake ninja-build pkg-config git
  libprotobuf-dev protobuf-compiler libopenblas-dev libdnnl-dev ocl-icd-opencl-dev libopenmpi-dev openmpi-bin
  nlohmann-json3-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev pybind11-dev
  python3 python3-dev python3-venv python3-pip)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

VENV="${SHARDRT_VENV:-$HOME/.cache/shardrt/venv}"
PY="${SHARDRT_PYTHON:-python3}"
REQ="$(cd "$(dirname "$0")/.." && pwd)/requirements-test.txt"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating the Python environment in $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$PY" -m venv "$VENV"
fi
# Reinstall only when the pinned list changed since the last install.
stamp="$VENV/.shardrt-requirements"
if ! cmp -s "$REQ" "$stamp"; then
  echo "setup: installing Python packages (torch is large: the first time takes a while)"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -r "$REQ"
  cp "$REQ" "$stamp"
fi
echo "setup: ready (Python environment: $VENV)"
