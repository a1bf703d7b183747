"""LossWithoutSoftmax: negative log-likelihood of given probabilities (spec section 3.8).

Over the non-ignored positions V::

    loss = -sum_{(n, p) in V} log(max(P[n, label, p], FLT_MIN)) / Z
    dP[n, label, p] = -1 / max(P[n, label, p], FLT_MIN) * top_diff / Z

with FLT_MIN the smallest normal float32 (one clamp in forward and backward, a plain sum),
and Z = max(1, normaliser): FULL N*H*W, VALID the number of non-ignored positions,
BATCH_SIZE N, NONE 1.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

FLT_MIN = float(np.finfo(np.float32).tiny)
NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")


def _prepare(prob, labels, ignore_label, normalization, axis):
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, "
                         f"got {normalization!r}")
    p = np.asarray(prob, dtype=np.float64)
    if not 0 <= axis < p.ndim:
        raise ValueError(f"axis {axis} is out of range for probabilities of shape {p.shape}")
    outer = int(np.prod(p.shape[:axis], dtype=np.int64))
    num_labels = p.shape[axis]
    inner = int(np.prod(p.shape[axis + 1:], dtype=np.int64))
    lab = np.asarray(labels, dtype=np.float64)
    if lab.size != outer * inner:
        raise ValueError(f"labels must hold {outer * inner} values for probabilities of shape "
                         f"{p.shape} (axis {axis}), got {lab.size}")
    if not np.all(np.isfinite(lab)):
        raise ValueError("labels hold non-finite values")
    ids = np.trunc(lab.reshape(outer, inner)).astype(np.int64)
    if ignore_label is None:
        ignored = np.zeros(ids.shape, dtype=bool)
    else:
        ignored = ids == int(ignore_label)
    bad = ~ignored & ((ids < 0) | (ids >= num_labels))
    if np.any(bad):
        value = lab.reshape(outer, inner)[bad][0]
        allowed = f"[0, {num_labels})"
        if ignore_label is not None:
            allowed += f" or ignore_label {ignore_label}"
        raise ValueError(f"label {value} is out of range: labels must be in {allowed}")
    count_valid = int(np.sum(~ignored))
    normaliser = {"FULL": outer * inner, "VALID": count_valid, "BATCH_SIZE": outer,
                  "NONE": 1}[normalization]
    return p.reshape(outer, num_labels, inner), ids, ignored, max(1.0, float(normaliser))


def forward(
    prob: np.ndarray,
    labels: np.ndarray,
    ignore_label: Optional[int] = None,
    normalization: str = "VALID",
    axis: int = 1,
) -> float:
    """Normalised negative log-likelihood.

    Parameters
    ----------
    prob : np.ndarray
        P, N x L x H x W (class axis ``axis``).
    labels : np.ndarray
        Class ids (float, read with truncation), N*H*W values (e.g. N x 1 x H x W).
    ignore_label : int, optional
        Positions with this label are skipped; None: none are.
    normalization : str
        "FULL", "VALID", "BATCH_SIZE" or "NONE".
    axis : int
        The class axis.

    Returns
    -------
    float
        The loss.

    Raises
    ------
    ValueError
        For a label outside [0, L) that is not ignore_label, or mismatched sizes.
    """
    p, ids, ignored, norm = _prepare(prob, labels, ignore_label, normalization, axis)
    total = 0.0
    for i in range(p.shape[0]):
        for s in range(p.shape[2]):
            if not ignored[i, s]:
                total -= np.log(max(p[i, ids[i, s], s], FLT_MIN))
    return float(total / norm)


def backward(
    prob: np.ndarray,
    labels: np.ndarray,
    top_diff: float = 1.0,
    ignore_label: Optional[int] = None,
    normalization: str = "VALID",
    axis: int = 1,
) -> np.ndarray:
    """Gradient with respect to the probabilities.

    Parameters
    ----------
    prob, labels, ignore_label, normalization, axis
        As in :func:`forward`.
    top_diff : float
        dL/dloss (the loss weight in Caffe).

    Returns
    -------
    np.ndarray
        dL/dP, the shape of ``prob``; non-zero only at each valid position's label.
    """
    p, ids, ignored, norm = _prepare(prob, labels, ignore_label, normalization, axis)
    d_prob = np.zeros(p.shape)
    for i in range(p.shape[0]):
        for s in range(p.shape[2]):
            if not ignored[i, s]:
                label = ids[i, s]
                d_prob[i, label, s] = -1.0 / max(p[i, label, s], FLT_MIN) * top_diff / norm
    return d_prob.reshape(np.shape(prob))
