"""Interp: align-corners bilinear resize, DeepLab's layer (docs/LAYERS.md#interp).

The input window is X[..., -pad_beg : -pad_beg + H_eff, -pad_beg : -pad_beg + W_eff] with
H_eff = H_in + pad_beg + pad_end (pads are <= 0 and crop). Ratios and source coordinates are
computed in float32 as the original does; the interpolation weights are then exact in float64::

    r = float32(H_eff - 1) / float32(H_out - 1)  (0 if H_out == 1)
    src = float32(r * h2),  h1 = trunc(src),  lambda = src - h1,  step = 1 if h1 < H_eff - 1

and likewise for columns.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ssn.reference._common import as_blob


def output_shape(
    in_height: int,
    in_width: int,
    zoom_factor: Optional[int] = None,
    shrink_factor: Optional[int] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    pad_beg: int = 0,
    pad_end: int = 0,
) -> tuple[int, int]:
    """Output size by the first matching rule of docs/LAYERS.md#interp.

    A parameter is "given" when it is not None; height and width count as given only together.
    The rules: shrink without zoom, (H_eff - 1) // shrink + 1; zoom without shrink,
    (H_eff - 1) * zoom + 1 (either wins over a given height and width); height and
    width, those; shrink and zoom, shrink first and then zoom.

    Parameters
    ----------
    in_height, in_width : int
        Input size H_in, W_in.
    zoom_factor, shrink_factor : int, optional
        Factors, each >= 1 when given.
    height, width : int, optional
        Explicit output size.
    pad_beg, pad_end : int
        Must be <= 0 (they crop the input).

    Returns
    -------
    tuple of int
        (H_out, W_out).

    Raises
    ------
    ValueError
        For positive pads, factors below 1, no usable rule, or a non-positive size.
    """
    if pad_beg > 0 or pad_end > 0:
        raise ValueError(f"pad_beg and pad_end must be <= 0, got {pad_beg} and {pad_end}")
    in_h = in_height + pad_beg + pad_end
    in_w = in_width + pad_beg + pad_end
    if in_h < 1 or in_w < 1:
        raise ValueError(f"effective input size {in_h} x {in_w} must be positive "
                         f"(input {in_height} x {in_width}, pads {pad_beg}, {pad_end})")
    for name, factor in (("zoom_factor", zoom_factor), ("shrink_factor", shrink_factor)):
        if factor is not None and factor < 1:
            raise ValueError(f"{name} must be >= 1, got {factor}")
    has_zoom = zoom_factor is not None
    has_shrink = shrink_factor is not None
    has_size = height is not None and width is not None

    def shrink(size: int) -> int:
        return (size - 1) // shrink_factor + 1

    def zoom(size: int) -> int:
        return size + (size - 1) * (zoom_factor - 1)

    # "shrink only" / "zoom only" mean without the other factor: a single factor wins
    # over an explicit size, as in DeepLab's layer (and the C++ layer here).
    if has_shrink and not has_zoom:
        out_h, out_w = shrink(in_h), shrink(in_w)
    elif has_zoom and not has_shrink:
        out_h, out_w = zoom(in_h), zoom(in_w)
    elif has_size:
        out_h, out_w = int(height), int(width)
    elif has_shrink and has_zoom:
        out_h, out_w = zoom(shrink(in_h)), zoom(shrink(in_w))
    else:
        raise ValueError("Interp needs zoom_factor, shrink_factor, both, or height and width")
    if out_h < 1 or out_w < 1:
        raise ValueError(f"output size {out_h} x {out_w} must be positive")
    return out_h, out_w


def _taps(in_size: int, out_size: int) -> list[tuple[int, int, float]]:
    """(first source index, step to the second, lambda) for every output index."""
    if out_size > 1:
        ratio = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        ratio = np.float32(0.0)
    taps = []
    for o in range(out_size):
        src = np.float32(ratio * np.float32(o))
        first = int(src)
        step = 1 if first < in_size - 1 else 0
        taps.append((first, step, float(src) - first))
    return taps


def _geometry(x, zoom_factor, shrink_factor, height, width, pad_beg, pad_end):
    blob = as_blob(x, "x")
    out_h, out_w = output_shape(blob.shape[2], blob.shape[3], zoom_factor, shrink_factor,
                                height, width, pad_beg, pad_end)
    in_h = blob.shape[2] + pad_beg + pad_end
    in_w = blob.shape[3] + pad_beg + pad_end
    return blob, in_h, in_w, out_h, out_w


def forward(
    x: np.ndarray,
    zoom_factor: Optional[int] = None,
    shrink_factor: Optional[int] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    pad_beg: int = 0,
    pad_end: int = 0,
) -> np.ndarray:
    """Bilinear (align-corners) resize.

    Parameters
    ----------
    x : np.ndarray
        X, N x C x H_in x W_in.
    zoom_factor, shrink_factor, height, width, pad_beg, pad_end
        As in :func:`output_shape`.

    Returns
    -------
    np.ndarray
        Y, N x C x H_out x W_out.
    """
    blob, in_h, in_w, out_h, out_w = _geometry(x, zoom_factor, shrink_factor, height, width,
                                               pad_beg, pad_end)
    off = -pad_beg
    window = blob[:, :, off:off + in_h, off:off + in_w]
    if (in_h, in_w) == (out_h, out_w):
        return window.copy()
    top = np.empty(blob.shape[:2] + (out_h, out_w))
    for h2, (h1, h1p, lam_h) in enumerate(_taps(in_h, out_h)):
        for w2, (w1, w1p, lam_w) in enumerate(_taps(in_w, out_w)):
            top[:, :, h2, w2] = (
                (1.0 - lam_h) * ((1.0 - lam_w) * window[:, :, h1, w1]
                                 + lam_w * window[:, :, h1, w1 + w1p])
                + lam_h * ((1.0 - lam_w) * window[:, :, h1 + h1p, w1]
                           + lam_w * window[:, :, h1 + h1p, w1 + w1p]))
    return top


def backward(
    x: np.ndarray,
    top_diff: np.ndarray,
    zoom_factor: Optional[int] = None,
    shrink_factor: Optional[int] = None,
    height: Optional[int] = None,
    width: Optional[int] = None,
    pad_beg: int = 0,
    pad_end: int = 0,
) -> np.ndarray:
    """Exact adjoint of :func:`forward`.

    Parameters
    ----------
    x : np.ndarray
        X, N x C x H_in x W_in (only its shape is used).
    top_diff : np.ndarray
        dL/dY, N x C x H_out x W_out.
    zoom_factor, shrink_factor, height, width, pad_beg, pad_end
        As in :func:`output_shape`.

    Returns
    -------
    np.ndarray
        dL/dX, N x C x H_in x W_in; zero outside the cropped window.
    """
    blob, in_h, in_w, out_h, out_w = _geometry(x, zoom_factor, shrink_factor, height, width,
                                               pad_beg, pad_end)
    grad = as_blob(top_diff, "top_diff")
    if grad.shape != blob.shape[:2] + (out_h, out_w):
        raise ValueError(f"top_diff must have shape {blob.shape[:2] + (out_h, out_w)}, "
                         f"got {grad.shape}")
    d_x = np.zeros(blob.shape)
    off = -pad_beg
    d_window = d_x[:, :, off:off + in_h, off:off + in_w]  # a view into d_x
    if (in_h, in_w) == (out_h, out_w):
        d_window += grad
        return d_x
    for h2, (h1, h1p, lam_h) in enumerate(_taps(in_h, out_h)):
        for w2, (w1, w1p, lam_w) in enumerate(_taps(in_w, out_w)):
            g = grad[:, :, h2, w2]
            d_window[:, :, h1, w1] += (1.0 - lam_h) * (1.0 - lam_w) * g
            d_window[:, :, h1, w1 + w1p] += (1.0 - lam_h) * lam_w * g
            d_window[:, :, h1 + h1p, w1] += lam_h * (1.0 - lam_w) * g
            d_window[:, :, h1 + h1p, w1 + w1p] += lam_h * lam_w * g
    return d_x
