"""Superpixels of images with SSN, the way scikit-image's ``slic`` is called.

The data path, one for every image size: the arguments and the model's metadata
-> :class:`ssn.settings.InferenceSettings` (once per call) -> image -> RGB -> Lab
planes (3 x H x W) -> the grid (:func:`ssn.grid.decide_grid`, once) -> pixel
features (5 x H x W, :func:`ssn.channels.position_and_values`, written into the
net's input blob) -> (CNN features) -> SLIC iterations -> labels ->
connectivity -> consecutive labels. Nets are built once per geometry and reused;
``superpixels(timings=)`` reports each stage's seconds (:data:`STAGES`).

Deep features of images over :data:`ssn.tiling.TILE_PIXELS` pixels are computed
by the CNN alone on overlapping tiles (:func:`ssn.tiling.tiled_features`, equal
to the whole net's) and written straight into the input blob of a second net
that runs only SLIC (:func:`ssn.nets.generators.slic_net`): memory then grows
linearly with the pixel count, about 100 bytes a pixel.

:func:`superpixels` may be called from several threads (they take turns with the
cached nets, :func:`ssn.nets.cache.net_lock`) and in a child forked after the
parent used it (the child drops the parent's nets and runs its OpenMP and BLAS
loops on one thread: libgomp's thread pool does not survive a fork).
"""
from __future__ import annotations

import functools
import logging
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

import caffe
import numpy as np

from ssn import device, tiling
from ssn.association import Association
from ssn.association import from_blobs as association_from_blobs
from ssn.channels import (
    ChannelScale,
    channel_planes,
    channel_scales,
    check_deep_input,
    lab_scales,
    position_and_values,
    uses_lab,
)
from ssn.color import rgb_to_lab_planes

# Aliased: superpixels() takes scikit-image's keyword enforce_connectivity.
from ssn.connectivity import connectivity_sizes
from ssn.connectivity import enforce_connectivity as connect_segments
from ssn.device import current_device, gpu_argument, on_device
from ssn.grid import Grid, decide_grid
from ssn.images import as_rgb
from ssn.masks import (
    INSIDE_VALUE,
    Box,
    bounding_box,
    connect_inside,
    consecutive_inside,
    mask_argument,
    masked_grid_request,
)
from ssn.model_metadata import find_settings, metadata_path
from ssn.nets.cache import memory_bounded_cache, net_lock, renew_lock
from ssn.nets.checked import CheckedNet
from ssn.nets.checks import NetTooLargeError
from ssn.nets.generators import (
    ASSOCIATION,
    CENTRES,
    COLOR_SCALE,
    DEEP_FEATURE_DIM,
    FEATURES,
    INIT_IGNORE_INDEX,
    MASKED_ASSIGN,
    MASKED_PREPARE_END,
    MASKED_STEP,
    PIXEL_FEATURES,
    PIXEL_MASK,
    SSNConfig,
    centres_blob,
    deploy_net,
    feature_net,
    features_slic_net,
    masked_slic_net,
    position_scale,
)
from ssn.settings import (  # noqa: F401 - re-exported: their home was this module
    BUNDLED_WEIGHTS,
    FEATURE_MODES,
    POSITION_WEIGHT_RANGE,
    InferenceSettings,
    bundled_weights,
    count_argument,
    model_defaults,
    position_weight_argument,
    require_number,
    resolve_features,
    size_factors,
)
from ssn.tiling import TILE_PIXELS, tiled_features

log = logging.getLogger("ssn.inference")

# Blobs the cached deploy nets may hold together: five deep nets for 481x321
# images (about 740 MB each), or hundreds of pixel-feature ones (13 MB).
NET_CACHE_BYTES = 4 << 30


def check_geometry(height: int, width: int, n_spixels: int) -> tuple[int, int]:
    """(K_h, K_w) of the grid made for ``n_spixels`` on an image, or a ValueError saying
    why there is none (:meth:`ssn.grid.Grid.for_request`)."""
    if n_spixels < 1:
        raise ValueError(f"n_spixels must be >= 1, got {n_spixels}")
    return Grid.for_request(n_spixels, height, width).shape


def as_grid(grid: Union[Grid, int], height: int, width: int) -> Grid:
    """``grid``, or the grid made for a count (the callers that still pass one)."""
    return grid if isinstance(grid, Grid) else Grid.for_request(grid, height, width)


def file_identity(path: Optional[str]) -> Optional[tuple]:
    """What tells one version of a file from another: its resolved path, device, inode,
    size and modification and change times (a rewritten file differs in one of them)."""
    if path is None:
        return None
    stat = Path(path).stat()
    return (str(Path(path).resolve()), stat.st_dev, stat.st_ino, stat.st_size,
            stat.st_mtime_ns, stat.st_ctime_ns)


# Keyed on the weights file's identity, not its name: a file rewritten in place
# is read again.
@memory_bounded_cache(NET_CACHE_BYTES)
def deploy_net_for(height: int, width: int, grid: Union[Grid, int], num_steps: int,
                   features: str,
                   weights: Optional[str], weights_identity: Optional[tuple] = None,
                   fused: bool = True, position_weight: float = 1.0,
                   association: bool = False, color_scale: float = COLOR_SCALE,
                   feature_dim: Optional[int] = None, device: int = -1,
                   pixel_input: bool = False) -> CheckedNet:
    """The deploy net for one image geometry and grid (:class:`ssn.grid.Grid`, or the
    count one is made for), built once and cached.

    ``weights_identity`` (:func:`file_identity`) only keys the cache, so that a
    weights file rewritten in place is read again; ``device``
    (:func:`ssn.device.current_device`) too, so that each device has its nets.
    ``association``: the net also keeps the last step's soft association
    (:attr:`SSNConfig.association`). ``color_scale`` and a deep model's
    ``feature_dim`` come from its metadata (:mod:`ssn.model_metadata`).
    ``pixel_input``: the net takes pixel features made outside it (Input
    ``pixel_features``, :func:`ssn.nets.generators.deploy_net`), as
    :func:`superpixels` gives them; ``position_weight`` and ``color_scale`` then
    do not change it. False: it takes the Lab image (``img``) and has the
    PixelFeature layer, as the exported deploy prototxt.
    """
    if feature_dim is None or features != "deep":
        feature_dim = DEEP_FEATURE_DIM if features == "deep" else 5
    grid = as_grid(grid, height, width)
    config = SSNConfig(height=height, width=width, grid_request=grid.request,
                       num_steps=num_steps, feature_dim=feature_dim,
                       pos_scale=position_weight * position_scale(grid, height, width),
                       color_scale=color_scale, fused=fused, association=association)
    log.debug("building a %s%s net for %dx%d, a %dx%d grid", features,
              "" if fused else " decomposed", height, width, grid.rows, grid.cols)
    return CheckedNet(deploy_net(config, grid, pixel_input), caffe.TEST, weights=weights,
                      fold_batch_norm=True, fold_relu=True)


# One only: at 24 MP it holds about 2.2 GB.
@lru_cache(maxsize=1)
def _slic_net(height: int, width: int, grid: Grid, num_steps: int, feature_dim: int,
              fused: bool = True, association: bool = False, device: int = -1) -> CheckedNet:
    """SLIC on given features of ``feature_dim`` channels (any >= 1), on ``device``."""
    log.debug("building a SLIC net for %dx%d, a %dx%d grid", height, width, *grid)
    return CheckedNet(features_slic_net(height, width, grid.rows, grid.cols, feature_dim,
                                        num_steps, fused, association), caffe.TEST)


# One only: a mask's bounding box changes from image to image.
@lru_cache(maxsize=1)
def _masked_slic_net(height: int, width: int, grid: Grid, feature_dim: int,
                     device: int = -1) -> CheckedNet:
    log.debug("building a masked SLIC net for %dx%d, a %dx%d grid", height, width, *grid)
    return CheckedNet(masked_slic_net(height, width, grid.rows, grid.cols, feature_dim),
                      caffe.TEST)


# Two only: at 24 MP each holds 96 MB.
@lru_cache(maxsize=2)
def cell_input(height: int, width: int, grid: Grid) -> np.ndarray:
    """The nets' initial-cell input (1 x 1 x H x W float32, read-only), kept per geometry."""
    cells = grid.cell_ids(height, width)[None, None].astype(np.float32)
    cells.flags.writeable = False
    return cells


# Whether the fork hook is registered, and in a forked child why superpixels() refuses.
_fork = {"hook": False, "refuse": None}


def _after_fork_in_child() -> None:
    """In a child forked after this process used the nets: a fresh lock, none of the
    parent's nets, and one OpenMP and BLAS thread in this (the forking) thread.

    libgomp keeps a pool of threads per thread that started a parallel region; after
    a fork the child has the pool's records but not its threads, and the next region
    of more than one thread waits for them forever. A region of one never uses the
    pool. Nets of a GPU process are kept (freeing their CUDA memory here would abort)
    and :func:`superpixels` refuses to run.
    """
    renew_lock()
    if device.gpu_used():
        _fork["refuse"] = "its parent ran Caffe on a GPU, and CUDA does not survive a fork"
        return
    for cache in (deploy_net_for, _slic_net, _masked_slic_net, cell_input,
                  tiling._feature_net):
        cache.cache_clear()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1)
    except Exception as error:  # noqa: BLE001 - refuse rather than hang
        _fork["refuse"] = f"its OpenMP threads could not be limited to one ({error})"


def _prepare_for_fork() -> None:
    """Register :func:`_after_fork_in_child`, once, when the nets are first used."""
    if not _fork["hook"]:
        _fork["hook"] = True
        os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_fork() -> None:
    if _fork["refuse"]:
        raise RuntimeError(f"superpixels() cannot run in this forked process: "
                           f"{_fork['refuse']}. Start worker processes with "
                           "multiprocessing's 'spawn' start method "
                           "(multiprocessing.get_context('spawn'))")


def tiled(height: int, width: int, features: str) -> bool:
    """Whether :func:`superpixels` computes the deep features of this size in tiles."""
    return features == "deep" and height * width > TILE_PIXELS


def check_weights(weights: Union[str, Path]) -> None:
    """Load ``weights`` once into a small feature CNN, as :func:`superpixels` would, with
    the feature channels of its metadata (if any).

    Raises
    ------
    NetCheckError
        A ValueError naming the file and the layer: the file is damaged, not a
        model, or of another architecture.
    ModelMetadataError
        A ValueError naming its metadata file, which is there but cannot be used.
    """
    metadata = find_settings(metadata_path(weights))
    feature_dim = metadata.feature_dim if metadata is not None else DEEP_FEATURE_DIM
    CheckedNet(feature_net(64, 64, feature_dim), caffe.TEST, weights=str(weights),
               fold_batch_norm=True, fold_relu=True)


def resolve_alias(name: str, value, alias: str, alias_value, default):
    """The value given under ``name`` or its alias (not both); ``default`` if neither."""
    if value is not None and alias_value is not None:
        raise TypeError(f"give {name} or its alias {alias}, not both")
    if alias_value is not None:
        return alias_value
    return default if value is None else value


def positional_limit(count: int):
    """Decorate a function so that more than ``count`` positional arguments raise a
    TypeError that names the keywords to use (Python's own message does not)."""
    def decorate(func):
        @functools.wraps(func)
        def checked(*args, **kwargs):
            if len(args) > count:
                raise TypeError(
                    f"{func.__name__}() takes the image and n_segments by position and "
                    f"everything else by keyword; got {len(args)} positional arguments. "
                    f"Write {func.__name__}(image, n_segments, num_steps=..., weights=...): "
                    "a third positional argument would be compactness in scikit-image's "
                    "slic but iterations here")
            return func(*args, **kwargs)
        return checked
    return decorate


@positional_limit(2)
def superpixels(image: np.ndarray, n_segments: Optional[int] = None, *,
                num_steps: Optional[int] = None,
                weights: Optional[Union[str, Path]] = None,
                enforce_connectivity: Optional[bool] = None, features: Optional[str] = None,
                min_size_factor: float = 0.06, max_size_factor: float = 3.0,
                start_label: Optional[int] = None, channel_axis: Optional[int] = -1,
                grid: str = "calibrated", n_spixels: Optional[int] = None,
                connectivity: Optional[bool] = None, fused: bool = True,
                position_weight: Optional[float] = None, mask: Optional[np.ndarray] = None,
                convert2lab: Optional[bool] = None, channel_scale: ChannelScale = None,
                gpu: Optional[int] = None, return_association: bool = False,
                timings: Optional[dict] = None
                ) -> Union[np.ndarray, tuple[np.ndarray, Association]]:
    """Segment an image into SSN superpixels.

    Keyword names follow :func:`skimage.segmentation.slic` where the concept is
    the same; the SSN names ``n_spixels`` and ``connectivity`` are accepted as
    aliases. Only ``image`` and ``n_segments`` may be given by position: the
    rest are keyword-only, so that ``superpixels(img, 200, 10)`` (compactness 10
    in scikit-image) raises a TypeError instead of running 10 steps.

    Parameters
    ----------
    image : ndarray, H x W x C or H x W
        RGB, RGBA or grayscale (C = 1, 3 or 4; uint8, uint16, or float in [0, 1]),
        converted to Lab. In pixel mode also any other channel count (C >= 1,
        any numbers), used as given (see ``convert2lab`` and ``channel_scale``).
    n_segments : int, default 100
        Requested number of superpixels (the initial grid has K_h x K_w <=
        n_segments cells). Alias: ``n_spixels``.
    num_steps : int, optional
        Differentiable SLIC iterations (>= 1); default: the model's (its metadata,
        :mod:`ssn.model_metadata`), 10 for the bundled model, pixel mode and
        weights without metadata.
    weights : str or Path, optional
        A trained SSN .caffemodel; default: the bundled BSDS500 model. Its
        settings come from the metadata file beside it (``x.caffemodel`` ->
        ``x.json``); an argument given here overrides them.
    enforce_connectivity : bool, default True
        Merge fragments below ``min_size_factor * H*W/n_segments`` pixels into a
        neighbour and split segments above ``max_size_factor * H*W/n_segments``.
        Alias: ``connectivity``.
    features : {'deep', 'pixel', None}
        'deep': learned CNN features (needs weights); 'pixel': SLIC on scaled
        position and Lab only (SSN_pix, no training needed); None: 'deep' when
        weights are available, else 'pixel'.
    min_size_factor, max_size_factor : float
        Connectivity thresholds, as fractions of the mean superpixel area:
        finite, 0 <= min_size_factor <= max_size_factor.
    start_label : {0, 1}, optional
        The first label; default 0, or 1 with a ``mask`` (scikit-image's default),
        so that 0 marks the pixels outside it. Pixels outside a mask get
        ``start_label - 1``, as in scikit-image.
    channel_axis : int or None, default -1
        The image's colour axis; None for a 2-D grayscale image.
    grid : {'calibrated', 'original'}
        'calibrated' makes the initial grid for the count that, by the model's
        calibration (measured on BSDS500 val over position weights 0.5-4 and
        sizes 0.1-24 MP, docs/CALIBRATION.md), ends with about ``n_segments``
        superpixels after connectivity on average (within 10% there at nearly
        every setting, 12% at worst; single images vary by +-40%); 'original'
        keeps the original release's grid for ``n_segments`` itself, which ends
        with about 1.4-1.8 times as many at position weight 1.
        Either way the superpixels are the same algorithm's: calibrated for n is
        original for :func:`ssn.grid.grid_request` (n).
    fused : bool, default True
        Run the SLIC iterations as one forward-only SlicIterations layer; False
        runs the decomposed Passoc/Softmax/SpixelFeature2 layers, which give the
        same labels up to float ties, several times slower.
    position_weight : float, optional
        Multiplies the scale of the pixel positions in the features (the
        original's test-time scale at 1); default: the model's (1 for the bundled
        model, 2 for ``ssn_synthflow``, 1 without metadata). Larger values give more compact,
        more regular superpixels, smaller ones follow colour and learned edges
        more closely; the role of SLIC's ``compactness``. A deep model sees the
        positions through its CNN too, so values far from 1 leave the
        conditions it was trained in.
    mask : ndarray, H x W, bool, optional
        Superpixels only where it is true (scikit-image's ``slic(mask=...)``); a
        numeric array of 0 and 1 is taken too. ``n_segments`` counts superpixels
        over the mask's area. The grid is laid over the mask's bounding box at
        that density; pixels outside the mask neither start nor move a
        superpixel centre, and connectivity keeps to the mask. A mask needs the
        decomposed SLIC layers (``fused`` has no effect) and costs about as much
        as the image of its bounding box. An all-true mask gives the labels of
        no mask (from ``start_label``).
    convert2lab : bool, optional
        Whether the image goes through Lab; default: when it has 1, 3 or 4
        channels (grayscale, RGB, RGBA: the alpha channel is dropped). False
        uses the channels as given (pixel mode only), so a 4-channel image that
        is RGB plus depth keeps its depth.
    channel_scale : float or sequence of C floats, optional
        Pixel mode: each channel's weight against the positions (finite, >= 0).
        Default: 0.26 for Lab (the trained colour scale); for channels used as
        given, 26 / (the channel's max - min over the image, or the mask), so
        that every channel spans what Lab's L (0..100) spans, and a constant
        channel counts for nothing. Deep mode refuses it.
    gpu : int, optional
        Run on this CUDA device (an id >= 0), then go back to the device before;
        None runs where Caffe runs now (the CPU unless
        :func:`ssn.device.use_device` chose a GPU). Nets are kept per device.

    return_association : bool, default False
        Also return the soft association of the last SLIC step
        (:class:`ssn.association.Association`: each pixel's 9 candidate
        superpixels and weights, the superpixel centres in feature space, the
        labels before connectivity). Its superpixels are grid cells, not the
        returned labels: :mod:`ssn.association` says how the two relate. It
        costs about 110 bytes a pixel more (the net's association blob and the
        two arrays returned), 2.6 GB at 24 MP.
    timings : dict, optional
        Each stage's seconds (:data:`STAGES`) are added to it, for an RGB or
        grayscale image through Lab without a mask (left as is otherwise):
        ``ssn-bench-infer`` reports them.

    Returns
    -------
    labels : ndarray, H x W, int32
        Consecutive labels from ``start_label``; ``start_label - 1`` outside a mask.
    association : Association
        Only with ``return_association``.

    Raises
    ------
    TypeError
        A count that is not a number, or an argument given under both names.
    ValueError
        An image, count, mode or geometry the network cannot take, a mask of the
        wrong shape or with no pixel inside, channels the deep model cannot take,
        or a GPU this Caffe or machine lacks; the message names the argument.
    FileNotFoundError
        ``weights`` does not exist.
    ModelMetadataError
        A ValueError: the weights' metadata file is there but unreadable or wrong.
    NetTooLargeError
        A ValueError and a MemoryError: the image needs a blob over Caffe's
        INT_MAX count, or more memory than is available.
    RuntimeError
        In a process forked from one that ran Caffe on a GPU (use 'spawn').

    Notes
    -----
    Threads may call it at once: they take turns with the cached nets and get
    what serial calls give. A child forked after the parent called it drops the
    parent's nets and runs on one OpenMP and BLAS thread (libgomp's thread pool
    does not survive a fork); 'spawn' workers keep all their threads.

    Examples
    --------
    >>> from skimage import data
    >>> from ssn.inference import superpixels
    >>> labels = superpixels(data.astronaut(), n_segments=200)   # doctest: +SKIP
    >>> labels.shape, labels.min()                               # doctest: +SKIP
    ((512, 512), 0)
    >>> from ssn.association import pool
    >>> labels, soft = superpixels(data.astronaut(), 200,
    ...                            return_association=True)     # doctest: +SKIP
    >>> pool(data.astronaut(), soft).shape                       # doctest: +SKIP
    (196, 3)
    """
    enforce = bool(resolve_alias("enforce_connectivity", enforce_connectivity, "connectivity",
                                 connectivity, True))
    start_label = start_label_argument(start_label, mask is not None)
    if not isinstance(return_association, (bool, np.bool_)):
        raise TypeError(f"return_association must be True or False, got {return_association!r}")
    settings = InferenceSettings.build(
        resolve_alias("n_segments", n_segments, "n_spixels", n_spixels, 100),
        num_steps=num_steps, weights=weights, features=features, grid=grid,
        enforce_connectivity=enforce, min_size_factor=min_size_factor,
        max_size_factor=max_size_factor, fused=fused, position_weight=position_weight,
        device=gpu_argument(gpu), stacklevel=4)  # the warning names superpixels()' caller
    image = channels_last(image, channel_axis)
    lab = uses_lab(image, convert2lab)
    if settings.features == "deep":
        check_deep_input(image, lab, channel_scale)
    mask = mask_argument(mask, image.shape[:2])
    if mask is not None and mask.all():
        mask = None  # the whole image: no mask
    if mask is not None or not lab or channel_scale is not None:
        if return_association:
            raise ValueError("return_association is available for RGB or grayscale images "
                             "in Lab without a mask or channel_scale")
        with on_device(settings.device):
            return start_label + superpixels_of_values(image, settings, mask, lab,
                                                       channel_scale)
    labels, soft = lab_superpixels(image, settings, bool(return_association), timings)
    labels += start_label
    return (labels, soft) if return_association else labels


class StageClock:
    """Adds the seconds of each stage to a dict (``timings``), if one is given."""

    def __init__(self, timings: Optional[dict]) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Charge the time since the last lap to ``stage``."""
        if self.timings is not None:
            now = time.perf_counter()
            self.timings[stage] = self.timings.get(stage, 0.0) + now - self.last
            self.last = now


# The stages that superpixels(timings=) reports, in order (features: the tiled CNN of a
# large image; forward: the net, with the CNN of a smaller one).
STAGES = ("grid", "net", "lab", "pixel_features", "features", "forward", "connectivity")


def lab_superpixels(image: np.ndarray, settings: InferenceSettings, association: bool,
                    timings: Optional[dict] = None
                    ) -> tuple[np.ndarray, Optional[Association]]:
    """:func:`superpixels`' labels from 0 (H x W int32) of an RGB or grayscale image
    (H x W x C or H x W, channels last) through Lab, and the soft association if asked.

    One path at every size: Lab planes (3 x H x W) -> pixel features (5 x H x W,
    :func:`ssn.channels.position_and_values`, written into the net's input blob)
    -> the net; an image over :data:`ssn.tiling.TILE_PIXELS` pixels has its deep
    features computed in tiles and SLIC run by a net without the CNN.
    ``timings``: each stage's seconds (:data:`STAGES`) are added to it.
    """
    clock = StageClock(timings)
    rgb = as_rgb(image, keep_uint8=True)
    height, width = rgb.shape[:2]
    num_steps, fused, weights_path = settings.num_steps, settings.fused, settings.weights
    cell_grid = decide_grid(settings.n_segments, height, width, settings.model.calibration,
                            settings.grid, settings.position_weight)
    pos_scale = settings.position_weight * position_scale(cell_grid, height, width)
    in_tiles = tiled(height, width, settings.features)
    clock.lap("grid")
    _check_fork()
    # the cached nets are one set of blobs each: one thread at a time
    with net_lock(), on_device(settings.device) as device_id:
        _prepare_for_fork()
        try:  # the nets' checks first: a clear error before the work
            if in_tiles:
                net = _slic_net(height, width, cell_grid, num_steps, settings.feature_dim,
                                fused, association, device_id)
            else:
                net = deploy_net_for(height, width, cell_grid, num_steps, settings.features,
                                     weights_path, file_identity(weights_path), fused,
                                     association=association,
                                     feature_dim=settings.feature_dim, device=device_id,
                                     pixel_input=True)
            cells = cell_input(height, width, cell_grid)
            clock.lap("net")
            lab = rgb_to_lab_planes(rgb)
            del rgb
            clock.lap("lab")
            blob = None if in_tiles else net.net.blobs[PIXEL_FEATURES].data[0]
            pixel_feats = position_and_values(lab, pos_scale,
                                              np.full(3, settings.color_scale, np.float32),
                                              out=blob)
            del lab
            clock.lap("pixel_features")
            if in_tiles:
                tiled_features(pixel_feats, weights_path, settings.feature_dim,
                               out=net.net.blobs[FEATURES].data[0],
                               weights_identity=file_identity(weights_path))
                clock.lap("features")
            del pixel_feats
            net.forward(outputs=[], spixel_init=cells, feat_spixel_init=cells)
        except NetTooLargeError as error:
            raise NetTooLargeError(f"a {height}x{width} image is too large for the SSN net: "
                                   f"{error}") from error
        if settings.features == "deep" and not np.isfinite(net.net.blobs[FEATURES].data).all():
            raise ValueError(f"the weights {weights_path} give NaN or infinite features for "
                             "this image: the model diverged or its weights are damaged, so "
                             "its superpixels would be meaningless")
        labels = net.net.blobs["new_spix_indices"].data[0, 0].astype(np.int32)
        soft = association_of(net, *cell_grid, num_steps, fused) if association else None
    del cells
    clock.lap("forward")
    if settings.size_factors is not None:
        min_size, max_size = connectivity_sizes(height, width, cell_grid.request,
                                                *settings.size_factors)
        labels = connect_segments(labels, min_size, max_size)
    else:
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
    clock.lap("connectivity")
    return labels.astype(np.int32, copy=False), soft


def association_of(net: CheckedNet, grid_h: int, grid_w: int, num_steps: int,
                   fused: bool) -> Association:
    """The soft association of a deploy or SLIC net just run (built with ``association``)."""
    blobs = net.net.blobs
    return association_from_blobs(blobs[ASSOCIATION].data[0],
                                  blobs[centres_blob(num_steps, fused)].data[0],
                                  blobs["new_spix_indices"].data[0, 0], grid_h, grid_w)


def channels_last(image, channel_axis: Optional[int]) -> np.ndarray:
    """The image with its colour axis last; a 2-D image as is when ``channel_axis`` is None."""
    image = np.asarray(image)
    if channel_axis is None:
        if image.ndim != 2:
            raise ValueError(f"channel_axis=None needs a 2-D grayscale image, got shape "
                             f"{image.shape}")
        return image
    if image.ndim == 2:
        return image
    if not -image.ndim <= channel_axis < image.ndim:
        raise ValueError(f"channel_axis={channel_axis} is out of range for an image of shape "
                         f"{image.shape}")
    return np.moveaxis(image, channel_axis, -1)


def start_label_argument(start_label, masked: bool) -> int:
    """``start_label`` checked (0 or 1); None gives 0, or 1 with a mask."""
    if start_label is None:
        return 1 if masked else 0
    if start_label not in (0, 1) or isinstance(start_label, (bool, np.bool_)):
        raise ValueError(f"start_label must be 0 or 1, got {start_label!r}")
    return int(start_label)


# --------------------------------------------------------------------------------------------
# Superpixels of pixel features made in NumPy: a mask, or channels not through the trained
# colour scale. The nets take the features as an input (no PixelFeature layer).


def superpixels_of_values(image: np.ndarray, request: InferenceSettings,
                          mask: Optional[np.ndarray], lab: bool,
                          channel_scale: ChannelScale) -> np.ndarray:
    """:func:`superpixels`' labels from 0, -1 outside the mask, for an image inside a mask
    or whose channels are scaled otherwise than the trained colour scale.

    Parameters
    ----------
    image : ndarray, H x W or H x W x C
        Channels last, as :func:`superpixels` was given it.
    request : InferenceSettings
    mask : ndarray, H x W bool, or None
        With at least one pixel inside (None: all).
    lab : bool
        Whether the image goes through Lab (:func:`ssn.channels.uses_lab`).
    channel_scale : float, sequence, or None
        As :func:`superpixels` takes it.

    Returns
    -------
    ndarray, H x W, int32
    """
    height, width = image.shape[:2]
    if mask is None:
        box = Box(0, 0, height, width)
        grid = decide_grid(request.n_segments, height, width, request.model.calibration,
                           request.grid, request.position_weight)
    else:
        box = bounding_box(mask)
        grid = Grid.for_request(
            masked_grid_request(request.n_segments, mask[box.slices],
                                request.model.calibration, request.grid,
                                request.position_weight),
            box.height, box.width, request.n_segments, request.grid)
    pos_scale = request.position_weight * position_scale(grid, box.height, box.width)
    box_mask = None if mask is None else mask[box.slices]
    _check_fork()
    with net_lock():  # the cached nets are one set of blobs each: one thread at a time
        _prepare_for_fork()
        try:
            feats = box_features(image, box, box_mask, lab, channel_scale, request, pos_scale)
            cells = cell_input(box.height, box.width, grid)
            if box_mask is None:
                raw = _slic_labels(feats, cells, grid, request)
            else:
                raw = _masked_slic_labels(feats, cells, box_mask, grid, request.num_steps)
        except NetTooLargeError as error:
            raise NetTooLargeError(f"a {box.height}x{box.width} image is too large for the "
                                   f"SSN net: {error}") from error
    labels = np.full((height, width), -1, np.int32)
    labels[box.slices] = _connected(raw, box_mask, box, grid, request.size_factors)
    return labels


def box_features(image: np.ndarray, box: Box, box_mask: Optional[np.ndarray], lab: bool,
                 channel_scale: ChannelScale, request: InferenceSettings,
                 pos_scale: float) -> np.ndarray:
    """The pixel features SLIC sees in the box, D x h x w float32: positions (from the
    image's corner) and scaled Lab or channels, the CNN's learned ones in deep mode,
    and with a mask one more channel, :data:`ssn.masks.INSIDE_VALUE` inside and 0
    outside."""
    origin = (box.top, box.left)
    if request.features == "deep":
        feats = deep_box_features(image, box, request.weights, pos_scale)
    elif lab:
        planes = rgb_to_lab_planes(as_rgb(image[box.slices], keep_uint8=True))
        feats = position_and_values(planes, pos_scale, lab_scales(channel_scale), origin)
    else:
        planes = channel_planes(image[box.slices], box_mask)
        feats = position_and_values(planes, pos_scale,
                                    channel_scales(planes, channel_scale, box_mask), origin)
    if box_mask is None:
        return feats
    inside = np.where(box_mask, np.float32(INSIDE_VALUE), np.float32(0))
    return np.concatenate([feats, inside[None]])


def deep_box_features(image: np.ndarray, box: Box, weights: str,
                      pos_scale: float) -> np.ndarray:
    """The deep features of the pixels of ``box``, equal to those of the whole image
    (to float rounding), DEEP_FEATURE_DIM x h x w float32.

    The CNN runs, in tiles (:func:`ssn.tiling.tiled_features`), on the box widened by
    its receptive margin and started on a multiple of its pooling stride, with the
    whole image's positions: each pixel of the box sees what it sees in the whole.
    """
    height, width = image.shape[:2]
    margin, stride = tiling.feature_margin(DEEP_FEATURE_DIM)
    top = max(0, box.top - margin) // stride * stride
    left = max(0, box.left - margin) // stride * stride
    bottom, right = min(height, box.bottom + margin), min(width, box.right + margin)
    planes = rgb_to_lab_planes(as_rgb(image[top:bottom, left:right], keep_uint8=True))
    pixel_feats = position_and_values(planes, pos_scale, lab_scales(None), (top, left))
    del planes
    feats = tiled_features(pixel_feats, weights, DEEP_FEATURE_DIM,
                           weights_identity=file_identity(weights))
    if not np.isfinite(feats).all():
        raise ValueError(f"the weights {weights} give NaN or infinite features for this "
                         "image: the model diverged or its weights are damaged, so its "
                         "superpixels would be meaningless")
    return np.ascontiguousarray(feats[:, box.top - top:box.bottom - top,
                                      box.left - left:box.right - left])


def _slic_labels(feats: np.ndarray, cells: np.ndarray, grid: Grid,
                 request: InferenceSettings) -> np.ndarray:
    """Raw superpixel ids (h x w int32) of SLIC on ``feats`` (D x h x w) from ``cells``."""
    channels, height, width = feats.shape
    net = _slic_net(height, width, grid, request.num_steps, channels,
                    bool(request.fused), device=current_device())
    net.forward(outputs=[], spixel_init=cells, feat_spixel_init=cells,
                **{FEATURES: feats[None]})
    return net.net.blobs["new_spix_indices"].data[0, 0].astype(np.int32)


def _masked_slic_labels(feats: np.ndarray, cells: np.ndarray, mask: np.ndarray,
                        grid: Grid, num_steps: int) -> np.ndarray:
    """Raw superpixel ids (h x w int32) of SLIC that only the pixels of ``mask`` steer
    (:func:`ssn.nets.generators.masked_slic_net`): the initial centres, then each step's
    centres copied back as the next step's start, then the assignment."""
    channels, height, width = feats.shape
    net = _masked_slic_net(height, width, grid, channels, current_device())
    net.set_inputs({FEATURES: feats[None], "spixel_init": cells,
                    "feat_spixel_init": np.where(mask, cells, np.float32(INIT_IGNORE_INDEX)),
                    PIXEL_MASK: mask[None, None]})
    caffe_net, names = net.net, list(net.net._layer_names)
    caffe_net._forward(0, names.index(MASKED_PREPARE_END))
    # .data each time: it moves the blob's head to the CPU, so a GPU run sees the copy
    caffe_net.blobs[CENTRES].data[...] = caffe_net.blobs["init_spixel_feat"].data
    first, last = (names.index(name) for name in MASKED_STEP)
    for _ in range(num_steps - 1):
        caffe_net._forward(first, last)
        caffe_net.blobs[CENTRES].data[...] = caffe_net.blobs[MASKED_STEP[1]].data
    assign = names.index(MASKED_ASSIGN)
    caffe_net._forward(assign, assign)
    return caffe_net.blobs["new_spix_indices"].data[0, 0].astype(np.int32)


def _connected(raw: np.ndarray, mask: Optional[np.ndarray], box: Box, grid: Grid,
               factors: Optional[tuple[float, float]]) -> np.ndarray:
    """Labels consecutive from 0 (h x w int32; -1 outside the mask) from raw ids, made
    connected when ``factors`` (min, max size factors) are given."""
    if factors is None:
        if mask is None:
            return np.unique(raw, return_inverse=True)[1].reshape(raw.shape).astype(np.int32)
        return consecutive_inside(raw, mask)
    min_size, max_size = connectivity_sizes(box.height, box.width, grid.request, *factors)
    if mask is None:
        return connect_segments(raw, min_size, max_size).astype(np.int32, copy=False)
    return connect_inside(raw, mask, min_size, max_size)
