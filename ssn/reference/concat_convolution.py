"""ConcatConvolution: a 2-D convolution of the channel concatenation of several blobs.

With bottoms X_i (N x C_i x H x W), C = sum C_i, weights W (M x C x kh x kw), bias b (M),
padding p and stride s per axis, and o_i = C_0 + ... + C_{i-1}::

    Y[n, m, y, x] = b[m] + sum_i sum_c sum_(a, e) W[m, o_i + c, a, e] *
                    X_i[n, c, s_h y + a - p_h, s_w x + e - p_w]

(zero outside the image), Ho = (H + 2 p_h - kh) // s_h + 1, likewise Wo: Caffe's
Convolution of ``np.concatenate(bottoms, axis=1)``. Loops over the kernel taps, each a
sum over channels in float64.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ssn.reference._common import as_blob


def _geometry(bottoms: Sequence[np.ndarray], weights: np.ndarray, pad: tuple[int, int],
              stride: tuple[int, int]):
    """Checked float64 bottoms, their concatenation zero-padded, and the output size."""
    blobs = [as_blob(b, f"bottom {i}") for i, b in enumerate(bottoms)]
    if not blobs:
        raise ValueError("at least one bottom is needed")
    num, _, height, width = blobs[0].shape
    for i, blob in enumerate(blobs):
        if (blob.shape[0],) + blob.shape[2:] != (num, height, width):
            raise ValueError(f"bottom {i} is {blob.shape}, bottom 0 {blobs[0].shape}: they "
                             "must agree on every axis but the channels")
    weights = np.asarray(weights, dtype=np.float64)
    channels = sum(blob.shape[1] for blob in blobs)
    if weights.ndim != 4 or weights.shape[1] != channels:
        raise ValueError(f"weights must be M x {channels} x kh x kw, got {weights.shape}")
    kernel_h, kernel_w = weights.shape[2:]
    out_h = (height + 2 * pad[0] - kernel_h) // stride[0] + 1
    out_w = (width + 2 * pad[1] - kernel_w) // stride[1] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"the {kernel_h}x{kernel_w} kernel does not fit the padded "
                         f"{height}x{width} input")
    joined = np.pad(np.concatenate(blobs, axis=1),
                    ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    return blobs, weights, joined, out_h, out_w


def _tap_window(a: int, e: int, out_h: int, out_w: int, stride: tuple[int, int]
                ) -> tuple[slice, slice]:
    """The rows and columns of the padded input that tap (a, e) reads for every output."""
    return (slice(a, a + stride[0] * (out_h - 1) + 1, stride[0]),
            slice(e, e + stride[1] * (out_w - 1) + 1, stride[1]))


def forward(bottoms: Sequence[np.ndarray], weights: np.ndarray,
            bias: Optional[np.ndarray] = None,
            pad: tuple[int, int] = (0, 0), stride: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Y, N x M x Ho x Wo, from the bottoms (each N x C_i x H x W), W (M x C x kh x kw)
    and b (M, or None for no bias)."""
    _, weights, joined, out_h, out_w = _geometry(bottoms, weights, pad, stride)
    top = np.zeros((joined.shape[0], weights.shape[0], out_h, out_w))
    for a in range(weights.shape[2]):
        for e in range(weights.shape[3]):
            rows, cols = _tap_window(a, e, out_h, out_w, stride)
            top += np.einsum("mc,ncyx->nmyx", weights[:, :, a, e], joined[:, :, rows, cols])
    if bias is not None:
        top += np.asarray(bias, dtype=np.float64)[None, :, None, None]
    return top


def backward(bottoms: Sequence[np.ndarray], weights: np.ndarray, top_diff: np.ndarray,
             pad: tuple[int, int] = (0, 0), stride: tuple[int, int] = (1, 1)
             ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Gradients from dL/dY (N x M x Ho x Wo): (dL/dX_i for each bottom, dL/dW of
    M x C x kh x kw, dL/db of M)."""
    blobs, weights, joined, out_h, out_w = _geometry(bottoms, weights, pad, stride)
    grad = np.asarray(top_diff, dtype=np.float64)
    expected = (joined.shape[0], weights.shape[0], out_h, out_w)
    if grad.shape != expected:
        raise ValueError(f"top_diff must have shape {expected}, got {grad.shape}")
    d_joined = np.zeros_like(joined)
    d_weights = np.zeros_like(weights)
    for a in range(weights.shape[2]):
        for e in range(weights.shape[3]):
            rows, cols = _tap_window(a, e, out_h, out_w, stride)
            d_joined[:, :, rows, cols] += np.einsum("mc,nmyx->ncyx", weights[:, :, a, e], grad)
            d_weights[:, :, a, e] = np.einsum("nmyx,ncyx->mc", grad, joined[:, :, rows, cols])
    height, width = blobs[0].shape[2:]
    d_joined = d_joined[:, :, pad[0]:pad[0] + height, pad[1]:pad[1] + width]
    splits = np.cumsum([blob.shape[1] for blob in blobs])[:-1]
    return np.split(d_joined, splits, axis=1), d_weights, grad.sum(axis=(0, 2, 3))
