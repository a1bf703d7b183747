"""Caffe's stock layers in Python: their blob counts, top shapes and fatal CHECKs.

:func:`stock_top_shapes` derives a stock layer's top shapes from its bottom
shapes and raises :class:`~ssn.nets.errors.NetCheckError` where Caffe's
``LayerSetUp`` or ``Reshape`` would abort (or, where this Caffe leaves a CHECK
commented out, read out of bounds). :func:`data_top_shapes` reads the shapes of
a data layer's tops from its files (HDF5Data, ImageData, Data, WindowData) or
parameters (MemoryData, the project's Python data layer), and refuses a source
that Caffe could not open. The rules follow the pinned Caffe's
``src/caffe/layers/*.cpp``; a layer type not listed here has unknown tops.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import math
from pathlib import Path
from typing import Optional, Sequence

from caffe.proto import caffe_pb2

from ssn.nets.errors import dims, fail

Shape = Optional[tuple]
UNBOUNDED = None

NEURONS = ("ReLU", "Sigmoid", "TanH", "AbsVal", "BNLL", "ELU", "Exp", "Log", "Power",
           "Dropout", "Threshold", "PReLU", "ReLU6", "HardSigmoid", "HardSwish")
# (fewest bottoms, most bottoms, fewest tops, most tops), as the layers' headers declare
# them (ExactNum/Min/Max Bottom/TopBlobs); loss layers make their top if it is missing.
BLOB_COUNTS = {
    **{kind: (1, 1, 1, 1) for kind in NEURONS},
    **{kind: (1, 1, 1, 1) for kind in (
        "Tile", "Flatten", "Reshape", "Softmax", "InnerProduct", "ArgMax", "Reduction",
        "MVN", "LRN", "BatchNorm", "Permute", "Embed")},
    "Split": (1, 1, 1, UNBOUNDED), "Slice": (1, 1, 1, UNBOUNDED),
    "Concat": (1, UNBOUNDED, 1, 1), "Eltwise": (2, UNBOUNDED, 1, 1), "Crop": (2, 2, 1, 1),
    "Scale": (1, 2, 1, 1), "Bias": (1, 2, 1, 1), "Pooling": (1, 1, 1, 2),
    "Convolution": (1, UNBOUNDED, 1, UNBOUNDED), "Deconvolution": (1, UNBOUNDED, 1, UNBOUNDED),
    "SoftmaxWithLoss": (2, 2, 0, 2), "EuclideanLoss": (2, 2, 0, 1),
    "SigmoidCrossEntropyLoss": (2, 2, 0, 1), "HingeLoss": (2, 2, 0, 1),
    "MultinomialLogisticLoss": (2, 2, 0, 1), "ContrastiveLoss": (3, 3, 0, 1),
    "Accuracy": (2, 2, 1, 2), "Silence": (1, UNBOUNDED, 0, 0),
    "Input": (0, 0, 1, UNBOUNDED), "DummyData": (0, 0, 1, UNBOUNDED),
    "HDF5Data": (0, 0, 1, UNBOUNDED), "Data": (0, 0, 1, 2), "ImageData": (0, 0, 2, 2),
    "WindowData": (0, 0, 2, 2), "MemoryData": (0, 0, 2, 2), "Python": (0, UNBOUNDED, 0, UNBOUNDED),
}
# Stock layers that Caffe registers only when built with OpenCV.
OPENCV_TYPES = ("ImageData", "WindowData", "VideoData", "AnnotatedData")
# Layers whose tops have their bottom's shape, checked no further.
SHAPE_PRESERVING = set(NEURONS) | {"Split", "MVN"}
# The project's Python data layer, whose top shapes follow from its param_str.
SSN_DATA_MODULE = "ssn.training.data_layer"


@functools.lru_cache(maxsize=1)
def known_layer_types() -> frozenset:
    """The layer types that this build of Caffe registers (``caffe.layer_type_list()``)."""
    import caffe
    return frozenset(caffe.layer_type_list())


def check_layer_type(layer: caffe_pb2.LayerParameter) -> None:
    """Refuse a type that Caffe's layer registry lacks (Caffe aborts: "Unknown layer
    type"), suggesting the nearest registered type."""
    known = known_layer_types()
    if layer.type in known:
        return
    by_case = {kind.lower(): kind for kind in known}
    close = ([by_case[layer.type.lower()]] if layer.type.lower() in by_case
             else difflib.get_close_matches(layer.type, sorted(known), n=1, cutoff=0.5))
    hint = f"did you mean '{close[0]}'?" if close else f"known types: {', '.join(sorted(known))}"
    if layer.type in OPENCV_TYPES:
        hint = "this Caffe was built without OpenCV, which it needs"
    fail(layer, f"unknown layer type '{layer.type}', which this Caffe build does not "
                f"register; {hint}")


def _count_text(low: int, high: Optional[int]) -> str:
    if high == low:
        return str(low)
    return f"at least {low}" if high is None else f"{low} to {high}"


def check_blob_counts(layer: caffe_pb2.LayerParameter) -> None:
    """Caffe's ``Layer::CheckBlobCounts`` for the stock layers of :data:`BLOB_COUNTS`."""
    if layer.type not in BLOB_COUNTS:
        return
    low_bottom, high_bottom, low_top, high_top = BLOB_COUNTS[layer.type]
    if layer.type == "Pooling" and layer.pooling_param.pool != caffe_pb2.PoolingParameter.MAX:
        high_top = 1  # only MAX pooling has a second top (the argmax mask)
    for what, count, low, high in (("bottom", len(layer.bottom), low_bottom, high_bottom),
                                   ("top", len(layer.top), low_top, high_top)):
        if count < low or (high is not None and count > high):
            fail(layer, f"takes {_count_text(low, high)} {what} blob(s), got {count}")
    if layer.type in ("Convolution", "Deconvolution") and len(layer.top) != len(layer.bottom):
        fail(layer, f"needs one top per bottom, got {len(layer.bottom)} bottoms and "
                    f"{len(layer.top)} tops")
    if layer.type in ("Reshape", "Flatten") and layer.top[0] == layer.bottom[0]:
        fail(layer, "cannot work in place: give its top another name than its bottom")


def canonical_axis(layer: caffe_pb2.LayerParameter, axis: int, shape: tuple,
                   what: str = "axis") -> int:
    """``Blob::CanonicalAxisIndex``: ``axis`` in [-ndim, ndim), counted from the end if
    negative."""
    ndim = len(shape)
    if not -ndim <= axis < ndim:
        fail(layer, f"{what} {axis} is out of range for its {ndim}-D bottom ({dims(shape)})")
    return axis % ndim


def _truncated_division(numerator: int, denominator: int) -> int:
    """C++ integer division (towards zero)."""
    quotient = abs(numerator) // abs(denominator)
    return quotient if (numerator >= 0) == (denominator > 0) else -quotient


def _per_axis(layer, values: Sequence[int], split: tuple, count: int, name: str,
              default: int) -> list:
    """A convolution's kernel/stride/pad/dilation per spatial axis: ``name`` given 0
    (default), 1 or ``count`` times, or as ``name``_h and ``name``_w (``split``)."""
    short = name.replace("_size", "")  # kernel_size, kernel_h, kernel_w
    if split is not None:
        if count != 2:
            fail(layer, f"{short}_h and {short}_w are for 2-D convolution only, this one "
                        f"has {count} spatial axes")
        if values:
            fail(layer, f"give {name} or {short}_h and {short}_w, not both")
        return list(split)
    if len(values) not in (0, 1, count) or (default is None and not values):
        allowed = "once" if count == 1 else f"once or once per spatial axis ({count})"
        fail(layer, f"{name} must be given {allowed}, got {len(values)} value(s)"
                    + (f"; or give {short}_h and {short}_w" if count == 2 else ""))
    return [values[0 if len(values) == 1 else i] if values else default for i in range(count)]


def convolution_shapes(layer, bottoms: Sequence[tuple], setup: Shape) -> list:
    """The tops of a Convolution or Deconvolution (one per bottom, all bottoms of one
    shape); ``setup`` is the first bottom's shape when the weights were shaped."""
    param = layer.convolution_param
    first = bottoms[0]
    axis = canonical_axis(layer, param.axis, first)
    spatial = len(first) - axis - 1

    def split(name):
        has_h, has_w = param.HasField(f"{name}_h"), param.HasField(f"{name}_w")
        return (getattr(param, f"{name}_h"), getattr(param, f"{name}_w")) \
            if has_h or has_w else None

    kernel = _per_axis(layer, list(param.kernel_size), split("kernel"), spatial,
                       "kernel_size", None)
    stride = _per_axis(layer, list(param.stride), split("stride"), spatial, "stride", 1)
    pad = _per_axis(layer, list(param.pad), split("pad"), spatial, "pad", 0)
    dilation = _per_axis(layer, list(param.dilation), None, spatial, "dilation", 1)
    if any(k <= 0 for k in kernel):
        fail(layer, f"kernel sizes must be positive, got {kernel} (set kernel_size, or both "
                    "kernel_h and kernel_w)")
    if any(s <= 0 for s in stride):
        fail(layer, f"strides must be positive, got {stride}")
    channels = first[axis]
    if param.num_output <= 0:
        fail(layer, "num_output must be positive")
    if param.group < 1 or channels % param.group or param.num_output % param.group:
        fail(layer, f"group {param.group} must divide both the input's {channels} channels "
                    f"and num_output {param.num_output}")
    for index, shape in enumerate(bottoms[1:], 1):
        if shape != first:
            fail(layer, f"every bottom must have the shape of the first ({dims(first)}); "
                        f"bottom {index} '{layer.bottom[index]}' is {dims(shape)}")
    if setup is not None and len(setup) == len(first) and setup[axis] != channels:
        fail(layer, f"its input has {channels} channels, but it was set up (and its weights "
                    f"shaped) for {setup[axis]}")
    sizes = []
    for size, k, s, p, d in zip(first[axis + 1:], kernel, stride, pad, dilation):
        extent = d * (k - 1) + 1
        if layer.type == "Deconvolution":
            out = s * (size - 1) + extent - 2 * p
        else:
            if extent > size + 2 * p:
                fail(layer, f"the kernel ({extent} with dilation) is larger than the padded "
                            f"input ({size} + 2 x {p}) for an input of "
                            f"{dims(first[axis + 1:])}")
            out = _truncated_division(size + 2 * p - extent, s) + 1
        if out < 1:
            fail(layer, f"gives an empty output ({out}) for an input of "
                        f"{dims(first[axis + 1:])}")
        sizes.append(out)
    return [first[:axis] + (param.num_output,) + tuple(sizes)] * len(layer.top)


def _pooling_shapes(layer, bottom: tuple) -> list:
    param = layer.pooling_param
    if len(bottom) != 4:
        fail(layer, f"needs a 4-D bottom (N x C x H x W), got {dims(bottom)}")
    has = param.HasField
    if param.global_pooling:
        if has("kernel_size") or has("kernel_h") or has("kernel_w"):
            fail(layer, "global_pooling takes no kernel size")
    elif has("kernel_size") == (has("kernel_h") and has("kernel_w")):
        fail(layer, "give kernel_size, or both kernel_h and kernel_w (not both forms)")
    for name in ("pad", "stride"):
        if not ((not has(name) and has(f"{name}_h") and has(f"{name}_w"))
                or (not has(f"{name}_h") and not has(f"{name}_w"))):
            fail(layer, f"give {name}, or both {name}_h and {name}_w (not both forms)")
    height, width = bottom[2:]
    if param.global_pooling:
        kernel = (height, width)
    elif has("kernel_size"):
        kernel = (param.kernel_size,) * 2
    else:
        kernel = (param.kernel_h, param.kernel_w)
    pad = (param.pad_h, param.pad_w) if has("pad_h") else (param.pad,) * 2
    stride = (param.stride_h, param.stride_w) if has("stride_h") else (param.stride,) * 2
    if min(kernel) <= 0:
        fail(layer, f"kernel sizes must be positive, got {kernel[0]} x {kernel[1]}")
    if min(stride) <= 0:
        fail(layer, f"strides must be positive, got {stride[0]} x {stride[1]}")
    if param.global_pooling and (any(pad) or any(s != 1 for s in stride)):
        fail(layer, "global_pooling needs pad 0 and stride 1")
    if any(pad):
        if param.pool not in (caffe_pb2.PoolingParameter.AVE, caffe_pb2.PoolingParameter.MAX):
            fail(layer, "padding is implemented for MAX and AVE pooling only")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            fail(layer, f"pad ({pad[0]} x {pad[1]}) must be smaller than the kernel "
                        f"({kernel[0]} x {kernel[1]})")
    rounding = math.ceil if param.ceil_mode else math.floor
    sizes = []
    for size, k, s, p in zip((height, width), kernel, stride, pad):
        out = int(rounding((size + 2 * p - k) / s)) + 1
        if p and (out - 1) * s >= size + p:
            out -= 1
        if out < 1:
            fail(layer, f"the {k} kernel is larger than the padded input ({size} + 2 x {p}) "
                        f"for an input of {height} x {width}: the output would be empty")
        sizes.append(out)
    return [bottom[:2] + tuple(sizes)] * len(layer.top)


def _axis_or_legacy(layer, param, legacy: str, shape: tuple, what: str) -> int:
    """The axis of a Concat or Slice: ``axis``, or its legacy field ``legacy``
    (concat_dim, slice_dim), never both, in range for ``shape``."""
    if param.HasField("axis") and param.HasField(legacy):
        fail(layer, f"give axis or {legacy}, not both")
    if not param.HasField(legacy):
        return canonical_axis(layer, param.axis, shape)
    value = getattr(param, legacy)
    if value >= len(shape):
        fail(layer, f"{legacy} {value} is out of range for its {len(shape)}-D {what}")
    return value


def _concat_shapes(layer, bottoms: Sequence[tuple]) -> list:
    first = bottoms[0]
    axis = _axis_or_legacy(layer, layer.concat_param, "concat_dim", first, "bottoms")
    for index, shape in enumerate(bottoms[1:], 1):
        if len(shape) != len(first) or shape[:axis] + shape[axis + 1:] != \
                first[:axis] + first[axis + 1:]:
            fail(layer, f"bottoms must agree on every axis but {axis}: bottom 0 "
                        f"'{layer.bottom[0]}' is {dims(first)}, bottom {index} "
                        f"'{layer.bottom[index]}' is {dims(shape)}")
    total = sum(shape[axis] for shape in bottoms)
    return [first[:axis] + (total,) + first[axis + 1:]]


def _slice_shapes(layer, shape: tuple) -> list:
    param = layer.slice_param
    axis = _axis_or_legacy(layer, param, "slice_dim", shape, "bottom")
    size, ntop = shape[axis], len(layer.top)
    points = list(param.slice_point)
    if points:
        if len(points) != ntop - 1:
            fail(layer, f"{ntop} tops need {ntop - 1} slice_point(s), got {len(points)}")
        if ntop > size:
            fail(layer, f"cannot slice axis {axis} of size {size} into {ntop} tops")
        edges = [0] + points + [size]
        if any(high <= low for low, high in zip(edges[:-2], edges[1:-1])) or points[-1] > size:
            fail(layer, f"slice points {points} must increase, from above 0 to at most the "
                        f"axis size {size} (bottom {dims(shape)})")
    else:
        if size % ntop:
            fail(layer, f"{ntop} tops do not divide axis {axis} of size {size} evenly; give "
                        "slice_point")
        edges = [size // ntop * i for i in range(ntop + 1)]
    return [shape[:axis] + (high - low,) + shape[axis + 1:]
            for low, high in zip(edges, edges[1:])]


def _crop_shapes(layer, first: tuple, reference: tuple) -> list:
    param = layer.crop_param
    axis = canonical_axis(layer, param.axis, first)
    offsets = list(param.offset)
    if len(offsets) > 1 and axis + len(offsets) != len(first):
        fail(layer, f"give one offset, or one per axis from {axis} ({len(first) - axis}), "
                    f"got {len(offsets)}")
    if len(reference) < len(first):
        fail(layer, f"the reference bottom '{layer.bottom[1]}' ({dims(reference)}) has fewer "
                    f"axes than the bottom it crops ({dims(first)})")
    for i in range(axis, len(first)):
        offset = offsets[0] if len(offsets) == 1 else offsets[i - axis] if offsets else 0
        if first[i] - offset < reference[i]:
            fail(layer, f"cannot crop {reference[i]} from axis {i} of size {first[i]} at "
                        f"offset {offset} ({dims(first)} to {dims(reference)})")
    return [first[:axis] + tuple(reference[axis:len(first)])]


def _reshape_shape(layer, shape: tuple) -> tuple:
    param = layer.reshape_param
    new = list(param.shape.dim)
    if new.count(-1) > 1:
        fail(layer, f"the new shape {new} has more than one -1 (at most one axis is inferred)")
    if any(dim < -1 for dim in new):
        fail(layer, f"the new shape {new} has a negative size other than -1")
    ndim = len(shape)
    start = param.axis if param.axis >= 0 else ndim + param.axis + 1
    if not 0 <= start <= ndim:
        fail(layer, f"axis {param.axis} is out of range for its {ndim}-D bottom")
    if param.num_axes < -1:
        fail(layer, "num_axes must be >= 0, or -1 for all")
    end = ndim if param.num_axes == -1 else start + param.num_axes
    if end > ndim:
        fail(layer, f"axis + num_axes ({end}) is beyond its {ndim}-D bottom")
    out = list(shape[:start]) + new + list(shape[end:])
    for index, dim in enumerate(new):
        if dim == 0:
            if start + index >= ndim:
                fail(layer, f"the new shape {new} copies axis {start + index} (a 0), which "
                            f"its bottom ({dims(shape)}) does not have")
            out[start + index] = shape[start + index]
    count = math.prod(shape)
    if -1 in new:
        known = math.prod(dim for index, dim in enumerate(out) if index != start + new.index(-1))
        if known == 0 or count % known:
            fail(layer, f"cannot infer the -1 of {new}: its bottom's {count} values "
                        f"({dims(shape)}) are not a multiple of {known}")
        out[start + new.index(-1)] = count // known
    if math.prod(out) != count:
        fail(layer, f"the new shape {dims(out)} holds {math.prod(out)} values, its bottom "
                    f"({dims(shape)}) {count}")
    return tuple(out)


def _scale_bias_shapes(layer, bottoms: Sequence[tuple], setup: Shape) -> list:
    param = layer.scale_param if layer.type == "Scale" else layer.bias_param
    first = bottoms[0]
    what = layer.type.lower()
    if len(bottoms) == 2:
        operand = bottoms[1]
        axis = 0 if not operand else canonical_axis(layer, param.axis, first)
        if first[axis:axis + len(operand)] != operand:
            fail(layer, f"the {what} '{layer.bottom[1]}' ({dims(operand)}) must match the "
                        f"axes from {axis} of bottom '{layer.bottom[0]}' ({dims(first)})")
        return [first]
    axis = canonical_axis(layer, param.axis, first)
    if param.num_axes < -1:
        fail(layer, "num_axes must be >= 0, or -1 to extend to the last axis")
    end = len(first) if param.num_axes == -1 else axis + param.num_axes
    if end > len(first):
        fail(layer, f"its {what} (axes {axis} to {end - 1}) extends past its "
                    f"{len(first)}-D bottom ({dims(first)})")
    if setup is not None and len(setup) == len(first) and setup[axis:end] != first[axis:end]:
        fail(layer, f"its learned {what} has shape {dims(setup[axis:end])}, the bottom "
                    f"({dims(first)}) needs {dims(first[axis:end])}")
    return [first]


def _eltwise_shapes(layer, bottoms: Sequence[tuple]) -> list:
    param = layer.eltwise_param
    if len(param.coeff) not in (0, len(bottoms)):
        fail(layer, f"takes one coeff per bottom ({len(bottoms)}), got {len(param.coeff)}")
    if param.coeff and param.operation == caffe_pb2.EltwiseParameter.PROD:
        fail(layer, "coeff is for SUM only, not PROD")
    for index, shape in enumerate(bottoms[1:], 1):
        if shape != bottoms[0]:
            fail(layer, f"bottoms must have one shape: bottom 0 '{layer.bottom[0]}' is "
                        f"{dims(bottoms[0])}, bottom {index} '{layer.bottom[index]}' is "
                        f"{dims(shape)} (this Caffe does not check and reads out of bounds)")
    return [bottoms[0]]


def _loss_shapes(layer, bottoms: Sequence[tuple]) -> list:
    kind, (first, second) = layer.type, bottoms[:2]
    if not first or not second or first[0] != second[0]:
        fail(layer, f"both bottoms need the same first axis (batch): {dims(first)} and "
                    f"{dims(second)}")
    tops = [()]
    if kind == "SoftmaxWithLoss":
        axis = canonical_axis(layer, layer.softmax_param.axis, first)
        expected = math.prod(first) // first[axis] if first[axis] else 0
        if expected != math.prod(second):
            fail(layer, f"needs one label per prediction along axis {axis} of "
                        f"{dims(first)}: {expected} labels, got {math.prod(second)} "
                        f"({dims(second)})")
        tops.append(first)
    elif kind == "EuclideanLoss" and math.prod(first[1:]) != math.prod(second[1:]):
        fail(layer, f"both bottoms need the same count per item: {dims(first)} and "
                    f"{dims(second)}")
    elif kind == "SigmoidCrossEntropyLoss" and math.prod(first) != math.prod(second):
        fail(layer, f"both bottoms need the same count: {dims(first)} and {dims(second)}")
    return tops[:max(1, len(layer.top))]


def _accuracy_shapes(layer, first: tuple, labels: tuple) -> list:
    param = layer.accuracy_param
    if not labels or math.prod(labels) == 0:
        fail(layer, f"has no labels ({dims(labels)})")
    if param.top_k > math.prod(first) // math.prod(labels):
        fail(layer, f"top_k {param.top_k} is more than the classes of {dims(first)}")
    axis = canonical_axis(layer, param.axis, first)
    if math.prod(first) // max(first[axis], 1) != math.prod(labels):
        fail(layer, f"needs one label per prediction along axis {axis} of {dims(first)}, got "
                    f"{dims(labels)}")
    return [(), (first[axis],)][:len(layer.top)]


def _argmax_shape(layer, shape: tuple) -> tuple:
    param = layer.argmax_param
    if param.top_k < 1:
        fail(layer, "top_k must be at least 1")
    if param.HasField("axis"):
        axis = canonical_axis(layer, param.axis, shape)
        if param.top_k > shape[axis]:
            fail(layer, f"top_k {param.top_k} is more than axis {axis} has ({dims(shape)})")
        return shape[:axis] + (param.top_k,) + shape[axis + 1:]
    if param.top_k > math.prod(shape[1:]):
        fail(layer, f"top_k {param.top_k} is more than the values per item of {dims(shape)}")
    return (shape[0], 2 if param.out_max_val else 1, param.top_k) + (1,) * (len(shape) - 3)


def stock_top_shapes(layer: caffe_pb2.LayerParameter, bottoms: Sequence[tuple],
                     setup: Shape = None) -> list:
    """Check a stock layer against its bottoms' shapes; return its top shapes.

    Parameters
    ----------
    layer : caffe_pb2.LayerParameter
    bottoms : sequence of tuple
        The shapes of its bottoms, all known.
    setup : tuple, optional
        The shape its first bottom had when the net was built: the layers that
        fix their weights' shape then (InnerProduct, Convolution, BatchNorm, a
        learned Scale or Bias) must see the same sizes on a later reshape.

    Returns
    -------
    list
        One shape per top; None where the layer type is not modelled here.
    """
    kind, ntop, first = layer.type, len(layer.top), bottoms[0]
    if kind in SHAPE_PRESERVING:
        return [first] * ntop
    if kind in ("Convolution", "Deconvolution"):
        return convolution_shapes(layer, bottoms, setup)
    if kind == "Pooling":
        return _pooling_shapes(layer, first)
    if kind == "Concat":
        return _concat_shapes(layer, bottoms)
    if kind == "Slice":
        return _slice_shapes(layer, first)
    if kind == "Crop":
        return _crop_shapes(layer, first, bottoms[1])
    if kind == "Reshape":
        return [_reshape_shape(layer, first)]
    if kind in ("Scale", "Bias"):
        return _scale_bias_shapes(layer, bottoms, setup)
    if kind == "Eltwise":
        return _eltwise_shapes(layer, bottoms)
    if kind in ("SoftmaxWithLoss", "EuclideanLoss", "SigmoidCrossEntropyLoss", "HingeLoss",
                "MultinomialLogisticLoss", "ContrastiveLoss"):
        return _loss_shapes(layer, bottoms)
    if kind == "Accuracy":
        return _accuracy_shapes(layer, first, bottoms[1])
    if kind == "ArgMax":
        return [_argmax_shape(layer, first)]
    if kind == "Softmax":
        canonical_axis(layer, layer.softmax_param.axis, first)
        return [first]
    if kind == "BatchNorm":
        if len(first) < 2:
            fail(layer, f"needs a bottom with a channel axis, got {dims(first)}")
        if setup is not None and len(setup) >= 2 and setup[1] != first[1]:
            fail(layer, f"its input has {first[1]} channels, it was set up for {setup[1]}")
        return [first]
    if kind == "InnerProduct":
        param = layer.inner_product_param
        axis = canonical_axis(layer, param.axis, first)
        if setup is not None and len(setup) > axis and \
                math.prod(setup[axis:]) != math.prod(first[axis:]):
            fail(layer, f"its input has {math.prod(first[axis:])} values per item "
                        f"({dims(first)}), its weights were shaped for "
                        f"{math.prod(setup[axis:])} ({dims(setup)})")
        return [first[:axis] + (param.num_output,)]
    if kind == "Flatten":
        param = layer.flatten_param
        start = canonical_axis(layer, param.axis, first)
        end = canonical_axis(layer, param.end_axis, first, "end_axis")
        if end < start:
            fail(layer, f"end_axis ({param.end_axis}) comes before axis ({param.axis})")
        return [first[:start] + (math.prod(first[start:end + 1]),) + first[end + 1:]]
    if kind == "Tile":
        param = layer.tile_param
        axis = canonical_axis(layer, param.axis, first)
        if not param.HasField("tiles") or param.tiles < 1:
            fail(layer, "tile_param.tiles must be given and positive")
        return [first[:axis] + (first[axis] * param.tiles,) + first[axis + 1:]]
    if kind == "Reduction":
        axis = canonical_axis(layer, layer.reduction_param.axis, first)
        return [first[:axis]]
    if kind == "LRN":
        if len(first) != 4:
            fail(layer, f"needs a 4-D bottom (N x C x H x W), got {dims(first)}")
        if layer.lrn_param.local_size % 2 != 1:
            fail(layer, f"local_size must be odd, got {layer.lrn_param.local_size}")
        return [first]
    if kind == "Silence":
        return []
    if kind.endswith("Loss"):
        return [()] * ntop
    return [None] * ntop


# Data layers --------------------------------------------------------------------------

def _crop(layer, shape: tuple) -> tuple:
    """A data layer's item shape (C, H, W) after its transform_param's crop."""
    param = layer.transform_param
    crop_h, crop_w = (param.crop_size,) * 2 if param.crop_size else (param.crop_h, param.crop_w)
    channels, height, width = shape
    if height < crop_h or width < crop_w:
        fail(layer, f"crop {crop_h} x {crop_w} is larger than its images ({height} x {width})")
    if param.mean_value and param.HasField("mean_file"):
        fail(layer, "give mean_file or mean_value, not both")
    if len(param.mean_value) not in (0, 1, channels):
        fail(layer, f"mean_value must be given once or once per channel ({channels}), got "
                    f"{len(param.mean_value)}")
    return (channels, crop_h or height, crop_w or width)


def _existing(layer, path: str, what: str) -> Path:
    if not path:
        fail(layer, f"has no {what}")
    if not Path(path).exists():
        fail(layer, f"{what} '{path}' does not exist (relative paths are from the working "
                    f"folder, {Path.cwd()})")
    return Path(path)


def _hdf5_shapes(layer) -> list:
    param = layer.hdf5_data_param
    if layer.HasField("transform_param"):
        fail(layer, "HDF5Data does not transform its data: remove transform_param")
    source = _existing(layer, param.source, "source list")
    try:
        files = source.read_text().split()
    except (OSError, UnicodeDecodeError) as error:
        fail(layer, f"cannot read its source list '{source}': {error}")
    if not files:
        fail(layer, f"its source list '{source}' names no HDF5 file")
    first = _existing(layer, files[0], "HDF5 file")
    try:
        import h5py
    except ImportError:
        return [None] * len(layer.top)
    shapes = []
    try:
        with h5py.File(first, "r") as handle:
            for top in layer.top:
                dataset = handle.get(top)
                if not isinstance(dataset, h5py.Dataset):
                    fail(layer, f"'{first}' has no dataset '{top}' (one per top, named as "
                                f"the top; it has {', '.join(sorted(handle)) or 'none'})")
                if dataset.ndim < 1 or dataset.dtype.kind not in "fiu":
                    fail(layer, f"dataset '{top}' of '{first}' must be numbers with at least "
                                f"one axis, got {dataset.dtype} {dataset.shape}")
                shapes.append(tuple(int(d) for d in dataset.shape))
    except OSError as error:
        fail(layer, f"cannot read the HDF5 file '{first}': {error}")
    rows = {shape[0] for shape in shapes}
    if len(rows) > 1:
        fail(layer, f"the datasets of '{first}' differ in their number of rows: "
                    + ", ".join(f"'{top}' {dims(shape)}" for top, shape in zip(layer.top, shapes)))
    return [(param.batch_size,) + shape[1:] for shape in shapes]


def _image_list(layer, param) -> list:
    source = _existing(layer, param.source, "image list")
    try:
        lines = source.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        fail(layer, f"cannot read its image list '{source}': {error}")
    if not lines:
        fail(layer, f"its image list '{source}' is empty")
    return [line.rsplit(" ", 1)[0] for line in lines]


def _image_shapes(layer) -> list:
    param = layer.image_data_param
    if (param.new_height == 0) != (param.new_width == 0) or min(param.new_height,
                                                                 param.new_width) < 0:
        fail(layer, "give both new_height and new_width (positive), or neither")
    if param.batch_size < 1:
        fail(layer, "batch_size must be positive")
    names = _image_list(layer, param)
    if param.rand_skip and param.rand_skip > len(names):
        fail(layer, f"rand_skip {param.rand_skip} is more than its {len(names)} images")
    # With shuffle or rand_skip Caffe opens any listed image first: all must exist.
    paths = [param.root_folder + name for name in
             (names if param.shuffle or param.rand_skip else names[:1])]
    missing = [path for path in paths if not Path(path).is_file()]
    if missing:
        fail(layer, f"image '{missing[0]}' does not exist" + (
            f" ({len(missing)} listed images are missing)" if len(missing) > 1 else ""))
    if param.new_height:
        height, width = param.new_height, param.new_width
    else:
        from skimage import io
        try:
            image = io.imread(paths[0])
        except Exception as error:  # imageio/PIL raise many kinds
            fail(layer, f"cannot read image '{paths[0]}': {error}")
        height, width = image.shape[:2]
    item = _crop(layer, (3 if param.is_color else 1, int(height), int(width)))
    return [(param.batch_size,) + item, (param.batch_size,)]


def _db_shapes(layer) -> list:
    """Data (LMDB or LevelDB): the source must exist; its shapes are read when the
    ``lmdb`` package is installed, else unknown."""
    param = layer.data_param
    source = _existing(layer, param.source, "database")
    if param.batch_size < 1:
        fail(layer, "batch_size must be positive")
    # Caffe opens LMDB as a folder holding data.mdb, LevelDB as one holding CURRENT.
    lmdb_backend = param.backend == caffe_pb2.DataParameter.LMDB
    marker = source / ("data.mdb" if lmdb_backend else "CURRENT")
    if not marker.is_file():
        fail(layer, f"'{source}' is not a {'LMDB' if lmdb_backend else 'LevelDB'} database "
                    f"(no {marker.name} in it)")
    if not lmdb_backend:
        return [None] * len(layer.top)
    try:
        import lmdb
    except ImportError:
        return [None] * len(layer.top)
    try:
        with lmdb.open(str(source), readonly=True, lock=False, subdir=True) as env:
            with env.begin() as txn:
                item = next(iter(txn.cursor()), None)
    except lmdb.Error as error:
        fail(layer, f"cannot open the LMDB database '{source}': {error}")
    if item is None:
        fail(layer, f"the LMDB database '{source}' is empty")
    datum = caffe_pb2.Datum.FromString(item[1])
    if datum.encoded:
        return [None] * len(layer.top)
    shape = _crop(layer, (datum.channels, datum.height, datum.width))
    return [(param.batch_size,) + shape, (param.batch_size,)][:len(layer.top)]


def _window_shapes(layer) -> list:
    param = layer.window_data_param
    source = _existing(layer, param.source, "window file")
    crop = layer.transform_param.crop_size
    if crop < 1:
        fail(layer, "WindowData needs transform_param.crop_size > 0")
    try:
        lines = source.read_text().split("\n", 4)
        channels = int(lines[2])
    except (OSError, UnicodeDecodeError, ValueError, IndexError) as error:
        fail(layer, f"'{source}' is not a window file ('# 0', image path, channels, ...): "
                    f"{error}")
    return [(param.batch_size, channels, crop, crop), (param.batch_size,)]


def _memory_shapes(layer) -> list:
    param = layer.memory_data_param
    data = (param.batch_size, param.channels, param.height, param.width)
    if math.prod(data) <= 0:
        fail(layer, f"batch_size, channels, height and width must be positive, got "
                    f"{dims(data)}")
    return [data, (param.batch_size,)]


def _python_shapes(layer) -> list:
    param = layer.python_param
    try:
        module = importlib.import_module(param.module)
    except Exception as error:  # anything the module's import raises
        fail(layer, f"cannot import python_param.module '{param.module}': "
                    f"{type(error).__name__}: {error}")
    if not isinstance(getattr(module, param.layer, None), type):
        fail(layer, f"module '{param.module}' has no class '{param.layer}' "
                    "(python_param.layer)")
    if param.module != SSN_DATA_MODULE:
        return [None] * len(layer.top)
    params = _ssn_data_params(layer)
    names = module.tops_for(params["target"])
    if len(layer.top) != len(names) or layer.bottom:
        fail(layer, f"takes no bottoms and {len(names)} tops ({', '.join(names)}), got "
                    f"{len(layer.bottom)} and {len(layer.top)}")
    channels = ((3, 1, 1, params["target_channels"]) if params["target"] == "continuous"
                else (3, 1, 1, 1, params["num_label_channels"]))
    return [(params["batch_size"], c, params["patch_height"], params["patch_width"])
            for c in channels]


def _ssn_data_params(layer) -> dict:
    """The project data layer's parameters (its DEFAULTS updated by param_str)."""
    from ssn.training.data_layer import parse_param_str
    try:
        return parse_param_str(layer.python_param.param_str)
    except ValueError as error:  # json.JSONDecodeError is one
        fail(layer, f"bad param_str: {error}")


def ssn_data_grid(layer: caffe_pb2.LayerParameter) -> Optional[tuple]:
    """The (grid_h, grid_w) the project's data layer makes its cell maps for, or None
    for any other layer."""
    if layer.type != "Python" or layer.python_param.module != SSN_DATA_MODULE:
        return None
    params = _ssn_data_params(layer)
    return int(params["grid_h"]), int(params["grid_w"])


DATA_READERS = {"HDF5Data": _hdf5_shapes, "ImageData": _image_shapes, "Data": _db_shapes,
                "WindowData": _window_shapes, "MemoryData": _memory_shapes,
                "Python": _python_shapes}


def data_top_shapes(layer: caffe_pb2.LayerParameter) -> list:
    """Top shapes of a data layer (a type of :data:`DATA_READERS`), from its source or
    parameters; None where they cannot be known without running it.

    Raises
    ------
    NetCheckError
        Where Caffe would abort: a missing source, list, file or dataset, an
        unreadable first image, a crop larger than the images, a Python module
        or class that cannot be imported, bad parameters.
    """
    return DATA_READERS[layer.type](layer)
