"""Colour conversion shared by training and inference."""
from __future__ import annotations

import ctypes
import functools
import os
from typing import Any

import numpy as np

from ssn.native import load_native
from ssn.threads import available_cores


@functools.lru_cache(maxsize=None)
def _native_lab(name: str) -> Any:
    """``name`` (ssn_rgb_to_lab or ssn_rgb8_to_lab) from the native library, with its C
    signature set."""
    func = getattr(load_native(), name)
    func.restype = None
    func.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int32]
    return func


def conversion_threads() -> int:
    """Threads for one conversion: OMP_NUM_THREADS when set (as for Caffe's layers,
    so that a batch worker keeps to its share), else the cores this process may use."""
    setting = os.environ.get("OMP_NUM_THREADS", "")
    return int(setting) if setting.isdigit() and int(setting) > 0 else available_cores()


def rgb_to_lab_planes(image: np.ndarray) -> np.ndarray:
    """Lab (D65, 2 degree observer) of an RGB image, one plane per channel.

    scikit-image's ``rgb2lab`` (same constants and formulas) in double, compiled:
    its values rounded to float32, several times faster. A uint8 value k gives
    exactly what the float32 k / 255 gives. Large images are shared out among
    :func:`conversion_threads` threads; each pixel is converted alone, so the
    values do not depend on how many.

    Parameters
    ----------
    image : ndarray, H x W x 3
        uint8 in [0, 255] or float in [0, 1].

    Returns
    -------
    ndarray, 3 x H x W, float32, C-contiguous
        L, a and b.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 image, got shape {image.shape}")
    if image.dtype == np.uint8:  # k means k / 255: a table lookup
        rgb, name = np.ascontiguousarray(image), "ssn_rgb8_to_lab"
    else:
        rgb, name = np.ascontiguousarray(image, dtype=np.float32), "ssn_rgb_to_lab"
    lab = np.empty((3,) + image.shape[:2], np.float32)
    _native_lab(name)(rgb.ctypes.data, image.shape[0] * image.shape[1], lab.ctypes.data,
                      conversion_threads())
    return lab


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """Lab (D65, 2 degree observer) of an RGB image.

    Parameters
    ----------
    image : ndarray, H x W x 3
        uint8 in [0, 255] or float in [0, 1].

    Returns
    -------
    ndarray, H x W x 3, float32
        A view of :func:`rgb_to_lab_planes`' planes: ``.transpose(2, 0, 1)`` gives
        them back without a copy.
    """
    return rgb_to_lab_planes(image).transpose(1, 2, 0)
