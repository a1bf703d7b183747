"""Regions of a continuous target, to train on its discontinuities with the label loss.

A piecewise-smooth target (optical flow of independently moving objects, the
depth of separate surfaces) changes little between neighbouring pixels inside
a region and jumps at its edge. Joining 4-neighbours whose targets differ by at
most a threshold recovers those regions, and the label loss (which trained the
shipped model's boundaries) can then teach superpixels to respect them; the
L2 loss on the target itself gives a much weaker signal for where the edges
are (see docs/TASKS.md).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph


def target_regions(target: np.ndarray, threshold: float) -> np.ndarray:
    """Connected regions of 4-neighbours whose targets differ by at most ``threshold``.

    Parameters
    ----------
    target : ndarray, H x W or H x W x C
        Real values; the difference of two pixels is the Euclidean norm over C.
    threshold : float
        The largest step inside a region, in the target's units (> 0).

    Returns
    -------
    ndarray, H x W, int32
        Labels from 1, numbered by decreasing area (1 is the largest region), so
        that a loss that keeps the smallest ids keeps the largest regions.
    """
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold!r}")
    values = np.asarray(target, dtype=np.float64)
    if values.ndim == 2:
        values = values[:, :, None]
    if values.ndim != 3:
        raise ValueError(f"target must be H x W or H x W x C, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("target holds NaN or infinite values")
    height, width = values.shape[:2]
    index = np.arange(height * width).reshape(height, width)
    rows, cols = [], []
    for step_y, step_x in ((0, 1), (1, 0)):
        a = values[:height - step_y, :width - step_x]
        b = values[step_y:, step_x:]
        joined = np.linalg.norm(a - b, axis=2) <= threshold
        rows.append(index[:height - step_y, :width - step_x][joined])
        cols.append(index[step_y:, step_x:][joined])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = scipy.sparse.coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)),
                                    shape=(height * width,) * 2)
    _, components = scipy.sparse.csgraph.connected_components(graph, directed=False)
    areas = np.bincount(components)
    rank = np.empty_like(areas)
    rank[np.argsort(-areas, kind="stable")] = np.arange(areas.size)
    return (rank[components] + 1).reshape(height, width).astype(np.int32)
