#!/usr/bin/env bash
# Train the SSN variants that `python -m ssn.examples.gpu_runs --out .gpu-run` prepared,
# side by side on one GPU of a bare CUDA machine, for a fixed wall-clock time, with
# the GPU-check pack's caffe tool (see tools/gpu_check.sh for the pack).
#
#   bash tools/gpu_train.sh SECONDS RESULTS_DIR [.gpu-pack/ssn-gpu.tar.xz]
#
# Needs on that machine: python3 with numpy, scipy, scikit-image, h5py and tqdm
# (for the export, which needs no pycaffe), the BSDS500 train and val splits
# under $SSN_DATA_ROOT, and the run folders in .gpu-run/. Training samples are
# exported uncompressed to /tmp/ssn-h5 (about 9 MB each; Caffe's HDF5Data reads a
# whole file at a time on the training thread). Each variant is stopped with
# SIGINT after SECONDS, which makes `caffe train` snapshot where it is; the last
# .caffemodel and the log of each come to RESULTS_DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=$1 results=$2
pack=${3:-.gpu-pack/ssn-gpu.tar.xz}
samples=${SSN_TRAIN_SAMPLES:-2400}
mkdir -p "$results"

start=$(date +%s)
python3 -m ssn.cli.export_hdf5 --out /tmp/ssn-h5 --no-net --no-compress --jobs "$(nproc)" \
  --train-samples "$samples" --val-samples 24 --per-file 24 --patch 201 --n-segments 100 \
  2>&1 | tail -n 5 | tee "$results/export.log" || exit 2
echo "gpu_train: exported $samples samples in $(( $(date +%s) - start )) s" >&2

# Unpacked after the export, so that only caffe sees the pack's libraries.
source tools/gpu_pack_env.sh
unpack_gpu_pack "$pack" gpu_train || exit 2
work=$(dirname "$root")
caffe_env=(env GLOG_minloglevel=0 GLOG_logtostderr=1)
pids=()
for run in .gpu-run/*/; do
  name=$(basename "$run")
  mkdir -p "$run/snap"
  (cd "$run" && exec "${caffe_env[@]}" "$root/bin/caffe.bin" train --solver=solver.prototxt \
     --weights=init.caffemodel --gpu=0) >"$results/$name.log" 2>&1 &
  pids+=($!)
done
sleep "$seconds"
kill -INT "${pids[@]}" 2>/dev/null
wait "${pids[@]}"
for run in .gpu-run/*/; do
  name=$(basename "$run")
  last=$(ls -t "$run"/snap/*.caffemodel 2>/dev/null | head -n 1)
  if [ -n "$last" ]; then
    cp "$last" "$results/$name.caffemodel"
    echo "gpu_train: $name: $(basename "$last")" >&2
  else
    echo "gpu_train: $name: no snapshot" >&2
  fi
  grep -E "Iteration [0-9]+.*loss = |Iteration [0-9]+ \(" "$results/$name.log" | tail -n 3 >&2
done
rm -rf "$work"
