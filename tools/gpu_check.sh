#!/usr/bin/env bash
# GPU checks of the SSN layers on a bare CUDA machine (CUDA driver and toolkit,
# no apt, no network): the C++ layer tests (the typed tests on the GPU), the
# gpu-marked pytest tests (CPU-vs-GPU agreement among them), and the
# benchmark of one SSN iteration at 481x321, 20 channels, ~400 superpixels. About
# 6 minutes on an H200 (2026-11-29), most of it the GPU gradient checks: give the
# device call 8 minutes or more.
#
# Caffe cannot be built there (no boost, glog, protobuf, HDF5 or BLAS), so the
# GPU build made on the CI machine travels as one tarball that holds the test
# binaries, libcaffe and the libraries it needs, and a Python interpreter with
# pycaffe, numpy, protobuf and pytest (pycaffe is built for this CI machine's
# Python, which the GPU machine lacks). On the CI machine, once:
#
#   python3 -m venv /tmp/gpu-venv && /tmp/gpu-venv/bin/pip install numpy six protobuf
#   .venv/bin/python -m ssn_build --gpu --venv /tmp/gpu-venv \
#       --pack .gpu-pack/ssn-gpu.tar.xz
#   (.gpu-pack/ is in .gitignore)
#
# then carry `.gpu-pack` to the GPU machine with the repository and run there
#
#   bash tools/gpu_check.sh [.gpu-pack/ssn-gpu.tar.xz]
#
# CUDA's runtime, cuBLAS and cuRAND (CUDA 13) are not in the tarball: they are
# looked up under /usr/local/cuda* and the Python packages of the machine.
# SSN_GPU_DEVICE picks the device (default 0). Exit status: nonzero if any
# part failed; every part runs regardless.
set -uo pipefail
cd "$(dirname "$0")/.."
pack=${1:-.gpu-pack/ssn-gpu.tar.xz}
device=${SSN_GPU_DEVICE:-0}
source tools/gpu_pack_env.sh
unpack_gpu_pack "$pack" gpu_check || exit 2
work=$(dirname "$root")
python_bin=$(ls "$root"/bin/python3.* | head -n 1)
export GLOG_minloglevel=1
export NVIDIA_TF32_OVERRIDE=0  # full float precision in cuDNN and cuBLAS (tests compare)
if command -v nvidia-smi >/dev/null; then nvidia-smi -L; fi

status=0
run() {
  echo "==== $*" >&2
  if ! "$@"; then
    echo "gpu_check: FAILED: $*" >&2
    status=1
  fi
}

# 1. C++ tests on the GPU: the typed tests' GPU instances of every layer test
# binary (<Layer>LayerTest/2 float, /3 double; /0 and /1 are the CPU ones,
# which CI runs). On an H200 (2026-11-29) the GPU gradient checks took 139 s in
# float and about as long in double.
for binary in "$root"/bin/test_*_layer.testbin; do
  run "$binary" "$device" --gtest_filter='-*/0.*:*/1.*'
done

# 2. pytest tests marked gpu, with the packed interpreter and pycaffe.
export PYTHONHOME=$root PYTHONPATH=$PWD PYTHONUNBUFFERED=1 SSN_GPU_DEVICE=$device
run "$python_bin" -m pytest -m gpu -v -p no:cacheprovider tests/test_gpu.py

# 3. Benchmark on the GPU (and on the CPU, for comparison).
run "$python_bin" tools/bench_layers.py --gpu "$device"
run "$python_bin" tools/bench_layers.py --gpu -1 --repeats 5

rm -rf "$work"
exit $status
