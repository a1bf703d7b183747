"""A model's inference settings and count calibration, in a JSON file beside its weights.

``model.caffemodel`` has its settings in ``model.json`` (:func:`metadata_path`)::

    {"format": "ssn-model", "version": 1,
     "description": "SSN_deep trained on BSDS500 train ...",
     "num_steps": 10, "position_weight": 1.0, "color_scale": 0.26, "feature_dim": 20,
     "calibration": {...} or null}

``num_steps`` and ``position_weight`` are the defaults of
:func:`ssn.inference.superpixels`, ``ssn-infer`` and ``ssn-eval`` for this model
(an explicit argument wins); ``color_scale`` multiplies the Lab values of the
pixel features, as in training; ``feature_dim`` is the channels the CNN gives
(5 + its learned ones); ``calibration`` (:class:`ssn.calibration.Calibration`)
is the measured superpixels per grid cell that ``grid='calibrated'`` inverts.

Why a file beside the .caffemodel rather than inside it: a .caffemodel is a
Caffe NetParameter that any Caffe reads; putting settings in it would mean a
dummy layer or an abused name field that Caffe tools drop on re-save and that
nobody can read or edit without protobuf. A JSON file is read and changed with
any editor, and the weights stay a plain Caffe model. The price is that the two
can be separated; then:

* weights without a metadata file run with :data:`DEFAULTS` (10 steps, position
  weight 1, colour scale 0.26, 20 features) and the shipped BSDS500 model's
  calibration, with a warning: most models are trained by this project's recipe
  from that model, and an uncalibrated grid would give 1.5-2 x the request;
* a metadata file whose ``calibration`` is null (training snapshots: nobody has
  measured them) does the same with its own settings, with the same warning;
* a metadata file that is there but unreadable or wrong is an error
  (:class:`ModelMetadataError`, naming the file and the key): it was meant to be used.

Pixel mode (SSN_pix) uses no weights; its settings and calibration are
``ssn/models/pixel.json``, in the same format.
"""
from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Union

from ssn.atomic import write_atomic
from ssn.calibration import Calibration, CalibrationError

MODELS = Path(__file__).resolve().parent / "models"
BUNDLED_METADATA = MODELS / "ssn_bsds.json"
PIXEL_METADATA = MODELS / "pixel.json"
FORMAT = "ssn-model"
VERSION = 1
SETTINGS_KEYS = ("num_steps", "position_weight", "color_scale", "feature_dim")


class ModelMetadataError(ValueError):
    """A metadata file that cannot be used; the message names the file and the key."""


class UncalibratedModelWarning(UserWarning):
    """Weights without a calibration of their own: the counts follow the BSDS500 model's."""


@dataclass(frozen=True)
class ModelSettings:
    """A model's inference settings (see the module notes).

    Attributes
    ----------
    num_steps : int
    position_weight : float
    color_scale : float
    feature_dim : int
    calibration : Calibration or None
        None: not measured (the BSDS500 model's is used, with a warning).
    description : str
    source : str or None
        The metadata file these came from; None for :data:`DEFAULTS`.
    """

    num_steps: int = 10
    position_weight: float = 1.0
    color_scale: float = 0.26
    feature_dim: int = 20
    calibration: Optional[Calibration] = None
    description: str = ""
    source: Optional[str] = None

    def to_dict(self) -> dict:
        """The metadata file's content."""
        return dict(format=FORMAT, version=VERSION, description=self.description,
                    num_steps=self.num_steps, position_weight=self.position_weight,
                    color_scale=self.color_scale, feature_dim=self.feature_dim,
                    calibration=self.calibration.to_dict() if self.calibration else None)


DEFAULTS = ModelSettings(description="defaults for weights without metadata")


def metadata_path(weights: Union[str, Path]) -> Path:
    """The metadata file of a weights file: ``x.caffemodel`` -> ``x.json``."""
    return Path(weights).with_suffix(".json")


def _check_number(path: Path, key: str, value, low: float, high: float,
                  whole: bool = False) -> None:
    kind = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (whole and value != int(value)) or not low <= value <= high:
        raise ModelMetadataError(f"{path}: {key} must be {kind} in [{low:g}, {high:g}], "
                                 f"got {value!r}")


def settings_from_dict(data, path: Path) -> ModelSettings:
    """Checked :class:`ModelSettings` from a metadata file's parsed content."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ModelMetadataError(f"{path} is not SSN model metadata (it needs \"format\": "
                                 f"\"{FORMAT}\")")
    if data.get("version") != VERSION:
        raise ModelMetadataError(f"{path}: version {data.get('version')!r} is not one this "
                                 f"ssn reads ({VERSION})")
    unknown = sorted(set(data) - {"format", "version", "description", "calibration",
                                  *SETTINGS_KEYS})
    if unknown:
        raise ModelMetadataError(f"{path}: unknown keys {', '.join(unknown)}")
    values = {key: data.get(key, getattr(DEFAULTS, key)) for key in SETTINGS_KEYS}
    _check_number(path, "num_steps", values["num_steps"], 1, 1000, whole=True)
    _check_number(path, "position_weight", values["position_weight"], 1e-4, 1e4)
    _check_number(path, "color_scale", values["color_scale"], 1e-6, 1e6)
    _check_number(path, "feature_dim", values["feature_dim"], 5, 4096, whole=True)
    calibration = None
    if data.get("calibration") is not None:
        try:
            calibration = Calibration.from_dict(data["calibration"])
        except CalibrationError as error:
            raise ModelMetadataError(f"{path}: calibration: {error}") from error
    return ModelSettings(num_steps=int(values["num_steps"]),
                         position_weight=float(values["position_weight"]),
                         color_scale=float(values["color_scale"]),
                         feature_dim=int(values["feature_dim"]), calibration=calibration,
                         description=str(data.get("description", "")), source=str(path))


def read_metadata(path: Union[str, Path]) -> ModelSettings:
    """The settings in a metadata file.

    Raises
    ------
    ModelMetadataError
        A ValueError naming the file: it cannot be read, is not JSON, is not SSN
        metadata, or has a value out of range.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise ModelMetadataError(f"cannot read model metadata {path}: "
                                 f"{error.strerror or error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelMetadataError(f"model metadata {path} is not valid JSON: {error}") from error
    return settings_from_dict(data, path)


def write_metadata(path: Union[str, Path], settings: ModelSettings) -> Path:
    """Write ``settings`` to ``path`` atomically; returns the path."""
    path = Path(path)
    write_atomic(path, json.dumps(settings.to_dict(), indent=1) + "\n")
    return path


def _identity(path: Path) -> Optional[tuple]:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


@lru_cache(maxsize=64)
def _read_cached(path: str, identity: Optional[tuple]) -> Optional[ModelSettings]:
    return None if identity is None else read_metadata(path)


def find_settings(path: Union[str, Path]) -> Optional[ModelSettings]:
    """The settings in ``path`` (re-read when the file changes), None if there is no file."""
    path = Path(path)
    return _read_cached(str(path), _identity(path))


def bundled_calibration() -> Calibration:
    """The shipped BSDS500 model's calibration, the fallback of uncalibrated weights."""
    settings = find_settings(BUNDLED_METADATA)
    if settings is None or settings.calibration is None:
        raise ModelMetadataError(f"the shipped model's metadata {BUNDLED_METADATA} is missing "
                                 "or has no calibration: the installation is incomplete")
    return settings.calibration


def shipped_calibration(features: str) -> Calibration:
    """The calibration of the shipped model ("deep") or of pixel mode ("pixel")."""
    if features not in ("deep", "pixel"):
        raise ValueError(f"features must be 'deep' or 'pixel', got {features!r}")
    return bundled_calibration() if features == "deep" else model_settings(None).calibration


def model_settings(weights: Optional[Union[str, Path]], stacklevel: int = 3) -> ModelSettings:
    """The settings that :func:`ssn.inference.superpixels` runs ``weights`` with, always
    with a calibration; None: pixel mode. ``stacklevel``: the warning's, as for
    :func:`warnings.warn` counted from the caller of this function's caller.

    Weights without metadata, or with an uncalibrated one, get the BSDS500 model's
    calibration and an :class:`UncalibratedModelWarning` (once per file).
    """
    if weights is None:
        settings = find_settings(PIXEL_METADATA)
        if settings is None or settings.calibration is None:
            raise ModelMetadataError(f"pixel mode's metadata {PIXEL_METADATA} is missing or "
                                     "has no calibration: the installation is incomplete")
        return settings
    path = metadata_path(weights)
    settings = find_settings(path)
    if settings is not None and settings.calibration is not None:
        return settings
    why = ("has no metadata file " + str(path) if settings is None
           else "has metadata without a calibration (" + str(path) + ")")
    warnings.warn(f"the weights {weights} {why}: running with "
                  f"{'the defaults' if settings is None else 'its settings'} and the shipped "
                  "BSDS500 model's count calibration, so the number of superpixels may be "
                  "off; measure one with ssn-bench-calibration --write-metadata",
                  UncalibratedModelWarning, stacklevel=stacklevel)
    return dataclasses.replace(settings or DEFAULTS, calibration=bundled_calibration())


def train_net_settings(net_param) -> Optional[ModelSettings]:
    """The settings a model trained by ``net_param`` (a Caffe NetParameter made by
    :func:`ssn.nets.generators.train_net`) runs with: the position weight and colour
    scale of its ``pixel_features`` layer, 5 + the channels of ``Convolution7``, 10
    steps, not calibrated. None if it has no feature CNN or no PixelFeature layer."""
    from ssn.nets.generators import TRAIN_POSITION_SCALE

    layers = {layer.name: layer for layer in net_param.layer}
    pixel, last = layers.get("pixel_features"), layers.get("Convolution7")
    if pixel is None or last is None or pixel.type != "PixelFeature":
        return None
    feature = pixel.pixel_feature_param
    return ModelSettings(
        position_weight=float(f"{feature.pos_scale / TRAIN_POSITION_SCALE:.6g}"),
        color_scale=float(f"{feature.color_scale:.6g}"),
        feature_dim=5 + int(last.convolution_param.num_output),
        description=f"training snapshot of the net {net_param.name or '(unnamed)'}; not "
                    "calibrated: measure with ssn-bench-calibration --weights <this "
                    ".caffemodel> --write-metadata")
