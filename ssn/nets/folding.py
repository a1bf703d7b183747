"""Layers folded into the convolution before them, for inference.

With stored statistics, Caffe's BatchNorm is an affine map per channel,
y = (x - mean) / sqrt(var + eps), so a Convolution followed by it is one
Convolution with weights w / sqrt(var + eps) and bias (b - mean) / sqrt(var +
eps). Folding drops a pass over each normalised blob (about 30 ms of the deep
net's forward at 481x321) and the blob itself; the result differs by float
rounding only.

An in-place ReLU after a Convolution becomes the Convolution's
``convolution_output_param.relu`` (patch 0015), applied in the pass that adds
the bias: the same values, one pass over the output less (about 30 ms of the
deep net's forward at 481x321). Forward only, so for TEST nets. A
ConcatConvolution takes the flag too (after summing its parts). BatchNorm folds
into Convolution layers only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import caffe
import numpy as np
from caffe.proto import caffe_pb2

from ssn.nets.layer_params import CONVOLUTIONS, blob_values


@dataclass(frozen=True)
class Fold:
    """A BatchNorm layer folded into the Convolution layer that feeds it."""

    convolution: str
    batch_norm: str
    eps: float


def _foldable(conv: caffe_pb2.LayerParameter, norm: caffe_pb2.LayerParameter,
              readers: int) -> bool:
    param = norm.batch_norm_param
    return (conv.type == "Convolution" and conv.convolution_param.bias_term
            and len(conv.top) == 1 and readers == 1 and len(norm.bottom) == 1
            and not any(spec.name for spec in conv.param)
            and not (param.HasField("use_global_stats") and not param.use_global_stats))


def without_batch_norm(net_param: caffe_pb2.NetParameter, model: caffe_pb2.NetParameter
                       ) -> tuple[caffe_pb2.NetParameter, list[Fold]]:
    """A copy of a TEST net without the BatchNorm layers that can fold into their
    Convolution (which then writes the BatchNorm's top), and the folds made.

    A BatchNorm folds when ``model`` (the parsed .caffemodel) holds its
    statistics, it reads the only output of a Convolution with a bias and no
    shared weights, no other layer reads that output, and it uses stored
    statistics.
    """
    statistics = {layer.name for layer in model.layer
                  if layer.type == "BatchNorm" and len(layer.blobs) == 3}
    layers = list(net_param.layer)
    producer = {}
    readers: dict[str, int] = {}
    for index, layer in enumerate(layers):
        for bottom in layer.bottom:
            readers[bottom] = readers.get(bottom, 0) + 1
        for top in layer.top:
            producer.setdefault(top, index)
    folds, dropped, renamed = [], set(), {}
    for index, layer in enumerate(layers):
        if layer.name not in statistics or len(layer.bottom) != 1:
            continue
        source = producer.get(layer.bottom[0])
        if source is None or source >= index:
            continue
        conv = layers[source]
        if not _foldable(conv, layer, readers.get(layer.bottom[0], 0)):
            continue
        folds.append(Fold(conv.name, layer.name, layer.batch_norm_param.eps))
        dropped.add(index)
        renamed[source] = layer.top[0]
    def rename(index: int, copy: caffe_pb2.LayerParameter) -> None:
        if index in renamed:
            copy.top[0] = renamed[index]

    return _edited(net_param, dropped, rename), folds


def _edited(net_param: caffe_pb2.NetParameter, dropped: set,
            edit: Callable[[int, caffe_pb2.LayerParameter], None]) -> caffe_pb2.NetParameter:
    """A copy of ``net_param`` without the layers at the indices ``dropped``; every
    kept layer's copy goes through ``edit(index, copy)``."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    for index, layer in enumerate(net_param.layer):
        if index in dropped:
            continue
        copy = out.layer.add()
        copy.CopyFrom(layer)
        edit(index, copy)
    return out


def fold_into_convolutions(net: caffe.Net, folds: list[Fold],
                           model: caffe_pb2.NetParameter) -> None:
    """Scale the weights and shift the biases of ``net``'s folded Convolutions by
    their BatchNorm's statistics, read from ``model`` (the parsed .caffemodel)."""
    stored = {layer.name: layer.blobs for layer in model.layer}
    for fold in folds:
        mean, var, factor = (blob_values(blob) for blob in stored[fold.batch_norm])
        scale = 0.0 if factor[0] == 0 else 1.0 / factor[0]
        inv_std = 1.0 / np.sqrt(var * scale + fold.eps)
        weights, bias = net.params[fold.convolution]
        weights.data[...] = weights.data * inv_std.reshape(-1, *[1] * (weights.data.ndim - 1))
        bias.data[...] = (bias.data - mean * scale) * inv_std


def _folds_relu(relu: caffe_pb2.LayerParameter) -> bool:
    """An in-place, plain ReLU (slope 0, no rules, no loss) that a Convolution can apply."""
    return (relu.type == "ReLU" and len(relu.bottom) == 1 and list(relu.top) == list(relu.bottom)
            and relu.relu_param.negative_slope == 0 and not relu.include and not relu.exclude
            and not relu.loss_weight and not any(relu.propagate_down))


def without_relu(net_param: caffe_pb2.NetParameter) -> tuple[caffe_pb2.NetParameter, list[str]]:
    """A copy of a TEST net whose in-place ReLUs after a Convolution or ConcatConvolution
    are folded into it (``convolution_output_param.relu``), and the names of the ReLUs
    folded.

    A ReLU folds when it is plain (:func:`_folds_relu`), the blob it rewrites is the only
    output of a Convolution, and no layer between the two reads that blob (it would
    have seen the values before the ReLU).
    """
    layers = list(net_param.layer)
    producer, last_reader = {}, {}
    folded, relu_convolutions = set(), set()
    for index, layer in enumerate(layers):
        blob = layer.bottom[0] if len(layer.bottom) == 1 else None
        source = producer.get(blob)
        if (_folds_relu(layer) and source is not None and layers[source].type in CONVOLUTIONS
                and len(layers[source].top) == 1
                and not layers[source].convolution_output_param.relu
                and last_reader.get(blob, -1) <= source):
            folded.add(index)
            relu_convolutions.add(source)
        for bottom in layer.bottom:
            last_reader[bottom] = index
        for top in layer.top:
            producer[top] = index
    def mark(index: int, copy: caffe_pb2.LayerParameter) -> None:
        if index in relu_convolutions:
            copy.convolution_output_param.relu = True

    return _edited(net_param, folded, mark), [layers[index].name for index in sorted(folded)]
