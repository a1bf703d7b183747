"""SpixelFeature: per-superpixel means under a hard index map (docs/LAYERS.md#spixelfeature).

For image n, P_j is the set of pixels p whose id int(idx[p]) is j and not the ignore value,
n_j = |P_j|. Output channel k reads one source: a feature channel F[c], the row y or the
column x (raw integer pixel indices), times a scale s_k::

    means[n, k, 0, j] = (1/n_j) * sum_{p in P_j} s_k * source_k(p)   if n_j > 0
                      = ignore_feature_value                        if n_j = 0

The optional second output copies each pixel's superpixel mean (ignore_feature_value for
ignored pixels). The backward is the exact one, not the original's empty body.
"""
from __future__ import annotations

from typing import Optional, Union

import numpy as np

from ssn.reference._common import as_blob, read_index_map

MODES = ("AVGXY", "AVGRGBXY", "AVGXYRGBXY", "AVGRGB", "AVGRGBXYRGBXY")

# A source is a feature channel (int >= 0) or one of these two markers.
ROW = "y"
COL = "x"


def mode_name(mode: Union[str, int]) -> str:
    """Canonical name of a mode given by name or proto enum number (0..4)."""
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool):
        if 0 <= int(mode) < len(MODES):
            return MODES[int(mode)]
    elif isinstance(mode, str) and mode in MODES:
        return mode
    raise ValueError(f"unknown SpixelFeature mode {mode!r}; supported: {', '.join(MODES)}")


def channel_sources(
    mode: Union[str, int],
    channels: int,
    xy_scale: float = 1.0,
    rgb_scale: float = 1.0,
    rgbxy_xy_scale: float = 1.0,
    rgbxy_rgb_scale: float = 1.0,
) -> list[tuple[Union[int, str], float]]:
    """Source and scale of every output channel, in output order (docs/LAYERS.md#spixelfeature).

    Parameters
    ----------
    mode : str or int
        One of :data:`MODES`.
    channels : int
        Feature channels C.
    xy_scale, rgb_scale, rgbxy_xy_scale, rgbxy_rgb_scale : float
        The layer's scales.

    Returns
    -------
    list of (source, scale)
        source is a feature channel index, :data:`ROW` or :data:`COL`.
    """
    name = mode_name(mode)

    def xy(scale: float) -> list[tuple[Union[int, str], float]]:
        return [(ROW, scale), (COL, scale)]

    def rgb(scale: float) -> list[tuple[Union[int, str], float]]:
        return [(c, scale) for c in range(channels)]

    if name == "AVGXY":
        return xy(xy_scale)
    if name == "AVGRGBXY":
        return rgb(rgbxy_rgb_scale) + xy(rgbxy_xy_scale)
    if name == "AVGXYRGBXY":
        return xy(xy_scale) + rgb(rgbxy_rgb_scale) + xy(rgbxy_xy_scale)
    if name == "AVGRGB":
        return rgb(rgb_scale)
    return rgb(rgb_scale) + xy(xy_scale) + rgb(rgbxy_rgb_scale) + xy(rgbxy_xy_scale)


def _counts(ids: np.ndarray, ignored: np.ndarray, num_spixels: int) -> np.ndarray:
    """n_j per image, N x M."""
    n_img, height, width = ids.shape
    counts = np.zeros((n_img, num_spixels))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if not ignored[n, y, x]:
                    counts[n, ids[n, y, x]] += 1
    return counts


def _prepare(features, index_map, num_spixels, ignore_idx_value):
    feats = as_blob(features, "features")
    n_img, _, height, width = feats.shape
    if int(num_spixels) != num_spixels or num_spixels < 1:
        raise ValueError(f"num_spixels must be a positive integer, got {num_spixels}")
    ids, ignored = read_index_map(index_map, int(num_spixels), "index_map",
                                  (n_img, height, width), ignore_idx_value)
    return feats, ids, ignored


def forward(
    features: np.ndarray,
    index_map: np.ndarray,
    num_spixels: int,
    mode: Union[str, int] = "AVGXY",
    xy_scale: float = 1.0,
    rgb_scale: float = 1.0,
    rgbxy_xy_scale: float = 1.0,
    rgbxy_rgb_scale: float = 1.0,
    ignore_idx_value: float = -1.0,
    ignore_feature_value: float = -1000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Superpixel means of pixel features.

    Parameters
    ----------
    features : np.ndarray
        F, N x C x H x W.
    index_map : np.ndarray
        Superpixel ids (float), N x 1 x H x W; ids in [0, num_spixels) or ignore_idx_value.
    num_spixels : int
        M (max_spixels).
    mode : str or int
        One of :data:`MODES`; sets the output channels (C' of them, see
        :func:`channel_sources`).
    xy_scale, rgb_scale, rgbxy_xy_scale, rgbxy_rgb_scale : float
        Scales of the output channels.
    ignore_idx_value : float
        Pixels with int(id) == this value are ignored.
    ignore_feature_value : float
        Output for empty superpixels and, in the second output, for ignored pixels.

    Returns
    -------
    means : np.ndarray
        N x C' x 1 x M.
    smeared : np.ndarray
        N x C' x H x W, each pixel's superpixel mean (ignore_feature_value if ignored).

    Raises
    ------
    ValueError
        If an id that is not ignored lies outside [0, num_spixels), or shapes disagree.
    """
    feats, ids, ignored = _prepare(features, index_map, num_spixels, ignore_idx_value)
    n_img, channels, height, width = feats.shape
    sources = channel_sources(mode, channels, xy_scale, rgb_scale, rgbxy_xy_scale,
                              rgbxy_rgb_scale)
    out_channels = len(sources)
    counts = _counts(ids, ignored, num_spixels)
    sums = np.zeros((n_img, out_channels, num_spixels))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if ignored[n, y, x]:
                    continue
                j = ids[n, y, x]
                for k, (source, scale) in enumerate(sources):
                    if source == ROW:
                        value = float(y)
                    elif source == COL:
                        value = float(x)
                    else:
                        value = feats[n, source, y, x]
                    sums[n, k, j] += scale * value
    means = np.full((n_img, out_channels, 1, num_spixels), float(ignore_feature_value))
    for n in range(n_img):
        for j in range(num_spixels):
            if counts[n, j] > 0:
                means[n, :, 0, j] = sums[n, :, j] / counts[n, j]
    smeared = np.full((n_img, out_channels, height, width), float(ignore_feature_value))
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if not ignored[n, y, x]:
                    smeared[n, :, y, x] = means[n, :, 0, ids[n, y, x]]
    return means, smeared


def backward(
    features: np.ndarray,
    index_map: np.ndarray,
    num_spixels: int,
    means_diff: np.ndarray,
    smeared_diff: Optional[np.ndarray] = None,
    mode: Union[str, int] = "AVGXY",
    xy_scale: float = 1.0,
    rgb_scale: float = 1.0,
    rgbxy_xy_scale: float = 1.0,
    rgbxy_rgb_scale: float = 1.0,
    ignore_idx_value: float = -1.0,
    ignore_feature_value: float = -1000.0,
) -> np.ndarray:
    """Exact gradient with respect to the features.

    With G[n, k, j] = means_diff[n, k, 0, j] + sum_{p in P_j} smeared_diff[n, k, p],

        dF[n, c, p] = sum_{k reading F[c]} s_k * G[n, k, j] / n_j    for p in P_j,

    and 0 for ignored pixels. Empty superpixels pass nothing; the index map gets no gradient.

    Parameters
    ----------
    features : np.ndarray
        F, N x C x H x W.
    index_map : np.ndarray
        Superpixel ids, N x 1 x H x W.
    num_spixels : int
        M.
    means_diff : np.ndarray
        dL/dmeans, N x C' x 1 x M.
    smeared_diff : np.ndarray, optional
        dL/dsmeared, N x C' x H x W; None when the second output is unused.
    mode, xy_scale, rgb_scale, rgbxy_xy_scale, rgbxy_rgb_scale, ignore_idx_value
        As in :func:`forward`.
    ignore_feature_value : float
        Unused (accepted so forward and backward take the same keywords).

    Returns
    -------
    np.ndarray
        dL/dF, N x C x H x W.
    """
    del ignore_feature_value
    feats, ids, ignored = _prepare(features, index_map, num_spixels, ignore_idx_value)
    n_img, channels, height, width = feats.shape
    sources = channel_sources(mode, channels, xy_scale, rgb_scale, rgbxy_xy_scale,
                              rgbxy_rgb_scale)
    out_channels = len(sources)
    g_means = as_blob(means_diff, "means_diff")
    if g_means.shape != (n_img, out_channels, 1, num_spixels):
        raise ValueError(f"means_diff must have shape {(n_img, out_channels, 1, num_spixels)}, "
                         f"got {g_means.shape}")
    total = g_means[:, :, 0, :].copy()
    if smeared_diff is not None:
        g_smeared = as_blob(smeared_diff, "smeared_diff")
        if g_smeared.shape != (n_img, out_channels, height, width):
            raise ValueError(f"smeared_diff must have shape "
                             f"{(n_img, out_channels, height, width)}, got {g_smeared.shape}")
        for n in range(n_img):
            for y in range(height):
                for x in range(width):
                    if not ignored[n, y, x]:
                        total[n, :, ids[n, y, x]] += g_smeared[n, :, y, x]
    counts = _counts(ids, ignored, num_spixels)
    d_features = np.zeros(feats.shape)
    for n in range(n_img):
        for y in range(height):
            for x in range(width):
                if ignored[n, y, x]:
                    continue
                j = ids[n, y, x]
                for k, (source, scale) in enumerate(sources):
                    if source not in (ROW, COL):
                        d_features[n, source, y, x] += scale * total[n, k, j] / counts[n, j]
    return d_features
