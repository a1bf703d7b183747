"""Smear: gather superpixel values back to pixels (docs/LAYERS.md#smear).

V_flat[n, c, t] = V[n, c, t // w0, t % w0]::

    top[n, c, p] = ignore_feature_value            if int(idx[n, 0, p]) == ignore_idx_value
                 = V_flat[n, c, int(idx[n, 0, p])]   otherwise
"""
from __future__ import annotations

import numpy as np

from ssn.reference._common import as_blob, read_index_map


def _prepare(values, index_map, ignore_idx_value):
    vals = as_blob(values, "values")
    idx = as_blob(index_map, "index_map", channels=1)
    if idx.shape[0] != vals.shape[0]:
        raise ValueError(f"index_map has {idx.shape[0]} images, values {vals.shape[0]}")
    n_img, _, height, width = idx.shape
    limit = vals.shape[2] * vals.shape[3]
    ids, ignored = read_index_map(idx, limit, "index_map", (n_img, height, width),
                                  ignore_idx_value)
    return vals, ids, ignored


def forward(
    values: np.ndarray,
    index_map: np.ndarray,
    ignore_idx_value: float = -1.0,
    ignore_feature_value: float = -1000.0,
) -> np.ndarray:
    """Copy each pixel's superpixel values.

    Parameters
    ----------
    values : np.ndarray
        V, N x C x h0 x w0 (SSN: h0 = 1, w0 = K).
    index_map : np.ndarray
        Flat ids into h0*w0 (float), N x 1 x H x W; in [0, h0*w0) or ignore_idx_value.
    ignore_idx_value : float
        Pixels with int(id) == this value are ignored.
    ignore_feature_value : float
        Output at ignored pixels.

    Returns
    -------
    np.ndarray
        N x C x H x W.
    """
    vals, ids, ignored = _prepare(values, index_map, ignore_idx_value)
    n_img, channels, _, w0 = vals.shape
    _, height, width = ids.shape
    top = np.full((n_img, channels, height, width), float(ignore_feature_value))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if not ignored[n, y, x]:
                    t = int(ids[n, y, x])
                    top[n, :, y, x] = vals[n, :, t // w0, t % w0]
    return top


def backward(
    values: np.ndarray,
    index_map: np.ndarray,
    top_diff: np.ndarray,
    ignore_idx_value: float = -1.0,
) -> np.ndarray:
    """Gradient with respect to the values: scatter-add of the top diff.

    Parameters
    ----------
    values, index_map, ignore_idx_value
        As in :func:`forward`.
    top_diff : np.ndarray
        dL/dtop, N x C x H x W.

    Returns
    -------
    np.ndarray
        dL/dV, N x C x h0 x w0; dV_flat[n, c, id(p)] += top_diff[n, c, p] over non-ignored p.
    """
    vals, ids, ignored = _prepare(values, index_map, ignore_idx_value)
    n_img, channels, _, w0 = vals.shape
    _, height, width = ids.shape
    grad = as_blob(top_diff, "top_diff")
    if grad.shape != (n_img, channels, height, width):
        raise ValueError(f"top_diff must have shape {(n_img, channels, height, width)}, "
                         f"got {grad.shape}")
    d_values = np.zeros(vals.shape)
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if not ignored[n, y, x]:
                    t = int(ids[n, y, x])
                    d_values[n, :, t // w0, t % w0] += grad[n, :, y, x]
    return d_values
