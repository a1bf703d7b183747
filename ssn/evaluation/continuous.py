"""How well superpixels carry a continuous per-pixel target (optical flow, depth).

Each pixel's target is replaced by the mean target of its superpixel, and the
**reconstruction error** is the Euclidean norm of the difference, averaged over
pixels: for optical flow, the end-point error (EPE) of the per-superpixel mean
flow; for a one-channel map, the mean absolute error. Superpixels that follow
the target's discontinuities (motion or depth edges) score low. Methods are
compared at matched actual counts (:mod:`ssn.evaluation.matched`), as for
BSDS500: ``ssn-eval-continuous --dataset DIR`` writes rows.csv, summary.csv,
matched.csv/.md and curves.png to --out, and with --pictures a panel per image.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
from skimage import color, segmentation

from ssn.images import as_rgb
from ssn.training.pairs import Pair, open_pairs, read_continuous, read_rgb

METRICS = ("reconstruction_error",)


def superpixel_means(labels: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Every pixel's target replaced by the mean over its superpixel.

    Parameters
    ----------
    labels : ndarray, H x W, int >= 0
    target : ndarray, H x W x C (or H x W)

    Returns
    -------
    ndarray, the target's shape, float64
    """
    labels = np.asarray(labels)
    values = np.asarray(target, np.float64)
    flat = values.reshape(labels.size, -1)
    if labels.shape != values.shape[:2]:
        raise ValueError(f"labels are {labels.shape}, the target is {values.shape[:2]}")
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be >= 0")
    ids = labels.ravel()
    counts = np.bincount(ids)
    sums = np.stack([np.bincount(ids, flat[:, c], minlength=len(counts))
                     for c in range(flat.shape[1])], axis=1)
    means = sums / np.maximum(counts, 1)[:, None]
    return means[ids].reshape(values.shape)


def reconstruction_error(labels: np.ndarray, target: np.ndarray) -> float:
    """Mean over pixels of |target - superpixel mean| (Euclidean over channels):
    the EPE of the per-superpixel mean flow for a flow target (H x W x 2)."""
    values = np.asarray(target, np.float64)
    residual = values - superpixel_means(labels, values)
    if residual.ndim == 2:
        return float(np.abs(residual).mean())
    return float(np.sqrt((residual ** 2).sum(axis=-1)).mean())


def score(labels: np.ndarray, target: np.ndarray, rgb: np.ndarray) -> list[dict]:
    """One row for :func:`ssn.evaluation.runs.evaluate_runs`: the actual count and the error."""
    return [dict(n_spixels=int(len(np.unique(labels))),
                 reconstruction_error=reconstruction_error(labels, target))]


def load_pair(loader: Callable[[], tuple]) -> tuple[np.ndarray, np.ndarray]:
    """(float RGB image, H x W x C target) of one sample, for ``evaluate_runs``."""
    rgb, target = loader()
    if target.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"the target is {target.shape[:2]}, the image {rgb.shape[:2]}")
    return rgb, target


def pair_samples(dataset: Path, limit: Optional[int] = None) -> list[tuple[str, Callable]]:
    """(stem, loader) of each pair of a continuous-target data set (the first ``limit``)."""
    def loader(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        return as_rgb(read_rgb(pair.image)), read_continuous(pair.target)
    return [(pair.stem, lambda pair=pair: loader(pair))
            for pair in open_pairs(dataset, "continuous")[:limit]]


def flow_colours(flow: np.ndarray, scale: Optional[float] = None) -> np.ndarray:
    """An H x W x 2 flow as colours: hue the direction, saturation the length
    (relative to ``scale``, default the largest length). Returns H x W x 3 in [0, 1]."""
    flow = np.asarray(flow, np.float64)
    length = np.hypot(flow[..., 0], flow[..., 1])
    scale = float(scale if scale is not None else max(length.max(), 1e-9))
    hue = (np.arctan2(-flow[..., 1], -flow[..., 0]) / (2 * np.pi)) % 1.0
    hsv = np.stack([hue, np.clip(length / scale, 0, 1), np.ones_like(hue)], axis=-1)
    return color.hsv2rgb(hsv)


def target_picture(target: np.ndarray, scale: Optional[float] = None) -> np.ndarray:
    """A target as an H x W x 3 picture: flow colours for 2 channels, gray otherwise."""
    target = np.asarray(target, np.float64)
    if target.ndim == 3 and target.shape[2] == 2:
        return flow_colours(target, scale)
    channel = target if target.ndim == 2 else target[..., 0]
    low, high = channel.min(), channel.max()
    gray = (channel - low) / max(high - low, 1e-9)
    return np.repeat(gray[..., None], 3, axis=2)


def reconstruction_picture(labels: np.ndarray, target: np.ndarray,
                           scale: Optional[float] = None) -> np.ndarray:
    """The per-superpixel mean target as a picture, with the superpixel boundaries."""
    picture = target_picture(superpixel_means(labels, target), scale)
    return segmentation.mark_boundaries(picture, labels, color=(0, 0, 0))
