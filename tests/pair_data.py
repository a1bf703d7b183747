"""Tiny data sets of image + target pairs, written for the tests."""
import numpy as np
from skimage import io as skio

from ssn.flow import write_flo


def write_image(path, height=12, width=16, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    skio.imsave(path, rgb, check_contrast=False)
    return rgb


def label_folder(root, stems=("a", "b"), height=12, width=16):
    """images/<stem>.png with targets/<stem>.png: two classes, left and right."""
    for index, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.png", height, width, seed=index)
        (root / "targets").mkdir(exist_ok=True)
        labels = (np.arange(width)[None] >= width // 2).repeat(height, 0).astype(np.uint8)
        skio.imsave(root / "targets" / f"{stem}.png", labels, check_contrast=False)
    return root


def flow_folder(root, stems=("a", "b", "c"), height=12, width=16):
    for index, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}.jpg", height, width, seed=index)
        write_flo(root / "targets" / f"{stem}.flo", np.full((height, width, 2), [1.5, -2.0]))
    return root
