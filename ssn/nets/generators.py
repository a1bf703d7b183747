"""NetSpec generators for the SSN networks (docs/LAYERS.md#networks-training-and-post-processing).

Layer and parameter names follow the original release (``Convolution1..7``,
``BatchNorm1..6``, ``init_spixel_feat``, ``Passoc1..T``, ``spixel_feat1..T-1``,
``final_pixel_assoc``, ``new_spix_indices``, ...) so weights trained for it load
by name. The label loss's decoder is one SpixelToPixel layer and its
renormalisation is done inside its LossWithoutSoftmax; the original's chains
(``concat_spixel_feat_50``, ``recon_feat_50``, ..., ``Convolution10``,
``recon_label3``) are kept behind ``SSNConfig.fused_decoder=False``.

:func:`train_net` and :func:`deploy_net` give the TRAIN/TEST net and the deploy
net of one configuration; the pieces (:func:`cnn_features`,
:func:`slic_iterations`, :func:`fused_slic_iterations`, :func:`hard_assignment`,
:func:`compactness_loss`, :func:`label_loss`) compose other networks, such as
the two halves of a deploy net that :mod:`ssn.tiling` runs on large images:
:func:`feature_net` (the CNN alone, on one tile) and :func:`slic_net` (SLIC on
precomputed features).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Optional, Union

import caffe
from caffe import layers as L
from caffe import params as P
from caffe.proto import caffe_pb2

from ssn.grid import Grid, grid_shape

# Test-time input scaling (docs/LAYERS.md#input-scaling): one superpixel spans 1/p_scale units.
TEST_POSITION_SCALE = 0.4
TRAIN_POSITION_SCALE = 0.25
COLOR_SCALE = 0.26
# SpixelFeature settings used for the initial superpixel features.
INIT_IGNORE_INDEX = -10
INIT_IGNORE_FEATURE = 255
CNN_WIDTH = 64
LABEL_IGNORE = 255
# The label loss's renormalisation: p_c = (r_c + LABEL_SHIFT) / (sum of those + LABEL_SUM_SHIFT).
LABEL_SHIFT = 1e-10
LABEL_SUM_SHIFT = 1e-12
DATA_LAYER_MODULE = "ssn.training.data_layer"
DATA_LAYER_CLASS = "BSDSDataLayer"


# Channels of the learned pixel features (the CNN's output) in the shipped model.
DEEP_FEATURE_DIM = 20
TARGETS = ("labels", "continuous")
# How a continuous target is scored in training (see continuous_loss).
CONTINUOUS_LOSSES = ("soft", "expected")
# Weight of the continuous reconstruction loss, a sum of squares over pixels like
# the compactness term's (docs/EXPERIMENTS.md, the synthetic-flow example, says how).
CONTINUOUS_WEIGHT = 1e-4


class _GridRequestAlias(type):
    """Takes ``n_spixels=``, the deprecated name of ``grid_request=``, when a config
    (or a subclass, or :func:`dataclasses.replace`) is made."""

    def __call__(cls, *args, n_spixels: Optional[int] = None, **kwargs):
        if n_spixels is not None:
            if kwargs.get("grid_request", n_spixels) != n_spixels:
                raise TypeError("give grid_request or its deprecated alias n_spixels, not both")
            warnings.warn("n_spixels= is deprecated: it is the count the grid is made for, "
                          "grid_request=", DeprecationWarning, stacklevel=2)
            kwargs["grid_request"] = n_spixels
        return super().__call__(*args, **kwargs)


@dataclass
class SSNConfig(metaclass=_GridRequestAlias):
    """What one SSN network computes.

    Attributes
    ----------
    height, width : int
        Image (or training patch) size.
    grid_request : int
        The count the initial grid is made for: K_h x K_w <= grid_request cells
        (:func:`ssn.grid.grid_shape`,
        docs/LAYERS.md#initial-cell-map); not the number of superpixels that come
        out after connectivity. ``n_spixels``: its deprecated alias, as a keyword
        and an attribute.
    num_steps : int
        Differentiable SLIC iterations (>= 1).
    feature_dim : int
        Channels of the pixel features that SLIC sees: 5 (position and Lab)
        plus the learned ones. 5 means the pixel-feature mode (no CNN).
    pos_scale, color_scale : float
        Input scaling of positions and Lab values.
    compactness_weight, color_weight, label_weight : float
        Loss weights of the position, colour and label-reconstruction terms.
    num_label_channels : int
        One-hot ground-truth channels of the label loss.
    target : str
        "labels" (the label loss) or "continuous" (:func:`continuous_loss`
        on a ``target`` blob of ``target_channels`` channels, weighted by
        ``target_weight``, instead).
    target_channels : int
    target_weight : float
    continuous_loss : str
        "soft" or "expected": the terms of :func:`continuous_loss`.
    batch_size : int
        Images per TRAIN batch.
    data : dict
        Extra parameters of the Python data layer (data root, split lists, seed).
    fused : bool
        Deploy nets run the SLIC iterations and the hard assignment as one
        forward-only ``SlicIterations`` layer (:func:`fused_slic_iterations`)
        instead of the decomposed layers; the labels are the same up to float
        rounding. Train nets always use the decomposed, differentiable layers.
    fused_decoder : bool
        Train nets rebuild per-pixel values from superpixel values (the label
        and continuous losses) with one ``SpixelToPixel`` layer, and the label
        loss renormalises each pixel's reconstruction inside its
        LossWithoutSoftmax (``normalize``). False: the original's layers for
        both: the chain of a fixed 3x3 gather convolution, Smear, Tile, Eltwise
        PROD and a 1x1 sum convolution (:func:`mix_superpixel_values`), the
        same values with nine times larger intermediates, and the normaliser
        chain of :func:`label_loss` (Power, ReLU, a fixed 1x1 sum convolution,
        Power -1, Tile, Eltwise PROD).
    fused_cnn : bool
        The feature CNN's upsampled branches come out of ``Interp`` at the
        input's size (a reference bottom instead of a ``Crop``), and its last
        convolution, ``Convolution7``, is one ``ConcatConvolution`` of the four
        branches instead of a ``Concat`` and a ``Convolution``: the same
        weights (by name and shape) and outputs up to float rounding, without
        the 197-channel concatenation and the cropped copies (see
        :func:`cnn_features`). False: the original's layout.
    association : bool
        Deploy and SLIC nets also keep the last step's soft association
        (:data:`ASSOCIATION`, N x 9 x H x W) and the superpixel features it was
        computed from (:func:`centres_blob`, N x C x 1 x K): the fused layer
        gets its two optional tops; the decomposed layers have these blobs anyway.
    """

    height: int = 201
    width: int = 201
    grid_request: int = 100
    num_steps: int = 5
    feature_dim: int = 20
    pos_scale: float = TRAIN_POSITION_SCALE
    color_scale: float = COLOR_SCALE
    compactness_weight: float = 1e-5
    color_weight: float = 0.0
    label_weight: float = 1.0
    num_label_channels: int = 50
    target: str = "labels"
    target_channels: int = 2
    target_weight: float = CONTINUOUS_WEIGHT
    continuous_loss: str = "soft"
    batch_size: int = 6
    data: dict = field(default_factory=dict)
    fused: bool = True
    fused_decoder: bool = True
    fused_cnn: bool = True
    association: bool = False

    def __post_init__(self) -> None:
        if self.num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {self.num_steps}")
        if self.feature_dim < 5:
            raise ValueError(f"feature_dim must be >= 5 (position and Lab), "
                             f"got {self.feature_dim}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.continuous_loss not in CONTINUOUS_LOSSES:
            raise ValueError(f"continuous_loss must be one of {CONTINUOUS_LOSSES}, "
                             f"got {self.continuous_loss!r}")
        if self.target_channels < 1:
            raise ValueError(f"target_channels must be >= 1, got {self.target_channels}")
        if min(self.height, self.width) < 1 or self.grid_request < 1:
            raise ValueError("height, width and grid_request must be positive")
        grid_h, grid_w = grid_shape(self.grid_request, self.height, self.width)
        if grid_h > self.height or grid_w > self.width:
            raise ValueError(f"{self.grid_request} superpixels need a {grid_h}x{grid_w} grid, "
                             f"more cells than the {self.height}x{self.width} image has pixels")

    @property
    def grid(self) -> tuple[int, int]:
        """(K_h, K_w) of :attr:`grid_request` on this size."""
        return grid_shape(self.grid_request, self.height, self.width)

    def for_grid(self, grid: Optional[Grid]) -> Grid:
        """``grid`` if it is this config's (a ValueError otherwise); None: the grid of
        :attr:`grid_request` on this size."""
        if grid is None:
            return Grid.for_request(self.grid_request, self.height, self.width)
        if grid.request != self.grid_request:
            raise ValueError(f"the grid was made for {grid.request} cells, the config for "
                             f"{self.grid_request}")
        return grid

    @property
    def uses_cnn(self) -> bool:
        return self.feature_dim > 5



def _deprecated_n_spixels(config: SSNConfig) -> int:
    """Deprecated alias of :attr:`SSNConfig.grid_request`."""
    return config.grid_request


SSNConfig.n_spixels = property(_deprecated_n_spixels)

def position_scale(grid: Union[Grid, int], height: int, width: int,
                   p_scale: float = TEST_POSITION_SCALE) -> float:
    """Scale of pixel coordinates at test time: max(K_h / (p H), K_w / (p W)), for a
    :class:`ssn.grid.Grid` or the count a grid is made for."""
    grid_h, grid_w = grid if isinstance(grid, Grid) else grid_shape(grid, height, width)
    return max(grid_h / (p_scale * height), grid_w / (p_scale * width))


def pixel_features(net: caffe.NetSpec, image, pos_scale: float,
                   color_scale: float = COLOR_SCALE):
    """[ps*y, ps*x, cs*L, cs*a, cs*b] from a Lab image (layer ``pixel_features``)."""
    net.pixel_features = L.PixelFeature(image, pixel_feature_param=dict(
        type=P.PixelFeature.POSITION_AND_RGB, pos_scale=pos_scale, color_scale=color_scale))
    return net.pixel_features


def _conv_bn_relu(net: caffe.NetSpec, bottom, index: int):
    """Convolution{i} (3x3, 64) -> BatchNorm{i} -> ReLU{i} in place; returns BatchNorm{i}."""
    conv = L.Convolution(bottom, num_output=CNN_WIDTH, kernel_size=3, pad=1, stride=1,
                         weight_filler=dict(type="gaussian", std=0.001),
                         bias_filler=dict(type="constant", value=0),
                         param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    net[f"Convolution{index}"] = conv
    # BatchNorm's statistics are not learned (its three blobs get no gradient).
    net[f"BatchNorm{index}"] = L.BatchNorm(conv, param=[dict(lr_mult=0)] * 3)
    net[f"ReLU{index}"] = L.ReLU(net[f"BatchNorm{index}"], in_place=True)
    return net[f"BatchNorm{index}"]


def _max_pool(bottom):
    return L.Pooling(bottom, pool=P.Pooling.MAX, kernel_size=3, stride=2, pad=1)


def _upsampled(net: caffe.NetSpec, index: int, coarse, zoom: int, reference, fused: bool):
    """``coarse`` zoomed by ``zoom`` (``Interp{index}``) to the size of ``reference``.

    Fused: the Interp takes ``reference`` as its second bottom (for its shape only,
    ``propagate_down`` false). Otherwise ``Crop{index}`` crops the Interp's output.
    """
    interp = dict(zoom_factor=zoom)
    if fused:
        net[f"Interp{index}"] = L.Interp(coarse, reference, interp_param=interp,
                                         propagate_down=[True, False])
        return net[f"Interp{index}"]
    net[f"Interp{index}"] = L.Interp(coarse, interp_param=interp)
    net[f"Crop{index}"] = L.Crop(net[f"Interp{index}"], reference, crop_param=dict(axis=2))
    return net[f"Crop{index}"]


def cnn_features(net: caffe.NetSpec, features, out_dim: int, fused: bool = True):
    """The feature CNN (docs/LAYERS.md#the-feature-cnn): ``trans_features`` = [features, learned].

    ``out_dim`` learned channels (the original: 15) follow the input channels.
    ``Convolution7`` (3x3, ``out_dim`` outputs) sees the channel concatenation of
    ``features``, ``conv2`` and the two upsampled branches (5 + 3 x 64 channels),
    which Interp brings to the size of ``features``.

    With ``fused`` (the default), each Interp takes ``features`` as a reference
    bottom for its output size (no gradient goes to it) and ``Convolution7`` is
    one ``ConcatConvolution`` of the four blobs. Otherwise the original's
    layout: Interp, ``Crop1``/``Crop2`` to ``conv2``'s size, ``Concat1``, then a
    ``Convolution``. Both have the same parameter blobs under the same names, so
    one set of weights serves either.
    """
    conv2 = _conv_bn_relu(net, _conv_bn_relu(net, features, 1), 2)
    net.Pooling1 = _max_pool(conv2)
    conv4 = _conv_bn_relu(net, _conv_bn_relu(net, net.Pooling1, 3), 4)
    reference = features if fused else conv2
    branch4 = _upsampled(net, 1, conv4, 2, reference, fused)
    net.Pooling2 = _max_pool(conv4)
    conv6 = _conv_bn_relu(net, _conv_bn_relu(net, net.Pooling2, 5), 6)
    branch6 = _upsampled(net, 2, conv6, 4, reference, fused)
    conv7 = dict(convolution_param=dict(num_output=out_dim, kernel_size=3, pad=1, stride=1,
                                        weight_filler=dict(type="gaussian", std=0.001),
                                        bias_filler=dict(type="constant", value=0)),
                 param=[dict(lr_mult=1, decay_mult=1), dict(lr_mult=2, decay_mult=0)])
    if fused:
        net.Convolution7 = L.ConcatConvolution(features, conv2, branch4, branch6, **conv7)
    else:
        net.Concat1 = L.Concat(features, conv2, branch4, branch6)
        net.Convolution7 = L.Convolution(net.Concat1, **conv7)
    net.ReLU7 = L.ReLU(net.Convolution7, in_place=True)
    net.trans_features = L.Concat(features, net.Convolution7)
    return net.trans_features


def _slic_grid(grid_h: int, grid_w: int) -> dict:
    return dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1.0)


def initial_spixel_features(net: caffe.NetSpec, features, feat_spixel_init, num_spixels: int):
    """S^0, the mean feature of each initial cell (layer ``init_spixel_feat``)."""
    net.init_spixel_feat = L.SpixelFeature(
        features, feat_spixel_init, propagate_down=[True, False],
        spixel_feature_param=dict(type=P.SpixelFeature.AVGRGB, rgb_scale=1.0,
                                  ignore_idx_value=INIT_IGNORE_INDEX,
                                  ignore_feature_value=INIT_IGNORE_FEATURE,
                                  max_spixels=num_spixels))
    return net.init_spixel_feat


def slic_iterations(net: caffe.NetSpec, features, spixel_init, feat_spixel_init,
                    grid_h: int, grid_w: int, num_steps: int):
    """Differentiable SLIC: ``num_steps`` associations and ``num_steps - 1`` updates.

    Returns the final association blob ``final_pixel_assoc`` (N x 9 x H x W).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    grid = _slic_grid(grid_h, grid_w)
    spixel_feat = initial_spixel_features(net, features, feat_spixel_init, grid_h * grid_w)
    for step in range(1, num_steps + 1):
        assoc = L.Passoc(features, spixel_feat, spixel_init, spixel_feature2_param=grid,
                         propagate_down=[True, True, False])
        net[f"Passoc{step}"] = assoc
        if step == num_steps:
            net.final_pixel_assoc = L.Softmax(assoc)
            return net.final_pixel_assoc
        # In place: Passoc's backward reads only its top's diff, and Softmax's
        # backward only its own output, so the distances need no blob of their own.
        net[f"Softmax{step}"] = L.Softmax(assoc, in_place=True)
        spixel_feat = L.SpixelFeature2(features, net[f"Softmax{step}"], spixel_init,
                                       spixel_feature2_param=grid,
                                       propagate_down=[True, True, False])
        net[f"spixel_feat{step}"] = spixel_feat
    raise AssertionError("unreachable")


def fused_slic_iterations(net: caffe.NetSpec, features, spixel_init, feat_spixel_init,
                          grid_h: int, grid_w: int, num_steps: int, association: bool = False):
    """Inference-only SLIC in one ``SlicIterations`` layer (named ``slic_iterations``).

    The same ``init_spixel_feat`` as :func:`slic_iterations`, then all
    ``num_steps`` steps and the hard assignment in one layer, which has no
    backward (its ``propagate_down`` is false). Returns its top
    ``new_spix_indices``: the labels of :func:`slic_iterations` followed by
    :func:`hard_assignment`, up to float rounding. With ``association`` the
    layer also writes :data:`FUSED_CENTRES` (S^(T-1), N x C x 1 x K) and
    :data:`ASSOCIATION` (Q_T, N x 9 x H x W), the decomposed net's
    ``spixel_feat<T-1>`` and ``final_pixel_assoc``.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    init = initial_spixel_features(net, features, feat_spixel_init, grid_h * grid_w)
    tops = L.SlicIterations(
        features, init, spixel_init, name="slic_iterations",
        spixel_feature2_param=_slic_grid(grid_h, grid_w),
        slic_iterations_param=dict(num_steps=num_steps), propagate_down=[False] * 3,
        ntop=3 if association else 1)
    if association:
        net.new_spix_indices, net[FUSED_CENTRES], net[ASSOCIATION] = tops
    else:
        net.new_spix_indices = tops
    return net.new_spix_indices


# The last SLIC step's soft association, N x 9 x H x W (both kinds of net).
ASSOCIATION = "final_pixel_assoc"
# The superpixel features Q_T was computed from, S^(T-1), in a fused net.
FUSED_CENTRES = "final_spixel_feat"


def centres_blob(num_steps: int, fused: bool) -> str:
    """The blob of S^(T-1), the superpixel features (N x C x 1 x K) that the last
    association :data:`ASSOCIATION` was computed from, in a deploy or SLIC net."""
    if fused:
        return FUSED_CENTRES
    return f"spixel_feat{num_steps - 1}" if num_steps > 1 else "init_spixel_feat"


def hard_assignment(net: caffe.NetSpec, assoc, spixel_init, grid_h: int, grid_w: int):
    """Superpixel id per pixel: argmax channel mapped to its grid cell (``new_spix_indices``)."""
    net.ArgMax1 = L.ArgMax(assoc, argmax_param=dict(axis=1), propagate_down=[False])
    net.new_spix_indices = L.RelToAbsIndex(
        net.ArgMax1, spixel_init, propagate_down=[False, False],
        rel_to_abs_index_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    return net.new_spix_indices


def compactness_loss(net: caffe.NetSpec, pixel_feats, assoc, spixel_init, hard_labels,
                     grid_h: int, grid_w: int, position_weight: float, color_weight: float):
    """Euclidean losses between each pixel's position/colour and its superpixel's (5.4)."""
    grid = dict(num_spixels_h=grid_h, num_spixels_w=grid_w)
    net.new_spixel_feat = L.SpixelFeature2(pixel_feats, assoc, spixel_init,
                                           spixel_feature2_param=grid,
                                           propagate_down=[False, True, False])
    net.recon_feat2 = L.Smear(net.new_spixel_feat, hard_labels, propagate_down=[True, False])
    net.Slice1, net.Slice2 = L.Slice(net.recon_feat2, slice_param=dict(axis=1, slice_point=2),
                                     ntop=2)
    net.Slice3, net.Slice4 = L.Slice(pixel_feats, slice_param=dict(axis=1, slice_point=2),
                                     ntop=2, propagate_down=[False])
    net.loss1 = L.EuclideanLoss(net.Slice1, net.Slice3, loss_weight=position_weight,
                                propagate_down=[True, False])
    net.loss2 = L.EuclideanLoss(net.Slice2, net.Slice4, loss_weight=color_weight,
                                propagate_down=[True, False])
    return net.loss1, net.loss2


def reconstruct_through_assoc(net: caffe.NetSpec, values, assoc, spixel_init, grid_h: int,
                              grid_w: int, channels: int, spixel_name: str = "spixel_label",
                              fused: bool = True):
    """Per-pixel values rebuilt from superpixel means, R* = Q (Q^T R).

    The label loss's reconstruction (docs/LAYERS.md#the-label-losss-decoder).

    SpixelFeature2 averages ``values`` (N x C x H x W) over each superpixel
    (top ``spixel_name``, N x C x 1 x K) and :func:`mix_superpixel_values` hands
    each pixel the association mix of its 9 neighbours' means. Returns
    ``Convolution9`` (N x C x H x W), by one SpixelToPixel layer or, with
    ``fused=False``, the original's chain.
    """
    grid = dict(num_spixels_h=grid_h, num_spixels_w=grid_w)
    net[spixel_name] = L.SpixelFeature2(values, assoc, spixel_init,
                                        spixel_feature2_param=grid,
                                        propagate_down=[False, True, False])
    return mix_superpixel_values(net, net[spixel_name], assoc, spixel_init, grid_h, grid_w,
                                 channels, fused=fused)


def mix_superpixel_values(net: caffe.NetSpec, spixel_values, assoc, spixel_init, grid_h: int,
                          grid_w: int, channels: int, suffix: str = "", fused: bool = True):
    """Each pixel's association-weighted mix of its 9 neighbour superpixels' values.

    ``spixel_values`` is N x C x 1 x K and ``assoc`` N x 9 x H x W; returns an
    N x C x H x W blob, top[k, p] = sum_i Q[i, p] S[k, nb(p, i)], named
    ``Convolution9`` plus ``suffix`` (the original's name).

    By default one ``SpixelToPixel`` layer, ``spixel_to_pixel_<C><suffix>``,
    computes it. It has no weights, and its name is none of the chain's, so
    weights saved from a net with the chain load into it (Caffe skips the
    chain's layers).

    With ``fused=False`` the original's chain does (blobs ``Reshape1``, ...,
    ``Convolution9`` plus ``suffix``): a fixed grouped convolution gathers each
    superpixel's 3x3 neighbours, Smear hands them to the pixels of its initial
    cell, and each pixel mixes them by its tiled association, through four
    9C-channel intermediates. The chain's fixed one-hot weights of
    ``concat_spixel_feat_<C><suffix>`` come from Caffe's ``neighbour_gather``
    filler (a patch of ours), so the prototxt alone defines the net.
    """
    if fused:
        mixed = L.SpixelToPixel(
            spixel_values, assoc, spixel_init, name=f"spixel_to_pixel_{channels}{suffix}",
            propagate_down=[True, True, False],
            spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
        net["Convolution9" + suffix] = mixed
        return mixed
    num_spixels = grid_h * grid_w
    frozen = [dict(lr_mult=0, decay_mult=0)]
    reshaped = L.Reshape(spixel_values, reshape_param=dict(
        shape=dict(dim=[0, channels, grid_h, grid_w])))
    net["Reshape1" + suffix] = reshaped
    name = f"concat_spixel_feat_{channels}{suffix}"
    gathered = L.Convolution(
        reshaped, name=name, num_output=9 * channels, kernel_size=3, pad=1,
        group=channels, bias_term=False, weight_filler=dict(type="neighbour_gather"),
        param=[dict(name=name, lr_mult=0, decay_mult=0)])
    net["Convolution8" + suffix] = gathered
    flat = L.Reshape(gathered, reshape_param=dict(
        shape=dict(dim=[0, 9 * channels, 1, num_spixels])))
    net["Reshape2" + suffix] = flat
    smeared = L.Smear(flat, spixel_init, propagate_down=[True, False])
    net["Smear1" + suffix] = smeared
    tiled = L.Tile(assoc, tile_param=dict(axis=1, tiles=channels))
    net["Tile1" + suffix] = tiled
    weighted = L.Eltwise(smeared, tiled, eltwise_param=dict(operation=P.Eltwise.PROD))
    net["Eltwise1" + suffix] = weighted
    mixed = L.Convolution(
        weighted, name=f"recon_feat_{channels}{suffix}", num_output=channels,
        kernel_size=1, group=channels, bias_term=False,
        weight_filler=dict(type="constant", value=1), param=frozen)
    net["Convolution9" + suffix] = mixed
    return mixed


def label_loss(net: caffe.NetSpec, problabel, label, assoc, spixel_init, grid_h: int,
               grid_w: int, num_channels: int, weight: float, fused: bool = True):
    """Cross-entropy of the labels reconstructed through the superpixels, R* = Q (Q^T R).

    Each pixel's reconstruction (ReLU'd) is renormalised over its channels,
    p_c = (r_c + 1e-10) / (sum_c max(r_c + 1e-10, 0) + 1e-12), before -log p_label.
    By default one SpixelToPixel layer reconstructs and ``loss3``, a
    LossWithoutSoftmax with ``loss_without_softmax_param.normalize``, renormalises
    and scores. ``fused=False`` gives the original's layers for both: the decoder chain,
    whose fixed weights (``concat_spixel_feat_<C>``) come from the ``neighbour_gather``
    filler (see :func:`mix_superpixel_values`), and the normaliser chain (Power, ReLU, a
    fixed 1x1 sum convolution ``Convolution10``, Power -1, Tile, Eltwise PROD).
    """
    recon = reconstruct_through_assoc(net, problabel, assoc, spixel_init, grid_h, grid_w,
                                      num_channels, fused=fused)
    net.recon_label = L.ReLU(recon, in_place=True)
    loss_param = dict(ignore_label=LABEL_IGNORE)
    if fused:
        net.loss3 = L.LossWithoutSoftmax(
            net.recon_label, label, loss_weight=weight, loss_param=loss_param,
            loss_without_softmax_param=dict(normalize=True, shift=LABEL_SHIFT,
                                            sum_shift=LABEL_SUM_SHIFT),
            propagate_down=[True, False])
        return net.loss3
    frozen = [dict(lr_mult=0, decay_mult=0)]
    net.recon_label2 = L.Power(recon, power_param=dict(shift=LABEL_SHIFT))
    # normalize(): divide by the (ReLU'd) channel sum.
    net.ReLU8 = L.ReLU(net.recon_label2)
    net.Convolution10 = L.Convolution(
        net.ReLU8, num_output=1, kernel_size=1, weight_filler=dict(type="constant", value=1),
        bias_filler=dict(type="constant", value=0), param=frozen * 2)
    net.Power1 = L.Power(net.Convolution10, power_param=dict(power=-1, shift=LABEL_SUM_SHIFT))
    net.Tile2 = L.Tile(net.Power1, tile_param=dict(axis=1, tiles=num_channels))
    net.recon_label3 = L.Eltwise(net.recon_label2, net.Tile2,
                                 eltwise_param=dict(operation=P.Eltwise.PROD))
    net.loss3 = L.LossWithoutSoftmax(net.recon_label3, label, loss_weight=weight,
                                     loss_param=loss_param, propagate_down=[True, False])
    return net.loss3


def continuous_loss(net: caffe.NetSpec, target, assoc, spixel_init, grid_h: int, grid_w: int,
                    channels: int, weight: float, kind: str = "soft", pixels: int = 1,
                    fused: bool = True):
    """L2 loss of a continuous target rebuilt through the superpixels.

    ``loss3`` is the soft reconstruction error: ``recon_target`` = Q (Q^T T),
    :func:`reconstruct_through_assoc` of the target T (N x C x H x W), and
    EuclideanLoss gives sum (recon - T)^2 / (2N), times ``weight``. Invalid
    neighbours have zero association, so each pixel's reconstruction is a
    convex mix of superpixel means: no renormalisation.

    With ``kind="expected"`` a second term, ``loss_spread``, adds the spread of
    the means each pixel mixes, sum_ij q_ij |mu_j - recon_i|^2 / (2N), so that
    the two together are the expected error of rebuilding each pixel from a
    single superpixel's mean drawn by its association: sum_ij q_ij |T_i - mu_j|^2
    / (2N). The soft term alone rewards blending neighbouring means (a smooth
    target is interpolated well by blurred associations) while hard
    superpixels, which inference produces, cannot blend. ``pixels`` is H*W of
    the training patch (the spread is a mean over N*H*W values, rescaled).
    ``fused`` picks the reconstruction (see :func:`mix_superpixel_values`).
    """
    if kind not in CONTINUOUS_LOSSES:
        raise ValueError(f"continuous loss must be one of {CONTINUOUS_LOSSES}, got {kind!r}")
    recon = reconstruct_through_assoc(net, target, assoc, spixel_init, grid_h, grid_w,
                                      channels, spixel_name="spixel_target", fused=fused)
    net.recon_target = L.Power(recon)  # an identity, to name the reconstruction
    net.loss3 = L.EuclideanLoss(net.recon_target, target, loss_weight=weight,
                                propagate_down=[True, False])
    if kind == "expected":
        _spread_loss(net, assoc, spixel_init, grid_h, grid_w, channels, weight, pixels, fused)
    return net.loss3


def _channel_sum_of_squares(net: caffe.NetSpec, name: str, values, channels: int):
    """|values|^2 over channels: N x C x ... -> N x 1 x ... (fixed 1x1 convolution)."""
    frozen = [dict(lr_mult=0, decay_mult=0)]
    net[name + "_sq"] = L.Eltwise(values, values, eltwise_param=dict(operation=P.Eltwise.PROD))
    net[name] = L.Convolution(net[name + "_sq"], num_output=1, kernel_size=1, bias_term=False,
                              weight_filler=dict(type="constant", value=1), param=frozen)
    return net[name]


def _spread_loss(net: caffe.NetSpec, assoc, spixel_init, grid_h: int, grid_w: int,
                 channels: int, weight: float, pixels: int, fused: bool = True):
    """``loss_spread`` = sum_i (sum_j q_ij |mu_j|^2 - |recon_i|^2) / (2N), times ``weight``."""
    means_norm = _channel_sum_of_squares(net, "spixel_target_norm", net.spixel_target, channels)
    mixed_norm = mix_superpixel_values(net, means_norm, assoc, spixel_init, grid_h, grid_w, 1,
                                       suffix="_norm", fused=fused)
    recon_norm = _channel_sum_of_squares(net, "recon_target_norm", net.recon_target, channels)
    net.spread = L.Eltwise(mixed_norm, recon_norm,
                           eltwise_param=dict(operation=P.Eltwise.SUM, coeff=[1, -1]))
    net.loss_spread = L.Reduction(net.spread, loss_weight=weight, reduction_param=dict(
        operation=P.Reduction.MEAN, axis=0, coeff=pixels / 2.0))


def _features(net: caffe.NetSpec, config: SSNConfig, image):
    feats = pixel_features(net, image, config.pos_scale, config.color_scale)
    if config.uses_cnn:
        return feats, cnn_features(net, feats, config.feature_dim - 5, config.fused_cnn)
    return feats, feats


def _data_param(config: SSNConfig, phase: str) -> str:
    grid_h, grid_w = config.grid
    param = dict(phase=phase, batch_size=config.batch_size, patch_height=config.height,
                 patch_width=config.width, grid_h=grid_h, grid_w=grid_w,
                 num_label_channels=config.num_label_channels)
    if config.target == "continuous":
        param.update(target=config.target, target_channels=config.target_channels)
    param.update(config.data)
    return json.dumps(param, sort_keys=True)


DATA_TOPS = ("img", "spixel_init", "feat_spixel_init", "label", "problabel")
CONTINUOUS_DATA_TOPS = ("img", "spixel_init", "feat_spixel_init", "target")


def _data_layer(config: SSNConfig, phase: str, hdf5_source: Optional[str]):
    include = dict(phase=caffe.TRAIN if phase == "train" else caffe.TEST)
    tops = CONTINUOUS_DATA_TOPS if config.target == "continuous" else DATA_TOPS
    if hdf5_source is not None:
        return L.HDF5Data(ntop=len(tops), include=include, hdf5_data_param=dict(
            source=hdf5_source, batch_size=config.batch_size, shuffle=phase == "train"))
    return L.Python(module=DATA_LAYER_MODULE, layer=DATA_LAYER_CLASS, ntop=len(tops),
                    param_str=_data_param(config, phase), include=include)


def data_layers(net: caffe.NetSpec, config: SSNConfig,
                hdf5_sources: Optional[tuple[str, str]] = None) -> None:
    """The TRAIN data layer, whose tops (:data:`DATA_TOPS`, or
    :data:`CONTINUOUS_DATA_TOPS` for a continuous target) become blobs of ``net``.

    :func:`with_val_data` adds its TEST copy to the finished net.
    """
    tops = CONTINUOUS_DATA_TOPS if config.target == "continuous" else DATA_TOPS
    data = _data_layer(config, "train", hdf5_sources[0] if hdf5_sources else None)
    for top, blob in zip(tops, data):
        net[top] = blob


def with_val_data(net_param: caffe_pb2.NetParameter, config: SSNConfig,
                  hdf5_sources: Optional[tuple[str, str]] = None) -> caffe_pb2.NetParameter:
    """``net_param`` (first layer: :func:`data_layers`') with the TEST-phase data layer."""
    # NetSpec makes one layer per top name: the TEST data layer is a copy.
    train_data = net_param.layer[0]
    test_data = caffe_pb2.LayerParameter()
    test_data.CopyFrom(train_data)
    test_data.name = "val_data"
    if hdf5_sources:
        test_data.hdf5_data_param.source = hdf5_sources[1]
        test_data.hdf5_data_param.shuffle = False
    else:
        test_data.python_param.param_str = _data_param(config, "val")
    del test_data.include[:]
    test_data.include.add(phase=caffe.TEST)
    train_data.name = "train_data"
    net_param.layer.insert(1, test_data)
    return net_param


def train_net(config: SSNConfig, hdf5_sources: Optional[tuple[str, str]] = None
              ) -> caffe_pb2.NetParameter:
    """The TRAIN/TEST net: data layer, features, SLIC and the losses of 5.4 (the label
    loss, or :func:`continuous_loss` for ``config.target == "continuous"``).

    The data come from the Python layer ``ssn.training.data_layer.BSDSDataLayer``, or,
    with ``hdf5_sources`` (train and val list files of .h5 files written by
    ``tools/export_hdf5.py``), from Caffe's HDF5Data layer, with no Python in
    the training loop.
    """
    grid_h, grid_w = config.grid
    net = caffe.NetSpec()
    data_layers(net, config, hdf5_sources)
    pixel_feats, feats = _features(net, config, net.img)
    assoc = slic_iterations(net, feats, net.spixel_init, net.feat_spixel_init, grid_h, grid_w,
                            config.num_steps)
    hard = hard_assignment(net, assoc, net.spixel_init, grid_h, grid_w)
    compactness_loss(net, pixel_feats, assoc, net.spixel_init, hard, grid_h, grid_w,
                     config.compactness_weight, config.color_weight)
    if config.target == "continuous":
        continuous_loss(net, net.target, assoc, net.spixel_init, grid_h, grid_w,
                        config.target_channels, config.target_weight, config.continuous_loss,
                        config.height * config.width, fused=config.fused_decoder)
    else:
        label_loss(net, net.problabel, net.label, assoc, net.spixel_init, grid_h, grid_w,
                   config.num_label_channels, config.label_weight,
                   fused=config.fused_decoder)
    return with_val_data(net.to_proto(), config, hdf5_sources)


def deploy_net(config: SSNConfig, grid: Optional[Grid] = None,
               pixel_input: bool = False) -> caffe_pb2.NetParameter:
    """The deploy net: Input blobs ``img`` (Lab), ``spixel_init``, ``feat_spixel_init``
    (1 x 1 x H x W initial cells) -> ``new_spix_indices`` (hard labels).

    With ``config.fused`` (the default) the SLIC iterations are one forward-only
    ``SlicIterations`` layer; otherwise the decomposed layers of the train net,
    with the original release's names and the blob ``final_pixel_assoc``. ``grid``:
    the caller's grid of ``config.grid_request`` (default: :attr:`SSNConfig.grid`).
    ``pixel_input``: the net takes the pixel features (Input ``pixel_features``, 1 x 5
    x H x W, as :func:`ssn.tiling.pixel_feature_array` makes them) instead of ``img``,
    and has no PixelFeature layer (``config.pos_scale`` and ``color_scale`` unused).
    """
    grid_h, grid_w = config.for_grid(grid)
    net = caffe.NetSpec()
    if pixel_input:
        net[PIXEL_FEATURES] = L.Input(shape=dict(dim=[1, 5, config.height, config.width]))
    else:
        net.img = L.Input(shape=dict(dim=[1, 3, config.height, config.width]))
    net.spixel_init = L.Input(shape=dict(dim=[1, 1, config.height, config.width]))
    net.feat_spixel_init = L.Input(shape=dict(dim=[1, 1, config.height, config.width]))
    if pixel_input:
        feats = net[PIXEL_FEATURES]
        if config.uses_cnn:
            feats = cnn_features(net, feats, config.feature_dim - 5, config.fused_cnn)
    else:
        _, feats = _features(net, config, net.img)
    if config.fused:
        fused_slic_iterations(net, feats, net.spixel_init, net.feat_spixel_init, grid_h, grid_w,
                              config.num_steps, config.association)
    else:
        assoc = slic_iterations(net, feats, net.spixel_init, net.feat_spixel_init, grid_h,
                                grid_w, config.num_steps)
        hard_assignment(net, assoc, net.spixel_init, grid_h, grid_w)
    return net.to_proto()



PIXEL_FEATURES = "pixel_features"
FEATURES = "trans_features"


def feature_net(height: int, width: int, feature_dim: int,
                fused_cnn: bool = True) -> caffe_pb2.NetParameter:
    """The deploy net's feature CNN alone: Input ``pixel_features`` (1 x 5 x H x W, as
    :func:`pixel_features` makes them) -> ``trans_features`` (1 x feature_dim x H x W).

    Its layers have the deploy net's names, so the same weights load; ``fused_cnn``
    as in :class:`SSNConfig`.
    """
    if feature_dim <= 5:
        raise ValueError(f"a feature net needs feature_dim > 5, got {feature_dim}")
    net = caffe.NetSpec()
    net[PIXEL_FEATURES] = L.Input(shape=dict(dim=[1, 5, height, width]))
    cnn_features(net, net[PIXEL_FEATURES], feature_dim - 5, fused_cnn)
    return net.to_proto()


def slic_net(config: SSNConfig, grid: Optional[Grid] = None) -> caffe_pb2.NetParameter:
    """The deploy net after its features: Input ``trans_features`` (1 x feature_dim x H x
    W), ``spixel_init``, ``feat_spixel_init`` -> ``new_spix_indices``; no CNN, no weights.

    Fused or decomposed SLIC as in :func:`deploy_net`.
    """
    return features_slic_net(config.height, config.width, *config.for_grid(grid),
                             config.feature_dim,
                             config.num_steps, config.fused, config.association)


def features_slic_net(height: int, width: int, grid_h: int, grid_w: int, feature_dim: int,
                      num_steps: int, fused: bool = True,
                      association: bool = False) -> caffe_pb2.NetParameter:
    """:func:`slic_net` for features of any number of channels (>= 1): Input
    ``trans_features`` (1 x feature_dim x H x W), ``spixel_init``, ``feat_spixel_init``
    (1 x 1 x H x W) -> ``new_spix_indices`` on a ``grid_h`` x ``grid_w`` grid.

    Pixel features made outside Caffe (positions and any image channels,
    :mod:`ssn.channels`) run through it.
    """
    if feature_dim < 1:
        raise ValueError(f"feature_dim must be >= 1, got {feature_dim}")
    net = caffe.NetSpec()
    net[FEATURES] = L.Input(shape=dict(dim=[1, feature_dim, height, width]))
    net.spixel_init = L.Input(shape=dict(dim=[1, 1, height, width]))
    net.feat_spixel_init = L.Input(shape=dict(dim=[1, 1, height, width]))
    if fused:
        fused_slic_iterations(net, net[FEATURES], net.spixel_init, net.feat_spixel_init,
                              grid_h, grid_w, num_steps, association)
    else:
        assoc = slic_iterations(net, net[FEATURES], net.spixel_init, net.feat_spixel_init,
                                grid_h, grid_w, num_steps)
        hard_assignment(net, assoc, net.spixel_init, grid_h, grid_w)
    return net.to_proto()


# Blobs and layers of masked_slic_net, which superpixels() runs a range at a time.
PIXEL_MASK = "pixel_mask"
CENTRES = "spixel_centres"
MASKED_PREPARE_END = "mask_assoc"  # the initial centres and the 9-channel mask
MASKED_STEP = ("step_assoc", "step_centres")  # the first and last layer of one step
MASKED_ASSIGN = "assignment"


def masked_slic_net(height: int, width: int, grid_h: int, grid_w: int,
                    feature_dim: int) -> caffe_pb2.NetParameter:
    """SLIC that only the pixels of a mask steer, one step per forward of a layer range.

    Inputs: ``trans_features`` F (1 x feature_dim x H x W), ``spixel_init`` and
    ``feat_spixel_init`` (1 x 1 x H x W; the latter :data:`INIT_IGNORE_INDEX` outside
    the mask), ``pixel_mask`` (1 x 1 x H x W, 1 inside, 0 outside) and
    ``spixel_centres`` S (1 x feature_dim x 1 x K), the centres a step starts from.

    Layers, run in three ranges (the caller copies centres between them):

    * up to :data:`MASKED_PREPARE_END`: ``init_spixel_feat``, the mean of each
      initial cell over its pixels inside the mask (SpixelFeature skips the
      ignored ones), and ``mask_assoc``, the mask tiled to 9 channels;
    * :data:`MASKED_STEP`: Passoc(F, S) -> Softmax -> times ``mask_assoc`` (all in
      place, so one step holds one 9 x H x W blob) -> SpixelFeature2 ->
      ``step_centres``: the centres moved by the pixels inside the mask only;
    * :data:`MASKED_ASSIGN`: the hard labels from S (SlicIterations, one step),
      ``new_spix_indices``.

    A superpixel no pixel of the mask pulls comes out of SpixelFeature2 as all
    zeros (dead); the caller's features carry a constant channel inside the mask
    that keeps such centres far from every pixel.
    """
    shape = dict(dim=[1, 1, height, width])
    net = caffe.NetSpec()
    net[FEATURES] = L.Input(shape=dict(dim=[1, feature_dim, height, width]))
    net.spixel_init = L.Input(shape=shape)
    net.feat_spixel_init = L.Input(shape=shape)
    net[PIXEL_MASK] = L.Input(shape=shape)
    net[CENTRES] = L.Input(shape=dict(dim=[1, feature_dim, 1, grid_h * grid_w]))
    initial_spixel_features(net, net[FEATURES], net.feat_spixel_init, grid_h * grid_w)
    net[MASKED_PREPARE_END] = L.Tile(net[PIXEL_MASK], tile_param=dict(axis=1, tiles=9))
    grid = _slic_grid(grid_h, grid_w)
    first, last = MASKED_STEP
    net[first] = L.Passoc(net[FEATURES], net[CENTRES], net.spixel_init,
                          spixel_feature2_param=grid, propagate_down=[False] * 3)
    net.step_softmax = L.Softmax(net[first], in_place=True)
    net.step_masked = L.Eltwise(net[first], net[MASKED_PREPARE_END], in_place=True,
                                eltwise_param=dict(operation=P.Eltwise.PROD))
    net[last] = L.SpixelFeature2(net[FEATURES], net[first], net.spixel_init,
                                 spixel_feature2_param=grid, propagate_down=[False] * 3)
    net.new_spix_indices = L.SlicIterations(
        net[FEATURES], net[CENTRES], net.spixel_init, name=MASKED_ASSIGN,
        spixel_feature2_param=grid, slic_iterations_param=dict(num_steps=1),
        propagate_down=[False] * 3)
    net_param = net.to_proto()
    masked = next(layer for layer in net_param.layer if layer.name == "step_masked")
    del masked.top[1:]  # NetSpec's in_place names every bottom a top; the mask is only read
    return net_param
