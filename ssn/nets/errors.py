"""The errors that the net checks raise, and how they name a layer."""
from __future__ import annotations

from typing import NoReturn, Sequence

from caffe.proto import caffe_pb2


class NetCheckError(ValueError):
    """A net's parameters, shapes or inputs would make Caffe abort."""


class NetTooLargeError(NetCheckError, MemoryError):
    """A blob over Caffe's INT_MAX count, or a net larger than the memory left.

    Both a ``ValueError`` (a :class:`NetCheckError`) and a ``MemoryError``.
    """


def fail(layer: caffe_pb2.LayerParameter, message: str) -> NoReturn:
    """Raise NetCheckError for ``layer``, naming its type and name."""
    raise NetCheckError(f"{layer.type} layer '{layer.name}': {message}")


def dims(shape: Sequence[int]) -> str:
    """A shape as ``N x C x H x W`` ("a scalar" for no axes)."""
    return " x ".join(str(int(d)) for d in shape) if len(shape) else "a scalar"
