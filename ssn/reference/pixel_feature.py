"""PixelFeature: pixel positions and scaled colours (docs/LAYERS.md#pixelfeature).

Supported modes: POSITION, POSITION_AND_RGB, RGB_AND_POSITION and RGB. Positions are the
integer row y and column x times ``pos_scale`` plus the offsets; colours are ``color_scale``
times the image. Unlike the original, the backward is real: the colour channels pass
``color_scale`` times their diff to the image, the position channels pass nothing.
"""
from __future__ import annotations

from typing import Union

import numpy as np

from ssn.reference._common import as_blob

MODES = ("POSITION", "POSITION_AND_RGB", "RGB_AND_POSITION", "RGB")
# Proto enum values of the supported modes (PixelFeatureParameter.Feature).
_MODE_BY_NUMBER = {0: "POSITION", 1: "POSITION_AND_RGB", 2: "RGB_AND_POSITION", 3: "RGB"}


def mode_name(mode: Union[str, int]) -> str:
    """Canonical name of a supported mode given by name or proto enum number."""
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        if int(mode) in _MODE_BY_NUMBER:
            return _MODE_BY_NUMBER[int(mode)]
    elif isinstance(mode, str) and mode in MODES:
        return mode
    raise ValueError(f"unsupported PixelFeature mode {mode!r}; supported: {', '.join(MODES)}")


def _layout(mode: str, in_channels: int) -> tuple[int, int, int]:
    """(position channel start or -1, colour channel start or -1, output channels)."""
    if mode == "POSITION":
        return 0, -1, 2
    if mode == "POSITION_AND_RGB":
        return 0, 2, 2 + in_channels
    if mode == "RGB_AND_POSITION":
        return in_channels, 0, in_channels + 2
    return -1, 0, in_channels


def forward(
    image: np.ndarray,
    mode: Union[str, int] = "POSITION_AND_RGB",
    pos_scale: float = 1.0,
    color_scale: float = 1.0,
    offset_h: float = 0.0,
    offset_w: float = 0.0,
) -> np.ndarray:
    """Pixel features of an image.

    Parameters
    ----------
    image : np.ndarray
        I, N x C_in x H x W.
    mode : str or int
        One of :data:`MODES` (or its proto enum number 0..3).
    pos_scale, color_scale : float
        Scale of the positions and of the colours.
    offset_h, offset_w : float
        Added to the scaled row and column.

    Returns
    -------
    np.ndarray
        N x C_out x H x W: POSITION gives [ps*y + offset_h, ps*x + offset_w] (C_out = 2),
        POSITION_AND_RGB those then cs*I (2 + C_in), RGB_AND_POSITION cs*I then the positions,
        RGB cs*I only (C_in).
    """
    name = mode_name(mode)
    img = as_blob(image, "image")
    n_img, in_channels, height, width = img.shape
    pos_start, rgb_start, out_channels = _layout(name, in_channels)
    top = np.zeros((n_img, out_channels, height, width))
    if pos_start >= 0:
        for y in range(height):
            for x in range(width):
                top[:, pos_start, y, x] = pos_scale * y + offset_h
                top[:, pos_start + 1, y, x] = pos_scale * x + offset_w
    if rgb_start >= 0:
        top[:, rgb_start:rgb_start + in_channels] = color_scale * img
    return top


def backward(
    image: np.ndarray,
    top_diff: np.ndarray,
    mode: Union[str, int] = "POSITION_AND_RGB",
    color_scale: float = 1.0,
) -> np.ndarray:
    """Gradient with respect to the image.

    Parameters
    ----------
    image : np.ndarray
        I, N x C_in x H x W (only its shape is used).
    top_diff : np.ndarray
        dL/dtop, N x C_out x H x W.
    mode : str or int
        As in :func:`forward`.
    color_scale : float
        As in :func:`forward`.

    Returns
    -------
    np.ndarray
        dL/dI = color_scale * (colour channels of top_diff), N x C_in x H x W; zero for POSITION.
    """
    name = mode_name(mode)
    img = as_blob(image, "image")
    n_img, in_channels, height, width = img.shape
    _, rgb_start, out_channels = _layout(name, in_channels)
    diff = as_blob(top_diff, "top_diff")
    if diff.shape != (n_img, out_channels, height, width):
        raise ValueError(
            f"top_diff must have shape {(n_img, out_channels, height, width)}, got {diff.shape}")
    d_image = np.zeros(img.shape)
    if rgb_start >= 0:
        d_image += color_scale * diff[:, rgb_start:rgb_start + in_channels]
    return d_image
