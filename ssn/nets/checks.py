"""Checks of SSN layer parameters, blob shapes and index inputs, done in Python.

Caffe reports a bad parameter or a shape mismatch with a fatal CHECK that kills
the interpreter. These checks find the same problems first and raise
:class:`NetCheckError` (a ``ValueError``) that names the layer.

* :func:`check_layer_params` looks at one layer's parameters alone.
* :func:`infer_shapes` propagates blob shapes through a net from its inputs,
  checking every SSN layer's bottoms on the way. Shapes of the standard layers
  SSN nets use are derived too; a layer type it does not know makes its tops
  unknown, and checks that need an unknown shape are skipped.
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
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np
from caffe.proto import caffe_pb2

Shape = Optional[tuple]

NUM_NEIGHBOURS = 9
SUPPORTED_PIXEL_FEATURES = ("POSITION", "POSITION_AND_RGB", "RGB_AND_POSITION", "RGB")
# Bottoms that hold ids, not values, for each SSN layer type (by position).
INDEX_BOTTOMS = {
    "SpixelFeature": (1,), "Passoc": (2,), "SpixelFeature2": (2,),
    "RelToAbsIndex": (0, 1), "Smear": (1,), "LossWithoutSoftmax": (1,),
    "SlicIterations": (2,),
}
BOTTOM_COUNTS = {
    "PixelFeature": (1, 1), "SpixelFeature": (2, 2), "Passoc": (3, 3),
    "SpixelFeature2": (3, 3), "RelToAbsIndex": (2, 2), "Smear": (2, 2),
    "Interp": (1, 1), "LossWithoutSoftmax": (2, 2), "SlicIterations": (3, 3),
}
TOP_COUNTS = {
    "PixelFeature": (1, 1), "SpixelFeature": (1, 2), "Passoc": (1, 1),
    "SpixelFeature2": (1, 1), "RelToAbsIndex": (1, 1), "Smear": (1, 1),
    "Interp": (1, 1), "LossWithoutSoftmax": (1, 1), "SlicIterations": (1, 3),
}
# Layers whose top shapes come from their own parameters.
SOURCE_LAYERS = ("Input", "DummyData", "MemoryData")
INT_MAX = 2**31 - 1  # Caffe counts a blob's values in an int (blob.cpp CHECKs it)
FLOAT_BYTES = 4
# Layers with no backward: Caffe would abort in it.
FORWARD_ONLY = ("SlicIterations",)
# Layers that read spixel_feature2_param's grid.
GRID_LAYERS = ("Passoc", "SpixelFeature2", "SlicIterations")
TRAIN_WITH = ("train with the decomposed Passoc, Softmax and SpixelFeature2 layers "
              "(ssn.nets.generators.slic_iterations)")
SHAPE_PRESERVING = {
    "ReLU", "BatchNorm", "Softmax", "Power", "Sigmoid", "TanH", "Dropout", "Scale",
    "Bias", "Eltwise", "Exp", "Log", "AbsVal", "BNLL", "ELU", "PReLU", "Split",
}


class NetCheckError(ValueError):
    """A net's parameters, shapes or inputs would make Caffe abort."""


class NetTooLargeError(NetCheckError, MemoryError):
    """A blob over Caffe's INT_MAX count, or a net larger than the memory left.

    Both a ``ValueError`` (a :class:`NetCheckError`) and a ``MemoryError``.
    """


def blob_values(blob: caffe_pb2.BlobProto) -> np.ndarray:
    """A stored blob's values, flat, as float64 (from its double or float field)."""
    return np.asarray(blob.double_data if len(blob.double_data) else blob.data,
                      dtype=np.float64)


def _fail(layer: caffe_pb2.LayerParameter, message: str) -> None:
    raise NetCheckError(f"{layer.type} layer '{layer.name}': {message}")


def grid_of(layer: caffe_pb2.LayerParameter) -> tuple[int, int]:
    """Superpixel grid (K_h, K_w) of a Passoc, SpixelFeature2, SlicIterations or
    RelToAbsIndex layer."""
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


def _conv_like(param, height: int, width: int, pooling: bool) -> tuple[int, int]:
    def pick(repeated, single_h, single_w, default):
        if single_h or single_w:
            return single_h, single_w
        values = list(repeated) if not isinstance(repeated, int) else [repeated]
        values = values or [default]
        return values[0], values[-1]

    if pooling:
        kernel = (param.kernel_h, param.kernel_w) if param.kernel_h else (param.kernel_size,) * 2
        stride = (param.stride_h, param.stride_w) if param.stride_h else (param.stride,) * 2
        pad = (param.pad_h, param.pad_w) if param.pad_h or param.pad_w else (param.pad,) * 2
        if param.global_pooling:
            return 1, 1
        sizes = []
        for size, k, s, p in zip((height, width), kernel, stride, pad):
            out = int(math.ceil((size + 2 * p - k) / s)) + 1
            if p and (out - 1) * s >= size + p:
                out -= 1
            sizes.append(out)
        return tuple(sizes)
    kernel = pick(param.kernel_size, param.kernel_h, param.kernel_w, 1)
    stride = pick(param.stride, param.stride_h, param.stride_w, 1)
    pad = pick(param.pad, param.pad_h, param.pad_w, 0)
    dilation = pick(param.dilation, 0, 0, 1)
    return tuple((size + 2 * p - (d * (k - 1) + 1)) // s + 1
                 for size, k, s, p, d in zip((height, width), kernel, stride, pad, dilation))


def _standard_top_shapes(layer: caffe_pb2.LayerParameter, bottoms: Sequence[tuple]) -> list:
    """Top shapes of the standard Caffe layers SSN nets use; None where unknown."""
    kind, ntop = layer.type, len(layer.top)
    if kind in SHAPE_PRESERVING:
        return [bottoms[0]] * ntop
    if kind == "Convolution":
        num, _, height, width = bottoms[0]
        return [(num, layer.convolution_param.num_output)
                + _conv_like(layer.convolution_param, height, width, pooling=False)]
    if kind == "Pooling":
        num, channels, height, width = bottoms[0]
        return [(num, channels) + _conv_like(layer.pooling_param, height, width, pooling=True)]
    if kind == "Concat":
        axis = layer.concat_param.axis % len(bottoms[0])
        total = sum(shape[axis] for shape in bottoms)
        return [bottoms[0][:axis] + (total,) + bottoms[0][axis + 1:]]
    if kind == "Crop":
        axis = layer.crop_param.axis % len(bottoms[0])
        return [bottoms[0][:axis] + bottoms[1][axis:]]
    if kind == "Tile":
        axis = layer.tile_param.axis % len(bottoms[0])
        shape = list(bottoms[0])
        shape[axis] *= layer.tile_param.tiles
        return [tuple(shape)]
    if kind == "Slice":
        return _slice_shapes(layer, bottoms[0])
    if kind == "Reshape":
        return [_reshape_shape(layer, bottoms[0])]
    if kind == "ArgMax" and layer.argmax_param.HasField("axis"):
        axis = layer.argmax_param.axis % len(bottoms[0])
        return [bottoms[0][:axis] + (layer.argmax_param.top_k,) + bottoms[0][axis + 1:]]
    if kind.endswith("Loss"):
        return [()] * ntop
    return [None] * ntop


def _slice_shapes(layer: caffe_pb2.LayerParameter, shape: tuple) -> list:
    axis = layer.slice_param.axis % len(shape)
    points = list(layer.slice_param.slice_point)
    if not points:
        step = shape[axis] // len(layer.top)
        points = [step * (i + 1) for i in range(len(layer.top) - 1)]
    edges = [0] + points + [shape[axis]]
    return [shape[:axis] + (high - low,) + shape[axis + 1:] for low, high in zip(edges, edges[1:])]


def _reshape_shape(layer: caffe_pb2.LayerParameter, shape: tuple) -> tuple:
    dims = list(layer.reshape_param.shape.dim)
    out = [shape[i] if dim == 0 else dim for i, dim in enumerate(dims)]
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        out[out.index(-1)] = math.prod(shape) // max(known, 1)
    return tuple(out)


def _dims(shape: Sequence[int]) -> str:
    return " x ".join(str(int(d)) for d in shape) if len(shape) else "a scalar"


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
    """Top shapes of a layer that makes data from its parameters (Input, DummyData,
    MemoryData); None where the parameters leave a shape open."""
    if layer.type == "Input":
        declared = list(layer.input_param.shape)
        if not declared:
            return [None] * len(layer.top)
        return [tuple(shape.dim) for shape in _per_top(layer, declared, "input_param.shape")]
    if layer.type == "MemoryData":
        param = layer.memory_data_param
        data = (param.batch_size, param.channels, param.height, param.width)
        return [data, (param.batch_size, 1, 1, 1)][:len(layer.top)]
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
                 input_shapes: Optional[Mapping[str, Sequence[int]]] = None) -> dict:
    """Check every SSN layer of a net and return the shape of each blob.

    Parameters
    ----------
    net_param : caffe_pb2.NetParameter
        The net, as parsed from a prototxt.
    phase : int
        caffe.TRAIN (0) or caffe.TEST (1); picks the layers that are included.
    input_shapes : mapping of str to sequence of int, optional
        Shapes of Input-layer tops that override those in the prototxt.

    Returns
    -------
    dict
        Blob name to shape tuple, or None where a shape cannot be derived.

    Raises
    ------
    NetCheckError
        If a layer's parameters or its bottoms' shapes would abort Caffe, or a
        forward-only layer would be asked for a gradient.
    """
    overrides = {name: tuple(int(d) for d in dims) for name, dims in (input_shapes or {}).items()}
    shapes: dict = {name: overrides.get(name, shape)
                    for name, shape in _legacy_input_shapes(net_param).items()}
    check_forward_only(net_param, phase)
    for layer in layers_for_phase(net_param, phase):
        check_layer_params(layer)
        if layer.type in SOURCE_LAYERS:
            tops = _source_top_shapes(layer)
            if layer.type == "Input":
                tops = [overrides.get(top, shape) for top, shape in zip(layer.top, tops)]
            for top, shape in zip(layer.top, tops):
                if shape is not None and any(dim < 0 for dim in shape):
                    _fail(layer, f"top '{top}' has a negative size: {_dims(shape)}")
            shapes.update(zip(layer.top, tops))
            continue
        missing = [name for name in layer.bottom if name not in shapes]
        if missing:
            _fail(layer, f"bottom blob(s) {', '.join(missing)} are not produced by any "
                         "earlier layer")
        bottoms = [shapes[name] for name in layer.bottom]
        if any(shape is None for shape in bottoms):
            tops = [None] * len(layer.top)
        elif layer.type in BOTTOM_COUNTS:
            tops = _ssn_top_shapes(layer, bottoms)
        else:
            tops = _standard_top_shapes(layer, bottoms)
        shapes.update(zip(layer.top, tops))
    return shapes


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
