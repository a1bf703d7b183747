"""The grid decided once per image (ssn.grid.Grid) and the config's honest name for it."""
import dataclasses
import json
import warnings

import pytest

from ssn.grid import Grid, decide_grid, grid_request, grid_shape
from ssn.model_metadata import shipped_calibration
from ssn.nets.generators import SSNConfig, deploy_net, position_scale
from ssn.settings import BUNDLED_WEIGHTS, InferenceSettings


def test_a_grid_is_the_shape_of_its_request():
    grid = Grid.for_request(100, 321, 481)
    assert grid.shape == grid_shape(100, 321, 481) == tuple(grid)
    assert (grid.request, grid.n_segments, grid.rule) == (100, 100, "given")
    assert grid.cells == grid.rows * grid.cols <= 100
    assert grid.cell_ids(321, 481).max() == grid.cells - 1
    with pytest.raises(ValueError, match="too small"):
        Grid.for_request(400, 5, 5)


def test_decide_grid_records_what_it_came_from():
    calibration = shipped_calibration("deep")
    grid = decide_grid(200, 321, 481, calibration, "calibrated", 1.0)
    assert grid.request == grid_request(200, 321, 481, calibration, "calibrated", 1.0)
    assert grid.request != 200 and grid.n_segments == 200 and grid.rule == "calibrated"
    assert decide_grid(200, 321, 481, calibration, "original").request == 200
    assert position_scale(grid, 321, 481) == position_scale(grid.request, 321, 481)


def test_n_spixels_is_a_deprecated_alias_of_grid_request():
    with pytest.warns(DeprecationWarning, match="grid_request"):
        old = SSNConfig(n_spixels=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = SSNConfig(grid_request=30)
    assert old == new and new.n_spixels == 30
    with pytest.raises(TypeError, match="not both"):
        SSNConfig(grid_request=30, n_spixels=40)


def test_a_net_refuses_a_grid_made_for_another_request():
    config = SSNConfig(height=40, width=40, grid_request=16, num_steps=1, feature_dim=5)
    deploy_net(config, Grid.for_request(16, 40, 40))
    with pytest.raises(ValueError, match="made for 25"):
        deploy_net(config, Grid.for_request(25, 40, 40))


def test_settings_are_built_once_and_round_trip():
    settings = InferenceSettings.build(200, features="deep", enforce_connectivity=False)
    assert settings.weights == str(BUNDLED_WEIGHTS.resolve())
    assert settings.num_steps == settings.model.num_steps and settings.size_factors is None
    assert InferenceSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    assert InferenceSettings.build(**settings.arguments()) == settings
    pixel = InferenceSettings.build(50, num_steps=3, features="pixel", position_weight=2)
    assert (pixel.weights, pixel.feature_dim, pixel.position_weight) == (None, 5, 2.0)
    assert pixel.size_factors == (0.06, 3.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        pixel.num_steps = 4
    with pytest.raises(ValueError, match="grid must be one of"):
        InferenceSettings.build(50, features="pixel", grid="square")
