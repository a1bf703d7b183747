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


GRID_MODES = ("calibrated", "original")
# Superpixels after connectivity per grid cell, against the pixels per cell, measured
# on the 100 BSDS500 val images (481x321) with the shipped model, 10 steps and the
# default connectivity factors (2026-11-29; docs/EXPERIMENTS.md). SSN splits cells
# that straddle boundaries, so it ends with 1.45-2.1 superpixels per cell.
OVERSEGMENTATION = {
    "deep": ((79.4, 1.456), (114.4, 1.459), (162.5, 1.467), (229.8, 1.500), (402.1, 1.591),
             (825.7, 1.744), (1608.3, 1.866), (3860.0, 2.144)),
    "pixel": ((79.4, 1.613), (114.4, 1.573), (162.5, 1.534), (229.8, 1.529), (402.1, 1.544),
              (825.7, 1.597), (1608.3, 1.620), (3860.0, 1.825)),
}


def expected_count(grid_count: int, height: int, width: int, features: str) -> float:
    """The expected number of superpixels after connectivity when the grid is made for
    ``grid_count``: cells times the measured superpixels per cell at that cell size
    (interpolated in log size, constant beyond the measured range)."""
    grid_h, grid_w = grid_shape(grid_count, height, width)
    cells = grid_h * grid_w
    return cells * superpixels_per_cell(height * width / cells, features)


def superpixels_per_cell(cell_pixels: float, features: str) -> float:
    """The measured superpixels per grid cell (:data:`OVERSEGMENTATION`) at cells of
    ``cell_pixels`` pixels, interpolated in log size, constant beyond the measures."""
    areas, ratios = zip(*OVERSEGMENTATION[features])
    return float(np.interp(math.log(cell_pixels), np.log(areas), ratios))


def grid_request(n_segments: int, height: int, width: int, features: str,
                 grid: str = "calibrated") -> int:
    """The count the initial grid is made for, so that about ``n_segments`` come out.

    "original" is the original release's rule: the grid for ``n_segments`` itself
    (about 1.5-1.8 times as many superpixels after connectivity). "calibrated"
    picks the grid whose expected final count (:func:`expected_count`) is nearest
    to ``n_segments``; its superpixels are exactly those of "original" asked for
    that smaller count.
    """
    if grid not in GRID_MODES:
        raise ValueError(f"grid must be one of {GRID_MODES}, got {grid!r}")
    if grid == "original" or n_segments <= 1:
        return n_segments
    low, high = 1, n_segments  # expected_count grows with the request
    while low < high:
        middle = (low + high + 1) // 2
        if expected_count(middle, height, width, features) <= n_segments:
            low = middle
        else:
            high = middle - 1
    above = min(low + 1, n_segments)
    if abs(expected_count(above, height, width, features) - n_segments) < abs(
            expected_count(low, height, width, features) - n_segments):
        return above
    return low
