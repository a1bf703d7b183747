"""Seconds per image for SSN inference on CPU, split into the feature CNN, the SLIC
iterations and connectivity, next to scikit-image SLIC on the same image.

Deep mode times the deploy net as :func:`ssn.inference.superpixels` builds it,
with the bundled model (its BatchNorms folded into the convolutions), or with
random weights and unfolded BatchNorms when no model is bundled; the time does
not depend on the weights' values. Pixel mode is SSN_pix. With --convolutions,
also each of the CNN's convolutions' forward with and without Winograd,
alternately in one process. A benchmark, not a test.
"""
from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Iterator, Optional

import numpy as np

from ssn.color import rgb_to_lab
from ssn.connectivity import connectivity_sizes, enforce_connectivity
from ssn.grid import init_cells
from ssn.inference import bundled_weights, check_geometry, deploy_net_for, file_identity


def median_seconds(call, repeats: int) -> float:
    call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prepared_net(rgb: np.ndarray, n_spixels: int, num_steps: int, features: str,
                 fused: bool = True):
    """The deploy net for ``rgb`` as superpixels() builds it, its inputs set."""
    height, width = rgb.shape[:2]
    grid_h, grid_w = check_geometry(height, width, n_spixels)
    weights = bundled_weights() if features == "deep" else None
    weights = None if weights is None else str(weights)
    net = deploy_net_for(height, width, n_spixels, num_steps, features, weights,
                         file_identity(weights), fused=fused)
    cells = init_cells(height, width, grid_h, grid_w)[None, None].astype(np.float32)
    lab = rgb_to_lab(rgb).transpose(2, 0, 1)[None]
    net.set_inputs(dict(img=lab, spixel_init=cells, feat_spixel_init=cells))
    return net


def time_mode(rgb: np.ndarray, n_spixels: int, num_steps: int, features: str,
              repeats: int, fused: bool = True) -> dict:
    height, width = rgb.shape[:2]
    net = prepared_net(rgb, n_spixels, num_steps, features, fused)
    names = list(net.net._layer_names)
    split = names.index("trans_features") if "trans_features" in names else \
        names.index("pixel_features")
    cnn = median_seconds(lambda: net.net._forward(0, split), repeats)
    ssn = median_seconds(lambda: net.net._forward(split + 1, len(names) - 1), repeats)
    labels = net.net.blobs["new_spix_indices"].data[0, 0].astype(np.int32)
    sizes = connectivity_sizes(height, width, n_spixels)
    connect = median_seconds(lambda: enforce_connectivity(labels, *sizes), repeats)
    prepare = median_seconds(lambda: rgb_to_lab(rgb), repeats)
    return dict(lab=prepare, cnn=cnn, ssn=ssn, connectivity=connect,
                total=prepare + cnn + ssn + connect)


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
