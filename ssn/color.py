"""Colour conversion shared by training and inference."""
from __future__ import annotations

import numpy as np
from skimage import color


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """Lab (D65, 2 degree observer) of an RGB image.

    Parameters
    ----------
    image : ndarray, H x W x 3
        uint8 in [0, 255] or float in [0, 1].

    Returns
    -------
    ndarray, H x W x 3, float32
    """
    return color.rgb2lab(image).astype(np.float32)
