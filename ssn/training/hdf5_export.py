"""Export SSN training data to HDF5 for Caffe's HDF5Data layer (no Python while training).

Each .h5 file holds datasets named after the data tops (img, spixel_init,
feat_spixel_init, label, problabel), N x C x H x W float32, gzip-compressed
(the one-hot labels are mostly zeros). A list file names the .h5 files, as
HDF5Data's ``source`` expects. Caffe loads one whole file at a time, so files
are kept to ``per_file`` samples.
"""
from __future__ import annotations

import logging
import multiprocessing
import sys
from pathlib import Path
from typing import Optional

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


def sample_at(sampler: BSDSSampler, index: int, augment: bool, seed: int):
    """Sample ``index`` of a split: the same index always gives the same sample."""
    if not augment:
        image_id = sampler.ids[index % len(sampler.ids)]
        return center_crop_sample(sampler, image_id, sampler.num_label_channels)
    rng = np.random.default_rng([seed, index])
    start = int(rng.integers(len(sampler.ids)))
    image = sampler.readable([start])[0]
    return make_sample(image, rng, sampler.patch, sampler.num_label_channels)


def write_h5(path: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary name, then rename).

    Uncompressed files are larger (the one-hot labels are mostly zeros) but load
    several times faster, which matters when a GPU waits on each file.
    """
    options = dict(compression="gzip", compression_opts=4) if compress else {}
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        for name, array in arrays.items():
            handle.create_dataset(name, data=array.astype(np.float32),
                                  chunks=(1,) + array.shape[1:], **options)


def write_chunk(sampler: BSDSSampler, path: Path, indices: range, augment: bool, seed: int,
                compress: bool) -> Path:
    """Write the samples at ``indices`` to one .h5 file; return its absolute path."""
    samples = [sample_at(sampler, index, augment, seed) for index in indices]
    cells = np.broadcast_to(sampler.cells, (len(samples), 1) + sampler.patch)
    write_h5(path, dict(img=np.stack([s[0] for s in samples]), spixel_init=cells,
                        feat_spixel_init=cells, label=np.stack([s[1] for s in samples]),
                        problabel=np.stack([s[2] for s in samples])), compress)
    return path.resolve()


_worker_sampler: Optional[BSDSSampler] = None


def _init_worker(sampler: BSDSSampler) -> None:
    global _worker_sampler
    _worker_sampler = sampler


def _write_chunk_in_worker(args) -> Path:
    return write_chunk(_worker_sampler, *args)


def export_split(sampler: BSDSSampler, out_dir: Path, name: str, num_samples: int,
                 augment: bool, per_file: int, seed: int, jobs: int = 1,
                 compress: bool = True) -> Path:
    """Write ``num_samples`` samples of one split in files of ``per_file``; return the list file.

    File k holds samples k * per_file onwards, each drawn from its own index, so
    the files are the same for any number of ``jobs`` (worker processes).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    chunks = [(out_dir / f"{name}_{k:04d}.h5", range(start, min(start + per_file, num_samples)),
               augment, seed, compress)
              for k, start in enumerate(range(0, num_samples, per_file))]
    progress = dict(desc=name, unit="file", total=len(chunks), file=sys.stderr,
                    disable=not sys.stderr.isatty())
    if jobs <= 1:
        files = [write_chunk(sampler, *chunk) for chunk in tqdm(chunks, **progress)]
    else:
        context = multiprocessing.get_context("spawn")
        with context.Pool(jobs, initializer=_init_worker, initargs=(sampler,)) as pool:
            files = list(tqdm(pool.imap(_write_chunk_in_worker, chunks), **progress))
    list_file = out_dir / f"{name}.txt"
    write_atomic(list_file, "".join(f"{path}\n" for path in files))
    return list_file
