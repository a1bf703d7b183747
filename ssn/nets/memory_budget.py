"""The memory a net's blobs need, checked before Caffe allocates it.

:func:`check_blob_sizes` refuses a blob over Caffe's INT_MAX count and a net
that cannot fit in the memory left (:func:`available_memory`), before Caffe
aborts or the kernel kills the process.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Optional

from caffe.proto import caffe_pb2

from ssn.nets.errors import NetTooLargeError
from ssn.nets.errors import dims as _dims
from ssn.nets.layer_params import layers_for_phase

Shape = Optional[tuple]
INT_MAX = 2**31 - 1  # Caffe counts a blob's values in an int (blob.cpp CHECKs it)
FLOAT_BYTES = 4


def _convolution_buffer(layer: caffe_pb2.LayerParameter, bottom: Shape, top: Shape) -> Shape:
    """Shape of a Convolution layer's im2col buffer, which Caffe reshapes (and so
    checks against INT_MAX) even when a faster path never fills it."""
    if bottom is None or top is None or len(bottom) != 4:
        return None
    param = layer.convolution_param
    kernel = ((param.kernel_h, param.kernel_w) if param.kernel_h
              else (list(param.kernel_size) or [1]) * 2)
    return (bottom[1] * kernel[0] * kernel[-1],) + tuple(top[2:])


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit.

    None when neither can be read (not Linux).
    """
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = Path("/sys/fs/cgroup", usage_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:
            limits.append(max(0, int(limit) - int(usage)))
        break
    return min(limits) if limits else None


def check_blob_sizes(net_param: caffe_pb2.NetParameter, shapes: Mapping[str, Shape],
                     phase: int = 1, held: Optional[Mapping[str, Shape]] = None) -> int:
    """Refuse blobs Caffe cannot hold, before Caffe sees them.

    Caffe aborts when a blob would hold more than INT_MAX values (``blob size
    exceeds INT_MAX``), and when an allocation fails; on Linux a net larger
    than the memory left is usually killed by the kernel instead.

    Parameters
    ----------
    net_param : caffe_pb2.NetParameter
    shapes : mapping of str to shape
        Blob shapes, as :func:`infer_shapes` gives them (None where unknown).
    phase : int
    held : mapping of str to shape, optional
        Shapes the net holds already (when reshaping): only growth is new memory.

    Returns
    -------
    int
        The bytes the known blobs need (a lower bound: unknown shapes and
        layers' internal buffers are not counted).

    Raises
    ------
    NetTooLargeError
        Naming the blob and its size, if a blob exceeds INT_MAX values or the
        blobs need more than :func:`available_memory`.
    """
    for layer in layers_for_phase(net_param, phase):
        sized = [(f"top '{top}'", shapes.get(top)) for top in layer.top]
        if layer.type == "Convolution" and layer.bottom and layer.top:
            sized.append(("its im2col buffer", _convolution_buffer(
                layer, shapes.get(layer.bottom[0]), shapes.get(layer.top[0]))))
        if layer.type == "ConcatConvolution" and layer.top:
            # One internal Convolution, with its own buffer, per bottom.
            sized += [(f"the im2col buffer of its part for '{bottom}'", _convolution_buffer(
                layer, shapes.get(bottom), shapes.get(layer.top[0]))) for bottom in layer.bottom]
        for what, shape in sized:
            if shape is not None and math.prod(shape) > INT_MAX:
                raise NetTooLargeError(
                    f"{layer.type} layer '{layer.name}': {what} would be {_dims(shape)} = "
                    f"{math.prod(shape):,} values, over Caffe's limit of {INT_MAX:,} per blob "
                    "(INT_MAX); use a smaller input")
    known = {name: math.prod(shape) for name, shape in shapes.items() if shape is not None}
    needed = FLOAT_BYTES * sum(known.values())
    before = {name: math.prod(shape) for name, shape in (held or {}).items()
              if shape is not None}
    growth = FLOAT_BYTES * sum(max(0, count - before.get(name, 0))
                               for name, count in known.items())
    free = available_memory()
    if free is not None and growth > free:
        largest = sorted(known, key=known.get, reverse=True)[:3]
        raise NetTooLargeError(
            f"the net's blobs need {needed / 2**30:.1f} GiB ({growth / 2**30:.1f} GiB more "
            f"than now), only {free / 2**30:.1f} GiB of memory is available; largest: "
            + ", ".join(f"'{name}' {_dims(shapes[name])}" for name in largest))
    return needed
