"""The feature CNN on overlapping tiles, so that deep features of any image size fit.

The deploy net's CNN holds about 540 floats per pixel (the original layout,
``fused_cnn=False``: 950, and a 1773-channel im2col shape in its last
convolution that Caffe checks against INT_MAX), so a whole large image does not
fit. :func:`tiled_features` runs the CNN alone
(:func:`ssn.nets.generators.feature_net`) on tiles that overlap by the CNN's
receptive radius (:func:`receptive_field`) and start on multiples of its
pooling stride, so that every stitched value is the untiled net's (up to float
summation order): each tile's core sees the same pixels, the same pooling grid
and the same image-border padding as in the whole image.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Iterator, Optional, Sequence

import caffe
import numpy as np
from caffe.proto import caffe_pb2

from ssn.channels import position_and_values
from ssn.device import current_device
from ssn.nets.cache import net_lock
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import COLOR_SCALE, FEATURES, PIXEL_FEATURES, feature_net

# Tiles of at most this many input pixels (core and margins): the feature net then holds
# about 0.9 GiB (1.5 GiB in the original layout, whose last convolution's 1773-channel
# im2col shape stays far below INT_MAX).
TILE_PIXELS = 640 * 640
# Layers that keep each pixel where it is.
POINTWISE = {"BatchNorm", "Scale", "ReLU", "PReLU", "Sigmoid", "TanH", "Power", "Dropout",
             "Bias", "AbsVal"}


def _pair(repeated, single_h: int, single_w: int, default: int) -> tuple[int, int]:
    if single_h or single_w:
        return single_h, single_w
    values = list(repeated) or [default]
    return values[0], values[-1]


def _windowed(layer: caffe_pb2.LayerParameter, field: tuple[int, int, int]
              ) -> tuple[int, int, int]:
    """The (radius, stride, coarsest stride) of a Convolution's, ConcatConvolution's or
    Pooling's output whose input has ``field``."""
    radius, stride, coarsest = field
    pooling = layer.type == "Pooling"
    param = layer.pooling_param if pooling else layer.convolution_param
    if pooling:
        kernel = (param.kernel_h, param.kernel_w) if param.kernel_h else (
            (param.kernel_size,) * 2)
        pad = (param.pad_h, param.pad_w) if param.pad_h else (param.pad,) * 2
        step = (param.stride_h, param.stride_w) if param.stride_h else (
            (param.stride,) * 2)
        dilation = (1, 1)
    else:
        kernel = _pair(param.kernel_size, param.kernel_h, param.kernel_w, 1)
        pad = _pair(param.pad, param.pad_h, param.pad_w, 0)
        step = _pair(param.stride, param.stride_h, param.stride_w, 1)
        dilation = _pair(param.dilation, 0, 0, 1)
    if kernel[0] != kernel[1] or pad[0] != pad[1] or step[0] != step[1]:
        raise ValueError(f"{layer.type} '{layer.name}' is not square")
    reach = max(pad[0], dilation[0] * (kernel[0] - 1) - pad[0])
    return radius + reach * stride, stride * step[0], max(coarsest, stride * step[0])


def receptive_field(net_param: caffe_pb2.NetParameter, source: str = PIXEL_FEATURES,
                    output: str = FEATURES) -> tuple[int, int]:
    """(radius, stride) of ``output`` over ``source``: each output pixel depends on input
    pixels at most ``radius`` rows or columns away, and the coarsest layer in between
    samples every ``stride``-th pixel.

    Walks the layers: a k x k convolution or pooling at stride s adds
    ``max(pad, k - 1 - pad) * s`` (with dilation d: ``d (k - 1) / 2 * s``);
    bilinear ``Interp`` adds one coarse sample, s (a reference bottom, which sets its
    size only, adds nothing); ``Crop`` (offset 0) and point-wise layers add nothing;
    ``Concat`` takes the widest bottom, and ``ConcatConvolution`` convolves that.

    Raises
    ------
    ValueError
        A layer whose reach this does not know, or no path from ``source``.
    """
    fields = {source: (0, 1, 1)}  # blob -> (radius, its sampling stride, coarsest stride)
    for layer in net_param.layer:
        bottoms = [fields.get(name) for name in layer.bottom]
        if not layer.bottom or all(field is None for field in bottoms):
            continue
        if layer.type in ("Concat", "ConcatConvolution"):
            known = [field for field in bottoms if field is not None]
            strides = {field[1] for field in known}
            if len(strides) != 1:
                raise ValueError(f"{layer.type} '{layer.name}' joins blobs of strides "
                                 f"{strides}")
            field = (max(f[0] for f in known), strides.pop(), max(f[2] for f in known))
            if layer.type == "ConcatConvolution":
                field = _windowed(layer, field)
        elif None in bottoms[:1]:
            raise ValueError(f"{layer.type} '{layer.name}' reads a blob not from {source}")
        else:
            radius, stride, coarsest = bottoms[0]
            if layer.type in POINTWISE or layer.type == "Crop":
                if layer.type == "Crop" and any(layer.crop_param.offset):
                    raise ValueError(f"Crop '{layer.name}' has an offset")
                field = bottoms[0]
            elif layer.type in ("Convolution", "Pooling"):
                field = _windowed(layer, bottoms[0])
            elif layer.type == "Interp":
                zoom = layer.interp_param.zoom_factor
                if stride % zoom or layer.interp_param.shrink_factor != 1:
                    raise ValueError(f"Interp '{layer.name}' does not undo a stride")
                field = (radius + stride, stride // zoom, coarsest)
            else:
                raise ValueError(f"cannot tell the receptive field of {layer.type} "
                                 f"'{layer.name}'")
        for top in layer.top:
            fields[top] = field
    if output not in fields:
        raise ValueError(f"'{output}' does not depend on '{source}'")
    radius, _, coarsest = fields[output]
    return radius, coarsest


def feature_margin(feature_dim: int) -> tuple[int, int]:
    """(margin, stride) of the feature CNN: the receptive radius rounded up to the
    pooling stride, and the stride that tile offsets keep."""
    radius, stride = receptive_field(feature_net(64, 64, feature_dim))
    return stride * math.ceil(radius / stride), stride


def tile_core(size: int, limit: int, stride: int) -> int:
    """The core length of the tiles across ``size`` pixels, a multiple of ``stride`` of at
    most ``limit``, with the tiles as even as that allows."""
    limit = max(stride, limit - limit % stride)
    count = math.ceil(size / limit)
    return min(limit, stride * math.ceil(size / count / stride))


def spans(size: int, core: int, margin: int) -> Iterator[tuple[int, int, int, int]]:
    """(core start, core stop, input start, input stop) of the tiles across ``size``."""
    for start in range(0, size, core):
        stop = min(size, start + core)
        yield start, stop, max(0, start - margin), min(size, stop + margin)


def pixel_feature_array(lab: np.ndarray, pos_scale: float,
                        color_scale: float = COLOR_SCALE) -> np.ndarray:
    """[ps*y, ps*x, cs*L, cs*a, cs*b], 5 x H x W float32, from a 3 x H x W Lab image:
    :func:`ssn.channels.position_and_values` at one colour scale."""
    return position_and_values(np.asarray(lab, np.float32), pos_scale,
                               np.full(3, color_scale, np.float32))


# One only: it holds about 1.5 GB once used.
@lru_cache(maxsize=1)
def _feature_net(height: int, width: int, feature_dim: int, weights: str,
                 weights_identity: Optional[tuple] = None, device: int = -1) -> CheckedNet:
    """The feature CNN for tiles of up to ``height`` x ``width``; it reshapes to each
    tile (Caffe keeps the largest blobs). Keyed on the weights file's identity and the
    device it runs on (:func:`ssn.device.current_device`)."""
    return CheckedNet(feature_net(height, width, feature_dim), caffe.TEST, weights=weights,
                      fold_batch_norm=True, fold_relu=True)


def tiled_features(pixel_feats: np.ndarray, weights: str, feature_dim: int,
                   tile: Optional[Sequence[int]] = None, margin: Optional[int] = None,
                   out: Optional[np.ndarray] = None,
                   weights_identity: Optional[tuple] = None) -> np.ndarray:
    """The feature CNN's ``trans_features`` of a whole image, computed tile by tile.

    Parameters
    ----------
    pixel_feats : ndarray, 5 x H x W float32
        :func:`pixel_feature_array` of the whole image (positions count from its
        top-left corner, so tiles see the positions the whole image has).
    weights : str
        A trained SSN .caffemodel.
    feature_dim : int
        Channels of the result (the net's 5 + learned).
    tile : (int, int), optional
        Core height and width of a tile, multiples of the pooling stride; default:
        even tiles of at most :data:`TILE_PIXELS` input pixels with their margins.
    margin : int, optional
        Overlap on each side, a multiple of the stride; default: the CNN's receptive
        radius rounded up (:func:`feature_margin`), with which tiles equal the whole.
    out : ndarray, feature_dim x H x W float32, optional
        Where to write (for example a net's input blob), to hold the result once.

    Returns
    -------
    ndarray, feature_dim x H x W float32
        ``out`` if given.

    Notes
    -----
    Safe to call from several threads: they take turns with the cached net
    (:func:`ssn.nets.cache.net_lock`).
    """
    channels, height, width = pixel_feats.shape
    if channels != 5:
        raise ValueError(f"pixel features must have 5 channels, got {channels}")
    needed, stride = feature_margin(feature_dim)
    margin = needed if margin is None else margin
    if tile is None:
        limit = math.isqrt(TILE_PIXELS)
        side = max(stride, limit - 2 * margin)
        tile = (tile_core(height, side, stride), tile_core(width, side, stride))
        # One net for all images (it reshapes to each tile): built for the largest tile.
        largest = (max(limit, side + 2 * margin),) * 2
    else:
        largest = (tile[0] + 2 * margin, tile[1] + 2 * margin)
    core_h, core_w = tile
    if core_h % stride or core_w % stride or margin % stride or min(core_h, core_w) < 1:
        raise ValueError(f"tiles {core_h}x{core_w} with margin {margin} must be positive "
                         f"multiples of the CNN's stride {stride}")
    if out is None:
        out = np.empty((feature_dim, height, width), np.float32)
    elif out.shape != (feature_dim, height, width):
        raise ValueError(f"out has shape {out.shape}, expected "
                         f"{(feature_dim, height, width)}")
    with net_lock():  # the cached net is one set of blobs: one thread at a time
        net = _feature_net(min(height, largest[0]), min(width, largest[1]), feature_dim,
                           str(weights), weights_identity, current_device())
        for top, bottom, in_top, in_bottom in spans(height, core_h, margin):
            for left, right, in_left, in_right in spans(width, core_w, margin):
                piece = pixel_feats[None, :, in_top:in_bottom, in_left:in_right]
                feats = net.forward(outputs=[], **{PIXEL_FEATURES: piece})
                del feats
                result = net.net.blobs[FEATURES].data[0]
                out[:, top:bottom, left:right] = result[:, top - in_top:bottom - in_top,
                                                        left - in_left:right - in_left]
    return out
