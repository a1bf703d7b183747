"""Seconds per image for SSN inference on CPU, split into the feature CNN, the SLIC
iterations and connectivity, next to scikit-image SLIC on the same image.

Deep mode times the deploy net as :func:`ssn.inference.superpixels` builds it,
with the bundled model (its BatchNorms folded into the convolutions), or with
random weights and unfolded BatchNorms when no model is bundled; the time does
not depend on the weights' values. Pixel mode is SSN_pix. A benchmark, not a
test.
"""
from __future__ import annotations

import statistics
import time

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


def time_mode(rgb: np.ndarray, n_spixels: int, num_steps: int, features: str,
              repeats: int, fused: bool = True) -> dict:
    height, width = rgb.shape[:2]
    grid_h, grid_w = check_geometry(height, width, n_spixels)
    weights = bundled_weights() if features == "deep" else None
    weights = None if weights is None else str(weights)
    net = deploy_net_for(height, width, n_spixels, num_steps, features, weights,
                         file_identity(weights), fused=fused)
    cells = init_cells(height, width, grid_h, grid_w)[None, None].astype(np.float32)
    lab = rgb_to_lab(rgb).transpose(2, 0, 1)[None]
    net.set_inputs(dict(img=lab, spixel_init=cells, feat_spixel_init=cells))
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
