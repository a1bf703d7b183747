"""What each SSN layer accepts, checked before Caffe sees it.

:func:`check_layer_params` looks at one layer's parameters and blob counts
alone and raises :class:`~ssn.nets.errors.NetCheckError` where Caffe's
``LayerSetUp`` would abort. The tables here (bottom and top counts, which
bottoms hold ids, which layers read a grid or run forward only) are shared by
the other net checks; :func:`layers_for_phase` picks the layers Caffe builds
in a phase, and :func:`blob_values` reads a stored blob's numbers.
"""
from __future__ import annotations

import math

import numpy as np
from caffe.proto import caffe_pb2

from ssn.nets.errors import fail as _fail

NUM_NEIGHBOURS = 9
SUPPORTED_PIXEL_FEATURES = ("POSITION", "POSITION_AND_RGB", "RGB_AND_POSITION", "RGB")
# Bottoms that hold ids, not values, for each SSN layer type (by position).
INDEX_BOTTOMS = {
    "SpixelFeature": (1,), "Passoc": (2,), "SpixelFeature2": (2,),
    "RelToAbsIndex": (0, 1), "Smear": (1,), "LossWithoutSoftmax": (1,),
    "SlicIterations": (2,), "SpixelToPixel": (2,),
}
BOTTOM_COUNTS = {
    "PixelFeature": (1, 1), "SpixelFeature": (2, 2), "Passoc": (3, 3),
    "SpixelFeature2": (3, 3), "RelToAbsIndex": (2, 2), "Smear": (2, 2),
    "Interp": (1, 2), "LossWithoutSoftmax": (2, 2), "SlicIterations": (3, 3),
    "SpixelToPixel": (3, 3),
}
TOP_COUNTS = {
    "PixelFeature": (1, 1), "SpixelFeature": (1, 2), "Passoc": (1, 1),
    "SpixelFeature2": (1, 1), "RelToAbsIndex": (1, 1), "Smear": (1, 1),
    "Interp": (1, 1), "LossWithoutSoftmax": (1, 1), "SlicIterations": (1, 3),
    "SpixelToPixel": (1, 1),
}
# Layers that read convolution_param and convolution_output_param (relu: forward only).
CONVOLUTIONS = ("Convolution", "ConcatConvolution")
# Layers with no backward: Caffe would abort in it.
FORWARD_ONLY = ("SlicIterations",)
# Layers that read spixel_feature2_param's grid.
GRID_LAYERS = ("Passoc", "SpixelFeature2", "SlicIterations", "SpixelToPixel")
TRAIN_WITH = ("train with the decomposed Passoc, Softmax and SpixelFeature2 layers "
              "(ssn.nets.generators.slic_iterations)")


def blob_values(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A stored blob's values, flat, as float64 (from its double or float field)."""
    return np.asarray(blob.double_data if len(blob.double_data) else blob.data,
                      dtype=np.float64)


def grid_of(layer: caffe_pb2.LayerParameter) -> tuple[int, int]:
    """Superpixel grid (K_h, K_w) of a Passoc, SpixelFeature2, SlicIterations,
    SpixelToPixel or RelToAbsIndex layer."""
    if layer.type == "RelToAbsIndex":
        param = layer.rel_to_abs_index_param
        return int(param.num_spixels_h), int(param.num_spixels_w)
    param = layer.spixel_feature2_param
    return int(param.num_spixels_h), int(param.num_spixels_w)


def layers_for_phase(net_param: caffe_pb2.NetParameter, phase: int) -> list:
    """The layers of ``net_param`` that Caffe instantiates in ``phase`` (TRAIN=0, TEST=1)."""
    def included(layer):
        if layer.include:
            return any(not rule.HasField("phase") or rule.phase == phase
                       for rule in layer.include)
        return not any(rule.HasField("phase") and rule.phase == phase for rule in layer.exclude)
    return [layer for layer in net_param.layer if included(layer)]


def check_layer_params(layer: caffe_pb2.LayerParameter) -> None:
    """Raise NetCheckError if an SSN layer's parameters would abort Caffe.

    Other layer types are accepted unchanged.
    """
    kind = layer.type
    if layer.HasField("convolution_output_param") and kind not in CONVOLUTIONS:
        _fail(layer, "convolution_output_param is read by Convolution and ConcatConvolution "
                     "layers only")
    if kind == "ConcatConvolution":
        _check_concat_convolution_params(layer)
    if kind not in BOTTOM_COUNTS:
        return
    for what, names, (low, high) in (("bottom", layer.bottom, BOTTOM_COUNTS[kind]),
                                      ("top", layer.top, TOP_COUNTS[kind])):
        if not low <= len(names) <= high:
            expected = str(low) if low == high else f"{low} or {high}"
            _fail(layer, f"takes {expected} {what} blobs, got {len(names)}")
    if kind in FORWARD_ONLY and any(layer.propagate_down):
        _fail(layer, f"has no backward (it is for inference): propagate_down must be false for "
                     f"every bottom; {TRAIN_WITH}")
    for index in INDEX_BOTTOMS.get(kind, ()):
        if index < len(layer.propagate_down) and layer.propagate_down[index]:
            _fail(layer, f"cannot backpropagate to bottom {index} ('{layer.bottom[index]}'), "
                         "an index input; set propagate_down false for it")
    if kind in GRID_LAYERS:
        param = layer.spixel_feature2_param
        if not (param.HasField("num_spixels_h") and param.HasField("num_spixels_w")):
            _fail(layer, "spixel_feature2_param.num_spixels_h and num_spixels_w are required")
    if kind == "SlicIterations":
        if not layer.slic_iterations_param.HasField("num_steps"):
            _fail(layer, "slic_iterations_param.num_steps is required")
        if layer.slic_iterations_param.num_steps < 1:
            _fail(layer, f"num_steps must be at least 1, got "
                         f"{layer.slic_iterations_param.num_steps}")
    if kind in GRID_LAYERS + ("RelToAbsIndex",):
        grid_h, grid_w = grid_of(layer)
        if grid_h < 1 or grid_w < 1:
            _fail(layer, f"the superpixel grid must be at least 1x1, got {grid_h}x{grid_w}")
    if kind == "SpixelFeature":
        param = layer.spixel_feature_param
        if not param.HasField("max_spixels"):
            _fail(layer, "spixel_feature_param.max_spixels is required")
        if int(param.max_spixels) < 1:
            _fail(layer, "max_spixels must be at least 1")
    if kind == "PixelFeature":
        name = caffe_pb2.PixelFeatureParameter.Feature.Name(layer.pixel_feature_param.type)
        if name not in SUPPORTED_PIXEL_FEATURES:
            _fail(layer, f"feature type {name} is not supported "
                         f"(use one of {', '.join(SUPPORTED_PIXEL_FEATURES)})")
    if kind == "Interp":
        _check_interp_params(layer)
    if kind == "LossWithoutSoftmax":
        _check_loss_params(layer)


def _check_loss_params(layer: caffe_pb2.LayerParameter) -> None:
    option = layer.loss_without_softmax_param
    if not math.isfinite(option.shift):
        _fail(layer, f"loss_without_softmax_param.shift must be finite, got {option.shift}")
    if not (math.isfinite(option.sum_shift) and option.sum_shift > 0):
        _fail(layer, f"loss_without_softmax_param.sum_shift must be positive and finite, got "
                     f"{option.sum_shift}")


def _check_interp_params(layer: caffe_pb2.LayerParameter) -> None:
    param = layer.interp_param
    if param.pad_beg > 0 or param.pad_end > 0:
        _fail(layer, "pad_beg and pad_end must be <= 0 (they crop)")
    if param.zoom_factor < 1 or param.shrink_factor < 1:
        _fail(layer, "zoom_factor and shrink_factor must be >= 1")
    has_factor = param.HasField("zoom_factor") or param.HasField("shrink_factor")
    if not has_factor and not (param.HasField("height") and param.HasField("width")):
        _fail(layer, "set zoom_factor, shrink_factor, or both height and width")


def _check_concat_convolution_params(layer: caffe_pb2.LayerParameter) -> None:
    if not layer.bottom or len(layer.top) != 1:
        _fail(layer, f"takes at least 1 bottom blob and 1 top blob, got {len(layer.bottom)} "
                     f"and {len(layer.top)}")
    if layer.convolution_param.group != 1:
        _fail(layer, f"group must be 1 (groups would mix the bottoms' channels), got "
                     f"{layer.convolution_param.group}")
