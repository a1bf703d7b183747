"""The SSN training samples (augmented crops of images and their targets).

The data path of one training sample: RGB image and one human segmentation (or
the target of an image + target pair, :mod:`ssn.training.pairs`) -> random
scale, flip and crop -> Lab image, initial superpixel cells, and label map with
one-hot label channels (or the continuous target, C x H x W; optical flow
scales and flips with the image). Every sample draws from its own random generator,
seeded from (seed, batch index, slot), so samples do not depend on which worker
made them.

An image (or ground truth) that cannot be read is reported by name once and
skipped: its slot in a batch takes the next readable image in id order, so
batch ``i`` is still the same whenever it is made.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ssn.bsds import BSDSImage, data_root, load_bsds, read_split
from ssn.color import rgb_to_lab
from ssn.grid import init_cells
from ssn.training.pairs import Pair, check_kind, load_pair

log = logging.getLogger("ssn.training.samples")

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
    """Random scale, annotator, flip and crop (docs/LAYERS.md#training-samples).

    Returns
    -------
    rgb : ndarray, h x w x 3, float in [0, 1]
    segmentation : ndarray, h x w, int
    """
    rgb, segmentation, _, _ = augment_with_geometry(sample, rng, patch)
    return rgb, segmentation


def augment_with_geometry(sample: BSDSImage, rng: np.random.Generator, patch: tuple[int, int]
                          ) -> tuple[np.ndarray, np.ndarray, float, bool]:
    """:func:`augment`, for targets of any channels, with the scale and flip it drew.

    A target (one of ``sample.segmentations``) is H x W or H x W x C; it is
    resized by nearest neighbour, so no value is invented across a boundary.

    Returns
    -------
    rgb : ndarray, h x w x 3, float in [0, 1]
    target : ndarray, h x w (x C), the target's dtype
    scale : float
        The image's resize factor.
    flipped : bool
        Whether the patch is mirrored left to right.
    """
    height, width = patch
    scale = random_scale(rng)
    # The scaled image must hold a patch; raise the scale if it would not.
    scale = max(scale, height / sample.rgb.shape[0], width / sample.rgb.shape[1])
    segmentation = sample.segmentations[rng.integers(len(sample.segmentations))]
    rgb_size, target_size = zoomed_size(sample.rgb, scale), zoomed_size(segmentation, scale)
    rows, cols = min(rgb_size[0], target_size[0]), min(rgb_size[1], target_size[1])
    flipped = bool(rng.uniform() > 0.5)
    top = int(rng.integers(0, rows - height + 1))
    left = int(rng.integers(0, cols - width + 1))
    # Column j of the mirrored, scaled image is column size - 1 - j of the scaled one.
    def columns(size: int) -> np.ndarray:
        wanted = np.arange(left, left + width)
        return size - 1 - wanted if flipped else wanted

    rgb = zoomed_window(sample.rgb, rgb_size, np.arange(top, top + height),
                        columns(rgb_size[1]))
    target = zoomed_window(segmentation, target_size, np.arange(top, top + height),
                           columns(target_size[1]), nearest=True)
    return np.clip(rgb, 0, 1), target, scale, flipped


def zoomed_size(array: np.ndarray, scale: float) -> tuple[int, int]:
    """Rows and columns of ``array`` resized by ``scale`` (scipy.ndimage.zoom's rounding)."""
    return tuple(int(round(size * scale)) for size in np.shape(array)[:2])


def zoomed_window(array: np.ndarray, size: tuple[int, int], rows: np.ndarray,
                  cols: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Rows ``rows`` and columns ``cols`` of ``array`` resized to ``size``, without
    resizing the rest: the values of ``scipy.ndimage.zoom(..., grid_mode=False)``
    (corners aligned) at those positions, bilinear (an 8-bit image, returned as
    float32 in [0, 1]) or ``nearest``.

    Parameters
    ----------
    array : ndarray, H x W or H x W x C
    size : (int, int)
        The resized image's rows and columns.
    rows, cols : ndarray of int
        Positions in the resized image (any order; a mirrored window has descending
        columns).

    Returns
    -------
    ndarray, len(rows) x len(cols) (x C)
    """
    array = np.asarray(array)
    y = rows * ((array.shape[0] - 1) / (size[0] - 1))
    x = cols * ((array.shape[1] - 1) / (size[1] - 1))
    if nearest:
        y_index = np.minimum(np.floor(y + 0.5).astype(np.intp), array.shape[0] - 1)
        x_index = np.minimum(np.floor(x + 0.5).astype(np.intp), array.shape[1] - 1)
        return array[y_index][:, x_index]
    y0, x0 = np.floor(y).astype(np.intp), np.floor(x).astype(np.intp)
    y1, x1 = np.minimum(y0 + 1, array.shape[0] - 1), np.minimum(x0 + 1, array.shape[1] - 1)
    # Only the source rows and columns the window reads, in float32 as zoom reads them.
    row_set, col_set = np.unique(np.concatenate([y0, y1])), np.unique(np.concatenate([x0, x1]))
    source = array[row_set][:, col_set].astype(np.float32) / np.float32(255.0)
    source = source.astype(np.float64)
    y0, y1 = np.searchsorted(row_set, y0), np.searchsorted(row_set, y1)
    x0, x1 = np.searchsorted(col_set, x0), np.searchsorted(col_set, x1)
    fy = (y - np.floor(y)).reshape((-1, 1) + (1,) * (array.ndim - 2))
    fx = (x - np.floor(x)).reshape((1, -1) + (1,) * (array.ndim - 2))
    upper = source[y0]
    lower = source[y1]
    top_row = (1 - fx) * upper[:, x0] + fx * upper[:, x1]
    bottom_row = (1 - fx) * lower[:, x0] + fx * lower[:, x1]
    return ((1 - fy) * top_row + fy * bottom_row).astype(np.float32)


def checked_sample(sample: BSDSImage) -> BSDSImage:
    """``sample`` with a 3-channel image (a gray one repeated), or a ValueError saying
    why its image and ground truths cannot make training samples."""
    rgb = np.asarray(sample.rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        raise ValueError(f"expected an 8-bit RGB image, got {rgb.dtype} of shape {rgb.shape}")
    if not sample.segmentations:
        raise ValueError("the ground truth holds no segmentation")
    for segmentation in sample.segmentations:
        if np.shape(segmentation) != rgb.shape[:2]:
            raise ValueError(f"a segmentation is {np.shape(segmentation)}, the image is "
                             f"{rgb.shape[:2]}")
    return BSDSImage(rgb=rgb[:, :, :3], segmentations=sample.segmentations)


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


class PatchSampler:
    """Seeded batches of augmented patches drawn from a list of images.

    Subclasses say how an image is read (:meth:`load`), where it is (:meth:`where`),
    how one sample is made (:meth:`make`) and how samples form a batch
    (:meth:`assemble`). Every image is read once and kept.

    Parameters
    ----------
    ids : sequence of str
        The images to draw from.
    patch : (int, int)
        Patch height and width.
    grid : (int, int)
        Superpixel grid K_h x K_w of the initial cells.
    batch_size, seed : int
    name : str
        What the images are, for messages (e.g. "split 'train'").
    """

    def __init__(self, ids: Sequence[str], patch: tuple[int, int], grid: tuple[int, int],
                 batch_size: int, seed: int, name: str):
        self.patch, self.batch_size, self.seed, self.name = tuple(patch), batch_size, seed, name
        self.ids = list(ids)
        if batch_size > len(self.ids):
            raise ValueError(f"batch size {batch_size} exceeds the {len(self.ids)} images "
                             f"of {name}")
        self.cells = init_cells(patch[0], patch[1], *grid).astype(np.float32)
        self._cache: dict[str, BSDSImage] = {}
        self.unreadable: dict[str, str] = {}  # image id -> why it is skipped
        self._lock = threading.Lock()

    truth_name = "target"  # what the image's truth file is called in messages

    def load(self, image_id: str) -> BSDSImage:
        """The checked image and target(s) of ``image_id``; raises if unreadable."""
        raise NotImplementedError

    def where(self, image_id: str) -> str:
        """The image's file, for messages."""
        raise NotImplementedError

    def make(self, image: BSDSImage, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One augmented sample's arrays (Lab image first)."""
        raise NotImplementedError

    def assemble(self, samples: list, cells: np.ndarray):
        """The batch of ``samples`` with the initial ``cells`` (N x 1 x H x W)."""
        raise NotImplementedError

    def __getstate__(self) -> dict:
        """Pickled for worker processes without its lock and image cache."""
        state = dict(self.__dict__)
        del state["_lock"]
        state["_cache"] = {}
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def image(self, image_id: str) -> Optional[BSDSImage]:
        """The image with its target(s), or None (reported once) if either is unreadable."""
        if image_id in self.unreadable:
            return None
        if image_id not in self._cache:
            try:
                sample = self.load(image_id)
            except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
                reason = f"{type(error).__name__}: {error}"
                with self._lock:
                    if image_id not in self.unreadable:
                        self.unreadable[image_id] = reason
                        log.warning("skipping training image %s (or its %s): %s",
                                    self.where(image_id), self.truth_name, reason)
                return None
            self._cache[image_id] = sample
        return self._cache[image_id]

    def readable(self, chosen: Sequence[int]) -> list[BSDSImage]:
        """The images at ``chosen``, each unreadable one replaced by the next readable
        image (in id order, wrapping) that the batch does not hold yet."""
        taken, samples = set(chosen), []
        for start in chosen:
            sample, index = self.image(self.ids[start]), start
            while sample is None:
                index = (index + 1) % len(self.ids)
                if index == start:
                    raise ValueError(
                        f"only {len(self.ids) - len(self.unreadable)} of the {len(self.ids)} "
                        f"images of {self.name} are readable, fewer than the batch "
                        f"size {self.batch_size}; unreadable: {', '.join(sorted(self.unreadable))}")
                if index not in taken:
                    sample = self.image(self.ids[index])
                    if sample is not None:
                        taken.add(index)
            samples.append(sample)
        return samples

    def batch(self, index: int):
        """Batch number ``index``: the same index always gives the same batch."""
        choice = np.random.default_rng([self.seed, index])
        chosen = choice.choice(len(self.ids), size=self.batch_size, replace=False)
        samples = [self.make(image, np.random.default_rng([self.seed, index, slot]))
                   for slot, image in enumerate(self.readable(list(chosen)))]
        cells = np.broadcast_to(self.cells, (self.batch_size, 1) + self.patch).copy()
        return self.assemble(samples, cells)


def label_batch(samples: list, cells: np.ndarray) -> TrainingBatch:
    """The batch of :func:`make_sample` results."""
    return TrainingBatch(img=np.stack([s[0] for s in samples]), spixel_init=cells,
                         feat_spixel_init=cells.copy(),
                         label=np.stack([s[1] for s in samples]),
                         problabel=np.stack([s[2] for s in samples]))


class BSDSSampler(PatchSampler):
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
        self.split, self.root, self.num_label_channels = split, root, num_label_channels
        ids = list(ids) if ids is not None else read_split(split, root)
        super().__init__(ids, patch, grid, batch_size, seed, f"split '{split}'")

    truth_name = "ground truth"

    def load(self, image_id: str) -> BSDSImage:
        return checked_sample(load_bsds(image_id, self.split, self.root))

    def where(self, image_id: str) -> str:
        return str(data_root(self.root, check=False) / "images" / self.split / f"{image_id}.jpg")

    def make(self, image: BSDSImage, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return make_sample(image, rng, self.patch, self.num_label_channels)

    def assemble(self, samples: list, cells: np.ndarray) -> TrainingBatch:
        return label_batch(samples, cells)


@dataclass
class ContinuousBatch:
    """Arrays for the four tops of the data layer of a continuous target.

    Attributes
    ----------
    img : N x 3 x H x W Lab; spixel_init, feat_spixel_init : N x 1 x H x W cells;
    target : N x C x H x W float32.
    """

    img: np.ndarray
    spixel_init: np.ndarray
    feat_spixel_init: np.ndarray
    target: np.ndarray

    def tops(self) -> list[np.ndarray]:
        return [self.img, self.spixel_init, self.feat_spixel_init, self.target]


def make_continuous_sample(image: BSDSImage, rng: np.random.Generator,
                           patch: tuple[int, int], flow: bool = False
                           ) -> tuple[np.ndarray, np.ndarray]:
    """One augmented sample of a continuous target: Lab (3 x h x w), target (C x h x w).

    With ``flow`` the target is an optical flow (u, v) in pixels: its vectors
    are multiplied by the image's scale and u changes sign when the patch is
    mirrored, so the flow stays that of the augmented image.
    """
    rgb, target, scale, flipped = augment_with_geometry(image, rng, patch)
    target = np.array(target, dtype=np.float32)  # a copy: the cached target stays as read
    if flow:
        if target.shape[2] != 2:
            raise ValueError(f"an optical flow target has 2 channels (u, v), got "
                             f"{target.shape[2]}")
        target *= scale
        if flipped:
            target[:, :, 0] *= -1
    return rgb_to_lab(rgb).transpose(2, 0, 1), target.transpose(2, 0, 1)


class PairSampler(PatchSampler):
    """Draws training batches from a data set of image + target pairs
    (:mod:`ssn.training.pairs`).

    Parameters
    ----------
    pairs : sequence of Pair
    kind : str
        "labels" (batches as :class:`BSDSSampler`'s, ``num_label_channels``
        one-hot channels) or "continuous" (:class:`ContinuousBatch`).
    patch, grid, batch_size, seed :
        As for :class:`PatchSampler`.
    num_label_channels : int
    flow : bool
        Continuous targets are optical flow (see :func:`make_continuous_sample`).
    """

    def __init__(self, pairs: Sequence[Pair], kind: str, patch: tuple[int, int],
                 grid: tuple[int, int], batch_size: int, seed: int = 2356,
                 num_label_channels: int = 50, flow: bool = False, name: str = "the data set"):
        self.pairs = {pair.stem: pair for pair in pairs}
        if len(self.pairs) != len(pairs):
            raise ValueError(f"{name}: two pairs share an image stem")
        self.kind, self.num_label_channels, self.flow = check_kind(kind), num_label_channels, flow
        super().__init__([pair.stem for pair in pairs], patch, grid, batch_size, seed, name)

    def load(self, image_id: str) -> BSDSImage:
        return load_pair(self.pairs[image_id], self.kind)

    def where(self, image_id: str) -> str:
        return str(self.pairs[image_id].image)

    def make(self, image: BSDSImage, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        if self.kind == "labels":
            return make_sample(image, rng, self.patch, self.num_label_channels)
        return make_continuous_sample(image, rng, self.patch, self.flow)

    def assemble(self, samples: list, cells: np.ndarray):
        if self.kind == "labels":
            return label_batch(samples, cells)
        return ContinuousBatch(img=np.stack([s[0] for s in samples]), spixel_init=cells,
                               feat_spixel_init=cells.copy(),
                               target=np.stack([s[1] for s in samples]))
