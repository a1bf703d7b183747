"""SpixelFeature2: soft superpixel centroids from 9-neighbour associations.

See docs/LAYERS.md#spixelfeature2.

Over valid (p, c) with j = nb(p, c) (docs/LAYERS.md#notation)::

    W[n, j]    = sum Q[n, c, p]
    U[n, k, j] = sum Q[n, c, p] * F[n, k, p]
    S[n, k, 0, j] = U[n, k, j] / W[n, j]   if superpixel j is alive (W[n, j] >= 0.001)
                  = 0                      otherwise

Following this project's decision, one threshold decides "alive" in forward and backward:
a dead superpixel outputs 0 and passes no gradient.
"""
from __future__ import annotations

import numpy as np

from ssn.reference._common import as_blob, check_grid, read_index_map
from ssn.reference.grid import NUM_NEIGHBOURS, neighbour_index

ALIVE_THRESHOLD = 0.001


def _prepare(features, assoc, cells, grid_h, grid_w):
    num_cells = check_grid(grid_h, grid_w)
    feats = as_blob(features, "features")
    q = as_blob(assoc, "assoc", channels=NUM_NEIGHBOURS)
    n_img, _, height, width = feats.shape
    if q.shape != (n_img, NUM_NEIGHBOURS, height, width):
        raise ValueError(f"assoc must have shape {(n_img, NUM_NEIGHBOURS, height, width)}, "
                         f"got {q.shape}")
    ids, _ = read_index_map(cells, num_cells, "cells", (n_img, height, width))
    return feats, q, ids, num_cells


def _weights_and_sums(feats, q, ids, grid_h, grid_w, num_cells):
    n_img, channels, height, width = feats.shape
    total = np.zeros((n_img, num_cells))
    sums = np.zeros((n_img, channels, num_cells))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for c in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), c, grid_h, grid_w)
                    if j < 0:
                        continue
                    total[n, j] += q[n, c, y, x]
                    sums[n, :, j] += q[n, c, y, x] * feats[n, :, y, x]
    return total, sums


def weights(assoc: np.ndarray, cells: np.ndarray, grid_h: int, grid_w: int) -> np.ndarray:
    """Total association weight W of every superpixel.

    Parameters
    ----------
    assoc : np.ndarray
        Q, N x 9 x H x W.
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w.

    Returns
    -------
    np.ndarray
        W, N x K.
    """
    q = as_blob(assoc, "assoc", channels=NUM_NEIGHBOURS)
    feats = np.zeros((q.shape[0], 0, q.shape[2], q.shape[3]))
    feats, q, ids, num_cells = _prepare(feats, q, cells, grid_h, grid_w)
    total, _ = _weights_and_sums(feats, q, ids, grid_h, grid_w, num_cells)
    return total


def forward(
    features: np.ndarray,
    assoc: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
) -> np.ndarray:
    """Association-weighted superpixel centroids.

    Parameters
    ----------
    features : np.ndarray
        F, N x C x H x W.
    assoc : np.ndarray
        Q, N x 9 x H x W.
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w.

    Returns
    -------
    np.ndarray
        S, N x C x 1 x K; zero for dead superpixels (W < 0.001).
    """
    feats, q, ids, num_cells = _prepare(features, assoc, cells, grid_h, grid_w)
    n_img, channels, _, _ = feats.shape
    total, sums = _weights_and_sums(feats, q, ids, grid_h, grid_w, num_cells)
    centroids = np.zeros((n_img, channels, 1, num_cells))
    for n in range(n_img):
        for j in range(num_cells):
            if total[n, j] >= ALIVE_THRESHOLD:
                centroids[n, :, 0, j] = sums[n, :, j] / total[n, j]
    return centroids


def backward(
    features: np.ndarray,
    assoc: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
    top_diff: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with respect to the features and the associations.

    With G = dL/dS, over valid (p, c) with j = nb(p, c) alive::

        dF[n, k, p] += G[n, k, 0, j] * Q[n, c, p] / W[n, j]
        dQ[n, c, p] += sum_k G[n, k, 0, j] * (F[n, k, p] - S[n, k, 0, j]) / W[n, j]

    Invalid channels and dead superpixels get 0; the cell map gets no gradient.

    Parameters
    ----------
    features, assoc, cells, grid_h, grid_w
        As in :func:`forward`.
    top_diff : np.ndarray
        G, N x C x 1 x K.

    Returns
    -------
    d_features : np.ndarray
        N x C x H x W.
    d_assoc : np.ndarray
        N x 9 x H x W.
    """
    feats, q, ids, num_cells = _prepare(features, assoc, cells, grid_h, grid_w)
    n_img, channels, height, width = feats.shape
    grad = as_blob(top_diff, "top_diff")
    if grad.shape != (n_img, channels, 1, num_cells):
        raise ValueError(f"top_diff must have shape {(n_img, channels, 1, num_cells)}, "
                         f"got {grad.shape}")
    total, sums = _weights_and_sums(feats, q, ids, grid_h, grid_w, num_cells)
    d_features = np.zeros(feats.shape)
    d_assoc = np.zeros(q.shape)
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                for c in range(NUM_NEIGHBOURS):
                    j = neighbour_index(int(ids[n, y, x]), c, grid_h, grid_w)
                    if j < 0 or total[n, j] < ALIVE_THRESHOLD:
                        continue
                    centroid = sums[n, :, j] / total[n, j]
                    g = grad[n, :, 0, j]
                    d_features[n, :, y, x] += g * q[n, c, y, x] / total[n, j]
                    d_assoc[n, c, y, x] += np.sum(g * (feats[n, :, y, x] - centroid)) / total[n, j]
    return d_features, d_assoc
