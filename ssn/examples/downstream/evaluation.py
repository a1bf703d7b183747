"""Held-out accuracy of the downstream example (:mod:`ssn.examples.downstream.net`) on BSDS500.

Each image is classified whole by the deploy net of its geometry (built once
per size), with superpixels of the training cells' size; every human
segmentation gives one set of task labels, and an image's accuracy is the mean
over them. As a reference without learning, each pixel's own lightness class
(``own_lightness``) is scored the same way.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional, Sequence

import caffe
import numpy as np

from ssn.bsds import load_bsds
from ssn.color import rgb_to_lab
from ssn.examples.downstream.labels import lightness_class, segment_lightness_labels
from ssn.examples.downstream.net import DownstreamConfig, DownstreamOptions, deploy_net
from ssn.grid import grid_shape, init_cells
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import position_scale

log = logging.getLogger("ssn.examples.downstream.evaluation")


def training_cell_area(options: DownstreamOptions) -> float:
    """Pixels per superpixel cell of the training patches."""
    grid_h, grid_w = grid_shape(options.n_spixels, options.patch, options.patch)
    return options.patch ** 2 / (grid_h * grid_w)


def image_config(options: DownstreamOptions, height: int, width: int,
                 n_spixels: Optional[int] = None) -> DownstreamConfig:
    """The deploy config for one image size: ``n_spixels`` (default: cells of the
    training cells' area) and the test-time position scale."""
    if n_spixels is None:
        n_spixels = max(1, round(height * width / training_cell_area(options)))
    base = options.deploy_config()
    return dataclasses.replace(base, height=height, width=width, grid_request=n_spixels,
                               pos_scale=position_scale(n_spixels, height, width))


class TaskPredictor:
    """Per-pixel classes from a downstream model, one deploy net per image size.

    Parameters
    ----------
    options : DownstreamOptions
        The options the model was trained with (head, classes, pooling).
    weights : path
        The trained .caffemodel (a snapshot of the TRAIN net).
    n_spixels : int, optional
        Superpixels per image (default: cells of the training cells' area).
    """

    def __init__(self, options: DownstreamOptions, weights, n_spixels: Optional[int] = None):
        self.options, self.weights, self.n_spixels = options, str(weights), n_spixels
        self.nets: dict[tuple[int, int], tuple[CheckedNet, DownstreamConfig]] = {}

    def _net(self, height: int, width: int) -> tuple[CheckedNet, DownstreamConfig]:
        if (height, width) not in self.nets:
            config = image_config(self.options, height, width, self.n_spixels)
            net = CheckedNet(deploy_net(config), caffe.TEST, weights=self.weights)
            self.nets[height, width] = (net, config)
        return self.nets[height, width]

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        """Classes (H x W, int64) of an RGB image (H x W x 3, uint8)."""
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {rgb.shape}")
        height, width = rgb.shape[:2]
        net, config = self._net(height, width)
        inputs = {"img": rgb_to_lab(rgb / 255.0).transpose(2, 0, 1)[None]}
        if config.spixel_pooling:
            cells = init_cells(height, width, *config.grid)[None, None].astype(np.float32)
            inputs.update(spixel_init=cells, feat_spixel_init=cells)
        return net.forward(**inputs)["task_prob"][0].argmax(axis=0)


def accuracy(predicted: np.ndarray, lab: np.ndarray, segmentations: Sequence[np.ndarray],
             num_classes: int) -> float:
    """Mean over the segmentations of the fraction of pixels whose class is right.

    Parameters
    ----------
    predicted : ndarray, H x W, int
    lab : ndarray, H x W x 3, the image in Lab
    segmentations : sequence of ndarray, H x W, int
        Human segmentations; each gives its own task labels.
    num_classes : int
    """
    if not segmentations:
        raise ValueError("no segmentation to score against")
    scores = []
    for segmentation in segmentations:
        labels = segment_lightness_labels(lab.transpose(2, 0, 1)[None],
                                          np.asarray(segmentation)[None, None], num_classes)
        scores.append(float(np.mean(predicted == labels[0, 0])))
    return float(np.mean(scores))


def evaluate(predictor: TaskPredictor, ids: Sequence[str], split: str = "val",
             root=None) -> dict:
    """Accuracy of ``predictor`` and of each pixel's own lightness class over ``ids``.

    Returns
    -------
    dict
        ``accuracy`` and ``own_lightness`` (means over the images), and ``images``:
        a list of ``{"id", "accuracy", "own_lightness"}``.
    """
    num_classes = predictor.options.num_classes
    rows = []
    for image_id in ids:
        sample = load_bsds(image_id, split, root)
        lab = rgb_to_lab(sample.rgb / 255.0)
        rows.append(dict(
            id=image_id,
            accuracy=accuracy(predictor.predict(sample.rgb), lab, sample.segmentations,
                              num_classes),
            own_lightness=accuracy(lightness_class(lab[..., 0], num_classes), lab,
                                   sample.segmentations, num_classes)))
        log.info("%s: accuracy %.3f (own lightness %.3f)", image_id, rows[-1]["accuracy"],
                 rows[-1]["own_lightness"])
    if not rows:
        raise ValueError("no images to evaluate")
    return dict(accuracy=float(np.mean([r["accuracy"] for r in rows])),
                own_lightness=float(np.mean([r["own_lightness"] for r in rows])),
                images=rows)


def standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of ``values`` (0 for fewer than two)."""
    if len(values) < 2:
        return 0.0
    return float(np.std(values, ddof=1) / math.sqrt(len(values)))


def moving_mean(values: Sequence[float], window: int) -> np.ndarray:
    """Mean of each value with the up to ``window - 1`` values before it (1-D)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    sums = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_comparison(curves: dict, accuracies: dict, path, window: int = 20) -> None:
    """Two panels: the task loss against the iteration (``window``-iteration means)
    of each model, and the per-image accuracy of two models against each other.

    Parameters
    ----------
    curves : dict of str to (iterations, losses)
        Each model's training log.
    accuracies : dict of str to sequence of float
        Per-image accuracies of exactly two models (x axis first), same images.
    path : path
        The PNG to write.
    """
    from ssn.evaluation.plots import metric_panels

    if len(accuracies) != 2:
        raise ValueError(f"plot_comparison compares two models, got {len(accuracies)}")
    (x_name, x_values), (y_name, y_values) = accuracies.items()
    if len(x_values) != len(y_values):
        raise ValueError("the two models were scored on different numbers of images")
    panels = ("task loss (training)", "val accuracy per image")
    with metric_panels(path, panels, columns=2, panel_size=(4.6, 4)) as ((loss, _), (acc, _)):
        for name, (iterations, losses) in curves.items():
            loss.plot(iterations, moving_mean(losses, window), label=name)
        loss.set_xlabel(f"iteration ({window}-iteration mean)")
        loss.legend(fontsize=8)
        acc.scatter(x_values, y_values, s=12)
        low = min(min(x_values), min(y_values))
        acc.plot([low, 1], [low, 1], color="grey", linewidth=1)
        acc.set_xlabel(x_name)
        acc.set_ylabel(y_name)
