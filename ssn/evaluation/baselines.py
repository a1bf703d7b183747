"""Classical superpixels that SSN is compared with.

scikit-image's SLIC is always there. The strongest peers are optional extras
(``pip install .[bench]``, see setup.py): fast-slic (an AVX2 SLIC, about 10 ms
at 481x321) and OpenCV-contrib's SLICO, LSC and SEEDS. :func:`baseline`
returns a labeller for any of them, or raises :class:`BaselineMissing` with
the install command when its package is absent.

Every labeller takes an H x W x 3 RGB image (float in [0, 1] or uint8) and a
requested count, and returns consecutive int32 labels from 0.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
from skimage import segmentation

SLIC_COMPACTNESS = 10.0
# Each method's compactness-like setting (SLIC's m, LSC's ratio, SEEDS' prior),
# the default unless a run names another.
DEFAULT_COMPACTNESS = {"slic": SLIC_COMPACTNESS, "fast-slic": 10.0, "opencv-slico": 10.0,
                       "opencv-lsc": 0.075, "opencv-seeds": 2}
INSTALL_HINT = {
    "fast-slic": "pip install cython && pip install --no-build-isolation fast-slic",
    "opencv-slico": "pip install opencv-contrib-python-headless",
    "opencv-lsc": "pip install opencv-contrib-python-headless",
    "opencv-seeds": "pip install opencv-contrib-python-headless",
}
ITERATIONS = 10
Labeller = Callable[[np.ndarray, int], np.ndarray]


class BaselineMissing(ImportError):
    """An optional baseline's package is not installed."""


def as_uint8(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, :, :3])


def consecutive(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def slic_labels(rgb: np.ndarray, n_segments: int,
                compactness: float = SLIC_COMPACTNESS) -> np.ndarray:
    """scikit-image SLIC (connectivity enforced) of an H x W x 3 image; labels from 0."""
    return segmentation.slic(rgb, n_segments=n_segments, compactness=compactness,
                             start_label=0, channel_axis=-1).astype(np.int32)


def fast_slic_labels(rgb: np.ndarray, n_segments: int, compactness: float = 10.0
                     ) -> np.ndarray:
    """fast-slic's AVX2 SLIC (its own Lab conversion and connectivity)."""
    try:
        from fast_slic.avx2 import SlicAvx2
    except ImportError as error:
        raise BaselineMissing(f"fast-slic is not installed: {INSTALL_HINT['fast-slic']}") \
            from error
    slic = SlicAvx2(num_components=n_segments, compactness=compactness)
    return consecutive(slic.iterate(as_uint8(rgb)))


def opencv():
    try:
        import cv2
        cv2.ximgproc  # noqa: B018 - only in the contrib build
    except (ImportError, AttributeError) as error:
        raise BaselineMissing("OpenCV-contrib is not installed: "
                              f"{INSTALL_HINT['opencv-slico']}") from error
    return cv2


def region_size(shape: tuple, n_segments: int) -> int:
    """The side of a square superpixel when ``n_segments`` tile the image."""
    return max(2, round(math.sqrt(shape[0] * shape[1] / n_segments)))


def opencv_clustering(rgb: np.ndarray, n_segments: int, make) -> np.ndarray:
    """An OpenCV-contrib clustering superpixel method on Lab, connectivity enforced;
    ``make(cv2, lab, region_size)`` creates its object."""
    cv2 = opencv()
    lab = cv2.cvtColor(as_uint8(rgb), cv2.COLOR_RGB2Lab)
    method = make(cv2, lab, region_size(lab.shape, n_segments))
    method.iterate(ITERATIONS)
    method.enforceLabelConnectivity(25)
    return consecutive(method.getLabels())


def opencv_slico_labels(rgb: np.ndarray, n_segments: int, compactness: float = 10.0
                        ) -> np.ndarray:
    """OpenCV-contrib SLICO (its adaptive-compactness SLIC)."""
    return opencv_clustering(rgb, n_segments, lambda cv2, lab, size: (
        cv2.ximgproc.createSuperpixelSLIC(lab, algorithm=cv2.ximgproc.SLICO,
                                          region_size=size, ruler=float(compactness))))


def opencv_lsc_labels(rgb: np.ndarray, n_segments: int, compactness: float = 0.075
                      ) -> np.ndarray:
    """OpenCV-contrib LSC (linear spectral clustering)."""
    return opencv_clustering(rgb, n_segments, lambda cv2, lab, size: (
        cv2.ximgproc.createSuperpixelLSC(lab, region_size=size, ratio=float(compactness))))


def opencv_seeds_labels(rgb: np.ndarray, n_segments: int, compactness: float = 2
                        ) -> np.ndarray:
    """OpenCV-contrib SEEDS on Lab (4 levels, 5 histogram bins; ``compactness`` is its prior)."""
    cv2 = opencv()
    lab = cv2.cvtColor(as_uint8(rgb), cv2.COLOR_RGB2Lab)
    height, width = lab.shape[:2]
    seeds = cv2.ximgproc.createSuperpixelSEEDS(width, height, 3, n_segments, 4,
                                               int(compactness), 5)
    seeds.iterate(lab, 4)
    return consecutive(seeds.getLabels())


LABELLERS = {"slic": slic_labels, "fast-slic": fast_slic_labels,
             "opencv-slico": opencv_slico_labels, "opencv-lsc": opencv_lsc_labels,
             "opencv-seeds": opencv_seeds_labels}


def baseline(name: str, compactness: Optional[float] = None) -> Labeller:
    """A labeller ``(rgb, n_segments) -> labels`` for baseline ``name``.

    Raises
    ------
    KeyError
        An unknown name.
    BaselineMissing
        Its optional package is not installed (the message says how to install it).
    """
    function = LABELLERS[name]
    value = DEFAULT_COMPACTNESS[name] if compactness is None else compactness
    probe = np.zeros((16, 16, 3), np.uint8)
    function(probe, 4, value)  # raises BaselineMissing now, not image by image
    return lambda rgb, n_segments: function(rgb, n_segments, value)
