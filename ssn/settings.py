"""The settings one :func:`ssn.inference.superpixels` call runs with, checked and
resolved once: :class:`InferenceSettings`, a frozen value built from the arguments
and the model's metadata (:mod:`ssn.model_metadata`), that a batch run records
(:meth:`InferenceSettings.to_dict`) and compares on a rerun; and the checks of
each argument, which name it in their errors.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ssn.device import gpu_argument
from ssn.grid import GRID_MODES
from ssn.model_metadata import ModelSettings, model_settings, settings_from_dict

BUNDLED_WEIGHTS = Path(__file__).resolve().parent / "models" / "ssn_bsds.caffemodel"
FEATURE_MODES = ("deep", "pixel")


def bundled_weights() -> Optional[Path]:
    """The project's trained BSDS500 model, if one is shipped."""
    return BUNDLED_WEIGHTS if BUNDLED_WEIGHTS.is_file() else None


def resolve_features(features: Optional[str], weights: Optional[Union[str, Path]]
                     ) -> tuple[str, Optional[str]]:
    """(mode, weights path): 'deep' needs weights (given or bundled); None picks for you."""
    if features is not None and features not in FEATURE_MODES:
        raise ValueError(f"features must be one of {FEATURE_MODES}, got {features!r}")
    if weights is None and features != "pixel":
        weights = bundled_weights()
        if weights is None and features == "deep":
            raise ValueError("features='deep' needs weights: no trained model is bundled yet; "
                             "pass weights=<.caffemodel> or use features='pixel'")
    if features is None:
        features = "deep" if weights is not None else "pixel"
    if weights is not None and not Path(weights).is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    return features, (str(weights) if features == "deep" and weights is not None else None)


def require_number(name: str, value, what: str = "a number") -> None:
    """Raise TypeError unless ``value`` is a real number (not a bool, string or array)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}")


def count_argument(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (20, np.int64(20), 20.0).

    Raises
    ------
    TypeError
        If it is not a number (a string, None, an array).
    ValueError
        If it is fractional, not finite, or below ``minimum``.
    """
    require_number(name, value, "a whole number")
    if not np.isfinite(value) or float(value) != int(value):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {int(value)}")
    return int(value)


# Position weights that make sense: far outside, the positions' squared distances leave
# float32 (1e20 gave NaN associations, silently) or the colours no longer count at all.
POSITION_WEIGHT_RANGE = (1e-4, 1e4)


def position_weight_argument(value, name: str = "position_weight") -> float:
    """``value`` as a float if it is a finite number in :data:`POSITION_WEIGHT_RANGE`.

    Raises
    ------
    TypeError
        If it is not a number.
    ValueError
        If it is not finite or outside the range (the message gives the range).
    """
    low, high = POSITION_WEIGHT_RANGE
    require_number(name, value)
    if not np.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}] (1 is the "
                         f"trained scale), got {value!r}")
    return float(value)


def size_factors(min_size_factor, max_size_factor) -> tuple[float, float]:
    """The connectivity thresholds as floats, if they are finite with
    0 <= ``min_size_factor`` <= ``max_size_factor``.

    Raises
    ------
    TypeError
        If one is not a number.
    ValueError
        If one is not finite, or they are out of order.
    """
    factors = []
    for name, value in (("min_size_factor", min_size_factor),
                        ("max_size_factor", max_size_factor)):
        require_number(name, value)
        if not np.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        factors.append(float(value))
    if not 0 <= factors[0] <= factors[1]:
        raise ValueError(f"need 0 <= min_size_factor <= max_size_factor, got "
                         f"{factors[0]} and {factors[1]}")
    return factors[0], factors[1]


def model_defaults(settings: ModelSettings, num_steps, position_weight) -> tuple[int, float]:
    """(num_steps, position_weight): each as given (checked), or the model's if None."""
    return (count_argument("num_steps", settings.num_steps if num_steps is None else num_steps),
            position_weight_argument(settings.position_weight if position_weight is None
                                     else position_weight))


@dataclass(frozen=True)
class InferenceSettings:
    """What one :func:`ssn.inference.superpixels` call runs with, each value checked.

    Attributes
    ----------
    features : {'deep', 'pixel'}
    weights : str or None
        The weights file, resolved to an absolute path once; None in pixel mode.
    n_segments : int
        The superpixels asked for.
    num_steps : int
    position_weight : float
        The call's, or the model's default.
    color_scale : float
        The model's scale of the Lab values.
    feature_dim : int
        Channels SLIC sees: the model's (deep) or 5 (pixel).
    grid : {'calibrated', 'original'}
        How the grid request is decided (:func:`ssn.grid.decide_grid`).
    size_factors : (float, float) or None
        The connectivity's (min, max) size factors; None: no connectivity.
    fused : bool
    device : int or None
        The GPU id, or None for where Caffe runs now.
    model : ModelSettings
        The model's metadata, its calibration included.
    """

    features: str
    weights: Optional[str]
    n_segments: int
    num_steps: int
    position_weight: float
    color_scale: float
    feature_dim: int
    grid: str
    size_factors: Optional[tuple[float, float]]
    fused: bool
    device: Optional[int]
    model: ModelSettings

    @classmethod
    def build(cls, n_segments=100, *, num_steps=None, weights=None, features=None,
              grid: str = "calibrated", enforce_connectivity: bool = True,
              min_size_factor=0.06, max_size_factor=3.0, fused: bool = True,
              position_weight=None, device: Optional[int] = None,
              gpu: Optional[int] = None, stacklevel: int = 3) -> "InferenceSettings":
        """The settings of these arguments (as :func:`ssn.inference.superpixels` takes
        them) and the model's metadata; ``device`` a checked GPU id, or ``gpu`` one
        to check (superpixels()' name); ``stacklevel``: the uncalibrated-model
        warning's (:func:`ssn.model_metadata.model_settings`).

        Raises
        ------
        TypeError, ValueError, FileNotFoundError
            As :func:`ssn.inference.superpixels` does, naming the argument.
        """
        if gpu is not None:  # superpixels()' name for it
            if device is not None:
                raise TypeError("give device or gpu, not both")
            device = gpu_argument(gpu)
        n_segments = count_argument("n_segments", n_segments)
        if grid not in GRID_MODES:
            raise ValueError(f"grid must be one of {GRID_MODES}, got {grid!r}")
        factors = (size_factors(min_size_factor, max_size_factor)
                   if enforce_connectivity else None)
        mode, path = resolve_features(features, weights)
        path = None if path is None else str(Path(path).resolve())
        model = model_settings(path, stacklevel=stacklevel + 1)
        num_steps, position_weight = model_defaults(model, num_steps, position_weight)
        return cls(features=mode, weights=path, n_segments=n_segments, num_steps=num_steps,
                   position_weight=position_weight, color_scale=model.color_scale,
                   feature_dim=model.feature_dim if mode == "deep" else 5, grid=grid,
                   size_factors=factors, fused=bool(fused), device=device, model=model)

    @property
    def connectivity(self) -> bool:
        return self.size_factors is not None

    def arguments(self) -> dict:
        """The keyword arguments of :func:`ssn.inference.superpixels` (and of
        :meth:`build`) that give these settings again."""
        factors = self.size_factors or (0.06, 3.0)
        return dict(n_segments=self.n_segments, num_steps=self.num_steps,
                    weights=self.weights, features=self.features, grid=self.grid,
                    enforce_connectivity=self.connectivity, min_size_factor=factors[0],
                    max_size_factor=factors[1], fused=self.fused,
                    position_weight=self.position_weight, gpu=self.device)

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (the model's metadata under "model")."""
        return dict(features=self.features, weights=self.weights, n_segments=self.n_segments,
                    num_steps=self.num_steps, position_weight=self.position_weight,
                    color_scale=self.color_scale, feature_dim=self.feature_dim,
                    grid=self.grid,
                    size_factors=None if self.size_factors is None else list(self.size_factors),
                    fused=self.fused, device=self.device, model=self.model.to_dict(),
                    model_source=self.model.source)

    @classmethod
    def from_dict(cls, data: dict) -> "InferenceSettings":
        """The settings :meth:`to_dict` wrote (a ValueError or KeyError if they are not)."""
        source = data.get("model_source")
        model = settings_from_dict(data["model"], Path(source or "<settings>"))
        if source is None:
            model = dataclasses.replace(model, source=None)
        factors = data["size_factors"]
        return cls(features=data["features"], weights=data["weights"],
                   n_segments=int(data["n_segments"]), num_steps=int(data["num_steps"]),
                   position_weight=float(data["position_weight"]),
                   color_scale=float(data["color_scale"]),
                   feature_dim=int(data["feature_dim"]), grid=data["grid"],
                   size_factors=None if factors is None else (float(factors[0]),
                                                              float(factors[1])),
                   fused=bool(data["fused"]), device=data["device"], model=model)
