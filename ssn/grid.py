"""The initial superpixel grid: its size for a requested count, and each pixel's cell."""
from __future__ import annotations

import math

import numpy as np


def grid_shape(n_spixels: int, height: int, width: int) -> tuple[int, int]:
    """Grid rows and columns (K_h, K_w) for ``n_spixels`` requested superpixels.

    K_w = floor(sqrt(n W / H)) and K_h = floor(sqrt(n H / W)), in exact integer
    arithmetic, each at least 1, with K_h * K_w <= n: so any n >= 1 gives a grid
    on any aspect ratio (a grid larger than the image is the caller's to refuse).

    Raises
    ------
    ValueError
        If a size or the count is below 1.
    """
    if n_spixels < 1 or height < 1 or width < 1:
        raise ValueError(
            f"n_spixels, height and width must be >= 1, got {n_spixels}, {height}, {width}")
    grid_h = max(1, min(math.isqrt(n_spixels * height // width), n_spixels))
    grid_w = max(1, min(math.isqrt(n_spixels * width // height), n_spixels // grid_h))
    return grid_h, grid_w


def init_cells(height: int, width: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Each pixel's initial cell by the floor rule.

    cell(y, x) = floor(y K_h / H) K_w + floor(x K_w / W).

    Returns
    -------
    ndarray, H x W, int64
        Cell ids in 0 .. K_h K_w - 1.
    """
    if height < 1 or width < 1 or grid_h < 1 or grid_w < 1:
        raise ValueError(
            f"sizes must be >= 1, got image {height} x {width}, grid {grid_h} x {grid_w}")
    row_cells = (np.arange(height) * grid_h // height) * grid_w
    col_cells = np.arange(width) * grid_w // width
    return row_cells[:, None] + col_cells[None, :]
