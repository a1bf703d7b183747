"""Per-pixel labels of the downstream example task: the lightness class of a pixel's segment.

The task of :mod:`ssn.examples.downstream.net`: each ground-truth segment gets one
class, its mean lightness L* over the patch quantised into ``num_classes``
equal bins of [0, 100] (3: dark, medium, light), and every pixel of the
segment takes that class. The label is a property of a whole region, so a
pixel's own colour predicts it poorly where the region is shaded or textured,
and averaging over a region that follows the segment's boundaries predicts it
well.

The labels are made inside the net, from the tops of the SSN data layer
(``img``, Lab, and ``label``, the segment classes), by the Python layer
:class:`SegmentLightnessLayer`::

    layer { name: "task_labels" type: "Python" bottom: "img" bottom: "label"
      top: "task_label" propagate_down: false propagate_down: false
      python_param { module: "ssn.examples.downstream.labels" layer: "SegmentLightnessLayer"
                     param_str: '{"num_classes": 3}' } }
"""
from __future__ import annotations

import json

import caffe
import numpy as np

IGNORE_LABEL = 255  # as ssn.training.samples: segments beyond the label channels
LIGHTNESS_MAX = 100.0


def lightness_class(lightness: np.ndarray, num_classes: int) -> np.ndarray:
    """The bin of each L* value among ``num_classes`` equal bins of [0, 100].

    Parameters
    ----------
    lightness : ndarray, any shape
        L* values; those outside [0, 100] fall in the first or last bin.
    num_classes : int
        Number of bins (>= 2).

    Returns
    -------
    ndarray, the shape of ``lightness``, int64 in [0, num_classes)
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    bins = np.floor(np.asarray(lightness, dtype=np.float64) * num_classes / LIGHTNESS_MAX)
    return np.clip(bins, 0, num_classes - 1).astype(np.int64)


def segment_lightness_labels(lab: np.ndarray, segments: np.ndarray, num_classes: int,
                             ignore: float = IGNORE_LABEL) -> np.ndarray:
    """Each pixel's class: the lightness class of its segment's mean L* in the image.

    Parameters
    ----------
    lab : ndarray, N x 3 x H x W
        Lab images (channel 0 is L* in [0, 100]).
    segments : ndarray, N x 1 x H x W
        Segment ids per pixel: non-negative integers (as floats, like the data
        layer's ``label``), or ``ignore``.
    num_classes : int
        Lightness bins (>= 2).
    ignore : float
        Segment id of pixels without a segment; they get ``ignore`` too.

    Returns
    -------
    ndarray, N x 1 x H x W, float32
        Classes in [0, num_classes), or ``ignore``.
    """
    lab, segments = np.asarray(lab), np.asarray(segments)
    if lab.ndim != 4 or lab.shape[1] != 3:
        raise ValueError(f"lab must be N x 3 x H x W, got shape {lab.shape}")
    if segments.shape != (lab.shape[0], 1) + lab.shape[2:]:
        raise ValueError(f"segments must be {(lab.shape[0], 1) + lab.shape[2:]} "
                         f"(N x 1 x H x W), got {segments.shape}")
    out = np.full(segments.shape, ignore, dtype=np.float32)
    for n in range(lab.shape[0]):
        ids, valid = segments[n, 0], segments[n, 0] != ignore
        if np.any(ids[valid] < 0) or np.any(ids[valid] != np.round(ids[valid])):
            raise ValueError(f"image {n}: segment ids must be non-negative integers or "
                             f"{ignore}")
        index = ids[valid].astype(np.int64)
        sums = np.bincount(index, weights=lab[n, 0][valid])
        counts = np.bincount(index)
        means = sums / np.maximum(counts, 1)
        out[n, 0][valid] = lightness_class(means, num_classes)[index]
    return out


class SegmentLightnessLayer(caffe.Layer):
    """Bottoms ``img`` (N x 3 x H x W Lab) and ``label`` (N x 1 x H x W segment ids);
    top ``task_label`` (N x 1 x H x W), :func:`segment_lightness_labels`.

    ``param_str`` is JSON: ``{"num_classes": 3}``. The labels are data: no backward.
    """

    def setup(self, bottom, top):
        if len(bottom) != 2 or len(top) != 1:
            raise ValueError("SegmentLightnessLayer takes bottoms (img, label) and one top")
        params = json.loads(self.param_str) if self.param_str.strip() else {}
        unknown = sorted(set(params) - {"num_classes"})
        if unknown:
            raise ValueError(f"SegmentLightnessLayer: unknown param_str keys {unknown}")
        self.num_classes = int(params.get("num_classes", 3))
        lightness_class(np.zeros(1), self.num_classes)  # checks num_classes

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[1].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = segment_lightness_labels(bottom[0].data, bottom[1].data,
                                                    self.num_classes)

    def backward(self, top, propagate_down, bottom):
        if any(propagate_down):
            raise ValueError("SegmentLightnessLayer makes labels: set propagate_down: false")
