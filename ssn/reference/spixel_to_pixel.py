"""SpixelToPixel: each pixel's association-weighted mix of its 9 candidate superpixels.

Over the valid channels i of pixel p, with j = nb(p, i) (docs/LAYERS.md#notation)::

    top[n, k, p] = sum_i Q[n, i, p] * S[n, k, 0, j]

An invalid channel (a neighbour outside the grid) contributes 0. This is the transpose of
SpixelFeature2's weighted sums, and what the label loss's decoder chain (3x3 gather
convolution, Smear, Tile, Eltwise PROD, 1x1 sum convolution) computes.
"""
from __future__ import annotations

import numpy as np

from ssn.reference._common import as_blob, check_grid, read_index_map
from ssn.reference.grid import NUM_NEIGHBOURS, neighbour_index


def _prepare(spixels, assoc, cells, grid_h, grid_w):
    num_cells = check_grid(grid_h, grid_w)
    values = as_blob(spixels, "spixels")
    q = as_blob(assoc, "assoc", channels=NUM_NEIGHBOURS)
    n_img, channels = values.shape[:2]
    if values.shape != (n_img, channels, 1, num_cells):
        raise ValueError(f"spixels must have shape {(n_img, channels, 1, num_cells)} for a "
                         f"{grid_h} x {grid_w} grid, got {values.shape}")
    if q.shape[0] != n_img:
        raise ValueError(f"assoc has {q.shape[0]} images, spixels {n_img}")
    _, _, height, width = q.shape
    ids, _ = read_index_map(cells, num_cells, "cells", (n_img, height, width))
    return values, q, ids


def forward(
    spixels: np.ndarray,
    assoc: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
) -> np.ndarray:
    """Per-pixel values mixed from the 9 candidate superpixels.

    Parameters
    ----------
    spixels : np.ndarray
        S, N x C x 1 x K.
    assoc : np.ndarray
        Q, N x 9 x H x W.
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w (K = K_h * K_w).

    Returns
    -------
    np.ndarray
        N x C x H x W.
    """
    values, q, ids = _prepare(spixels, assoc, cells, grid_h, grid_w)
    n_img, channels = values.shape[:2]
    _, _, height, width = q.shape
    top = np.zeros((n_img, channels, height, width))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for i in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), i, grid_h, grid_w)
                    if j >= 0:
                        top[n, :, y, x] += q[n, i, y, x] * values[n, :, 0, j]
    return top


def backward(
    spixels: np.ndarray,
    assoc: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
    top_diff: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with respect to the superpixel values and the associations.

    With G = dL/dtop, over valid (p, i) with j = nb(p, i)::

        dS[n, k, 0, j] += G[n, k, p] * Q[n, i, p]
        dQ[n, i, p]     = sum_k G[n, k, p] * S[n, k, 0, j]

    Invalid channels get dQ = 0; the cell map gets no gradient.

    Parameters
    ----------
    spixels, assoc, cells, grid_h, grid_w
        As in :func:`forward`.
    top_diff : np.ndarray
        G, N x C x H x W.

    Returns
    -------
    d_spixels : np.ndarray
        N x C x 1 x K.
    d_assoc : np.ndarray
        N x 9 x H x W.
    """
    values, q, ids = _prepare(spixels, assoc, cells, grid_h, grid_w)
    n_img, channels = values.shape[:2]
    _, _, height, width = q.shape
    grad = as_blob(top_diff, "top_diff")
    if grad.shape != (n_img, channels, height, width):
        raise ValueError(f"top_diff must have shape {(n_img, channels, height, width)}, "
                         f"got {grad.shape}")
    d_spixels = np.zeros(values.shape)
    d_assoc = np.zeros(q.shape)
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for i in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), i, grid_h, grid_w)
                    if j < 0:
                        continue
                    d_spixels[n, :, 0, j] += grad[n, :, y, x] * q[n, i, y, x]
                    d_assoc[n, i, y, x] = np.sum(grad[n, :, y, x] * values[n, :, 0, j])
    return d_spixels, d_assoc
