"""The superpixel grid, its 3x3 neighbourhood and the initial map (docs/LAYERS.md#notation).

The grid has ``grid_h`` rows and ``grid_w`` columns, numbered row-major: cell j = r*grid_w + c.
Association channel c in 0..8 stands for the offset (dr, dc) = (c // 3 - 1, c % 3 - 1).
"""
from __future__ import annotations

import math

import numpy as np

NUM_NEIGHBOURS = 9


def channel_offset(c: int) -> tuple[int, int]:
    """Grid offset (dr, dc) of association channel ``c`` (0..8)."""
    if not 0 <= c < NUM_NEIGHBOURS:
        raise ValueError(f"association channel must be in [0, 9), got {c}")
    return c // 3 - 1, c % 3 - 1


def _cell_coords(cell: int, grid_h: int, grid_w: int) -> tuple[int, int]:
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must be at least 1 x 1, got {grid_h} x {grid_w}")
    if not 0 <= cell < grid_h * grid_w:
        raise ValueError(f"cell {cell} is outside a {grid_h} x {grid_w} grid")
    return divmod(cell, grid_w)


def neighbour_index(cell: int, c: int, grid_h: int, grid_w: int) -> int:
    """Superpixel id of neighbour ``c`` of ``cell``, or -1 if that neighbour does not exist.

    Parameters
    ----------
    cell : int
        Initial cell id, in [0, grid_h*grid_w).
    c : int
        Association channel, in [0, 9).
    grid_h, grid_w : int
        Grid rows and columns.

    Returns
    -------
    int
        (r0+dr)*grid_w + (c0+dc) if both coordinates are inside the grid, else -1.
    """
    r0, c0 = _cell_coords(cell, grid_h, grid_w)
    dr, dc = channel_offset(c)
    r, col = r0 + dr, c0 + dc
    if 0 <= r < grid_h and 0 <= col < grid_w:
        return r * grid_w + col
    return -1


def neighbour_index_clamped(cell: int, c: int, grid_h: int, grid_w: int) -> int:
    """Neighbour ``c`` of ``cell`` with the original's per-axis fallback for invalid channels.

    An out-of-range row step keeps row r0 and an out-of-range column step keeps column c0
    (docs/LAYERS.md#notation, ``nb_clamped``). Equal to :func:`neighbour_index` for valid channels.

    Parameters
    ----------
    cell : int
        Initial cell id, in [0, grid_h*grid_w).
    c : int
        Association channel, in [0, 9).
    grid_h, grid_w : int
        Grid rows and columns.

    Returns
    -------
    int
        The (possibly clamped) neighbour id, always in [0, grid_h*grid_w).
    """
    r0, c0 = _cell_coords(cell, grid_h, grid_w)
    dr, dc = channel_offset(c)
    r = r0 + dr if 0 <= r0 + dr < grid_h else r0
    col = c0 + dc if 0 <= c0 + dc < grid_w else c0
    return r * grid_w + col


def grid_shape(n_spixels: int, height: int, width: int) -> tuple[int, int]:
    """Grid size (K_h, K_w) for a requested superpixel count (docs/LAYERS.md#initial-cell-map).

    K_w = floor(sqrt(n * W / H)) and K_h = floor(sqrt(n * H / W)), computed exactly in
    integers (floor(sqrt(x)) = isqrt(floor(x)) for x >= 0).

    Parameters
    ----------
    n_spixels : int
        Requested number of superpixels n >= 1.
    height, width : int
        Image height H and width W.

    Returns
    -------
    tuple of int
        (K_h, K_w), with K_h * K_w <= n.
    """
    if n_spixels < 1 or height < 1 or width < 1:
        raise ValueError(
            f"n_spixels, height and width must be >= 1, got {n_spixels}, {height}, {width}")
    grid_w = math.isqrt(n_spixels * width // height)
    grid_h = math.isqrt(n_spixels * height // width)
    if grid_h < 1 or grid_w < 1:
        raise ValueError(
            f"{n_spixels} superpixels on a {height} x {width} image give an empty "
            f"{grid_h} x {grid_w} grid")
    return grid_h, grid_w


def init_cells(height: int, width: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Initial superpixel map by the floor rule (docs/LAYERS.md#initial-cell-map).

    init(y, x) = floor(y*grid_h/height)*grid_w + floor(x*grid_w/width).

    Parameters
    ----------
    height, width : int
        Image size H, W.
    grid_h, grid_w : int
        Grid rows and columns.

    Returns
    -------
    np.ndarray
        Cell ids, H x W, integer.
    """
    if height < 1 or width < 1 or grid_h < 1 or grid_w < 1:
        raise ValueError(
            f"sizes must be >= 1, got image {height} x {width}, grid {grid_h} x {grid_w}")
    rows = np.arange(height) * grid_h // height
    cols = np.arange(width) * grid_w // width
    return rows[:, None] * grid_w + cols[None, :]
