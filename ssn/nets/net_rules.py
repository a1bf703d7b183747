"""Rules about a whole net rather than one layer.

* :func:`check_forward_only` refuses nets that would ask a forward-only layer
  (SlicIterations, a convolution with a fused ReLU) for a gradient.
* :func:`check_grids_agree` refuses SSN layers that read one cell map with
  different grids.
* :func:`warn_positive_scale` warns about a Passoc with a positive scale_value;
  :func:`check_grid_fits` warns of an image size that a net's grid was not made for.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Optional

from caffe.proto import caffe_pb2

from ssn.grid import grid_shape
from ssn.nets.errors import fail as _fail
from ssn.nets.layer_params import (
    CONVOLUTIONS,
    FORWARD_ONLY,
    TRAIN_WITH,
    grid_of,
    layers_for_phase,
)
from ssn.nets.stock_shapes import ssn_data_grid

Shape = Optional[tuple]

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
    never asks it for a gradient). A Convolution or ConcatConvolution with
    ``convolution_output_param.relu`` is asked whenever a loss depends on it (its
    weights want a gradient).
    """
    layers = layers_for_phase(net_param, phase)
    for index, layer in enumerate(layers):
        if layer.type in CONVOLUTIONS and layer.convolution_output_param.relu:
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
