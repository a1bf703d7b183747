"""Seconds per image of :func:`ssn.inference.superpixels` on CPU, stage by stage as the
call itself reports them (``timings=``, :data:`ssn.inference.STAGES`), next to
scikit-image SLIC on the same image.

Deep mode runs the bundled model (its BatchNorms folded into the convolutions);
pixel mode is SSN_pix. "forward" is the net: the CNN and the SLIC iterations of
an image below :data:`ssn.tiling.TILE_PIXELS` pixels; a larger one's CNN runs in
tiles ("features"). With --convolutions, also each of the CNN's convolutions'
forward with and without Winograd, alternately in one process. A benchmark, not
a test.
"""
from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from ssn.channels import position_and_values
from ssn.color import rgb_to_lab_planes
from ssn.grid import decide_grid
from ssn.inference import STAGES, cell_input, deploy_net_for, file_identity, superpixels
from ssn.nets.generators import PIXEL_FEATURES, position_scale
from ssn.settings import InferenceSettings


def median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepared_net(rgb: np.ndarray, n_segments: int, num_steps: int, features: str,
                 fused: bool = True):
    """The deploy net that :func:`ssn.inference.superpixels` runs on ``rgb`` (H x W x 3
    uint8), from the same settings, grid and pixel features, its inputs set."""
    height, width = rgb.shape[:2]
    settings = InferenceSettings.build(n_segments, num_steps=num_steps, features=features,
                                       fused=fused)
    grid = decide_grid(n_segments, height, width, settings.model.calibration, settings.grid,
                       settings.position_weight)
    net = deploy_net_for(height, width, grid, num_steps, features, settings.weights,
                         file_identity(settings.weights), fused,
                         feature_dim=settings.feature_dim, pixel_input=True)
    pos_scale = settings.position_weight * position_scale(grid, height, width)
    position_and_values(rgb_to_lab_planes(rgb), pos_scale,
                        np.full(3, settings.color_scale, np.float32),
                        out=net.net.blobs[PIXEL_FEATURES].data[0])
    cells = cell_input(height, width, grid)
    net.set_inputs(dict(spixel_init=cells, feat_spixel_init=cells))
    return net


def time_mode(rgb: np.ndarray, n_segments: int, num_steps: int, features: str,
              repeats: int, fused: bool = True) -> dict:
    """The median seconds of each stage of ``repeats`` calls of
    :func:`ssn.inference.superpixels` (after one that builds the nets), and of the
    whole call ("total"); a stage the call does not have is 0."""
    def call(timings=None):
        return superpixels(rgb, n_segments, num_steps=num_steps, features=features,
                           fused=fused, timings=timings)

    call()
    runs = []
    for _ in range(repeats):
        timings: dict[str, float] = {}
        start = time.perf_counter()
        call(timings)
        timings["total"] = time.perf_counter() - start
        runs.append(timings)
    return {stage: statistics.median(run.get(stage, 0.0) for run in runs)
            for stage in (*STAGES, "total")}


# The environment variable that switches the convolutions' Winograd forward:
# "0" off, "1" on for every 3x3 convolution, unset where it pays (patch 0009).
WINOGRAD_SWITCH = "SSN_CONV_WINOGRAD"


@contextmanager
def winograd_setting(value: Optional[str]) -> Iterator[None]:
    """SSN_CONV_WINOGRAD set to ``value`` (None: unset) inside the block (Caffe reads it
    on every convolution), restored after."""
    saved = os.environ.get(WINOGRAD_SWITCH)
    try:
        if value is None:
            os.environ.pop(WINOGRAD_SWITCH, None)
        else:
            os.environ[WINOGRAD_SWITCH] = value
        yield
    finally:
        if saved is None:
            os.environ.pop(WINOGRAD_SWITCH, None)
        else:
            os.environ[WINOGRAD_SWITCH] = saved


def convolution_times(rgb: np.ndarray, n_spixels: int, num_steps: int,
                      repeats: int) -> list[dict]:
    """The forward of each Convolution layer of the deep net, without Winograd and
    with it where it pays (SSN_CONV_WINOGRAD 0 and unset), timed alternately.

    Returns one dict per layer: ``name``, ``shape`` (C, M, Ho, Wo), ``flops`` (those
    of the direct sum, 2 x 9 C M Ho Wo), and the median seconds without and with
    Winograd, ``off`` and ``on``.
    """
    net = prepared_net(rgb, n_spixels, num_steps, "deep")
    names = list(net.net._layer_names)
    net.net._forward(0, names.index("trans_features"))  # every convolution's input
    results = []
    for index, layer in enumerate(net.net.layers):
        if layer.type != "Convolution":
            continue
        name = names[index]
        bottom = net.net.blobs[net.net._blob_names[net.net._bottom_ids(index)[0]]]
        top = net.net.blobs[net.net._blob_names[net.net._top_ids(index)[0]]]
        channels, (out_channels, out_height, out_width) = bottom.shape[1], top.shape[1:]
        times: dict[str, list[float]] = {"off": [], "on": []}
        for repeat in range(repeats + 1):
            for label, value in (("off", "0"), ("on", None)):
                with winograd_setting(value):
                    start = time.perf_counter()
                    net.net._forward(index, index)
                    if repeat:  # the first round warms up
                        times[label].append(time.perf_counter() - start)
        results.append(dict(name=name, shape=(channels, out_channels, out_height, out_width),
                            flops=2 * 9 * channels * out_channels * out_height * out_width,
                            off=statistics.median(times["off"]),
                            on=statistics.median(times["on"])))
    return results
