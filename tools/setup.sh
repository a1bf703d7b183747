#!/usr/bin/env bash
# One-command setup: system packages, the .venv, Caffe with the SSN layers, the ssn
# package; then the demo on bundled images. Safe to run again (everything is cached).
# Prints a few progress lines; each step's full output goes to a log file under
# .venv/ (shown when the step fails).
#
#   bash tools/setup.sh            # set up and run the demo
#   SSN_SKIP_DEMO=1 bash tools/setup.sh
#   bash tools/setup.sh --gpu      # arguments go to python -m ssn_build
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(g++ make patch patchelf libboost-system-dev libboost-thread-dev
  libboost-filesystem-dev libboost-regex-dev libboost-python-dev libprotobuf-dev
  protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libopencv-videoio-dev
  libopencv-highgui-dev liblmdb-dev libleveldb-dev libsnappy-dev)
LOGS=.venv/logs

# quietly NAME COMMAND...: run COMMAND with its output in $LOGS/NAME.log; on failure
# show the log's end and its path.
quietly() {
  local name=$1; shift
  mkdir -p "$LOGS"
  if ! "$@" >"$LOGS/$name.log" 2>&1; then
    tail -n 40 "$LOGS/$name.log" >&2
    echo "setup: $name failed; full log: $LOGS/$name.log" >&2
    exit 1
  fi
}

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing system packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "setup: Python packages into .venv" >&2
quietly pip-upgrade .venv/bin/python -m pip install --upgrade pip
quietly pip .venv/bin/python -m pip install -e ".[test]"
echo "setup: comparison baselines (OpenCV-contrib, fast-slic; optional)" >&2
if ! (quietly bench .venv/bin/python -m pip install -e ".[bench]" \
      && quietly fast-slic .venv/bin/python -m pip install --no-build-isolation fast-slic); then
  echo "setup: the optional baselines did not install; ssn-eval skips them" >&2
fi
echo "setup: Caffe with the SSN layers (download, patch, compile, install)" >&2
.venv/bin/python -m ssn_build "$@"

if [ -z "${SSN_SKIP_DEMO:-}" ]; then
  echo "setup: demo" >&2
  .venv/bin/python tools/demo.py --out out/demo
fi
