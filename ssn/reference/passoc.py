"""Passoc: scaled squared distances from each pixel to its 9 candidate superpixels.

See docs/LAYERS.md#passoc.

For pixel p with initial cell init(p) and channel c, j = nb(p, c) (docs/LAYERS.md#notation)::

    D[n, c, p] = scale * sum_k (F[n, k, p] - S[n, k, 0, j])^2    if channel c is valid for p
               = scale * invalid_distance                       otherwise

This project's default invalid_distance is 1e30, so invalid neighbours never win a softmax
when scale < 0; 10000 reproduces the original.
"""
from __future__ import annotations

import numpy as np

from ssn.reference._common import as_blob, check_grid, read_index_map
from ssn.reference.grid import NUM_NEIGHBOURS, neighbour_index


def _prepare(features, spixel_features, cells, grid_h, grid_w):
    num_cells = check_grid(grid_h, grid_w)
    feats = as_blob(features, "features")
    spix = as_blob(spixel_features, "spixel_features")
    n_img, channels, height, width = feats.shape
    if spix.shape != (n_img, channels, 1, num_cells):
        raise ValueError(f"spixel_features must have shape {(n_img, channels, 1, num_cells)} "
                         f"for a {grid_h} x {grid_w} grid, got {spix.shape}")
    ids, _ = read_index_map(cells, num_cells, "cells", (n_img, height, width))
    return feats, spix, ids


def forward(
    features: np.ndarray,
    spixel_features: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
    scale: float = 1.0,
    invalid_distance: float = 1e30,
) -> np.ndarray:
    """Scaled squared distances to the 9 candidate superpixels.

    Parameters
    ----------
    features : np.ndarray
        F, N x C x H x W.
    spixel_features : np.ndarray
        S, N x C x 1 x K with K = grid_h * grid_w.
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w.
    scale : float
        sigma (scale_value); SSN uses -1.
    invalid_distance : float
        Distance written (times scale) for neighbours outside the grid.

    Returns
    -------
    np.ndarray
        D, N x 9 x H x W.
    """
    feats, spix, ids = _prepare(features, spixel_features, cells, grid_h, grid_w)
    n_img, _, height, width = feats.shape
    dist = np.empty((n_img, NUM_NEIGHBOURS, height, width))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for c in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), c, grid_h, grid_w)
                    if j < 0:
                        dist[n, c, y, x] = scale * invalid_distance
                    else:
                        diff = feats[n, :, y, x] - spix[n, :, 0, j]
                        dist[n, c, y, x] = scale * np.sum(diff ** 2)
    return dist


def backward(
    features: np.ndarray,
    spixel_features: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
    top_diff: np.ndarray,
    scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with respect to the pixel and superpixel features.

    With G = dL/dD, over valid (p, c) with j = nb(p, c)::

        dF[n, k, p]    += G[n, c, p] * 2*scale * (F[n, k, p] - S[n, k, 0, j])
        dS[n, k, 0, j] += G[n, c, p] * 2*scale * (S[n, k, 0, j] - F[n, k, p])

    Invalid channels contribute nothing; the cell map gets no gradient.

    Parameters
    ----------
    features, spixel_features, cells, grid_h, grid_w, scale
        As in :func:`forward`.
    top_diff : np.ndarray
        G, N x 9 x H x W.

    Returns
    -------
    d_features : np.ndarray
        N x C x H x W.
    d_spixel_features : np.ndarray
        N x C x 1 x K.
    """
    feats, spix, ids = _prepare(features, spixel_features, cells, grid_h, grid_w)
    n_img, _, height, width = feats.shape
    grad = as_blob(top_diff, "top_diff")
    if grad.shape != (n_img, NUM_NEIGHBOURS, height, width):
        raise ValueError(f"top_diff must have shape {(n_img, NUM_NEIGHBOURS, height, width)}, "
                         f"got {grad.shape}")
    d_features = np.zeros(feats.shape)
    d_spixel = np.zeros(spix.shape)
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for c in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), c, grid_h, grid_w)
                    if j < 0:
                        continue
                    diff = feats[n, :, y, x] - spix[n, :, 0, j]
                    d_features[n, :, y, x] += grad[n, c, y, x] * 2.0 * scale * diff
                    d_spixel[n, :, 0, j] -= grad[n, c, y, x] * 2.0 * scale * diff
    return d_features, d_spixel
