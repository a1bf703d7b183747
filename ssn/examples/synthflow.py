"""Synthetic optical flow with real motion boundaries, made from segmented images.

No flow data set can be downloaded here, so one is made from BSDS500: each
segment of an image's coarsest human segmentation (the annotator with the
fewest segments, closest to whole objects) moves by its own random affine
motion about its centroid. The flow of pixel p = (x, y) in segment s is

    flow(p) = (L_s - I) (p - c_s) + t_s,    L_s = k_s R(theta_s)

with centroid c_s, rotation theta_s, scale k_s and translation t_s drawn
uniformly from :class:`MotionRange`. The flow is smooth inside a segment and
jumps at segment boundaries: the motion boundaries are the human boundaries of
a real image. Each image's motions come from a generator seeded by (seed,
CRC-32 of the image id), so a file never depends on which others are made.

:func:`write_split` writes a data set in the layout ``ssn-train --dataset``
reads: ``images/<id>.jpg`` (the original file, copied), ``targets/<id>.flo``,
``segments/<id>.png`` (the segmentation used, 16-bit) and ``config.json``.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from skimage import io as skio
from tqdm import tqdm

from ssn.atomic import atomic_path, write_atomic
from ssn.bsds import data_root, load_bsds, read_split
from ssn.flow import write_flo

log = logging.getLogger("ssn.examples.synthflow")
DEFAULT_SEED = 1717


@dataclass(frozen=True)
class MotionRange:
    """Bounds of the uniform random motion of one segment.

    Attributes
    ----------
    max_translation : float
        |t_x|, |t_y| <= this, in pixels of the original image.
    max_rotation : float
        |theta| <= this, in degrees.
    max_scale : float
        |k - 1| <= this.
    """

    max_translation: float = 8.0
    max_rotation: float = 2.0
    max_scale: float = 0.02

    def __post_init__(self) -> None:
        if min(self.max_translation, self.max_rotation, self.max_scale) < 0:
            raise ValueError(f"motion bounds must be >= 0, got {self}")
        if self.max_scale >= 1:
            raise ValueError(f"max_scale must be < 1 (a scale of 0 collapses a segment), "
                             f"got {self.max_scale}")


@dataclass(frozen=True)
class AffineMotion:
    """x -> L (x - centre) + centre + translation, positions as (x, y) in pixels.

    Attributes
    ----------
    linear : ndarray, 2 x 2
    centre, translation : ndarray, 2 (x, y)
    """

    linear: np.ndarray
    centre: np.ndarray
    translation: np.ndarray

    def flow(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The displacement of the points (x, y) (any equal shapes): ... x 2, (u, v)."""
        offset = np.stack([x - self.centre[0], y - self.centre[1]], axis=-1)
        return offset @ (self.linear - np.eye(2)).T + self.translation


def random_motion(rng: np.random.Generator, centre: np.ndarray,
                  ranges: MotionRange = MotionRange()) -> AffineMotion:
    """A uniform random rotation, scale and translation about ``centre`` (x, y)."""
    theta = np.deg2rad(rng.uniform(-ranges.max_rotation, ranges.max_rotation))
    scale = rng.uniform(1 - ranges.max_scale, 1 + ranges.max_scale)
    linear = scale * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    translation = rng.uniform(-ranges.max_translation, ranges.max_translation, size=2)
    return AffineMotion(linear=linear, centre=np.asarray(centre, float), translation=translation)


def segment_motions(segmentation: np.ndarray, rng: np.random.Generator,
                    ranges: MotionRange = MotionRange()) -> dict[int, AffineMotion]:
    """One random motion per segment id (in increasing id order), about its centroid.

    Parameters
    ----------
    segmentation : ndarray, H x W, int
    """
    segmentation = np.asarray(segmentation)
    ids, inverse, sizes = np.unique(segmentation, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(segmentation.shape)
    rows, cols = np.indices(segmentation.shape)
    centre_x = np.bincount(inverse.ravel(), cols.ravel()) / sizes
    centre_y = np.bincount(inverse.ravel(), rows.ravel()) / sizes
    return {int(segment): random_motion(rng, np.array([centre_x[i], centre_y[i]]), ranges)
            for i, segment in enumerate(ids)}


def affine_flow(segmentation: np.ndarray, motions: dict[int, AffineMotion]) -> np.ndarray:
    """The flow of every pixel under its segment's motion.

    Parameters
    ----------
    segmentation : ndarray, H x W, int
    motions : dict of segment id to AffineMotion (every id present)

    Returns
    -------
    ndarray, H x W x 2, float32, (u, v)
    """
    segmentation = np.asarray(segmentation)
    missing = sorted(set(np.unique(segmentation).tolist()) - set(motions))
    if missing:
        raise ValueError(f"no motion for segment(s) {missing[:10]}")
    rows, cols = np.indices(segmentation.shape, dtype=np.float64)
    flow = np.zeros(segmentation.shape + (2,), np.float64)
    for segment, motion in motions.items():
        inside = segmentation == segment
        flow[inside] = motion.flow(cols[inside], rows[inside])
    return flow.astype(np.float32)


def coarsest(segmentations: Sequence[np.ndarray]) -> np.ndarray:
    """The segmentation with the fewest segments (the first of equals)."""
    if not segmentations:
        raise ValueError("no segmentation to choose from")
    counts = [len(np.unique(s)) for s in segmentations]
    return np.asarray(segmentations[int(np.argmin(counts))])


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image's motions: seeded by (seed, CRC-32 of the id)."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def synthetic_flow(segmentation: np.ndarray, rng: np.random.Generator,
                   ranges: MotionRange = MotionRange()) -> np.ndarray:
    """The flow (H x W x 2 float32) of every segment moving by its own random motion."""
    return affine_flow(segmentation, segment_motions(segmentation, rng, ranges))


def write_split(split: str, out: os.PathLike, root: Optional[os.PathLike] = None,
                seed: int = DEFAULT_SEED, ranges: MotionRange = MotionRange(),
                ids: Optional[Sequence[str]] = None) -> list[str]:
    """Write the synthetic flow data set of a BSDS500 split; return the image ids written.

    Files already there with the same config are kept (a rerun finishes an
    interrupted one); a different config in ``out`` is an error.
    """
    out = Path(out)
    ids = list(ids) if ids is not None else read_split(split, root)
    config = dict(split=split, seed=seed, source=str(data_root(root).resolve()),
                  segmentation="coarsest annotator", **asdict(ranges))
    config_path = out / "config.json"
    if config_path.exists():
        previous = json.loads(config_path.read_text())
        if {k: v for k, v in previous.items() if k != "ids"} != config:
            raise ValueError(f"{out} holds a synthetic data set of another config "
                             f"({config_path}); choose another --out")
    for folder in ("images", "targets", "segments"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    write_atomic(config_path, json.dumps(dict(config, ids=ids), indent=1) + "\n")
    images = data_root(root) / "images" / split
    for image_id in tqdm(ids, unit="image", file=sys.stderr, disable=not sys.stderr.isatty()):
        write_pair(image_id, split, out, root, seed, ranges, images)
    return ids


def write_pair(image_id: str, split: str, out: Path, root: Optional[os.PathLike], seed: int,
               ranges: MotionRange, images: Path) -> None:
    """The image, flow and segmentation files of one image (skipped when all exist)."""
    targets = [out / "images" / f"{image_id}.jpg", out / "targets" / f"{image_id}.flo",
               out / "segments" / f"{image_id}.png"]
    if all(path.exists() for path in targets):
        return
    segmentation = coarsest(load_bsds(image_id, split, root).segmentations)
    flow = synthetic_flow(segmentation, image_rng(seed, image_id), ranges)
    with atomic_path(targets[0]) as tmp:
        shutil.copyfile(images / f"{image_id}.jpg", tmp)
    write_flo(targets[1], flow)
    with atomic_path(targets[2]) as tmp:
        skio.imsave(tmp, segmentation.astype(np.uint16), check_contrast=False)
