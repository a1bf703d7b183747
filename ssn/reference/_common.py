"""Input checks and index-map reading shared by the reference layers.

Index maps are float arrays that hold integer ids. They are read as Caffe reads them, with C
truncation (``static_cast<int>``); a pixel is ignored when its truncated id equals the ignore
value, compared as a float.
"""
from __future__ import annotations

from typing import Optional

import numpy as np


def as_blob(array: np.ndarray, name: str, channels: Optional[int] = None) -> np.ndarray:
    """Return ``array`` as a 4-D float64 array, checking its rank and channel count.

    Parameters
    ----------
    array : np.ndarray
        The blob, N x C x H x W.
    name : str
        Name used in error messages.
    channels : int, optional
        Required channel count, if any.

    Returns
    -------
    np.ndarray
        The blob as float64, N x C x H x W.
    """
    blob = np.asarray(array, dtype=np.float64)
    if blob.ndim != 4:
        raise ValueError(f"{name} must be 4-D (N x C x H x W), got shape {blob.shape}")
    if channels is not None and blob.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {blob.shape}")
    return blob


def check_grid(grid_h: int, grid_w: int) -> int:
    """Check a superpixel grid and return K = grid_h * grid_w."""
    if int(grid_h) != grid_h or int(grid_w) != grid_w or grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must be at least 1 x 1 with integer sides, got {grid_h} x {grid_w}")
    return int(grid_h) * int(grid_w)


def read_index_map(
    index_map: np.ndarray,
    limit: int,
    name: str,
    shape: tuple[int, int, int],
    ignore_value: Optional[float] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an N x 1 x H x W float index map into integer ids, checking their range.

    Parameters
    ----------
    index_map : np.ndarray
        Float ids, N x 1 x H x W.
    limit : int
        Ids must lie in [0, limit) unless ignored.
    name : str
        Name used in error messages.
    shape : tuple of int
        Required (N, H, W).
    ignore_value : float, optional
        Pixels whose truncated id equals this value are ignored. None: no pixel is ignored.

    Returns
    -------
    ids : np.ndarray
        Integer ids, N x H x W (int64). Ignored pixels hold their truncated value.
    ignored : np.ndarray
        Boolean mask of ignored pixels, N x H x W.

    Raises
    ------
    ValueError
        If the shape is wrong, a value is not finite, or an id that is not ignored lies
        outside [0, limit).
    """
    blob = as_blob(index_map, name, channels=1)
    if (blob.shape[0], blob.shape[2], blob.shape[3]) != tuple(shape):
        raise ValueError(
            f"{name} must have shape {(shape[0], 1, shape[1], shape[2])}, got {blob.shape}")
    if not np.all(np.isfinite(blob)):
        raise ValueError(f"{name} holds non-finite values")
    ids = np.trunc(blob[:, 0]).astype(np.int64)
    if ignore_value is None:
        ignored = np.zeros(ids.shape, dtype=bool)
    else:
        ignored = ids.astype(np.float64) == float(ignore_value)
    bad = ~ignored & ((ids < 0) | (ids >= limit))
    if np.any(bad):
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = blob[where[0], 0, where[1], where[2]]
        allowed = f"[0, {limit})"
        if ignore_value is not None:
            allowed += f" or the ignore value {ignore_value}"
        raise ValueError(
            f"{name} value {value} at (n, y, x) = {where} is out of range: ids must be in "
            f"{allowed}")
    return ids, ignored
