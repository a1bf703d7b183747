"""LossWithoutSoftmax: negative log-likelihood of given probabilities.

See docs/LAYERS.md#losswithoutsoftmax.

Over the non-ignored positions V::

    loss = -sum_{(n, p) in V} log(max(P[n, label, p], FLT_MIN)) / Z
    dP[n, label, p] = -1 / max(P[n, label, p], FLT_MIN) * top_diff / Z

with FLT_MIN the smallest normal float32 (one clamp in forward and backward, a plain sum),
and Z = max(1, normaliser): FULL N*H*W, VALID the number of non-ignored positions,
BATCH_SIZE N, NONE 1.

With ``normalize=True`` (``loss_without_softmax_param.normalize``) the bottom holds class
values x and each position's probabilities are computed first::

    s_c = x_c + shift,   D = sum_c max(s_c, 0) + sum_shift,   P_c = s_c / D

and the gradient with respect to x is the chain rule through that map, the clamp included:
dx_c = g * ([c == label] / D - [s_c > 0] * s_label / D^2), g = -top_diff / Z / max(P, FLT_MIN).
"""
from __future__ import annotations

from typing import Optional

import numpy as np

FLT_MIN = float(np.finfo(np.float32).tiny)
NORMALIZATIONS = ("FULL", "VALID", "BATCH_SIZE", "NONE")
# The normalise option's defaults (those of SSN's label loss).
SHIFT = 1e-10
SUM_SHIFT = 1e-12


def normalised(values: np.ndarray, shift: float = SHIFT, sum_shift: float = SUM_SHIFT
               ) -> tuple[np.ndarray, np.ndarray]:
    """The normalise option's probabilities of one position.

    Parameters
    ----------
    values : np.ndarray
        x, the L class values of one position.
    shift, sum_shift : float
        As in the module docstring; ``sum_shift`` > 0.

    Returns
    -------
    (np.ndarray, float)
        P (L values) and the denominator D.
    """
    shifted = np.asarray(values, dtype=np.float64) + shift
    denominator = 0.0
    for value in shifted:
        denominator += max(value, 0.0)
    denominator += sum_shift
    return shifted * (1.0 / denominator), denominator


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
    normalize: bool = False,
    shift: float = SHIFT,
    sum_shift: float = SUM_SHIFT,
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
    normalize : bool
        Normalise each position's class values first (see :func:`normalised`).
    shift, sum_shift : float
        The normalisation's shifts.

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
                column = p[i, :, s]
                if normalize:
                    column, _ = normalised(column, shift, sum_shift)
                total -= np.log(max(column[ids[i, s]], FLT_MIN))
    return float(total / norm)


def backward(
    prob: np.ndarray,
    labels: np.ndarray,
    top_diff: float = 1.0,
    ignore_label: Optional[int] = None,
    normalization: str = "VALID",
    axis: int = 1,
    normalize: bool = False,
    shift: float = SHIFT,
    sum_shift: float = SUM_SHIFT,
) -> np.ndarray:
    """Gradient with respect to the probabilities (or, with ``normalize``, the class values).

    Parameters
    ----------
    prob, labels, ignore_label, normalization, axis, normalize, shift, sum_shift
        As in :func:`forward`.
    top_diff : float
        dL/dloss (the loss weight in Caffe).

    Returns
    -------
    np.ndarray
        dL/dP, the shape of ``prob``; without ``normalize`` non-zero only at each valid
        position's label, with it at every class c whose shifted value is positive.
    """
    p, ids, ignored, norm = _prepare(prob, labels, ignore_label, normalization, axis)
    d_prob = np.zeros(p.shape)
    for i in range(p.shape[0]):
        for s in range(p.shape[2]):
            if ignored[i, s]:
                continue
            label = ids[i, s]
            if not normalize:
                d_prob[i, label, s] = -1.0 / max(p[i, label, s], FLT_MIN) * top_diff / norm
                continue
            column, denominator = normalised(p[i, :, s], shift, sum_shift)
            g = -1.0 / max(column[label], FLT_MIN) * top_diff / norm
            shifted = p[i, :, s] + shift
            for c in range(p.shape[1]):
                d_column = -shifted[label] / denominator ** 2 if shifted[c] > 0 else 0.0
                if c == label:
                    d_column += 1.0 / denominator
                d_prob[i, c, s] = g * d_column
    return d_prob.reshape(np.shape(prob))
