# Sourced by tools/gpu_check.sh and tools/gpu_train.sh on a bare CUDA machine.
#
#   unpack_gpu_pack PACK NAME
#
# unpacks the GPU-check pack PACK (see tools/gpu_check.sh) into a new folder
# under /tmp, sets `root` to its ssn-gpu/ folder and puts its libraries and the
# machine's CUDA 13 runtime, cuBLAS, cuRAND and, for a cuDNN build, cuDNN 9 (the
# first folder that holds each) on LD_LIBRARY_PATH. NAME prefixes the messages. Returns 2 on failure.
unpack_gpu_pack() {
  local pack=$1 name=$2 soname found work cuda_path=""
  if [ ! -f "$pack" ]; then
    echo "$name: no pack at $pack (see the comment at the top of tools/gpu_check.sh)" >&2
    return 2
  fi
  work=$(mktemp -d /tmp/ssn-gpu.XXXXXX)
  tar -xJf "$pack" -C "$work" || return 2
  root=$work/ssn-gpu
  for soname in libcudart.so.13 libcublas.so.13 libcurand.so.10; do
    found=$(find /usr/local/cuda* /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
              -name "$soname" -print -quit 2>/dev/null)
    if [ -z "$found" ]; then
      echo "$name: $soname not found on this machine" >&2
      return 2
    fi
    cuda_path+="$(dirname "$found"):"
  done
  # cuDNN 9, for a pack built with cuDNN (the default): the toolkit's copy, or the
  # nvidia-cudnn-cu13 wheel's (site-packages/nvidia/cudnn/lib).
  if grep -q libcudnn.so.9 "$root"/lib/libcaffe.so* 2>/dev/null; then
    found=$(find /usr/local/cuda* /usr/lib/x86_64-linux-gnu /opt /usr/local/lib /usr/lib/python3* \
              -name libcudnn.so.9 -print -quit 2>/dev/null)
    if [ -z "$found" ]; then
      echo "$name: the pack was built with cuDNN but libcudnn.so.9 is not on this machine:" \
           "install cuDNN 9 (pip install nvidia-cudnn-cu13) or build the pack with --no-cudnn" >&2
      return 2
    fi
    cuda_path+="$(dirname "$found"):"
  fi
  export LD_LIBRARY_PATH="$root/lib:${cuda_path%:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
