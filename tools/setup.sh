#!/usr/bin/env bash
# One-command setup: system packages, the .venv, Caffe with the SSN layers, the ssn
# package; then the demo on a bundled image. Safe to run again (everything is cached).
#
#   bash tools/setup.sh            # set up and run the demo
#   SSN_SKIP_DEMO=1 bash tools/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(g++ make patch patchelf libboost-system-dev libboost-thread-dev
  libboost-filesystem-dev libboost-regex-dev libboost-python-dev libprotobuf-dev
  protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"
.venv/bin/python -m ssn_build "$@"

if [ -z "${SSN_SKIP_DEMO:-}" ]; then
  .venv/bin/python tools/demo.py --out out/demo
fi
