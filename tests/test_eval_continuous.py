"""Reconstruction error of continuous targets through superpixels (ssn.evaluation.continuous)."""
import csv

import numpy as np
import pytest

from ssn.cli.eval_continuous import main
from ssn.evaluation.continuous import (
    flow_colours,
    reconstruction_error,
    score,
    superpixel_means,
)
from tests.pair_data import flow_folder


def test_superpixel_means_replace_each_pixel_by_its_segment_mean():
    labels = np.array([[0, 0, 1], [2, 2, 1]])
    target = np.array([[[1, 0], [3, 2], [5, 5]], [[0, 0], [0, 4], [7, 1]]], float)
    means = superpixel_means(labels, target)
    np.testing.assert_allclose(means[0, 0], [2, 1])
    np.testing.assert_allclose(means[0, 2], [6, 3])
    np.testing.assert_allclose(means[1, 1], [0, 2])


def test_the_error_is_the_mean_end_point_error_of_the_mean_flow():
    labels = np.zeros((1, 2), int)
    flow = np.array([[[3.0, 4.0], [-3.0, -4.0]]])  # mean 0: each pixel is 5 away
    assert reconstruction_error(labels, flow) == pytest.approx(5.0)
    assert reconstruction_error(np.array([[0, 1]]), flow) == 0.0


def test_superpixels_that_follow_the_motion_boundary_score_zero():
    flow = np.zeros((6, 8, 2))
    flow[:, 4:] = [2.0, -1.0]
    halves = (np.arange(8)[None] >= 4).repeat(6, 0).astype(int)
    shifted = (np.arange(8)[None] >= 3).repeat(6, 0).astype(int)
    assert reconstruction_error(halves, flow) == 0.0
    assert reconstruction_error(shifted, flow) > 0.0
    assert score(halves, flow, None) == [dict(n_spixels=2, reconstruction_error=0.0)]


def test_a_one_channel_target_gives_the_mean_absolute_error():
    assert reconstruction_error(np.zeros((1, 2), int), np.array([[1.0, 3.0]])) == 1.0


def test_mismatched_shapes_are_errors():
    with pytest.raises(ValueError, match="labels are"):
        superpixel_means(np.zeros((2, 2), int), np.zeros((2, 3, 2)))


def test_flow_colours_code_direction_by_hue_and_length_by_saturation():
    flow = np.array([[[0.0, 0.0], [1.0, 0.0], [-2.0, 0.0]]])
    colours = flow_colours(flow)
    np.testing.assert_allclose(colours[0, 0], [1, 1, 1])  # no motion: white
    assert not np.allclose(colours[0, 1], colours[0, 2])  # opposite directions differ
    assert colours.min() >= 0 and colours.max() <= 1


def test_the_tool_scores_methods_at_matched_counts(tmp_path):
    data = flow_folder(tmp_path / "d", height=40, width=48)
    out = tmp_path / "eval"
    assert main(["--dataset", str(data), "--methods", "slic", "--n-segments", "4", "16",
                 "--matched-counts", "8", "--pictures", "1", "--picture-count", "4",
                 "--out", str(out)]) == 0
    with open(out / "summary.csv") as stream:
        summary = list(csv.DictReader(stream))
    assert [row["method"] for row in summary] == ["SLIC", "SLIC"]
    # A constant flow is rebuilt exactly by any superpixels.
    assert all(float(row["reconstruction_error"]) < 1e-6 for row in summary)
    assert (out / "matched.md").read_text().startswith("| actual count | SLIC |")
    assert (out / "pictures" / "a.png").stat().st_size > 0 and (out / "curves.png").exists()


def test_the_tool_refuses_a_bad_model_spec(tmp_path):
    data = flow_folder(tmp_path / "d")
    assert main(["--dataset", str(data), "--model", "nothing", "--out", str(tmp_path / "o")]) == 2


def test_a_baseline_runs_at_the_compactness_asked_for(tmp_path):
    data = flow_folder(tmp_path / "d", height=40, width=48)
    out = tmp_path / "eval"
    assert main(["--dataset", str(data), "--methods", "slic", "--n-segments", "9",
                 "--compactness", "slic=40", "--out", str(out)]) == 0
    with open(out / "summary.csv") as stream:
        assert [row["method"] for row in csv.DictReader(stream)] == ["SLIC-c40"]
    assert main(["--dataset", str(data), "--methods", "slic", "--n-segments", "9",
                 "--compactness", "slic=much", "--out", str(out)]) == 2
