"""SlicIterations: the deploy net's SLIC iterations and hard assignment in one layer.

Composed from the other layers' references, as the decomposed deploy net computes it
(T = num_steps)::

    for t = 1 .. T-1:   Q_t = softmax_c(Passoc(F, S^(t-1)));   S^t = SpixelFeature2(F, Q_t)
    Q_T = softmax_c(Passoc(F, S^(T-1)))
    labels = RelToAbsIndex(argmax_c Q_T)     ties to the highest channel, as Caffe's ArgMax

The layer has no backward.
"""
from __future__ import annotations

import numpy as np

from ssn.reference import passoc, rel_to_abs_index, spixel_feature2
from ssn.reference.grid import NUM_NEIGHBOURS


def softmax(values: np.ndarray) -> np.ndarray:
    """Softmax over axis 1 (the 9 association channels)."""
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def argmax_last(values: np.ndarray) -> np.ndarray:
    """Argmax over axis 1, ties to the highest index (Caffe's ArgMax), as N x 1 x H x W."""
    flipped = values[:, ::-1]
    return (NUM_NEIGHBOURS - 1 - flipped.argmax(axis=1))[:, None].astype(np.float64)


def forward(
    features: np.ndarray,
    spixel_features: np.ndarray,
    cells: np.ndarray,
    grid_h: int,
    grid_w: int,
    num_steps: int,
    scale: float = 1.0,
    invalid_distance: float = 1e30,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, final superpixel features and final association of ``num_steps`` steps.

    Parameters
    ----------
    features : np.ndarray
        F, N x C x H x W.
    spixel_features : np.ndarray
        S^0, N x C x 1 x K with K = grid_h * grid_w.
    cells : np.ndarray
        Initial cell ids (float), N x 1 x H x W, in [0, K).
    grid_h, grid_w : int
        Grid rows K_h and columns K_w.
    num_steps : int
        T >= 1: T associations, T - 1 centre updates.
    scale, invalid_distance : float
        As for Passoc (SSN: scale -1).

    Returns
    -------
    labels : np.ndarray
        N x 1 x H x W superpixel ids (float).
    centres : np.ndarray
        S^(T-1), N x C x 1 x K: the centres of the final assignment.
    assoc : np.ndarray
        Q_T, N x 9 x H x W.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    centres = np.asarray(spixel_features, dtype=np.float64)
    for step in range(1, num_steps + 1):
        assoc = softmax(passoc.forward(features, centres, cells, grid_h, grid_w, scale,
                                       invalid_distance))
        if step == num_steps:
            break
        centres = spixel_feature2.forward(features, assoc, cells, grid_h, grid_w)
    labels = rel_to_abs_index.forward(argmax_last(assoc), cells, grid_h, grid_w)
    return labels, centres, assoc
