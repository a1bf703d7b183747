"""Checks of the ids (superpixel ids, cells, labels) that SSN layers index with.

:func:`check_index_inputs` checks the values of index maps and labels that are
fed to the net from outside; :func:`runtime_index_checks` lists the index maps
that other layers (DummyData, a Python layer) make, to check during forward
with :func:`check_index_values`.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
from caffe.proto import caffe_pb2

from ssn.nets.errors import NetCheckError
from ssn.nets.layer_params import (
    BOTTOM_COUNTS,
    GRID_LAYERS,
    NUM_NEIGHBOURS,
    grid_of,
    layers_for_phase,
)
from ssn.nets.shape_inference import infer_shapes

Shape = Optional[tuple]


def _index_limits(layer: caffe_pb2.LayerParameter, shapes: Mapping[str, Shape]) -> list:
    """(bottom index, limit, ignore value or None, what) for each index bottom."""
    kind = layer.type
    if kind == "SpixelFeature":
        param = layer.spixel_feature_param
        return [(1, int(param.max_spixels), param.ignore_idx_value, "superpixel id")]
    if kind in GRID_LAYERS:
        grid_h, grid_w = grid_of(layer)
        return [(2, grid_h * grid_w, None, "initial cell")]
    if kind == "RelToAbsIndex":
        grid_h, grid_w = grid_of(layer)
        return [(0, NUM_NEIGHBOURS, None, "neighbour channel"),
                (1, grid_h * grid_w, None, "initial cell")]
    if kind == "Smear":
        values = shapes.get(layer.bottom[0])
        if values is None:
            return []
        return [(1, math.prod(values[2:]), layer.smear_param.ignore_idx_value, "superpixel id")]
    if kind == "LossWithoutSoftmax":
        prob = shapes.get(layer.bottom[0])
        if prob is None:
            return []
        ignore = layer.loss_param.ignore_label if layer.loss_param.HasField("ignore_label") \
            else None
        axis = layer.softmax_param.axis % len(prob)
        return [(1, prob[axis], ignore, "label")]
    return []


def check_index_values(values: np.ndarray, limit: int, ignore: Optional[float],
                       where: str) -> None:
    """Raise NetCheckError unless every id is a whole number in [0, limit) or ignored."""
    ids = np.asarray(values)
    if ids.size and ids.dtype.kind in "fiu":
        # The common case in a few fast passes (NaN fails the comparisons); any
        # doubt goes to the checks below, which name the first bad value.
        low, high = ids.min(), ids.max()
        if low >= 0 and high < limit and (ids.dtype.kind != "f"
                                          or np.array_equal(np.trunc(ids), ids)):
            return
    ids = np.asarray(ids, dtype=np.float64)
    if not np.all(np.isfinite(ids)):
        raise NetCheckError(f"{where}: holds NaN or infinite values")
    fractional = ids != np.trunc(ids)
    if fractional.any():
        first = np.unravel_index(np.flatnonzero(fractional)[0], ids.shape)
        raise NetCheckError(f"{where}: {int(fractional.sum())} value(s) are not whole numbers "
                            f"(ids must be), e.g. {ids[first]:g} at index "
                            f"{tuple(int(i) for i in first)}")
    bad = (ids < 0) | (ids >= limit)
    if ignore is not None:
        bad &= ids != ignore
    if bad.any():
        first = np.unravel_index(np.flatnonzero(bad)[0], ids.shape)
        allowed = f"[0, {limit})" + (f" or {ignore:g}" if ignore is not None else "")
        raise NetCheckError(f"{where}: {int(bad.sum())} value(s) outside {allowed}, "
                            f"e.g. {ids[first]:g} at index {tuple(int(i) for i in first)}")


def check_index_inputs(net_param: caffe_pb2.NetParameter, inputs: Mapping[str, np.ndarray],
                       phase: int = 1, shapes: Optional[Mapping[str, Shape]] = None) -> None:
    """Check the ids in input arrays that feed index bottoms of SSN layers.

    Parameters
    ----------
    net_param : caffe_pb2.NetParameter
    inputs : mapping of str to ndarray
        Values about to be copied into the net's input blobs, by blob name.
    phase : int
        caffe.TRAIN (0) or caffe.TEST (1).
    shapes : mapping of str to shape, optional
        The net's blob shapes with these inputs (:func:`infer_shapes`), when known.
    """
    if shapes is None:
        shapes = infer_shapes(net_param, phase, {k: np.shape(v) for k, v in inputs.items()})
    for layer in layers_for_phase(net_param, phase):
        for index, limit, ignore, what in _index_limits(layer, shapes):
            blob = layer.bottom[index]
            if blob in inputs:
                where = f"{layer.type} layer '{layer.name}': {what}s in '{blob}'"
                check_index_values(inputs[blob], limit, ignore, where)


def runtime_index_checks(net_param: caffe_pb2.NetParameter, shapes: Mapping[str, Shape],
                         phase: int = 1) -> list:
    """Index bottoms whose values come from inside the net, to check during forward.

    Ids fed from Input blobs are checked by :func:`check_index_inputs` and ids
    that an SSN layer computes are valid by construction; any other layer
    (DummyData, a Python data layer, a Reshape in between) may produce ids the
    consuming SSN layer would abort on.

    Returns
    -------
    list of (str, list of (str, int, float or None, str))
        Per consuming layer, in net order: its name and, per bottom to check,
        (blob name, limit, ignore value, message prefix) for
        :func:`check_index_values`.
    """
    producers = {name: "Input" for name in net_param.input}
    checks = []
    for layer in layers_for_phase(net_param, phase):
        here = []
        for index, limit, ignore, what in _index_limits(layer, shapes):
            blob = layer.bottom[index]
            producer = producers.get(blob, "Input")
            if producer != "Input" and producer not in BOTTOM_COUNTS:
                here.append((blob, limit, ignore,
                             f"{layer.type} layer '{layer.name}': {what}s in '{blob}' "
                             f"(made by a {producer} layer)"))
        if here:
            checks.append((layer.name, here))
        producers.update({top: layer.type for top in layer.top})
    return checks
