"""The SSN training samples (augmented crops of BSDS500 images and segmentations).

The data path of one training sample: RGB image and one human segmentation ->
random scale, flip and crop -> Lab image, initial superpixel cells, label map
and one-hot label channels. Every sample draws from its own random generator,
seeded from (seed, batch index, slot), so samples do not depend on which worker
made them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import scipy.io
import scipy.ndimage

from ssn.bsds import BSDSImage, load_bsds, read_split
from ssn.color import rgb_to_lab
from ssn.grid import init_cells

IGNORE_LABEL = 255
SCALE_MEAN, SCALE_STD, SCALE_MIN, SCALE_MAX = 1.0, 0.75, 0.75, 3.0


def labels_to_channels(segmentation: np.ndarray, num_channels: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Class map and one-hot channels of a segmentation.

    The t-th smallest segment id becomes class t. Segments beyond
    ``num_channels`` get IGNORE_LABEL and an all-zero one-hot.

    Returns
    -------
    label : ndarray, H x W, float32
    onehot : ndarray, num_channels x H x W, float32
    """
    ids, inverse = np.unique(segmentation, return_inverse=True)
    inverse = inverse.reshape(segmentation.shape)
    label = np.where(inverse < num_channels, inverse, IGNORE_LABEL).astype(np.float32)
    onehot = (inverse[None] == np.arange(num_channels)[:, None, None]).astype(np.float32)
    return label, onehot


def random_scale(rng: np.random.Generator) -> float:
    return float(np.clip(rng.normal(SCALE_MEAN, SCALE_STD), SCALE_MIN, SCALE_MAX))


def augment(sample: BSDSImage, rng: np.random.Generator, patch: tuple[int, int]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Random scale, annotator, flip and crop (spec 9.2 steps 1-5).

    Returns
    -------
    rgb : ndarray, h x w x 3, float in [0, 1]
    segmentation : ndarray, h x w, int
    """
    height, width = patch
    scale = random_scale(rng)
    # The scaled image must hold a patch; raise the scale if it would not.
    scale = max(scale, height / sample.rgb.shape[0], width / sample.rgb.shape[1])
    rgb = scipy.ndimage.zoom(sample.rgb.astype(np.float32) / 255.0, (scale, scale, 1),
                             order=1, grid_mode=False)
    segmentation = sample.segmentations[rng.integers(len(sample.segmentations))]
    segmentation = scipy.ndimage.zoom(segmentation, (scale, scale), order=0)
    rows = min(rgb.shape[0], segmentation.shape[0])
    cols = min(rgb.shape[1], segmentation.shape[1])
    if rng.uniform() > 0.5:
        rgb, segmentation = rgb[:, ::-1], segmentation[:, ::-1]
    top = int(rng.integers(0, rows - height + 1))
    left = int(rng.integers(0, cols - width + 1))
    return (np.clip(rgb[top:top + height, left:left + width], 0, 1),
            segmentation[top:top + height, left:left + width])


@dataclass
class TrainingBatch:
    """Arrays for the five tops of the SSN data layer.

    Attributes
    ----------
    img : N x 3 x H x W Lab; spixel_init, feat_spixel_init : N x 1 x H x W cells;
    label : N x 1 x H x W classes; problabel : N x C x H x W one-hot.
    """

    img: np.ndarray
    spixel_init: np.ndarray
    feat_spixel_init: np.ndarray
    label: np.ndarray
    problabel: np.ndarray

    def tops(self) -> list[np.ndarray]:
        return [self.img, self.spixel_init, self.feat_spixel_init, self.label,
                self.problabel]


def make_sample(sample: BSDSImage, rng: np.random.Generator, patch: tuple[int, int],
                num_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented sample: Lab (3 x h x w), label (1 x h x w), one-hot (C x h x w)."""
    rgb, segmentation = augment(sample, rng, patch)
    label, onehot = labels_to_channels(segmentation, num_channels)
    return rgb_to_lab(rgb).transpose(2, 0, 1), label[None], onehot


class BSDSSampler:
    """Draws training batches of augmented BSDS500 patches.

    Parameters
    ----------
    split : str
        "train" or "val" (the directory names under images/ and groundTruth/).
    patch : (int, int)
        Patch height and width.
    grid : (int, int)
        Superpixel grid K_h x K_w of the initial cells.
    batch_size : int
    num_label_channels : int
    seed : int
    root : path, optional
        BSDS500 directory (see :func:`ssn.bsds.data_root`).
    ids : sequence of str, optional
        Image ids (default: every image of the split, see :func:`ssn.bsds.read_split`).
    """

    def __init__(self, split: str, patch: tuple[int, int], grid: tuple[int, int],
                 batch_size: int, num_label_channels: int = 50, seed: int = 2356,
                 root: Optional[os.PathLike] = None, ids: Optional[Sequence[str]] = None):
        self.split, self.patch, self.batch_size = split, tuple(patch), batch_size
        self.num_label_channels, self.seed, self.root = num_label_channels, seed, root
        self.ids = list(ids) if ids is not None else read_split(split, root)
        if batch_size > len(self.ids):
            raise ValueError(f"batch size {batch_size} exceeds the {len(self.ids)} images "
                             f"of split '{split}'")
        self.cells = init_cells(patch[0], patch[1], *grid).astype(np.float32)
        self._cache: dict[str, BSDSImage] = {}

    def image(self, image_id: str) -> BSDSImage:
        if image_id not in self._cache:
            self._cache[image_id] = load_bsds(image_id, self.split, self.root)
        return self._cache[image_id]

    def batch(self, index: int) -> TrainingBatch:
        """Batch number ``index``: the same index always gives the same batch."""
        choice = np.random.default_rng([self.seed, index])
        chosen = choice.choice(len(self.ids), size=self.batch_size, replace=False)
        samples = [make_sample(self.image(self.ids[i]), np.random.default_rng(
            [self.seed, index, slot]), self.patch, self.num_label_channels)
            for slot, i in enumerate(chosen)]
        cells = np.broadcast_to(self.cells, (self.batch_size, 1) + self.patch).copy()
        return TrainingBatch(img=np.stack([s[0] for s in samples]), spixel_init=cells,
                             feat_spixel_init=cells.copy(),
                             label=np.stack([s[1] for s in samples]),
                             problabel=np.stack([s[2] for s in samples]))
