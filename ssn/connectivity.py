"""Connectivity enforcement for superpixel label maps (docs/LAYERS.md#connectivity-enforcement).

SSN's raw labels (the ArgMax of the last association) can give one superpixel several
disconnected pieces. The original release always relabels them with ``enforce_connectivity``;
this project makes the step switchable, and runs it in C++ (``ssn/native/connectivity.cpp``)
so it costs a few milliseconds per BSDS image (481 x 321).

The algorithm, exactly as the original's: scan pixels in raster order (x fastest); an unlabelled
pixel seeds a breadth-first search over 4-neighbours with the same input label, visiting
neighbours in the order +x, -x, +y, -y. The search stops once the piece holds ``max_size``
pixels (the rest of the segment starts new pieces later in the scan). A piece smaller than
``min_size`` takes the label of the *last* already-labelled neighbouring piece met during its
search (0 if there is none); any other piece gets the next new label. Output labels are
consecutive from 0.
"""
from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

from ssn.native import load_native

_INT32_MIN = np.iinfo(np.int32).min
_INT32_MAX = np.iinfo(np.int32).max


def connectivity_sizes(height: int, width: int, n_spixels: int, min_factor: float = 0.06,
                       max_factor: float = 3.0) -> tuple[int, int]:
    """``(min_size, max_size)`` as the original inference script chooses them.

    ``segment_size = height * width / n_spixels`` (the *requested* number of superpixels, not
    the grid's K), ``min_size = int(min_factor * segment_size)``,
    ``max_size = int(max_factor * segment_size)``. Both are then raised to at least 1; a size
    of 0 behaves exactly like 1 in :func:`enforce_connectivity`, so this changes no output.

    Parameters
    ----------
    height, width : int
        Image size in pixels, >= 1.
    n_spixels : int
        Requested number of superpixels, >= 1.
    min_factor, max_factor : float
        Fractions of the segment size, 0 <= min_factor <= max_factor.

    Returns
    -------
    tuple of int
        ``(min_size, max_size)``. 481 x 321 gives (92, 4632) for n = 100 and (18, 926) for
        n = 500.

    Raises
    ------
    ValueError
        On sizes or counts below 1, or factors out of order.
    """
    for name, value in (("height", height), ("width", width), ("n_spixels", n_spixels)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if not 0 <= min_factor <= max_factor:
        raise ValueError(f"need 0 <= min_factor <= max_factor, got {min_factor}, {max_factor}")
    segment_size = int(height) * int(width) / int(n_spixels)
    min_size = int(min_factor * segment_size)
    max_size = int(max_factor * segment_size)
    return max(min_size, 1), max(max_size, 1)


def as_int32_labels(labels: Any) -> np.ndarray:
    """``labels`` as a C-contiguous int32 H x W array with the same equalities between pixels."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D H x W array, got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return np.ascontiguousarray(arr, dtype=np.int32)
    if np.issubdtype(arr.dtype, np.floating):
        if arr.size and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError("labels must be integer-valued; got non-integral or non-finite "
                             "float values")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"labels must be an integer (or integer-valued float) array, got "
                         f"dtype {arr.dtype}")
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=np.int32)
    if arr.dtype == np.int32:
        return np.ascontiguousarray(arr)
    if arr.min() >= _INT32_MIN and arr.max() <= _INT32_MAX:
        return np.ascontiguousarray(arr, dtype=np.int32)
    # Values beyond int32: only equality matters, so renumber them.
    _, inverse = np.unique(arr, return_inverse=True)
    return inverse.reshape(arr.shape).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _native_enforce() -> Any:
    """``ssn_enforce_connectivity`` from the native library, with its C signature set."""
    func = load_native().ssn_enforce_connectivity
    func.restype = ctypes.c_int32
    func.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32,
                     ctypes.c_int32, ctypes.c_int32]
    return func


def check_piece_sizes(min_size: int, max_size: int) -> tuple[int, int]:
    """``(min_size, max_size)`` as ints; ValueError unless 1 <= min_size <= max_size."""
    for name, value in (("min_size", min_size), ("max_size", max_size)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {value!r}")
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if max_size < min_size:
        raise ValueError(f"max_size must be >= min_size, got max_size={max_size} < "
                         f"min_size={min_size}")
    return int(min_size), int(max_size)


def enforce_connectivity(labels: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """Relabel a label map into 4-connected superpixels of bounded size (compiled).

    See the module docstring for the exact algorithm; the result equals
    :func:`ssn.reference.connectivity.enforce_connectivity` (the slow
    transcription that tests compare it with) pixel for pixel.

    Parameters
    ----------
    labels : ndarray, H x W
        Superpixel labels: any integer dtype, bool, or integer-valued float (e.g. a Caffe
        index blob). Only equality between labels matters. An empty (0-pixel) map is allowed.
    min_size : int
        Pieces with fewer pixels merge into a neighbour, >= 1.
    max_size : int
        No piece grows beyond this many pixels, >= min_size.

    Returns
    -------
    ndarray, H x W, int32
        New labels, consecutive from 0. With a large ``max_size`` every label is one
        4-connected component. A component smaller than ``min_size`` remains only when the
        image has fewer than ``min_size`` pixels (then everything is label 0).

    Raises
    ------
    ValueError
        If ``labels`` is not 2-D or not integer-valued, or the sizes are invalid.
    """
    lab = as_int32_labels(labels)
    min_size, max_size = check_piece_sizes(min_size, max_size)
    height, width = lab.shape
    out = np.empty((height, width), dtype=np.int32)
    if lab.size == 0:
        return out
    # Sizes above the pixel count behave like pixel count + 1; clamp them into int32.
    cap = height * width + 1
    _native_enforce()(lab.ctypes.data, out.ctypes.data, height, width,
                      min(min_size, cap), min(max_size, cap))
    return out
