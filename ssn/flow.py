"""Optical flow files in the Middlebury ``.flo`` format.

A ``.flo`` file is little-endian: the float32 magic 202021.25 (the bytes
``PIEH``), the width and the height as int32, then H x W x 2 float32 values,
row by row, each pixel's horizontal component u (along x, to the right) before
its vertical component v (along y, down).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ssn.atomic import atomic_path

FLO_MAGIC = np.float32(202021.25)
HEADER_BYTES = 12
# More pixels than any real flow map has: a larger header is a corrupt file.
MAX_FLO_PIXELS = 1 << 30


class FlowFileError(ValueError):
    """A file that is not a readable ``.flo`` flow map, with the reason."""


def read_flo(path: os.PathLike) -> np.ndarray:
    """The flow map of a ``.flo`` file.

    Returns
    -------
    ndarray, H x W x 2, float32
        Channel 0 is u (x, to the right), channel 1 is v (y, down), in pixels.

    Raises
    ------
    FileNotFoundError
        If the file is missing.
    FlowFileError
        If it is too short, has another magic number, a non-positive size, or
        holds more or fewer values than its header says.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < HEADER_BYTES:
        raise FlowFileError(f"{path}: {len(data)} bytes, too short for a .flo header")
    magic = np.frombuffer(data, "<f4", count=1)[0]
    if magic != FLO_MAGIC:
        raise FlowFileError(f"{path}: not a .flo file (magic {magic!r}, expected 202021.25)")
    width, height = (int(v) for v in np.frombuffer(data, "<i4", count=2, offset=4))
    if width < 1 or height < 1 or width * height > MAX_FLO_PIXELS:
        raise FlowFileError(f"{path}: the header says {width} x {height} pixels")
    expected = HEADER_BYTES + 8 * width * height
    if len(data) != expected:
        raise FlowFileError(f"{path}: {len(data)} bytes; a {width} x {height} flow map has "
                            f"{expected} (truncated or trailing data)")
    values = np.frombuffer(data, "<f4", offset=HEADER_BYTES)
    return values.reshape(height, width, 2).astype(np.float32)


def flo_bytes(flow: np.ndarray) -> bytes:
    """The ``.flo`` encoding of an H x W x 2 flow map (see :func:`write_flo`)."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or min(flow.shape[:2]) < 1:
        raise ValueError(f"a flow map is H x W x 2, got shape {flow.shape}")
    if not np.issubdtype(flow.dtype, np.floating) and not np.issubdtype(flow.dtype, np.integer):
        raise ValueError(f"a flow map holds numbers, got {flow.dtype}")
    height, width = flow.shape[:2]
    header = FLO_MAGIC.astype("<f4").tobytes() + np.array([width, height], "<i4").tobytes()
    return header + np.ascontiguousarray(flow, dtype="<f4").tobytes()


def write_flo(path: os.PathLike, flow: np.ndarray) -> Path:
    """Write an H x W x 2 flow map (u, v) as a ``.flo`` file, atomically; return its path."""
    data = flo_bytes(flow)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
