"""Times the fused SLIC iterations (SlicIterations) against the decomposed ones and a
memory-bandwidth bound, one differentiable SLIC iteration (Passoc + Softmax +
SpixelFeature2) and each SSN layer alone, forward and backward, through pycaffe.

Prints milliseconds per call (median over repeats), then the forward and backward
of the whole SSN train net on one image. A benchmark, not a test.
``--gpu ID`` times the CUDA paths on device ID (needs Caffe built with
``python -m ssn_build --gpu``); every timed call then ends with
``cudaDeviceSynchronize`` so that it covers the kernels it queued.
"""
from __future__ import annotations

import ctypes
import logging
import statistics
import time
from typing import Callable

import caffe
import numpy as np
from caffe import layers as L
from caffe import params as P

from ssn.grid import grid_shape, init_cells
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import SSNConfig, train_net
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers

log = logging.getLogger("ssn.benchmarks.layers")


def iteration_net(num, channels, height, width, grid_h, grid_w):
    """Inputs feat, spix, cells -> Passoc -> Softmax -> SpixelFeature2, with every
    other SSN layer on the side for per-layer times; backward is forced."""
    num_spixels = grid_h * grid_w
    grid = dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1)
    n = caffe.NetSpec()
    n.img = L.Input(shape=dict(dim=[num, 3, height, width]))
    n.feat = L.Input(shape=dict(dim=[num, channels, height, width]))
    n.spix = L.Input(shape=dict(dim=[num, channels, 1, num_spixels]))
    n.cells = L.Input(shape=dict(dim=[num, 1, height, width]))
    n.labels = L.Input(shape=dict(dim=[num, 1, height, width]))
    n.pixel_feature = L.PixelFeature(n.img, pixel_feature_param=dict(
        type=P.PixelFeature.POSITION_AND_RGB, pos_scale=0.1, color_scale=0.26))
    n.spixel_feature = L.SpixelFeature(n.feat, n.cells, propagate_down=[True, False],
                                       spixel_feature_param=dict(
                                           type=P.SpixelFeature.AVGRGB,
                                           max_spixels=num_spixels))
    n.passoc = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=grid,
                        propagate_down=[True, True, False])
    n.softmax = L.Softmax(n.passoc)
    n.spixel_feature2 = L.SpixelFeature2(n.feat, n.softmax, n.cells,
                                         spixel_feature2_param=grid,
                                         propagate_down=[True, True, False])
    n.rel = L.Input(shape=dict(dim=[num, 1, height, width]))
    n.rel_to_abs_index = L.RelToAbsIndex(n.rel, n.cells, propagate_down=[False, False],
                                         rel_to_abs_index_param=dict(num_spixels_h=grid_h,
                                                                     num_spixels_w=grid_w))
    n.smear = L.Smear(n.spixel_feature2, n.cells, propagate_down=[True, False])
    n.interp = L.Interp(n.feat, interp_param=dict(zoom_factor=2))
    n.loss_without_softmax = L.LossWithoutSoftmax(n.softmax, n.labels,
                                                  propagate_down=[True, False])
    net_param = n.to_proto()
    net_param.force_backward = True
    return net_param


def cuda_synchronizer() -> Callable[[], None]:
    """``cudaDeviceSynchronize`` of the CUDA runtime that libcaffe loaded.

    Raises RuntimeError when no libcudart is loaded (a CPU_ONLY Caffe).
    """
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libcudart.so" in line}
    if not paths:
        raise RuntimeError("this Caffe has no CUDA runtime: build it with "
                           "python -m ssn_build --gpu")
    runtime = ctypes.CDLL(sorted(paths)[0])

    def synchronize() -> None:
        status = runtime.cudaDeviceSynchronize()
        if status != 0:
            raise RuntimeError(f"cudaDeviceSynchronize failed with error {status}")
    return synchronize


def no_sync() -> None:
    """The CPU path needs no synchronisation."""


def median_ms(call: Callable[[], object], repeats: int,
              sync: Callable[[], None] = no_sync) -> float:
    call()  # warm-up
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def make_inputs(rng, num, channels, height, width, grid_h, grid_w):
    cells = np.broadcast_to(init_cells(height, width, grid_h, grid_w),
                            (num, 1, height, width)).astype(np.float32)
    return dict(img=rng.uniform(0, 100, (num, 3, height, width)),
                feat=rng.normal(size=(num, channels, height, width)),
                spix=rng.normal(size=(num, channels, 1, grid_h * grid_w)),
                cells=cells, labels=rng.integers(0, 9, (num, 1, height, width)),
                rel=rng.integers(0, 9, (num, 1, height, width)))


def slic_net(num, channels, height, width, grid_h, grid_w, num_steps, fused):
    """Inputs feat, spix, cells -> the deploy net's SLIC part with ``num_steps`` steps:
    one SlicIterations layer, or Passoc/Softmax/SpixelFeature2 then ArgMax and
    RelToAbsIndex; top ``labels``."""
    grid = dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1)
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[num, channels, height, width]))
    n.spix = L.Input(shape=dict(dim=[num, channels, 1, grid_h * grid_w]))
    n.cells = L.Input(shape=dict(dim=[num, 1, height, width]))
    if fused:
        n.labels = L.SlicIterations(n.feat, n.spix, n.cells, spixel_feature2_param=grid,
                                    slic_iterations_param=dict(num_steps=num_steps))
        return n.to_proto()
    centres = n.spix
    for step in range(1, num_steps + 1):
        n[f"passoc{step}"] = L.Passoc(n.feat, centres, n.cells, spixel_feature2_param=grid)
        n[f"assoc{step}"] = L.Softmax(n[f"passoc{step}"])
        if step < num_steps:
            centres = L.SpixelFeature2(n.feat, n[f"assoc{step}"], n.cells,
                                       spixel_feature2_param=grid)
            n[f"spixel_feat{step}"] = centres
    n.relative = L.ArgMax(n[f"assoc{num_steps}"], argmax_param=dict(axis=1))
    n.labels = L.RelToAbsIndex(n.relative, n.cells, rel_to_abs_index_param=dict(
        num_spixels_h=grid_h, num_spixels_w=grid_w))
    return n.to_proto()


def copy_ms(nbytes: int, repeats: int) -> float:
    """Median time of a plain copy of ``nbytes`` (numpy, one thread): what one pass
    that reads a blob of that size and writes as much costs in memory traffic."""
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)
    return median_ms(lambda: np.copyto(target, source), repeats)


def fused_benchmark(num, channels, height, width, n_spixels, repeats, num_steps=10,
                    sync: Callable[[], None] = no_sync, device: str = "CPU") -> dict:
    """The deploy net's SLIC iterations, fused and decomposed, in ms.

    One iteration (a centre update: distances, softmax, weighted sums) is the
    time of ``num_steps + 1`` steps less that of 1 step (the final assignment
    alone), over ``num_steps``; ``deploy`` is ``num_steps`` steps with the
    assignment, as in the deploy net. ``copy`` is the memory-bandwidth bound:
    one copy of the feature blob's bytes.
    """
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    rng = np.random.default_rng(0)
    inputs = make_inputs(rng, num, channels, height, width, grid_h, grid_w)
    inputs = {name: inputs[name] for name in ("feat", "spix", "cells")}
    times = {}
    for fused in (True, False):
        steps_ms = {}
        for steps in (1, num_steps, num_steps + 1):
            net = CheckedNet(slic_net(num, channels, height, width, grid_h, grid_w, steps,
                                      fused))
            net.set_inputs(inputs)
            steps_ms[steps] = median_ms(net.net.forward, repeats, sync)
        name = "fused" if fused else "decomposed"
        times[name] = (steps_ms[num_steps + 1] - steps_ms[1]) / num_steps
        times[f"{name}_deploy"] = steps_ms[num_steps]
    feature_bytes = num * channels * height * width * 4
    times["copy"] = copy_ms(feature_bytes, repeats)
    print(f"# SLIC iterations of the deploy net: {num}x{channels}x{height}x{width} features, "
          f"grid {grid_h}x{grid_w} = {grid_h * grid_w} superpixels, {device}, "
          f"median of {repeats} runs, ms")
    print(f"{'one iteration, fused (SlicIterations)':48s} {times['fused']:8.2f}")
    print(f"{'one iteration, decomposed (Passoc+Softmax+SF2)':48s} {times['decomposed']:8.2f}")
    print(f"{'memory bound: copy of the features':48s} {times['copy']:8.2f}  "
          f"({feature_bytes / 1e6:.1f} MB, {2 * feature_bytes / times['copy'] / 1e6:.1f} GB/s "
          f"read+write, one thread)")
    print(f"{f'{num_steps} steps + assignment, fused':48s} {times['fused_deploy']:8.2f}")
    print(f"{f'{num_steps} steps + assignment, decomposed':48s} "
          f"{times['decomposed_deploy']:8.2f}")
    return times


def run_benchmark(num, channels, height, width, n_spixels, repeats,
                  sync: Callable[[], None] = no_sync, device: str = "CPU"):
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    net = CheckedNet(iteration_net(num, channels, height, width, grid_h, grid_w), caffe.TRAIN)
    rng = np.random.default_rng(0)
    net.set_inputs(make_inputs(rng, num, channels, height, width, grid_h, grid_w))
    net.net.forward()
    caffe_net = net.net
    index = {name: i for i, name in enumerate(caffe_net._layer_names)}
    print(f"# {num}x{channels}x{height}x{width} features, grid {grid_h}x{grid_w} = "
          f"{grid_h * grid_w} superpixels, {device}, median of {repeats} runs, ms")
    first, last = index["passoc"], index["spixel_feature2"]
    fwd = median_ms(lambda: caffe_net._forward(first, last), repeats, sync)
    bwd = median_ms(lambda: caffe_net._backward(last, first), repeats, sync)
    print(f"{'SSN iteration (Passoc+Softmax+SpixelFeature2)':48s} forward {fwd:8.2f}"
          f"  backward {bwd:8.2f}  total {fwd + bwd:8.2f}")
    for name in ("pixel_feature", "spixel_feature", "passoc", "softmax", "spixel_feature2",
                 "rel_to_abs_index", "smear", "interp", "loss_without_softmax"):
        i = index[name]
        fwd = median_ms(lambda i=i: caffe_net._forward(i, i), repeats, sync)
        bwd = median_ms(lambda i=i: caffe_net._backward(i, i), repeats, sync)
        line = f"{name:48s} forward {fwd:8.2f}  backward {bwd:8.2f}"
        print(line)


def full_image_benchmark(height: int, width: int, n_spixels: int, num_steps: int,
                         repeats: int, sync: Callable[[], None] = no_sync,
                         device: str = "CPU") -> None:
    """Forward and backward of the whole SSN train net (CNN, SLIC, losses) on one image."""
    config = SSNConfig(height=height, width=width, grid_request=n_spixels, num_steps=num_steps,
                       batch_size=1)
    channels = dict(img=3, spixel_init=1, feat_spixel_init=1, label=1,
                    problabel=config.num_label_channels)
    shapes = {name: (1, c, height, width) for name, c in channels.items()}
    net = CheckedNet(inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes),
                     caffe.TRAIN)
    initialize_helper_weights(net.net)
    rng = np.random.default_rng(1)
    cells = init_cells(height, width, *config.grid)[None, None].astype(np.float32)
    labels = rng.integers(0, 5, (1, 1, height, width))
    onehot = (labels == np.arange(config.num_label_channels)[None, :, None, None])
    net.set_inputs(dict(img=rng.uniform(0, 100, shapes["img"]), spixel_init=cells,
                        feat_spixel_init=cells, label=labels, problabel=onehot))
    fwd = median_ms(net.net.forward, repeats, sync)
    bwd = median_ms(net.net.backward, repeats, sync)
    print(f"# whole train net, one {width}x{height} image, {n_spixels} superpixels, "
          f"{num_steps} steps, {device}, median of {repeats} runs, ms")
    print(f"{'full image (CNN + SLIC + losses)':48s} forward {fwd:8.2f}  backward {bwd:8.2f}"
          f"  total {fwd + bwd:8.2f}")
