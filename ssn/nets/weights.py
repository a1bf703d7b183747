"""Weights of the fixed helper convolutions, and the initial .caffemodel.

See docs/LAYERS.md#initial-weights.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.atomic import atomic_path
from ssn.model_metadata import find_settings, metadata_path, write_metadata
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import DATA_LAYER_MODULE, DEEP_FEATURE_DIM, SSNConfig, deploy_net

DECODER_PREFIX = "concat_spixel_feat_"


def neighbour_gather_weights(channels: int) -> np.ndarray:
    """Weights (9C x 1 x 3 x 3) of the grouped conv whose output 9j+i is neighbour i
    of superpixel feature j: weight[9j + i, 0, i // 3, i % 3] = 1, zeros elsewhere."""
    weights = np.zeros((9 * channels, 1, 3, 3), dtype=np.float32)
    for j in range(channels):
        for i in range(9):
            weights[9 * j + i, 0, i // 3, i % 3] = 1
    return weights


def initialize_helper_weights(net: caffe.Net) -> list[str]:
    """Set every ``concat_spixel_feat_<C>[suffix]`` layer's fixed weights; return their names.

    The other helper convolutions (``recon_feat_<C>``, the normaliser) get their
    constant-1 weights from their fillers.
    """
    names = [name for name in net.params if name.startswith(DECODER_PREFIX)]
    for name in names:
        channels = net.params[name][0].data.shape[0] // 9
        net.params[name][0].data[...] = neighbour_gather_weights(channels)
    return names


def inputs_for_data_layers(net_param: caffe_pb2.NetParameter, phase: int,
                           shapes: dict[str, tuple]) -> caffe_pb2.NetParameter:
    """A copy of ``net_param`` for ``phase`` whose Python data layers are Input layers."""
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    del out.layer[:]
    for layer in net_param.layer:
        if any(rule.HasField("phase") and rule.phase != phase for rule in layer.include):
            continue
        if layer.type == "Python" and layer.python_param.module == DATA_LAYER_MODULE:
            replacement = out.layer.add(name=layer.name, type="Input")
            replacement.top.extend(layer.top)
            for top in layer.top:
                replacement.input_param.shape.add(dim=list(shapes[top]))
            continue
        out.layer.add().CopyFrom(layer)
    return out


def write_initial_weights(net_param: caffe_pb2.NetParameter, shapes: dict[str, tuple],
                          path: os.PathLike, seed: int = 2356,
                          trained: Optional[os.PathLike] = None) -> Path:
    """Fill the TRAIN net's weights (random convs, fixed helpers) and save a .caffemodel.

    With ``trained``, the layers that .caffemodel holds (a trained feature CNN)
    replace the random ones, to fine-tune from it.
    """
    caffe.set_random_seed(seed)
    param = inputs_for_data_layers(net_param, caffe.TRAIN, shapes)
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text_format.MessageToString(param))
    try:
        net = caffe.Net(handle.name, caffe.TRAIN)
    finally:
        os.unlink(handle.name)
    initialize_helper_weights(net)
    if trained is not None:
        net.copy_from(str(trained))
    with atomic_path(path) as tmp:
        net.save(str(tmp))
    return Path(path)


def export_deploy_weights(snapshot: os.PathLike, path: os.PathLike) -> Path:
    """Save the layers of ``snapshot`` that the deploy net uses (the feature CNN) as a
    .caffemodel, checked to hold all of them; return its path.

    The snapshot's metadata file (:mod:`ssn.model_metadata`), if it has one, is
    read first (a bad one fails before anything is written) and copied beside
    the model, after it.
    """
    settings = find_settings(metadata_path(snapshot))
    config = SSNConfig(height=9, width=9, grid_request=4, num_steps=1,
                       feature_dim=settings.feature_dim if settings else DEEP_FEATURE_DIM)
    net = CheckedNet(deploy_net(config), caffe.TEST, weights=snapshot)
    with atomic_path(path) as tmp:
        net.net.save(str(tmp))
    if settings is not None:
        write_metadata(metadata_path(path), settings)
    return Path(path)
