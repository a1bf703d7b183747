"""Caffe Python data layer for SSN training (module ``ssn.training.data_layer``).

Use in a prototxt as::

    layer { name: "train_data" type: "Python"
      top: "img" top: "spixel_init" top: "feat_spixel_init" top: "label" top: "problabel"
      python_param { module: "ssn.training.data_layer" layer: "BSDSDataLayer"
        param_str: '{"phase": "train", "batch_size": 6, "patch_height": 201,
                     "patch_width": 201, "grid_h": 10, "grid_w": 10}' } }

param_str is JSON with the keys of :data:`DEFAULTS`. With ``dataset`` (a folder
or list of image + target pairs, :mod:`ssn.training.pairs`) the layer reads
that instead of BSDS500 (the val phase reads ``val_dataset``, else the same);
a ``continuous`` target gives four tops, img, spixel_init, feat_spixel_init
and ``target`` (N x target_channels x H x W). Batches are computed ahead
by a pool of threads; batch ``i`` is the same whichever thread made it. The val
phase cycles through its first ``repeat`` batches, so validation losses are
comparable across tests. A resumed run calls :meth:`BSDSDataLayer.seek` with the
number of batches the run had used (ssn.training.solver derives it from the
iteration), so it continues the sequence instead of replaying it.
"""
from __future__ import annotations

import json
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import caffe

from ssn.bsds import read_split
from ssn.nets.generators import CONTINUOUS_DATA_TOPS, DATA_TOPS
from ssn.training.pairs import TARGET_KINDS, open_pairs
from ssn.training.samples import BSDSSampler, PairSampler, PatchSampler

DEFAULTS = {
    "phase": "train",            # "train" or "val": the split to read
    "batch_size": 6,
    "patch_height": 201,
    "patch_width": 201,
    "grid_h": 10,
    "grid_w": 10,
    "num_label_channels": 50,
    "seed": 2356,
    "data_root": None,           # default: $SSN_DATA_ROOT or ./data/BSDS500
    "list_file": None,           # default: every image of the phase's split
    "workers": 2,
    "prefetch": 4,
    "repeat": 10,                # val only: batches cycle with this period
    "dataset": None,             # a pairs folder or list file instead of BSDS500
    "val_dataset": None,         # the val phase's pairs (default: "dataset")
    "target": "labels",          # the pairs' targets: "labels" or "continuous"
    "target_channels": 2,        # continuous only: channels of the target
    "flow": False,               # continuous only: the target is optical flow (u, v)
}
TOPS = DATA_TOPS


def tops_for(target: str) -> tuple[str, ...]:
    """The data layer's tops for a target kind."""
    return CONTINUOUS_DATA_TOPS if target == "continuous" else DATA_TOPS


def parse_param_str(param_str: str) -> dict:
    """DEFAULTS updated by the JSON ``param_str``; unknown keys are an error."""
    params = dict(DEFAULTS)
    given = json.loads(param_str) if param_str.strip() else {}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"BSDSDataLayer: unknown param_str keys {unknown}; "
                         f"known: {sorted(DEFAULTS)}")
    params.update(given)
    if params["phase"] not in ("train", "val"):
        raise ValueError(f"BSDSDataLayer: phase must be 'train' or 'val', got {params['phase']}")
    if params["target"] not in TARGET_KINDS:
        raise ValueError(f"BSDSDataLayer: target must be one of {TARGET_KINDS}, got "
                         f"{params['target']!r}")
    if params["target"] == "continuous" and params["dataset"] is None:
        raise ValueError("BSDSDataLayer: a continuous target needs a dataset of pairs")
    return params


def make_sampler(p: dict) -> PatchSampler:
    """The sampler that the layer's params describe."""
    patch, grid = (p["patch_height"], p["patch_width"]), (p["grid_h"], p["grid_w"])
    if p["dataset"] is not None:
        dataset = p["val_dataset"] if p["phase"] == "val" and p["val_dataset"] else p["dataset"]
        return PairSampler(open_pairs(dataset, p["target"]), p["target"], patch, grid,
                           p["batch_size"], p["seed"], p["num_label_channels"], p["flow"],
                           name=str(dataset))
    ids = None
    if p["list_file"] is not None:
        ids = read_split(p["phase"], p["data_root"], p["list_file"])
    return BSDSSampler(p["phase"], patch, grid, p["batch_size"], p["num_label_channels"],
                       p["seed"], p["data_root"], ids)


class BSDSDataLayer(caffe.Layer):
    """Five tops: img (Lab), spixel_init, feat_spixel_init, label, problabel; or, for a
    continuous target, four: img, spixel_init, feat_spixel_init, target."""

    def setup(self, bottom, top):
        self.params = parse_param_str(self.param_str)
        p = self.params
        tops = tops_for(p["target"])
        if len(bottom) != 0 or len(top) != len(tops):
            raise ValueError(f"BSDSDataLayer takes no bottoms and {len(tops)} tops {tops}")
        self.sampler = make_sampler(p)
        self.pool = ThreadPoolExecutor(max_workers=max(1, p["workers"]))
        self.pending: deque = deque()
        self.next_index = 0
        for _ in range(max(1, p["prefetch"])):
            self._submit()

    def seek(self, index: int) -> None:
        """Make batch ``index`` the next one forward returns; drop the prefetched ones."""
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        self.next_index = int(index)
        for _ in range(max(1, self.params["prefetch"])):
            self._submit()

    def _submit(self) -> None:
        index = self.next_index
        if self.params["phase"] == "val":
            index %= max(1, self.params["repeat"])
        self.pending.append(self.pool.submit(self.sampler.batch, index))
        self.next_index += 1

    def reshape(self, bottom, top):
        p = self.params
        size = (p["patch_height"], p["patch_width"])
        channels = ((3, 1, 1, p["target_channels"]) if p["target"] == "continuous"
                    else (3, 1, 1, 1, p["num_label_channels"]))
        for i, c in enumerate(channels):
            top[i].reshape(p["batch_size"], c, *size)

    def forward(self, bottom, top):
        batch = self.pending.popleft().result()
        self._submit()
        for i, array in enumerate(batch.tops()):
            top[i].data[...] = array

    def backward(self, top, propagate_down, bottom):
        pass  # data: nothing to propagate to
