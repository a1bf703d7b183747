"""Models carry their settings: the metadata file beside a .caffemodel read by superpixels(),
ssn-infer and ssn-eval (explicit arguments win), the fallback without one, clear errors for a
bad one, the files that training and ssn-export-model write, and the count calibration."""
import dataclasses
import math
import shutil
import warnings

import numpy as np
import pytest
from skimage import data

from ssn.association import pool
from ssn.calibration import Calibration, CalibrationError, fit
from ssn.color import rgb_to_lab
from ssn.grid import expected_count, grid_request, grid_shape
from ssn.inference import BUNDLED_WEIGHTS, superpixels
from ssn.model_metadata import (
    BUNDLED_METADATA,
    DEFAULTS,
    ModelMetadataError,
    UncalibratedModelWarning,
    metadata_path,
    model_settings,
    read_metadata,
    shipped_calibration,
    train_net_settings,
    write_metadata,
)

FLOW_WEIGHTS = BUNDLED_WEIGHTS.with_name("ssn_synthflow.caffemodel")


@pytest.fixture(scope="module")
def image():
    return np.ascontiguousarray(data.astronaut()[100:190, 150:270])


def copy_of_the_model(tmp_path, name="model", **settings):
    """The bundled weights under a new name, with a metadata file of the bundled one's
    settings changed by ``settings`` (None: no metadata file)."""
    weights = tmp_path / f"{name}.caffemodel"
    shutil.copyfile(BUNDLED_WEIGHTS, weights)
    if settings.pop("metadata", True) is not None:
        bundled = read_metadata(BUNDLED_METADATA)
        write_metadata(metadata_path(weights), dataclasses.replace(bundled, **settings))
    return weights


# --------------------------------------------------------------------------------------------
# The shipped models


def test_the_shipped_models_have_checked_metadata():
    for weights in (BUNDLED_WEIGHTS, FLOW_WEIGHTS):
        settings = read_metadata(metadata_path(weights))
        assert settings.calibration is not None and settings.feature_dim == 20
        assert settings.num_steps == 10 and settings.color_scale == 0.26
    assert read_metadata(metadata_path(FLOW_WEIGHTS)).position_weight == 2.0
    assert read_metadata(BUNDLED_METADATA).position_weight == 1.0
    assert model_settings(None).feature_dim == 5  # pixel mode's file


def test_the_flow_model_runs_at_its_own_position_weight(image):
    own = superpixels(image, 40, weights=FLOW_WEIGHTS, num_steps=4)
    np.testing.assert_array_equal(
        own, superpixels(image, 40, weights=FLOW_WEIGHTS, num_steps=4, position_weight=2))
    assert not np.array_equal(
        own, superpixels(image, 40, weights=FLOW_WEIGHTS, num_steps=4, position_weight=1))


# --------------------------------------------------------------------------------------------
# Metadata against explicit arguments


def test_metadata_settings_are_the_defaults_and_arguments_override_them(tmp_path, image):
    weights = copy_of_the_model(tmp_path, num_steps=3, position_weight=2.5)
    from_metadata = superpixels(image, 40, weights=weights)
    np.testing.assert_array_equal(
        from_metadata, superpixels(image, 40, weights=BUNDLED_WEIGHTS, num_steps=3,
                                   position_weight=2.5))
    overridden = superpixels(image, 40, weights=weights, num_steps=10, position_weight=1.0)
    np.testing.assert_array_equal(overridden, superpixels(image, 40))
    assert not np.array_equal(from_metadata, overridden)


def test_the_colour_scale_of_the_metadata_scales_the_lab_features(tmp_path, image):
    # One step: the centres are the initial cells' mean features, [.., cs * Lab, ..].
    weights = copy_of_the_model(tmp_path, color_scale=0.5, num_steps=1)
    _, soft = superpixels(image, 30, weights=weights, return_association=True,
                          grid="original")
    cells = soft.candidates[..., 4]
    one_hot = np.zeros(soft.weights.shape, np.float32)
    one_hot[..., 4] = 1  # each pixel wholly in its own cell: pool() gives cell means
    lab_means = pool(rgb_to_lab(image), dataclasses.replace(soft, weights=one_hot))
    assert np.unique(cells).size == soft.n_superpixels
    np.testing.assert_allclose(soft.centres[:, 2:5], 0.5 * lab_means, rtol=1e-4, atol=1e-3)


def test_weights_without_metadata_use_the_defaults_and_warn(tmp_path, image):
    weights = copy_of_the_model(tmp_path, name="bare", metadata=None)
    with pytest.warns(UncalibratedModelWarning, match="has no metadata file"):
        labels = superpixels(image, 40, weights=weights)
    np.testing.assert_array_equal(labels, superpixels(image, 40))  # the same settings
    assert (DEFAULTS.num_steps, DEFAULTS.position_weight) == (10, 1.0)


def test_metadata_without_a_calibration_uses_its_settings_and_warns(tmp_path, image):
    weights = copy_of_the_model(tmp_path, calibration=None, position_weight=3.0)
    with pytest.warns(UncalibratedModelWarning, match="without a calibration"):
        labels = superpixels(image, 40, weights=weights)
    np.testing.assert_array_equal(labels, superpixels(image, 40, position_weight=3.0))


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not valid JSON"),
    ('{"hello": 1}', "is not SSN model metadata"),
    ('{"format": "ssn-model", "version": 7}', "version 7"),
    ('{"format": "ssn-model", "version": 1, "num_steps": 0}', "num_steps must be a whole"),
    ('{"format": "ssn-model", "version": 1, "position_weight": "2"}', "position_weight must"),
    ('{"format": "ssn-model", "version": 1, "feature_dim": 20.5}', "feature_dim must"),
    ('{"format": "ssn-model", "version": 1, "colour_scale": 0.3}', "unknown keys colour_scale"),
    ('{"format": "ssn-model", "version": 1, "calibration": {"terms": ["w"], '
     '"coefficients": [1], "ranges": {"cells": [1, 2], "position_weight": [1, 2], '
     '"megapixels": [1, 2]}}}', "calibration: unknown calibration terms"),
    ('{"format": "ssn-model", "version": 1, "calibration": {"terms": ["1"]}}',
     "calibration lacks coefficients, ranges"),
])
def test_a_bad_metadata_file_is_a_clear_error(tmp_path, image, content, message):
    weights = copy_of_the_model(tmp_path, metadata=None)
    metadata_path(weights).write_text(content)
    with pytest.raises(ModelMetadataError, match=message) as error:
        superpixels(image, 40, weights=weights)
    assert str(metadata_path(weights)) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_metadata_of_another_feature_count_names_the_layer(tmp_path, image):
    weights = copy_of_the_model(tmp_path, feature_dim=30)
    with pytest.raises(ValueError, match="Convolution7"):
        superpixels(image, 40, weights=weights)


def test_a_rewritten_metadata_file_is_read_again(tmp_path, image):
    weights = copy_of_the_model(tmp_path, position_weight=1.0)
    first = superpixels(image, 40, weights=weights, num_steps=3)
    bundled = read_metadata(BUNDLED_METADATA)
    write_metadata(metadata_path(weights), dataclasses.replace(bundled, position_weight=3.0))
    np.testing.assert_array_equal(superpixels(image, 40, weights=weights, num_steps=3),
                                  superpixels(image, 40, num_steps=3, position_weight=3.0))
    assert not np.array_equal(first, superpixels(image, 40, weights=weights, num_steps=3))


# --------------------------------------------------------------------------------------------
# The tools


def test_ssn_infer_records_the_settings_of_the_model(tmp_path):
    from ssn.infer.task import make_settings
    settings, _ = make_settings(100, None, None, FLOW_WEIGHTS, True, 0.06, 3.0)
    assert settings["position_weight"] == 2.0 and settings["num_steps"] == 10
    settings, _ = make_settings(100, 4, None, FLOW_WEIGHTS, True, 0.06, 3.0,
                                position_weight=1.0)
    assert "position_weight" not in settings and settings["num_steps"] == 4
    settings, _ = make_settings(100, None, None, None, True, 0.06, 3.0)
    assert "position_weight" not in settings and settings["num_steps"] == 10
    broken = copy_of_the_model(tmp_path, metadata=None)
    metadata_path(broken).write_text("[]")
    with pytest.raises(ModelMetadataError, match="not SSN model metadata"):
        make_settings(100, None, None, broken, True, 0.06, 3.0)


def test_a_changed_calibration_makes_ssn_infer_results_stale(tmp_path):
    from ssn.infer.task import make_settings
    weights = copy_of_the_model(tmp_path)
    before, _ = make_settings(100, None, None, weights, True, 0.06, 3.0)
    assert make_settings(100, None, None, weights, True, 0.06, 3.0)[0] == before
    bundled = read_metadata(BUNDLED_METADATA)
    coefficients = list(bundled.calibration.coefficients)
    coefficients[0] += 0.01
    write_metadata(metadata_path(weights), dataclasses.replace(
        bundled, calibration=dataclasses.replace(bundled.calibration,
                                                 coefficients=tuple(coefficients))))
    after, _ = make_settings(100, None, None, weights, True, 0.06, 3.0)
    assert after["model_sha256"] != before["model_sha256"]
    assert {key for key in after if after[key] != before[key]} == {"model_sha256"}


def test_ssn_infer_and_ssn_eval_leave_steps_and_weight_to_the_model():
    from ssn.cli.eval import build_parser as eval_parser
    from ssn.cli.infer import build_parser as infer_parser
    for parser, extra in ((infer_parser(), ["x.png", "--out", "o"]),
                          (eval_parser(), ["--out", "o"])):
        args = parser.parse_args(extra)
        assert args.num_steps is None and args.position_weight is None
        args = parser.parse_args(extra + ["--num-steps", "3", "--position-weight", "2"])
        assert args.num_steps == 3 and args.position_weight == 2.0


def test_training_snapshots_get_the_settings_they_were_trained_at():
    from ssn.nets.prototxt import PrototxtOptions
    settings = train_net_settings(PrototxtOptions(position_weight=2.0).train_net_param())
    assert settings.position_weight == 2.0 and settings.feature_dim == 20
    assert settings.color_scale == 0.26 and settings.calibration is None
    assert train_net_settings(PrototxtOptions(feature_dim=5).train_net_param()) is None


def test_export_carries_the_metadata_and_a_bad_one_stops_it_first(tmp_path):
    from ssn.cli.export_model import main as export_main
    from tests.test_tools import write_snapshot
    snapshot = write_snapshot(tmp_path / "ssn_iter_1.caffemodel")
    trained = dataclasses.replace(DEFAULTS, position_weight=2.0, description="snapshot")
    write_metadata(metadata_path(snapshot), trained)
    out = tmp_path / "model" / "ssn.caffemodel"
    assert export_main([str(snapshot), "--out", str(out)]) == 0
    assert read_metadata(metadata_path(out)).position_weight == 2.0
    metadata_path(snapshot).write_text("{")
    out.unlink()
    assert export_main([str(snapshot), "--out", str(out)]) == 2
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# The calibration


def test_fit_recovers_a_known_calibration_and_clamps_outside_its_range():
    rng = np.random.default_rng(3)
    cells = rng.uniform(50, 2000, 60)
    weights = rng.uniform(0.5, 4, 60)
    megapixels = rng.uniform(0.1, 24, 60)
    truth = 0.6 - 0.1 * np.log(cells) - 0.3 * np.log(weights) + 0.02 * np.log(megapixels)
    calibration = fit(cells, weights, megapixels, np.exp(truth), terms=("1", "x", "y", "z"))
    np.testing.assert_allclose(calibration.coefficients, [0.6, -0.1, -0.3, 0.02], atol=1e-9)
    low = calibration.per_cell(cells.min(), 0.5, 1.0)
    assert calibration.per_cell(cells.min() / 10, 0.5, 1.0) == low
    assert calibration.per_cell(1000, 100.0, 1.0) == calibration.per_cell(1000, weights.max(),
                                                                            1.0)
    assert Calibration.from_dict(calibration.to_dict()) == calibration


def test_fit_with_an_offset_per_image_predicts_the_mean_image():
    # Two images, one at twice the other's ratio, measured at different sizes: the
    # size effect must not absorb the difference between the images.
    cells = np.array([100, 200, 400, 100, 200, 400] * 2, float)
    megapixels = np.array([0.15] * 6 + [12.0] * 6)
    images = ["a", "a", "a", "b", "b", "b"] + ["a"] * 6
    base = np.exp(1.0 - 0.1 * np.log(cells))
    ratio = base * np.array([1.0 if name == "a" else 2.0 for name in images])
    calibration = fit(cells, np.ones(12), megapixels, ratio, images=images,
                      terms=("1", "x", "z"))
    assert abs(dict(zip(calibration.terms, calibration.coefficients))["z"]) < 1e-9
    np.testing.assert_allclose(calibration.per_cell(200, 1, 1), 1.5 * math.exp(1.0 - 0.1 *
                                                                               math.log(200)))


@pytest.mark.parametrize("data_, message", [
    (dict(terms=["1"], coefficients=[1, 2], ranges=dict(cells=[1, 2], position_weight=[1, 2],
                                                          megapixels=[1, 2])), "1 terms but 2"),
    (dict(terms=["1"], coefficients=[1], ranges=dict(cells=[2, 1], position_weight=[1, 2],
                                                       megapixels=[1, 2])), "range of cells"),
    (dict(terms=["1"], coefficients=["a"], ranges=dict(cells=[1, 2], position_weight=[1, 2],
                                                         megapixels=[1, 2])), "not numbers"),
    ([1, 2], "an object"),
])
def test_bad_calibrations_are_refused(data_, message):
    with pytest.raises(CalibrationError, match=message):
        Calibration.from_dict(data_)


def test_a_calibration_below_one_per_cell_asks_for_more_cells_than_requested():
    flat = Calibration(("1",), (math.log(0.8),), ((1, 1e6), (0.1, 10), (0.01, 100)))
    request = grid_request(400, 321, 481, flat)
    assert 450 < request <= 800
    assert abs(expected_count(request, 321, 481, flat) - 400) < 0.06 * 400
    assert grid_request(400, 20, 20, flat) == 400  # no room for more cells than pixels


@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_grid_requests_follow_the_position_weight(features):
    calibration = shipped_calibration(features)
    for weight in (0.5, 1, 2, 4):
        for height, width in ((321, 481), (4000, 6000), (240, 320)):
            for n in (200, 400, 1000):
                request = grid_request(n, height, width, calibration, position_weight=weight)
                cells = math.prod(grid_shape(request, height, width))
                assert abs(expected_count(request, height, width, calibration, weight) - n) \
                    <= 0.1 * n, (weight, height, width, n, request, cells)


@pytest.mark.slow
def test_calibrated_counts_on_a_few_bsds_images(bsds_root):
    from ssn.bsds import load_bsds, read_split
    images = [load_bsds(image_id, "val", bsds_root).rgb for image_id in read_split(
        "val", bsds_root)[:6]]
    for features, weight, n in (("deep", 2.0, 300), ("pixel", 0.5, 200)):
        counts = [superpixels(rgb, n, features=features, position_weight=weight).max() + 1
                  for rgb in images]
        # The mean of 6 images (single images vary by +-30%).
        assert abs(np.mean(counts) / n - 1) < 0.15, (features, weight, counts)


def test_a_warning_is_not_raised_for_calibrated_models(image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        superpixels(image, 40, weights=FLOW_WEIGHTS, num_steps=2)
        superpixels(image, 40, features="pixel", num_steps=2)


def test_a_fit_at_one_size_can_take_the_size_terms_of_another():
    rng = np.random.default_rng(4)
    cells, weights = rng.uniform(50, 2000, 30), rng.uniform(0.5, 4, 30)
    sized = Calibration(("1", "x", "z", "x*z"), (0.5, -0.1, 0.05, 0.01),
                        ((50, 2000), (0.5, 4), (0.1, 24)))
    measured = 0.8 - 0.12 * np.log(cells) + 0.05 * np.log(0.15) + 0.01 * np.log(cells) * \
        np.log(0.15)
    calibration = fit(cells, weights, np.full(30, 0.15), np.exp(measured),
                      terms=("1", "x", "z", "x*z"), size_from=sized)
    coefficients = dict(zip(calibration.terms, calibration.coefficients))
    assert coefficients["z"] == 0.05 and coefficients["x*z"] == 0.01
    np.testing.assert_allclose([coefficients["1"], coefficients["x"]], [0.8, -0.12], atol=1e-9)
    assert calibration.ranges[2] == (0.1, 24)


@pytest.mark.parametrize("name", ["ssn_bsds", "ssn_synthflow", "pixel"])
def test_the_shipped_calibrations_grow_with_the_grid(name):
    # grid_request's bisection needs the expected count to grow with the requested grid.
    calibration = read_metadata(BUNDLED_METADATA.with_name(f"{name}.json")).calibration
    for weight in (0.3, 0.5, 1, 2, 4, 6):
        for height, width in ((321, 481), (240, 320), (4000, 6000)):
            counts = [expected_count(g, height, width, calibration, weight)
                      for g in range(1, 3000, 7)]
            assert all(np.diff(counts) >= 0), (weight, height, width)
            assert 0.9 < counts[-1] / math.prod(grid_shape(2996, height, width)) < 2.5


@pytest.mark.slow
def test_bench_calibration_measures_prints_and_writes_a_calibration(tmp_path, sample_root,
                                                                     capsys):
    from ssn.benchmarks.calibration import fit_rows, read_rows
    from ssn.cli.bench_calibration import main as bench_main
    weights = copy_of_the_model(tmp_path, metadata=None)
    rows = tmp_path / "rows.csv"
    with pytest.warns(UncalibratedModelWarning):
        assert bench_main(["--weights", str(weights), "--images", "2", "--megapixels", "0",
                           "0.01", "--n-segments", "20", "40", "--position-weights", "1", "2",
                           "--rows", str(rows),
                           "--summary", str(tmp_path / "summary.csv")]) == 0
    printed = capsys.readouterr().out
    assert "| MP | images | requested | pw 1 | pw 2 |" in printed
    measured = read_rows([rows])
    assert len(measured) == 2 * 2 * 2 * 2
    assert all(row["actual"] >= 1 and row["cells"] <= row["grid_count"] for row in measured)
    # --from-rows with --write-metadata: the file the weights will be read with.
    assert bench_main(["--weights", str(weights), "--from-rows", str(rows),
                       "--write-metadata"]) == 0
    written = read_metadata(metadata_path(weights))
    assert written.calibration == fit_rows(measured)
    assert written.position_weight == DEFAULTS.position_weight


def test_the_paired_table_divides_by_the_same_images_at_their_own_size():
    from ssn.benchmarks.calibration import NATIVE, paired, summary, worst

    def row(image, megapixels, actual):
        return dict(image=image, megapixels=megapixels, position_weight=1.0, requested=100,
                    height=10, width=10, actual=actual, cells=50)
    rows = [row("a", NATIVE, 80), row("b", NATIVE, 120), row("c", NATIVE, 300),
            row("a", 2.0, 88), row("b", 2.0, 132)]
    [entry] = paired(rows)
    assert (entry["megapixels"], entry["images"]) == (2.0, 2)
    assert entry["ratio"] == pytest.approx(220 / 200)  # the size adds 10%; "c" is not there
    table = summary(rows)
    assert [round(e["ratio"], 3) for e in table] == [round(500 / 300, 3), 1.1]
    assert worst(table) == pytest.approx(500 / 300 - 1)
