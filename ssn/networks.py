"""NetSpec generators for the SSN networks (spec section 5).

Layer and blob names follow the original release (``init_spixel_feat``,
``Passoc1..T``, ``Softmax1..T-1``, ``spixel_feat1..T-1``, ``final_pixel_assoc``,
``ArgMax1``, ``new_spix_indices``) so weights trained for it load by name.
"""
from __future__ import annotations

import caffe
from caffe import layers as L
from caffe import params as P

from ssn.reference.grid import grid_shape

# Test-time input scaling (spec section 8): one superpixel spans 1/p_scale units.
TEST_POSITION_SCALE = 0.4
COLOR_SCALE = 0.26
# SpixelFeature settings used for the initial superpixel features.
INIT_IGNORE_INDEX = -10
INIT_IGNORE_FEATURE = 255


def position_scale(n_spixels: int, height: int, width: int,
                   p_scale: float = TEST_POSITION_SCALE) -> float:
    """Scale of pixel coordinates at test time: max(K_h / (p H), K_w / (p W))."""
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    return max(grid_h / (p_scale * height), grid_w / (p_scale * width))


def pixel_features(net: caffe.NetSpec, image, pos_scale: float,
                   color_scale: float = COLOR_SCALE):
    """[ps*y, ps*x, cs*L, cs*a, cs*b] from a Lab image (layer ``pixel_features``)."""
    net.pixel_features = L.PixelFeature(image, pixel_feature_param=dict(
        type=P.PixelFeature.POSITION_AND_RGB, pos_scale=pos_scale, color_scale=color_scale))
    return net.pixel_features


def slic_iterations(net: caffe.NetSpec, features, spixel_init, feat_spixel_init,
                    grid_h: int, grid_w: int, num_steps: int):
    """Differentiable SLIC: ``num_steps`` associations and ``num_steps - 1`` updates.

    Returns the final association blob ``final_pixel_assoc`` (N x 9 x H x W).
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    num_spixels = grid_h * grid_w
    grid = dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1.0)
    net.init_spixel_feat = L.SpixelFeature(
        features, feat_spixel_init, propagate_down=[True, False],
        spixel_feature_param=dict(type=P.SpixelFeature.AVGRGB, rgb_scale=1.0,
                                  ignore_idx_value=INIT_IGNORE_INDEX,
                                  ignore_feature_value=INIT_IGNORE_FEATURE,
                                  max_spixels=num_spixels))
    spixel_feat = net.init_spixel_feat
    for step in range(1, num_steps + 1):
        assoc = L.Passoc(features, spixel_feat, spixel_init, spixel_feature2_param=grid,
                         propagate_down=[True, True, False])
        setattr(net, f"Passoc{step}", assoc)
        if step == num_steps:
            net.final_pixel_assoc = L.Softmax(assoc)
            return net.final_pixel_assoc
        soft = L.Softmax(assoc)
        setattr(net, f"Softmax{step}", soft)
        spixel_feat = L.SpixelFeature2(features, soft, spixel_init, spixel_feature2_param=grid,
                                       propagate_down=[True, True, False])
        setattr(net, f"spixel_feat{step}", spixel_feat)
    raise AssertionError("unreachable")


def hard_assignment(net: caffe.NetSpec, assoc, spixel_init, grid_h: int, grid_w: int):
    """Superpixel id per pixel: argmax channel mapped to its grid cell (``new_spix_indices``)."""
    net.ArgMax1 = L.ArgMax(assoc, argmax_param=dict(axis=1), propagate_down=[False])
    net.new_spix_indices = L.RelToAbsIndex(
        net.ArgMax1, spixel_init, propagate_down=[False, False],
        rel_to_abs_index_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    return net.new_spix_indices


def pixel_ssn_deploy(height: int, width: int, n_spixels: int, num_steps: int = 10,
                     pos_scale: float | None = None, color_scale: float = COLOR_SCALE):
    """Deploy net of SSN_pix: SLIC iterations on [position, Lab] features, no CNN.

    Inputs ``img`` (1 x 3 x H x W Lab), ``spixel_init`` and ``feat_spixel_init``
    (1 x 1 x H x W initial cells); output ``new_spix_indices`` (1 x 1 x H x W).
    """
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    if pos_scale is None:
        pos_scale = position_scale(n_spixels, height, width)
    net = caffe.NetSpec()
    net.img = L.Input(shape=dict(dim=[1, 3, height, width]))
    net.spixel_init = L.Input(shape=dict(dim=[1, 1, height, width]))
    net.feat_spixel_init = L.Input(shape=dict(dim=[1, 1, height, width]))
    features = pixel_features(net, net.img, pos_scale, color_scale)
    assoc = slic_iterations(net, features, net.spixel_init, net.feat_spixel_init,
                            grid_h, grid_w, num_steps)
    hard_assignment(net, assoc, net.spixel_init, grid_h, grid_w)
    return net.to_proto()
