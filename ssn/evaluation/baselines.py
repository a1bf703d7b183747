"""Classical superpixels that SSN is compared with."""
from __future__ import annotations

import numpy as np
from skimage import segmentation

SLIC_COMPACTNESS = 10.0


def slic_labels(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    """scikit-image SLIC (compactness 10, connectivity enforced) of an H x W x 3 image.

    Returns
    -------
    ndarray, H x W, int
        Labels from 0.
    """
    return segmentation.slic(rgb, n_segments=n_segments, compactness=SLIC_COMPACTNESS,
                             start_label=0, channel_axis=-1)
