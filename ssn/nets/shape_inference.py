"""Blob shapes through a whole net, checked layer by layer.

:func:`infer_shapes` propagates blob shapes from a net's inputs and data
layers (Input, DummyData, HDF5Data, ImageData, Data, WindowData, MemoryData,
the project's Python data layer), checking every layer's type, parameters and
bottoms on the way: the SSN layers here, Caffe's stock layers in
:mod:`ssn.nets.stock_shapes`. A layer whose tops it cannot derive (an unknown
Python layer, a rare stock type) makes them unknown, and checks that need an
unknown shape are skipped. The whole-net rules of :mod:`ssn.nets.net_rules`
(forward-only layers, one grid per cell map) run with it.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from caffe.proto import caffe_pb2

from ssn.nets.errors import dims as _dims
from ssn.nets.errors import fail as _fail
from ssn.nets.layer_params import (
    BOTTOM_COUNTS,
    NUM_NEIGHBOURS,
    check_layer_params,
    grid_of,
    layers_for_phase,
)
from ssn.nets.net_rules import check_forward_only, check_grids_agree
from ssn.nets.stock_shapes import (
    DATA_READERS,
    canonical_axis,
    check_blob_counts,
    check_layer_type,
    convolution_shapes,
    data_top_shapes,
    stock_top_shapes,
)

Shape = Optional[tuple]
# Layers whose top shapes come from their own parameters.
SOURCE_LAYERS = ("Input", "DummyData")


def concat_convolution_shapes(layer: caffe_pb2.LayerParameter, bottoms: Sequence[tuple],
                              setups: Sequence[Shape]) -> list:
    """The top of a ConcatConvolution: a Convolution's of the bottoms' concatenation along
    its channel axis (``convolution_param.axis``), on which the bottoms must agree
    otherwise. ``setups`` are the bottoms' shapes when the weights were shaped (or None):
    each bottom must keep its channel count.
    """
    first = bottoms[0]
    axis = canonical_axis(layer, layer.convolution_param.axis, first)
    for index, (shape, setup) in enumerate(zip(bottoms, setups)):
        if len(shape) != len(first) or shape[:axis] + shape[axis + 1:] != \
                first[:axis] + first[axis + 1:]:
            _fail(layer, f"bottoms must agree on every axis but the channel axis {axis}: "
                         f"bottom 0 '{layer.bottom[0]}' is {_dims(first)}, bottom {index} "
                         f"'{layer.bottom[index]}' is {_dims(shape)}")
        if setup is not None and len(setup) == len(shape) and setup[axis] != shape[axis]:
            _fail(layer, f"bottom {index} '{layer.bottom[index]}' has {shape[axis]} channels, "
                         f"but the layer was set up (and its weights shaped) for {setup[axis]}")
    channels = sum(shape[axis] for shape in bottoms)
    joined = first[:axis] + (channels,) + first[axis + 1:]
    return convolution_shapes(layer, [joined], None)


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
    # An Interp's reference bottom lends its height and width only.
    if any(shape[0] != num for shape in (bottoms[:1] if kind == "Interp" else bottoms)):
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
        if len(bottoms) == 2:
            ref_h, ref_w = bottoms[1][2:]
            if ref_h > out_h or ref_w > out_w:
                _fail(layer, f"the reference '{layer.bottom[1]}' ({_dims(bottoms[1])}) is "
                             f"larger than the interpolated {out_h} x {out_w} (from "
                             f"{height} x {width}): it can only crop")
            out_h, out_w = ref_h, ref_w
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
        elif layer.type == "ConcatConvolution":
            tops = concat_convolution_shapes(
                layer, bottoms, [(setup_shapes or {}).get(name) for name in layer.bottom])
        else:
            setup = (setup_shapes or {}).get(layer.bottom[0]) if layer.bottom else None
            tops = stock_top_shapes(layer, bottoms, setup)
        shapes.update(zip(layer.top, tops))
    check_grids_agree(net_param, phase)
    return shapes
