"""The values of each pixel that SLIC compares: Lab colour, or an image's channels as given.

:func:`ssn.inference.superpixels` converts RGB images (and grayscale and RGBA ones,
as before) to Lab, which the deep model was trained on and pixel mode scales by
the trained colour scale 0.26. In pixel mode an image of any other channel count
(multispectral bands, RGB plus depth with ``convert2lab=False``) is used as it
is: each channel times its scale, ``channel_scale`` or, by default, the scale
that stretches the channel's range over the image (or the mask) to 26, the span
of Lab's L (0..100) at the colour scale. Features are the positions and the
scaled channels, ``[ps*y, ps*x, s_1*c_1, ..., s_C*c_C]`` (:func:`position_and_values`).
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np

from ssn.nets.generators import COLOR_SCALE

# What one channel spans after its default scale: Lab's L, 0..100, at the colour scale.
CHANNEL_SPAN = 100 * COLOR_SCALE
LAB_CHANNEL_COUNTS = (1, 3, 4)  # grayscale, RGB, RGBA (alpha dropped)

ChannelScale = Union[float, Sequence[float], None]


def channel_count(image: np.ndarray) -> int:
    """C of an H x W (1) or H x W x C image."""
    return 1 if image.ndim == 2 else image.shape[2]


def uses_lab(image: np.ndarray, convert2lab: Optional[bool]) -> bool:
    """Whether the image (channels last) goes through Lab: by default when it has 1,
    3 or 4 channels (grayscale, RGB, RGBA); ``convert2lab`` True insists, False
    uses the channels as they are.

    Raises
    ------
    ValueError
        ``convert2lab=True`` on an image of another channel count.
    TypeError
        ``convert2lab`` not a bool or None.
    """
    if convert2lab is not None and not isinstance(convert2lab, (bool, np.bool_)):
        raise TypeError(f"convert2lab must be True, False or None, got {convert2lab!r}")
    channels = channel_count(image)
    if convert2lab and channels not in LAB_CHANNEL_COUNTS:
        raise ValueError(f"convert2lab=True needs an RGB, RGBA or grayscale image; this one "
                         f"has {channels} channels")
    return channels in LAB_CHANNEL_COUNTS if convert2lab is None else bool(convert2lab)


def check_deep_input(image: np.ndarray, lab: bool, channel_scale: ChannelScale) -> None:
    """Refuse what the deep model cannot take: images that are not colour or gray
    (it was trained on Lab) and channel scales (its colour scale is trained).

    Raises
    ------
    ValueError
    """
    if not lab:
        raise ValueError(
            f"features='deep' needs an RGB, RGBA or grayscale image (the CNN was trained on "
            f"Lab colour); this image has {channel_count(image)} channels used as given: "
            "use features='pixel' for other channels")
    if channel_scale is not None:
        raise ValueError("channel_scale applies to features='pixel' only: the deep model's "
                         "colour scale is fixed by its training")


def channel_planes(image: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The channels of an image used as given, C x H x W float32.

    Values outside ``mask`` (H x W bool) take no part: NaN or infinite ones there
    become 0, as scikit-image allows masked-out NaN.

    Raises
    ------
    ValueError
        An image that is not H x W or H x W x C with C >= 1, of bools or non-numbers,
        or with NaN or infinite values (inside the mask).
    """
    if image.ndim not in (2, 3) or image.size == 0:
        raise ValueError(f"expected an H x W or H x W x C image, got shape {image.shape}")
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number) or \
            np.issubdtype(image.dtype, np.complexfloating):
        raise ValueError(f"unsupported image dtype {image.dtype}")
    planes = image if image.ndim == 3 else image[:, :, None]
    planes = np.ascontiguousarray(planes.transpose(2, 0, 1), dtype=np.float32)
    finite = np.isfinite(planes)
    if mask is not None:
        planes[:, ~mask] = np.where(finite[:, ~mask], planes[:, ~mask], 0)
        finite = finite[:, mask]
    if not finite.all():
        raise ValueError("the image holds NaN or infinite values (or values beyond float32)"
                         + (" inside the mask" if mask is not None else ""))
    return planes


def channel_scales(planes: np.ndarray, channel_scale: ChannelScale,
                   mask: Optional[np.ndarray] = None) -> np.ndarray:
    """One scale per channel, float32 (C,).

    Parameters
    ----------
    planes : ndarray, C x H x W
        The channels as given.
    channel_scale : float, sequence of C floats, or None
        Finite and >= 0. None: each channel's :data:`CHANNEL_SPAN` over its range
        (max - min) over the pixels of ``mask`` (all when None); 0 for a constant
        channel, which tells no pixel from another.
    mask : ndarray, H x W bool, optional

    Raises
    ------
    TypeError
        A scale that is not a number or a sequence of numbers.
    ValueError
        A sequence of another length than C, or a negative or non-finite scale.
    """
    channels = planes.shape[0]
    if channel_scale is None:
        values = planes[:, mask] if mask is not None else planes.reshape(channels, -1)
        spans = values.max(axis=1).astype(np.float64) - values.min(axis=1)
        scales = np.divide(CHANNEL_SPAN, spans, out=np.zeros(channels), where=spans > 0)
        return scales.astype(np.float32)
    scales = _scale_array(channel_scale, channels)
    if scales.ndim == 0:
        scales = np.full(channels, float(scales))
    elif len(scales) != channels:
        raise ValueError(f"channel_scale has {len(scales)} values; the image has "
                         f"{channels} channels")
    if not (np.isfinite(scales).all() and (scales >= 0).all()):
        raise ValueError(f"channel_scale must be finite and >= 0, got {channel_scale!r}")
    return scales.astype(np.float32)


def _scale_array(channel_scale, channels: int) -> np.ndarray:
    """``channel_scale`` as a float64 array of 0 or 1 dimension, or a TypeError."""
    wrong = TypeError(f"channel_scale must be a number or a sequence of {channels} numbers, "
                      f"got {channel_scale!r}")
    if isinstance(channel_scale, (str, bytes, bool, np.bool_)):
        raise wrong
    try:
        scales = np.asarray(channel_scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise wrong from None
    if scales.ndim > 1:
        raise wrong
    return scales


def lab_scales(channel_scale: ChannelScale) -> np.ndarray:
    """Scales of L, a and b: the trained colour scale by default, else
    :func:`channel_scales` of ``channel_scale`` for 3 channels."""
    if channel_scale is None:
        return np.full(3, COLOR_SCALE, np.float32)
    return channel_scales(np.zeros((3, 1, 1), np.float32), channel_scale)


def position_and_values(planes: np.ndarray, pos_scale: float, scales: np.ndarray,
                        origin: tuple[int, int] = (0, 0),
                        out: Optional[np.ndarray] = None) -> np.ndarray:
    """Pixel features ``[ps*y, ps*x, s_1*c_1, ..., s_C*c_C]``, (2 + C) x H x W float32.

    The one pixel-feature path of :func:`ssn.inference.superpixels`, at every image
    size: the PixelFeature layer's float32 products, bit for bit. ``planes``: C x H
    x W (Lab or any channels); ``origin`` is the image row and column of
    ``planes``' first pixel, so that a piece of an image gets the positions it has
    in the whole; ``out`` (for example a net's input blob) is written if given.
    """
    channels, height, width = planes.shape
    top, left = origin
    if out is None:
        out = np.empty((2 + channels, height, width), np.float32)
    elif out.shape != (2 + channels, height, width) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape {(2 + channels, height, width)}, "
                         f"got {out.dtype} {out.shape}")
    scale = np.float32(pos_scale)
    out[0] = (scale * np.arange(top, top + height, dtype=np.float32))[:, None]
    out[1] = (scale * np.arange(left, left + width, dtype=np.float32))[None, :]
    for channel in range(channels):
        np.multiply(planes[channel], np.float32(scales[channel]), out=out[2 + channel])
    return out
