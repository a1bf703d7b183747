"""Seconds per SSN training iteration on CPU, split into the data layer, the feature
CNN, the SSN layers and the loss heads, plus the process's peak memory.

Times the generated TRAIN net (batch 6, 201x201 patches, 100 superpixels, 5 SLIC
steps by default) layer by layer with pycaffe; the data layer is timed alone by
drawing batches from the BSDS500 sampler. With an interpreter that has PyTorch,
the same feature CNN trained in PyTorch (:mod:`ssn.benchmarks.torch_anchor`) is
timed in the same run as the anchor, and the ratio printed. A benchmark, not a test.
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import caffe

from ssn.nets.checked import CheckedNet
from ssn.nets.generators import SSNConfig, train_net
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers
from ssn.training.samples import BSDSSampler

SSN_TYPES = {"SpixelFeature", "Passoc", "Softmax", "SpixelFeature2"}


def layer_group(name: str, kind: str, after_features: bool, after_slic: bool) -> str:
    if not after_features:
        return "cnn (pixel features to trans_features)"
    if not after_slic and kind in SSN_TYPES:
        return "ssn (SLIC iterations)"
    return "heads and losses"


SLOWEST_SHOWN = 15


def torch_anchor(python: str, config: SSNConfig, repeats: int) -> dict:
    """Seconds of the same feature CNN's forward and backward + Adam step in PyTorch,
    run by ``python`` (an interpreter with PyTorch) on :mod:`ssn.benchmarks.torch_anchor`.

    Raises
    ------
    RuntimeError
        If the interpreter cannot run it (no PyTorch there, say), with its message.
    """
    command = [python, str(Path(__file__).with_name("torch_anchor.py")), "--batch",
               str(config.batch_size), "--patch", str(config.height), "--repeats", str(repeats)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    except OSError as error:
        raise RuntimeError(f"cannot run {python}: {error}") from error
    if result.returncode != 0:
        raise RuntimeError(f"the PyTorch anchor failed under {python}: "
                           f"{result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(config: SSNConfig, repeats: int, torch_python: Optional[str] = None) -> None:
    sampler = BSDSSampler("train", (config.height, config.width), config.grid,
                          config.batch_size, config.num_label_channels)
    data_seconds = []
    for index in range(repeats + 1):
        start = time.perf_counter()
        batch = sampler.batch(index)
        data_seconds.append(time.perf_counter() - start)
    shapes = dict(zip(("img", "spixel_init", "feat_spixel_init", "label", "problabel"),
                      (a.shape for a in batch.tops())))
    net = CheckedNet(inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes),
                     caffe.TRAIN)
    initialize_helper_weights(net.net)
    net.set_inputs(dict(zip(shapes, batch.tops())))
    caffe_net = net.net
    names = list(caffe_net._layer_names)
    forward = defaultdict(list)
    backward = defaultdict(list)
    totals = []
    for _ in range(repeats + 1):
        start_all = time.perf_counter()
        for i in range(len(names)):
            start = time.perf_counter()
            caffe_net._forward(i, i)
            forward[i].append(time.perf_counter() - start)
        for i in reversed(range(len(names))):
            start = time.perf_counter()
            caffe_net._backward(i, i)
            backward[i].append(time.perf_counter() - start)
        totals.append(time.perf_counter() - start_all)
    groups = defaultdict(lambda: [0.0, 0.0])
    after_features = after_slic = False
    for i, name in enumerate(names):
        group = layer_group(name, caffe_net.layers[i].type, after_features, after_slic)
        groups[group][0] += statistics.median(forward[i][1:])
        groups[group][1] += statistics.median(backward[i][1:])
        after_features |= name == "trans_features" or (name == "pixel_features"
                                                       and not config.uses_cnn)
        after_slic |= name == "final_pixel_assoc"
    data = statistics.median(data_seconds[1:])
    net_time = statistics.median(totals[1:])
    grid_h, grid_w = config.grid
    print(f"# TRAIN iteration: batch {config.batch_size}, {config.height}x{config.width}, "
          f"grid {grid_h}x{grid_w}, {config.num_steps} steps, feature dim "
          f"{config.feature_dim}; median of {repeats}")
    for group, (fwd, bwd) in groups.items():
        print(f"{group:42s} forward {fwd:7.3f} s  backward {bwd:7.3f} s")
    print(f"{'data layer (one batch, one thread)':42s} {data:7.3f} s")
    print(f"{'net forward + backward':42s} {net_time:7.3f} s")
    print(f"{'iteration (net + data if not prefetched)':42s} {net_time + data:7.3f} s")
    print(f"{'iteration (data prefetched)':42s} {net_time:7.3f} s")
    if torch_python:
        anchor = torch_anchor(torch_python, config, repeats)
        cnn = anchor["forward"] + anchor["backward"]
        print(f"{'PyTorch CNN forward+backward+Adam':42s} {cnn:7.3f} s  (torch "
              f"{anchor['torch']}, {anchor['threads']} threads, {anchor['layout']}; forward "
              f"{anchor['forward']:.3f} s)")
        print(f"{'iteration (data prefetched) / PyTorch CNN':42s} {net_time / cnn:7.2f} x")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{'peak resident memory':42s} {peak:7.0f} MiB")
    slowest = sorted(range(len(names)), key=lambda i: -(statistics.median(forward[i][1:])
                                                         + statistics.median(backward[i][1:])))
    print(f"# slowest layers (s)  {'':36s} forward backward")
    for i in slowest[:SLOWEST_SHOWN]:
        fwd, bwd = statistics.median(forward[i][1:]), statistics.median(backward[i][1:])
        print(f"  {names[i]:28s} {caffe_net.layers[i].type:16s} {fwd:7.3f} {bwd:8.3f}")
