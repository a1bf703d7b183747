"""Write ``data/bsds_sample``: a tiny synthetic data set in BSDS500's layout, for the tests.

Each image is a few overlapping ellipses and rectangles of flat colours with
noise, over a background; its "human" segmentations are the shapes' label map
and, as a second annotator, the same map with two shapes merged. Images go to
``images/<split>/<id>.jpg`` and ground truths to ``groundTruth/<split>/<id>.mat``
(a 1 x J cell array of structs with ``Segmentation`` and ``Boundaries``), as in
the official archive, so the tools read it unchanged.

    .venv/bin/python tests/make_bsds_sample.py            # rewrites data/bsds_sample
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import scipy.io
from skimage import io as skio
from skimage.segmentation import find_boundaries

SPLITS = {"train": 4, "val": 3}
SIZES = ((64, 96), (72, 88), (96, 64))  # (height, width); one portrait


def shapes(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An H x W label map (1 = background) of 5 random ellipses and rectangles."""
    labels = np.ones((height, width), np.int32)
    rows, cols = np.mgrid[:height, :width]
    for label in range(2, 7):
        cy, cx = rng.uniform(0.15, 0.85) * height, rng.uniform(0.15, 0.85) * width
        ry, rx = rng.uniform(0.1, 0.3) * height, rng.uniform(0.1, 0.3) * width
        if label % 2:
            inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
        else:
            inside = (abs(rows - cy) <= ry) & (abs(cols - cx) <= rx)
        labels[inside] = label
    return labels


def sample(rng: np.random.Generator, height: int, width: int) -> tuple[np.ndarray, list]:
    """(RGB uint8 image, [segmentation, coarser segmentation])."""
    labels = shapes(rng, height, width)
    palette = rng.integers(20, 236, size=(labels.max() + 1, 3))
    noise = rng.normal(0, 6, size=(height, width, 3))
    rgb = np.clip(palette[labels] + noise, 0, 255).astype(np.uint8)
    coarse = labels.copy()
    coarse[coarse == 3] = 2
    return rgb, [labels, np.unique(coarse, return_inverse=True)[1].reshape(coarse.shape) + 1]


def ground_truth(segmentations: list) -> np.ndarray:
    """BSDS500's groundTruth cell array: 1 x J structs with Segmentation and Boundaries."""
    cells = np.empty((1, len(segmentations)), dtype=object)
    for j, segmentation in enumerate(segmentations):
        cells[0, j] = {"Segmentation": segmentation.astype(np.uint16),
                       "Boundaries": find_boundaries(segmentation, mode="inner")}
    return cells


def write_sample(root: Path, seed: int = 500) -> None:
    rng = np.random.default_rng(seed)
    for split, count in SPLITS.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "groundTruth" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image_id = f"{9000 + 10 * index + (split == 'val')}"
            rgb, segmentations = sample(rng, *SIZES[index % len(SIZES)])
            skio.imsave(root / "images" / split / f"{image_id}.jpg", rgb)
            scipy.io.savemat(root / "groundTruth" / split / f"{image_id}.mat",
                             {"groundTruth": ground_truth(segmentations)}, do_compression=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "data" / "bsds_sample")
    write_sample(parser.parse_args().out)
