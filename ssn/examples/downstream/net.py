"""SSN inside a downstream net: superpixel pooling of CNN features for a per-pixel task.

The example net (docs/TASKS.md, "Inside a downstream net") classifies every
pixel by the lightness class of its ground-truth segment
(:mod:`ssn.examples.downstream.labels`), through superpixels::

    img -> PixelFeature -> feature CNN -> trans_features F (N x C x H x W)
      F -> differentiable SLIC -> Q (final_pixel_assoc, N x 9 x H x W)
                               -> ArgMax, RelToAbsIndex -> hard labels (new_spix_indices)
      F without its 2 position channels -> task_features (N x (C-2) x H x W)
      SpixelFeature2(task_features, Q) -> task_spixel_feat (N x (C-2) x 1 x K)
      1x1 conv, ReLU, 1x1 conv (the head) -> task_fc2 (N x classes x 1 x K)
      Smear(task_fc2, hard labels) -> task_scores (N x classes x H x W)
      SoftmaxWithLoss(task_scores, task_label) -> task_loss

The loss reaches the CNN by two paths through the SSN layers: through the
pooled features (SpixelFeature2's feature input) and through the soft
association Q (SpixelFeature2's association input, then Softmax, Passoc and the
earlier SpixelFeature2 steps back to F). The SSN's own losses (compactness,
label reconstruction) stay in the net when their weights are not 0. With
``spixel_pooling`` off, the same head classifies each pixel's task_features
directly: the baseline without superpixels.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

import caffe
from caffe import layers as L
from caffe.proto import caffe_pb2

from ssn.nets.generators import (
    SSNConfig,
    cnn_features,
    compactness_loss,
    data_layers,
    hard_assignment,
    label_loss,
    pixel_features,
    slic_iterations,
    with_val_data,
)
from ssn.nets.prototxt import PROTOTXT_DIR, PrototxtOptions

DOWNSTREAM_DIR = PROTOTXT_DIR / "downstream"  # where ssn-make-prototxt --net downstream writes

TASK_LAYER_MODULE = "ssn.examples.downstream.labels"
TASK_LAYER_CLASS = "SegmentLightnessLayer"
TASK_IGNORE = 255
POSITION_CHANNELS = 2  # ps*y, ps*x: the first channels of the pixel features
# The head starts from scratch on a trained CNN: it learns 10x faster (as in fine-tuning).
HEAD_LR_MULT = 10


@dataclasses.dataclass
class TaskHead:
    """The task's part of a downstream net: what :class:`DownstreamConfig` adds to
    :class:`SSNConfig` and :class:`DownstreamOptions` to :class:`PrototxtOptions`.

    Attributes
    ----------
    num_classes : int
        Classes of the task (lightness bins, >= 2).
    spixel_pooling : bool
        Pool the features over the SSN superpixels before the head (True), or
        apply the head to every pixel (False, the baseline).
    head_width : int
        Channels of the head's hidden 1x1 convolution.
    task_weight : float
        Loss weight of the task's cross-entropy.
    frozen_batch_norm : bool
        The CNN's BatchNorm layers normalise by their stored statistics in
        training too (:func:`frozen_batch_norm`), for fine-tuning a trained
        model; off, by the batch's, for training the CNN from scratch.
    """

    num_classes: int = 3
    spixel_pooling: bool = True
    head_width: int = 32
    task_weight: float = 1.0
    frozen_batch_norm: bool = True

    def task_fields(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TaskHead)}


@dataclasses.dataclass
class DownstreamConfig(SSNConfig, TaskHead):
    """An :class:`SSNConfig` with a task head (:class:`TaskHead`) on top.

    The SSN layers are in the net if ``spixel_pooling`` is on or an SSN loss
    (``compactness_weight``, ``color_weight``, ``label_weight``) is not 0; each
    SSN loss is left out when its weight is 0.
    """

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.head_width < 1:
            raise ValueError(f"head_width must be >= 1, got {self.head_width}")

    @property
    def uses_slic(self) -> bool:
        return self.spixel_pooling or self.has_ssn_losses

    @property
    def has_ssn_losses(self) -> bool:
        return bool(self.compactness_weight or self.color_weight or self.label_weight)


def task_labels(net: caffe.NetSpec, img, label, num_classes: int):
    """``task_label`` (N x 1 x H x W) from the Lab image and the segment classes."""
    net.task_label = L.Python(img, label, module=TASK_LAYER_MODULE, layer=TASK_LAYER_CLASS,
                              param_str=json.dumps(dict(num_classes=num_classes)),
                              propagate_down=[False, False])
    return net.task_label


def task_features(net: caffe.NetSpec, features):
    """``task_features``: ``features`` (N x C x H x W) without the position channels,
    so that the head's input does not depend on where the image is cut."""
    net.task_position, net.task_features = L.Slice(
        features, ntop=2, slice_param=dict(axis=1, slice_point=POSITION_CHANNELS))
    net.task_position_unused = L.Silence(net.task_position, ntop=0)
    return net.task_features


def spixel_pool(net: caffe.NetSpec, features, assoc, spixel_init, grid_h: int, grid_w: int):
    """``task_spixel_feat`` (N x C x 1 x K): the association-weighted mean of
    ``features`` over each superpixel, differentiable in both."""
    net.task_spixel_feat = L.SpixelFeature2(
        features, assoc, spixel_init, propagate_down=[True, True, False],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    return net.task_spixel_feat


def classifier_head(net: caffe.NetSpec, features, width: int, num_classes: int):
    """``task_fc2``: 1x1 conv (``width``), ReLU, 1x1 conv (``num_classes``) on any
    N x C x h x w blob (superpixels: h x w = 1 x K; pixels: H x W)."""
    learned = [dict(lr_mult=HEAD_LR_MULT, decay_mult=1),
               dict(lr_mult=2 * HEAD_LR_MULT, decay_mult=0)]
    net.task_fc1 = L.Convolution(features, num_output=width, kernel_size=1, param=learned,
                                 weight_filler=dict(type="msra"),
                                 bias_filler=dict(type="constant", value=0))
    net.task_relu1 = L.ReLU(net.task_fc1, in_place=True)
    # Small last weights: every class starts near 1/num_classes.
    net.task_fc2 = L.Convolution(net.task_fc1, num_output=num_classes, kernel_size=1,
                                 param=learned, weight_filler=dict(type="gaussian", std=0.001),
                                 bias_filler=dict(type="constant", value=0))
    return net.task_fc2


def task_scores(net: caffe.NetSpec, config: DownstreamConfig, features, assoc, hard,
                spixel_init):
    """Per-pixel class scores (N x classes x H x W): through the superpixels
    (pool, head, ``task_scores`` = Smear by the hard labels) or per pixel."""
    if not config.spixel_pooling:
        return classifier_head(net, features, config.head_width, config.num_classes)
    pooled = spixel_pool(net, features, assoc, spixel_init, *config.grid)
    scores = classifier_head(net, pooled, config.head_width, config.num_classes)
    net.task_scores = L.Smear(scores, hard, propagate_down=[True, False])
    return net.task_scores


def task_loss(net: caffe.NetSpec, scores, label, weight: float):
    """``task_loss``, the softmax cross-entropy over the non-ignored pixels, and
    ``task_accuracy`` in the TEST phase."""
    net.task_loss = L.SoftmaxWithLoss(scores, label, loss_weight=weight,
                                      propagate_down=[True, False],
                                      loss_param=dict(ignore_label=TASK_IGNORE))
    net.task_accuracy = L.Accuracy(scores, label, include=dict(phase=caffe.TEST),
                                   accuracy_param=dict(ignore_label=TASK_IGNORE))
    return net.task_loss


def _ssn(net: caffe.NetSpec, config: DownstreamConfig, features):
    """SLIC's association and, where the pooling or the compactness loss reads
    them, the hard labels (``None`` for what the net does not need)."""
    if not config.uses_slic:
        return None, None
    grid_h, grid_w = config.grid
    assoc = slic_iterations(net, features, net.spixel_init, net.feat_spixel_init, grid_h,
                            grid_w, config.num_steps)
    if not (config.spixel_pooling or config.compactness_weight or config.color_weight):
        return assoc, None
    return assoc, hard_assignment(net, assoc, net.spixel_init, grid_h, grid_w)


def _ssn_losses(net: caffe.NetSpec, config: DownstreamConfig, pixel_feats, assoc, hard) -> None:
    """SSN's compactness and label-reconstruction losses, each unless its weight is 0."""
    grid_h, grid_w = config.grid
    if config.compactness_weight or config.color_weight:
        compactness_loss(net, pixel_feats, assoc, net.spixel_init, hard, grid_h, grid_w,
                         config.compactness_weight, config.color_weight)
    if config.label_weight:
        label_loss(net, net.problabel, net.label, assoc, net.spixel_init, grid_h, grid_w,
                   config.num_label_channels, config.label_weight)


def _features(net: caffe.NetSpec, config: DownstreamConfig):
    """``pixel_features`` and the SLIC features (the CNN's ``trans_features``)."""
    pixel_feats = pixel_features(net, net.img, config.pos_scale, config.color_scale)
    if not config.uses_cnn:
        return pixel_feats, pixel_feats
    return pixel_feats, cnn_features(net, pixel_feats, config.feature_dim - 5, config.fused_cnn)


def train_net(config: DownstreamConfig, hdf5_sources: Optional[tuple[str, str]] = None
              ) -> caffe_pb2.NetParameter:
    """The TRAIN/TEST net: the SSN data layer, ``task_label``, the feature CNN,
    SLIC (with the SSN losses whose weights are not 0), the head and ``task_loss``.

    ``hdf5_sources`` as for :func:`ssn.nets.generators.train_net`.
    """
    net = caffe.NetSpec()
    data_layers(net, config, hdf5_sources)
    task_labels(net, net.img, net.label, config.num_classes)
    pixel_feats, feats = _features(net, config)
    assoc, hard = _ssn(net, config, feats)
    _ssn_losses(net, config, pixel_feats, assoc, hard)
    scores = task_scores(net, config, task_features(net, feats), assoc, hard, net.spixel_init)
    task_loss(net, scores, net.task_label, config.task_weight)
    silence_unused_data(net, config)
    net_param = net.to_proto()
    if config.frozen_batch_norm:
        frozen_batch_norm(net_param)
    return with_val_data(net_param, config, hdf5_sources)


def silence_unused_data(net: caffe.NetSpec, config: DownstreamConfig) -> None:
    """A Silence layer for the data tops that no layer reads (the cells without SLIC,
    the one-hot labels without the label loss): a solver would otherwise display
    every value of these net outputs at each display step."""
    unused = [] if config.label_weight else ["problabel"]
    if not config.uses_slic:
        unused += ["spixel_init", "feat_spixel_init"]
    if unused:
        net.unused_data = L.Silence(*[net[name] for name in unused], ntop=0)


def frozen_batch_norm(net_param: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """``net_param`` with every BatchNorm normalising by its stored statistics in
    training too (``use_global_stats``), as the deploy net does.

    Fine-tuning with batch statistics moves the CNN away from the stored ones,
    which Caffe's moving average follows only slowly: after 100 iterations of a
    first try, val patches scored 41% through the stored statistics and 61%
    through the batch's.
    """
    for layer in net_param.layer:
        if layer.type == "BatchNorm":
            layer.batch_norm_param.use_global_stats = True
    return net_param


def deploy_net(config: DownstreamConfig) -> caffe_pb2.NetParameter:
    """The deploy net: Input ``img`` (1 x 3 x H x W Lab) and, with superpixel
    pooling, ``spixel_init`` and ``feat_spixel_init`` (1 x 1 x H x W initial
    cells) -> ``task_prob`` (1 x classes x H x W), and ``new_spix_indices``.

    SLIC runs as the decomposed layers: the head pools with their association.
    """
    net = caffe.NetSpec()
    shape = [1, 1, config.height, config.width]
    net.img = L.Input(shape=dict(dim=[1, 3] + shape[2:]))
    if config.spixel_pooling:
        net.spixel_init = L.Input(shape=dict(dim=shape))
        net.feat_spixel_init = L.Input(shape=dict(dim=shape))
    _, feats = _features(net, config)
    no_losses = dataclasses.replace(config, compactness_weight=0, color_weight=0,
                                    label_weight=0)
    assoc, hard = _ssn(net, no_losses, feats)
    scores = task_scores(net, config, task_features(net, feats), assoc, hard,
                         net.spixel_init if config.spixel_pooling else None)
    net.task_prob = L.Softmax(scores)
    return net.to_proto()


@dataclasses.dataclass
class DownstreamOptions(PrototxtOptions, TaskHead):
    """:class:`PrototxtOptions` of the downstream example (``ssn-make-prototxt --net
    downstream``), with the task's fields (:class:`TaskHead`).

    The defaults are a CPU-sized run that fine-tunes the shipped model: 129 x 129
    patches with a 6 x 6 grid (cells of about 21 pixels, as the shipped model's
    training had), and a deploy net for 321 x 481 images with cells of that size.
    The deploy net runs the decomposed SLIC layers, as the head pools with their
    association: ``fused`` must stay off.
    """

    patch: int = 129
    n_spixels: int = 36
    batch_size: int = 4
    deploy_n_spixels: int = 330
    fused: bool = False
    base_lr: float = 5e-4
    max_iter: int = 200
    snapshot: int = 100
    test_interval: int = 100000
    snapshot_prefix: str = "models/downstream/ssn_task"

    def __post_init__(self) -> None:
        if self.fused:
            raise ValueError("the downstream deploy net pools with SLIC's soft association, "
                             "which the fused SlicIterations layer does not expose: leave "
                             "--fused off")

    def _with_task(self, config: SSNConfig) -> DownstreamConfig:
        """``config`` with this object's task fields."""
        base = {f.name: getattr(config, f.name) for f in dataclasses.fields(SSNConfig)}
        return DownstreamConfig(**base, **self.task_fields())

    def train_config(self, data: Optional[dict] = None) -> DownstreamConfig:
        return self._with_task(super().train_config(data))

    def deploy_config(self) -> DownstreamConfig:
        return self._with_task(super().deploy_config())

    def train_net_param(self, data: Optional[dict] = None) -> caffe_pb2.NetParameter:
        return train_net(self.train_config(data))

    def deploy_net_param(self) -> caffe_pb2.NetParameter:
        return deploy_net(self.deploy_config())
