"""Export SSN training data to HDF5 for Caffe's HDF5Data layer (no Python while training).

Each .h5 file holds datasets named after the data tops (img, spixel_init,
feat_spixel_init, label, problabel), N x C x H x W float32, gzip-compressed
(the one-hot labels are mostly zeros). A list file names the .h5 files, as
HDF5Data's ``source`` expects. Caffe loads one whole file at a time, so files
are kept to ``per_file`` samples.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import h5py
import numpy as np
from tqdm import tqdm

from ssn.atomic import atomic_path, write_atomic
from ssn.color import rgb_to_lab
from ssn.training.samples import BSDSSampler, labels_to_channels, make_sample

log = logging.getLogger("ssn.training.hdf5_export")


def center_crop_sample(sampler: BSDSSampler, image_id: str, num_channels: int):
    """An unaugmented sample: the centre patch at scale 1, first annotator."""
    image = sampler.image(image_id)
    height, width = sampler.patch
    top = (image.rgb.shape[0] - height) // 2
    left = (image.rgb.shape[1] - width) // 2
    if top < 0 or left < 0:
        raise ValueError(f"{image_id}: image {image.rgb.shape[:2]} is smaller than the patch")
    rgb = image.rgb[top:top + height, left:left + width]
    label, onehot = labels_to_channels(
        image.segmentations[0][top:top + height, left:left + width], num_channels)
    return rgb_to_lab(rgb).transpose(2, 0, 1), label[None], onehot


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary name, then rename)."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name, array in arrays.items():
            handle.create_dataset(name, data=array.astype(np.float32), compression="gzip",
                                  compression_opts=4, chunks=(1,) + array.shape[1:])


def export_split(sampler: BSDSSampler, out_dir: Path, name: str, num_samples: int,
                 augment: bool, per_file: int, seed: int) -> Path:
    """Write ``num_samples`` samples of one split; return the list file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    samples = []
    progress = tqdm(range(num_samples), desc=name, unit="sample", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    for index in progress:
        if augment:
            rng = np.random.default_rng([seed, index])
            image = sampler.image(sampler.ids[rng.integers(len(sampler.ids))])
            samples.append(make_sample(image, rng, sampler.patch, sampler.num_label_channels))
        else:
            image_id = sampler.ids[index % len(sampler.ids)]
            samples.append(center_crop_sample(sampler, image_id, sampler.num_label_channels))
        if len(samples) == per_file or index == num_samples - 1:
            path = out_dir / f"{name}_{len(files):04d}.h5"
            cells = np.broadcast_to(sampler.cells, (len(samples), 1) + sampler.patch)
            write_h5(path, dict(img=np.stack([s[0] for s in samples]), spixel_init=cells,
                                feat_spixel_init=cells,
                                label=np.stack([s[1] for s in samples]),
                                problabel=np.stack([s[2] for s in samples])))
            files.append(path.resolve())
            samples = []
    list_file = out_dir / f"{name}.txt"
    write_atomic(list_file, "".join(f"{path}\n" for path in files))
    return list_file
