"""RelToAbsIndex: association channel to absolute superpixel id (docs/LAYERS.md#reltoabsindex).

top[n, 0, p] = nb_fallback(init(p), int(R[n, 0, p])): the true neighbour id for a valid
channel, the per-axis clamped id (nb_clamped, docs/LAYERS.md#notation) for an invalid
one. Piecewise constant, so there is no backward.
"""
from __future__ import annotations

import numpy as np

from ssn.reference._common import as_blob, check_grid, read_index_map
from ssn.reference.grid import NUM_NEIGHBOURS, neighbour_index_clamped


def forward(relative: np.ndarray, cells: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """Absolute superpixel ids from relative (0..8) ones.

    Parameters
    ----------
    relative : np.ndarray
        R (float), N x 1 x H x W; int(R) must lie in [0, 9).
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w.

    Returns
    -------
    np.ndarray
        Absolute ids as floats, N x 1 x H x W, in [0, K).
    """
    num_cells = check_grid(grid_h, grid_w)
    rel = as_blob(relative, "relative", channels=1)
    n_img, _, height, width = rel.shape
    rel_ids, _ = read_index_map(rel, NUM_NEIGHBOURS, "relative", (n_img, height, width))
    cell_ids, _ = read_index_map(cells, num_cells, "cells", (n_img, height, width))
    top = np.empty((n_img, 1, height, width))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                top[n, 0, y, x] = neighbour_index_clamped(
                    int(cell_ids[n, y, x]), int(rel_ids[n, y, x]), grid_h, grid_w)
    return top
