"""Checks of SSN layer parameters, blob shapes and index inputs, done in Python.

Caffe reports a bad parameter or a shape mismatch with a fatal CHECK that kills
the interpreter. These checks find the same problems first and raise
:class:`NetCheckError` (a ``ValueError``) that names the layer.

* :func:`check_layer_params` looks at one layer's parameters alone.
* :func:`infer_shapes` propagates blob shapes through any net from its inputs
  and data layers (Input, DummyData, HDF5Data, ImageData, Data, WindowData,
  MemoryData, the project's Python data layer), checking every layer's type,
  parameters and bottoms on the way: the SSN layers here, Caffe's stock layers
  in :mod:`ssn.nets.stock_shapes`. A layer whose tops it cannot derive (an
  unknown Python layer, a rare stock type) makes them unknown, and checks that
  need an unknown shape are skipped. SSN layers that read one cell map must
  agree on its grid (:func:`check_grids_agree`).
* :func:`warn_positive_scale` warns about a Passoc with a positive scale_value;
  :func:`check_grid_fits` warns of an image size that a net's grid was not made for.
* :func:`check_forward_only` refuses nets that would ask a forward-only layer
  (SlicIterations) for a gradient.
* :func:`check_index_inputs` checks the values of index maps and labels that
  are fed to the net from outside; :func:`runtime_index_checks` lists the index
  maps that other layers (DummyData, a Python layer) make, to check during forward.
* :func:`check_blob_sizes` refuses a blob over Caffe's INT_MAX count and a net
  that cannot fit in the memory left, before Caffe aborts or the kernel kills.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from caffe.proto import caffe_pb2

from ssn.grid import grid_shape
from ssn.nets.errors import NetCheckError, NetTooLargeError
from ssn.nets.errors import dims as _dims
from ssn.nets.errors import fail as _fail
from ssn.nets.stock_shapes import (
    DATA_READERS,
    check_blob_counts,
    check_layer_type,
    data_top_shapes,
    ssn_data_grid,
    stock_top_shapes,
)

__all__ = ["NetCheckError", "NetTooLargeError", "infer_shapes", "check_layer_params",
           "check_forward_only", "check_index_inputs", "runtime_index_checks",
           "check_blob_sizes", "check_grid_fits", "GridFitWarning", "warn_positive_scale",
           "PositiveScaleWarning"]

Shape = Optional[tuple]

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
    "Interp": (1, 1), "LossWithoutSoftmax": (2, 2), "SlicIterations": (3, 3),
    "SpixelToPixel": (3, 3),
}
TOP_COUNTS = {
    "PixelFeature": (1, 1), "SpixelFeature": (1, 2), "Passoc": (1, 1),
    "SpixelFeature2": (1, 1), "RelToAbsIndex": (1, 1), "Smear": (1, 1),
    "Interp": (1, 1), "LossWithoutSoftmax": (1, 1), "SlicIterations": (1, 3),
    "SpixelToPixel": (1, 1),
}
# Layers whose top shapes come from their own parameters.
SOURCE_LAYERS = ("Input", "DummyData")
INT_MAX = 2**31 - 1  # Caffe counts a blob's values in an int (blob.cpp CHECKs it)
FLOAT_BYTES = 4
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


def check_layer_params(layer: caffe_pb2.LayerParameter) -> None:
    """Raise NetCheckError if an SSN layer's parameters would abort Caffe.

    Other layer types are accepted unchanged.
    """
    kind = layer.type
    if layer.HasField("convolution_output_param") and kind != "Convolution":
        _fail(layer, "convolution_output_param is read by Convolution layers only")
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


def interp_output_size(layer: caffe_pb2.LayerParameter, size: int, given: int) -> int:
    """Output length along one axis of an Interp layer for an effective input length."""
    param = layer.interp_param
    shrink, zoom = param.HasField("shrink_factor"), param.HasField("zoom_factor")

    def shrunk(n: int) -> int:
        return (n - 1) // param.shrink_factor + 1

    def zoomed(n: int) -> int:
        return n + (n - 1) * (param.zoom_factor - 1)

    if shrink and not zoom:
        return shrunk(size)
    if zoom and not shrink:
        return zoomed(size)
    if param.HasField("height") and param.HasField("width"):
        return given
    return zoomed(shrunk(size))


def _ssn_top_shapes(layer: caffe_pb2.LayerParameter, bottoms: Sequence[tuple]) -> list:
    """Check an SSN layer's bottom shapes and return its top shapes."""
    kind = layer.type
    if any(len(shape) != 4 for shape in bottoms):
        _fail(layer, f"every bottom must be 4-D (N x C x H x W), got {bottoms}")
    first = bottoms[0]
    num, channels, height, width = first
    if any(shape[0] != num for shape in bottoms):
        _fail(layer, f"bottoms differ in batch size: {bottoms}")

    def expect_map(index: int, what: str) -> None:
        shape = bottoms[index]
        if shape[1] != 1 or shape[2:] != (height, width):
            _fail(layer, f"{what} (bottom {index}) must be {num} x 1 x {height} x {width}, "
                         f"got {' x '.join(map(str, shape))}")

    if kind == "PixelFeature":
        colour = channels if layer.pixel_feature_param.type != 0 else 0
        has_position = layer.pixel_feature_param.type != 3
        return [(num, colour + 2 * has_position, height, width)]
    if kind == "SpixelFeature":
        expect_map(1, "the index map")
        out = _spixel_feature_channels(layer, channels)
        tops = [(num, out, 1, int(layer.spixel_feature_param.max_spixels))]
        return tops + [(num, out, height, width)] * (len(layer.top) - 1)
    if kind == "SlicIterations":
        grid_h, grid_w = grid_of(layer)
        expect_map(2, "the cell map")
        expected = (num, channels, 1, grid_h * grid_w)
        if bottoms[1] != expected:
            _fail(layer, f"initial superpixel features (bottom 1) must be "
                         f"{' x '.join(map(str, expected))} for a {grid_h}x{grid_w} grid "
                         f"and {channels}-channel pixel features, got "
                         f"{' x '.join(map(str, bottoms[1]))}")
        tops = [(num, 1, height, width), expected, (num, NUM_NEIGHBOURS, height, width)]
        return tops[:len(layer.top)]
    if kind in ("Passoc", "SpixelFeature2"):
        grid_h, grid_w = grid_of(layer)
        expect_map(2, "the cell map")
        if kind == "Passoc":
            expected = (num, channels, 1, grid_h * grid_w)
            if bottoms[1] != expected:
                _fail(layer, f"superpixel features (bottom 1) must be "
                             f"{' x '.join(map(str, expected))} for a {grid_h}x{grid_w} grid "
                             f"and {channels}-channel pixel features, got "
                             f"{' x '.join(map(str, bottoms[1]))}")
            return [(num, NUM_NEIGHBOURS, height, width)]
        if bottoms[1] != (num, NUM_NEIGHBOURS, height, width):
            _fail(layer, f"associations (bottom 1) must be {num} x 9 x {height} x {width}, "
                         f"got {' x '.join(map(str, bottoms[1]))}")
        return [(num, channels, 1, grid_h * grid_w)]
    if kind == "SpixelToPixel":
        grid_h, grid_w = grid_of(layer)
        if first[2:] != (1, grid_h * grid_w):
            _fail(layer, f"superpixel values (bottom 0) must be {num} x {channels} x 1 x "
                         f"{grid_h * grid_w} for a {grid_h}x{grid_w} grid, got "
                         f"{' x '.join(map(str, first))}")
        if bottoms[1][1] != NUM_NEIGHBOURS:
            _fail(layer, f"associations (bottom 1) must have {NUM_NEIGHBOURS} channels, got "
                         f"{' x '.join(map(str, bottoms[1]))}")
        height, width = bottoms[1][2:]
        if bottoms[2] != (num, 1, height, width):
            _fail(layer, f"the cell map (bottom 2) must be {num} x 1 x {height} x {width}, "
                         f"the associations' size, got {' x '.join(map(str, bottoms[2]))}")
        return [(num, channels, height, width)]
    if kind == "RelToAbsIndex":
        if channels != 1:
            _fail(layer, "the relative label (bottom 0) must have 1 channel")
        expect_map(1, "the cell map")
        return [first]
    if kind == "Smear":
        if bottoms[1][1] != 1:
            _fail(layer, "the index map (bottom 1) must have 1 channel")
        return [(num, channels) + bottoms[1][2:]]
    if kind == "Interp":
        param = layer.interp_param
        pads = param.pad_beg + param.pad_end
        out_h = interp_output_size(layer, height + pads, param.height)
        out_w = interp_output_size(layer, width + pads, param.width)
        if height + pads < 1 or width + pads < 1 or out_h < 1 or out_w < 1:
            _fail(layer, f"input {height}x{width} gives an empty output")
        return [(num, channels, out_h, out_w)]
    if kind == "LossWithoutSoftmax":
        labels = math.prod(bottoms[1])
        if labels * channels != math.prod(first):
            _fail(layer, f"needs one label per pixel: {math.prod(first) // channels} expected, "
                         f"got {labels}")
        return [()]
    raise AssertionError(kind)


def _spixel_feature_channels(layer: caffe_pb2.LayerParameter, channels: int) -> int:
    kind = layer.spixel_feature_param.type
    return {0: 2, 1: channels + 2, 2: channels + 4, 3: channels, 4: 2 * channels + 4}[kind]


def _legacy_input_shapes(net_param: caffe_pb2.NetParameter) -> dict:
    """Shapes of a net's legacy ``input:`` blobs (``input_shape`` or ``input_dim``)."""
    names = list(net_param.input)
    if net_param.input_shape:
        return {name: tuple(net_param.input_shape[min(i, len(net_param.input_shape) - 1)].dim)
                for i, name in enumerate(names)}
    dims = list(net_param.input_dim)
    return {name: tuple(dims[4 * i:4 * i + 4]) if len(dims) >= 4 * (i + 1) else None
            for i, name in enumerate(names)}


def _per_top(layer: caffe_pb2.LayerParameter, values: Sequence, what: str) -> list:
    """``values`` given once for all tops or once per top, as Caffe's CHECKs want."""
    ntop = len(layer.top)
    if len(values) not in (1, ntop):
        _fail(layer, f"{what} must be given once or once per top ({ntop}), got {len(values)}")
    return [values[0 if len(values) == 1 else i] for i in range(ntop)]


def _source_top_shapes(layer: caffe_pb2.LayerParameter) -> list:
    """Top shapes of a layer that makes data from its parameters (Input, DummyData);
    None where the parameters leave a shape open."""
    if layer.type == "Input":
        declared = list(layer.input_param.shape)
        if not declared:
            return [None] * len(layer.top)
        return [tuple(shape.dim) for shape in _per_top(layer, declared, "input_param.shape")]
    param = layer.dummy_data_param
    if len(param.data_filler) not in (0, 1, len(layer.top)):
        _fail(layer, f"data_filler must be given 0 times, once or once per top "
                     f"({len(layer.top)}), got {len(param.data_filler)}")
    legacy = [list(param.num), list(param.channels), list(param.height), list(param.width)]
    if any(legacy):
        if param.shape:
            _fail(layer, "give shape or num/channels/height/width, not both")
        columns = [_per_top(layer, values, name) for values, name in
                   zip(legacy, ("num", "channels", "height", "width"))]
        return [tuple(dims) for dims in zip(*columns)]
    if not param.shape:
        _fail(layer, "dummy_data_param needs a shape for its tops")
    return [tuple(shape.dim) for shape in _per_top(layer, list(param.shape), "shape")]


def layers_for_phase(net_param: caffe_pb2.NetParameter, phase: int) -> list:
    """The layers of ``net_param`` that Caffe instantiates in ``phase`` (TRAIN=0, TEST=1)."""
    def included(layer):
        if layer.include:
            return any(not rule.HasField("phase") or rule.phase == phase
                       for rule in layer.include)
        return not any(rule.HasField("phase") and rule.phase == phase for rule in layer.exclude)
    return [layer for layer in net_param.layer if included(layer)]


def _is_loss(layer: caffe_pb2.LayerParameter) -> bool:
    return layer.type.endswith("Loss") or any(weight != 0 for weight in layer.loss_weight)


def _loss_downstream(layers: list, index: int) -> Optional[caffe_pb2.LayerParameter]:
    """The first loss layer that depends on ``layers[index]``'s tops, or None."""
    downstream = set(layers[index].top)
    for later in layers[index + 1:]:
        if not downstream.intersection(later.bottom):
            continue
        if _is_loss(later):
            return later
        downstream.update(later.top)
    return None


def check_forward_only(net_param: caffe_pb2.NetParameter, phase: int = 1) -> None:
    """Raise NetCheckError if Caffe would call a forward-only layer's backward.

    That happens with ``force_backward``, or when a loss depends on the layer's
    tops unless its ``propagate_down`` is false for every bottom (then Caffe
    never asks it for a gradient). A Convolution with
    ``convolution_output_param.relu`` is asked whenever a loss depends on it (its
    weights want a gradient).
    """
    layers = layers_for_phase(net_param, phase)
    for index, layer in enumerate(layers):
        if layer.type == "Convolution" and layer.convolution_output_param.relu:
            what = "has convolution_output_param.relu, which is for inference (no backward)"
            how = "use a ReLU layer after the convolution to train"
            bottoms_exempt = False
        elif layer.type in FORWARD_ONLY:
            what, how = "has no backward (it is for inference)", TRAIN_WITH
            bottoms_exempt = True
        else:
            continue
        if net_param.force_backward:
            _fail(layer, f"{what}, so the net cannot set force_backward; {how}")
        if bottoms_exempt and len(layer.propagate_down) == len(layer.bottom) \
                and not any(layer.propagate_down):
            continue
        loss = _loss_downstream(layers, index)
        if loss is not None:
            stop = "set propagate_down: false for each of its bottoms, or " if bottoms_exempt \
                else ""
            _fail(layer, f"{what}, but the loss layer '{loss.name}' depends on it: {stop}{how}")


def infer_shapes(net_param: caffe_pb2.NetParameter, phase: int = 1,
                 input_shapes: Optional[Mapping[str, Sequence[int]]] = None,
                 setup_shapes: Optional[Mapping[str, Shape]] = None) -> dict:
    """Check every layer of a net and return the shape of each blob.

    Parameters
    ----------
    net_param : caffe_pb2.NetParameter
        The net, as parsed from a prototxt.
    phase : int
        caffe.TRAIN (0) or caffe.TEST (1); picks the layers that are included.
    input_shapes : mapping of str to sequence of int, optional
        Shapes of Input-layer tops that override those in the prototxt.
    setup_shapes : mapping of str to shape, optional
        The blob shapes the net was built with, when it is reshaped: layers
        whose weights took their shape then must get bottoms of that size.

    Returns
    -------
    dict
        Blob name to shape tuple, or None where a shape cannot be derived.

    Raises
    ------
    NetCheckError
        If a layer's type is unknown, its parameters, data source or its
        bottoms' shapes would abort Caffe, the SSN layers that share a cell map
        disagree on the grid, or a forward-only layer would be asked for a
        gradient.
    """
    overrides = {name: tuple(int(d) for d in shape)
                 for name, shape in (input_shapes or {}).items()}
    shapes: dict = {name: overrides.get(name, shape)
                    for name, shape in _legacy_input_shapes(net_param).items()}
    check_forward_only(net_param, phase)
    for layer in layers_for_phase(net_param, phase):
        check_layer_type(layer)
        check_layer_params(layer)
        check_blob_counts(layer)
        missing = [name for name in layer.bottom if name not in shapes]
        if missing:
            _fail(layer, f"bottom blob(s) {', '.join(missing)} are not produced by any "
                         "earlier layer")
        bottoms = [shapes[name] for name in layer.bottom]
        if layer.type in SOURCE_LAYERS or layer.type in DATA_READERS:
            if layer.type in SOURCE_LAYERS:
                tops = _source_top_shapes(layer)
            else:
                tops = data_top_shapes(layer)
            if layer.type == "Input":
                tops = [overrides.get(top, shape) for top, shape in zip(layer.top, tops)]
            for top, shape in zip(layer.top, tops):
                if shape is not None and any(dim < 0 for dim in shape):
                    _fail(layer, f"top '{top}' has a negative size: {_dims(shape)}")
        elif any(shape is None for shape in bottoms):
            tops = [None] * len(layer.top)
        elif layer.type in BOTTOM_COUNTS:
            tops = _ssn_top_shapes(layer, bottoms)
        else:
            setup = (setup_shapes or {}).get(layer.bottom[0]) if layer.bottom else None
            tops = stock_top_shapes(layer, bottoms, setup)
        shapes.update(zip(layer.top, tops))
    check_grids_agree(net_param, phase)
    return shapes


# Where each SSN layer reads the cell map (the initial grid cell of each pixel).
CELL_MAP_BOTTOM = {"Passoc": 2, "SpixelFeature2": 2, "SlicIterations": 2, "SpixelToPixel": 2,
                   "RelToAbsIndex": 1}


def _grid_layers(net_param: caffe_pb2.NetParameter, phase: int) -> list:
    """(layer, cell map blob, where the map comes from) for each layer that reads a grid.

    The source is the project's data layer (whose param_str names the grid of
    every cell map it makes) or else the blob itself, followed back through
    Split layers and in-place layers.
    """
    origin: dict = {name: name for name in net_param.input}
    found = []
    for layer in layers_for_phase(net_param, phase):
        index = CELL_MAP_BOTTOM.get(layer.type)
        if index is not None and index < len(layer.bottom):
            blob = layer.bottom[index]
            found.append((layer, blob, origin.get(blob, blob)))
        if layer.type == "Split" and layer.bottom:
            origin.update({top: origin.get(layer.bottom[0], layer.bottom[0])
                           for top in layer.top})
            continue
        grid = ssn_data_grid(layer)
        for top in layer.top:
            if top in layer.bottom:
                continue  # in place: the blob keeps its origin
            origin[top] = layer.name if grid is not None else top
    return found


def check_grids_agree(net_param: caffe_pb2.NetParameter, phase: int = 1) -> None:
    """Refuse SSN layers that read one cell map with different grids.

    A cell map holds each pixel's cell in one grid; layers that read it with
    another grid of the same cell count (10x10 and 5x20) run without error and
    give wrong neighbours. The project's data layer declares the grid of the
    maps it makes (grid_h, grid_w in its param_str).
    """
    declared: dict = {}
    for layer in layers_for_phase(net_param, phase):
        grid = ssn_data_grid(layer)
        if grid is not None:
            declared[layer.name] = (grid, layer, "makes its cell maps for")
    for layer, blob, source in _grid_layers(net_param, phase):
        grid = grid_of(layer)
        if source not in declared:
            declared[source] = (grid, layer, "reads it with")
            continue
        other_grid, other, verb = declared[source]
        if other_grid != grid:
            _fail(layer, f"reads the cell map '{blob}' with a {grid[0]}x{grid[1]} grid, but "
                         f"{other.type} layer '{other.name}' {verb} a "
                         f"{other_grid[0]}x{other_grid[1]} grid; one cell map has one grid")


class PositiveScaleWarning(UserWarning):
    """A Passoc or SlicIterations layer with a positive scale_value (SSN uses -1)."""


def warn_positive_scale(net_param: caffe_pb2.NetParameter, phase: int = 1) -> list:
    """Warn (:class:`PositiveScaleWarning`) for each Passoc or SlicIterations layer whose
    scale_value is positive: the softmax of +distance favours the farthest superpixel.
    Returns the names of those layers."""
    named = []
    for layer in layers_for_phase(net_param, phase):
        if layer.type not in ("Passoc", "SlicIterations"):
            continue
        param = layer.spixel_feature2_param
        scale = param.scale_value if param.HasField("scale_value") else 1.0
        if scale > 0:
            default = "" if param.HasField("scale_value") else ", the default"
            warnings.warn(f"{layer.type} layer '{layer.name}': scale_value is {scale:g}"
                          f"{default}; SSN needs a negative scale (scale_value: -1), or the "
                          "associations favour the farthest superpixels",
                          PositiveScaleWarning, stacklevel=3)
            named.append(layer.name)
    return named


def grid_count(grid: tuple, height: int, width: int) -> Optional[int]:
    """The smallest superpixel count for which :func:`ssn.grid.grid_shape` gives ``grid``
    on a ``height`` x ``width`` image (how the generators make a net's grid); None if
    none does."""
    grid_h, grid_w = grid
    if grid_h < 1 or grid_w < 1 or height < 1 or width < 1:
        return None
    # grid_shape's rows are isqrt(n H // W): grid_h needs n H // W in [grid_h², (grid_h+1)²).
    low = max(1, grid_h * grid_w, (grid_h * grid_h * width) // height)
    high = ((grid_h + 1) ** 2 * width) // height + 2
    return next((n for n in range(low, high + 1)
                 if grid_shape(n, height, width) == (grid_h, grid_w)), None)


class GridFitWarning(UserWarning):
    """A net's grid (and position scale) made for images of another size or aspect."""


def check_grid_fits(net_param: caffe_pb2.NetParameter, declared: Mapping[str, Shape],
                    shapes: Mapping[str, Shape], phase: int = 1) -> None:
    """Warn (:class:`GridFitWarning`) of an image size that a net's grid was not made for.

    A net generated for H x W images (its Input shapes) has the grid that
    :func:`ssn.grid.grid_shape` gives for that size; fed an image of another
    aspect (a portrait image to a landscape net) its cells are no longer those
    the generators would make (their position scale neither). The check applies
    when the grid fits the declared size and not the new one; a net whose grid
    was never derived from its input size is left alone. A warning, not an error:
    the labels are valid superpixels of elongated cells, and a net may be reshaped
    on purpose (one built net serves any size), but they are not what
    :func:`ssn.inference.superpixels` gives for that image.
    """
    for layer, blob, _ in _grid_layers(net_param, phase):
        before, now = declared.get(blob), shapes.get(blob)
        if before is None or now is None or len(before) != 4 or len(now) != 4:
            continue
        if before[2:] == now[2:]:
            continue
        grid = grid_of(layer)
        (height0, width0), (height, width) = before[2:], now[2:]
        count = grid_count(grid, height0, width0)
        if count is not None and grid_count(grid, height, width) is None:
            warnings.warn(
                f"{layer.type} layer '{layer.name}': its {grid[0]}x{grid[1]} grid was made "
                f"for {width0}x{height0} (W x H) images and does not fit a {width}x{height} "
                "image (its cells would not be those of a grid made for it); make a net for "
                f"this size: ssn-make-prototxt --out DIR --deploy-height {height} "
                f"--deploy-width {width} --deploy-n-spixels {count}, or call "
                f"ssn.inference.superpixels(image, n_segments={count}, grid='original'), "
                "which builds one per image size",
                GridFitWarning, stacklevel=3)


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


def _convolution_buffer(layer: caffe_pb2.LayerParameter, bottom: Shape, top: Shape) -> Shape:
    """Shape of a Convolution layer's im2col buffer, which Caffe reshapes (and so
    checks against INT_MAX) even when a faster path never fills it."""
    if bottom is None or top is None or len(bottom) != 4:
        return None
    param = layer.convolution_param
    kernel = ((param.kernel_h, param.kernel_w) if param.kernel_h
              else (list(param.kernel_size) or [1]) * 2)
    return (bottom[1] * kernel[0] * kernel[-1],) + tuple(top[2:])


def available_memory() -> Optional[int]:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit.

    None when neither can be read (not Linux).
    """
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes",
                                    "memory/memory.usage_in_bytes")):
        try:
            limit = Path("/sys/fs/cgroup", limit_file).read_text().strip()
            usage = Path("/sys/fs/cgroup", usage_file).read_text().strip()
        except OSError:
            continue
        if limit.isdigit() and usage.isdigit() and int(limit) < 2**60:
            limits.append(max(0, int(limit) - int(usage)))
        break
    return min(limits) if limits else None


def check_blob_sizes(net_param: caffe_pb2.NetParameter, shapes: Mapping[str, Shape],
                     phase: int = 1, held: Optional[Mapping[str, Shape]] = None) -> int:
    """Refuse blobs Caffe cannot hold, before Caffe sees them.

    Caffe aborts when a blob would hold more than INT_MAX values (``blob size
    exceeds INT_MAX``), and when an allocation fails; on Linux a net larger
    than the memory left is usually killed by the kernel instead.

    Parameters
    ----------
    net_param : caffe_pb2.NetParameter
    shapes : mapping of str to shape
        Blob shapes, as :func:`infer_shapes` gives them (None where unknown).
    phase : int
    held : mapping of str to shape, optional
        Shapes the net holds already (when reshaping): only growth is new memory.

    Returns
    -------
    int
        The bytes the known blobs need (a lower bound: unknown shapes and
        layers' internal buffers are not counted).

    Raises
    ------
    NetTooLargeError
        Naming the blob and its size, if a blob exceeds INT_MAX values or the
        blobs need more than :func:`available_memory`.
    """
    for layer in layers_for_phase(net_param, phase):
        sized = [(f"top '{top}'", shapes.get(top)) for top in layer.top]
        if layer.type == "Convolution" and layer.bottom and layer.top:
            sized.append(("its im2col buffer", _convolution_buffer(
                layer, shapes.get(layer.bottom[0]), shapes.get(layer.top[0]))))
        for what, shape in sized:
            if shape is not None and math.prod(shape) > INT_MAX:
                raise NetTooLargeError(
                    f"{layer.type} layer '{layer.name}': {what} would be {_dims(shape)} = "
                    f"{math.prod(shape):,} values, over Caffe's limit of {INT_MAX:,} per blob "
                    "(INT_MAX); use a smaller input")
    known = {name: math.prod(shape) for name, shape in shapes.items() if shape is not None}
    needed = FLOAT_BYTES * sum(known.values())
    before = {name: math.prod(shape) for name, shape in (held or {}).items()
              if shape is not None}
    growth = FLOAT_BYTES * sum(max(0, count - before.get(name, 0))
                               for name, count in known.items())
    free = available_memory()
    if free is not None and growth > free:
        largest = sorted(known, key=known.get, reverse=True)[:3]
        raise NetTooLargeError(
            f"the net's blobs need {needed / 2**30:.1f} GiB ({growth / 2**30:.1f} GiB more "
            f"than now), only {free / 2**30:.1f} GiB of memory is available; largest: "
            + ", ".join(f"'{name}' {_dims(shapes[name])}" for name in largest))
    return needed
