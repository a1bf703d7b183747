"""The synthetic optical flow data set (ssn.examples.synthflow, ssn-synthflow)."""
import json

import numpy as np
import pytest
from skimage import io as skio

from ssn.cli.synthflow import main
from ssn.examples.synthflow import (
    AffineMotion,
    MotionRange,
    affine_flow,
    coarsest,
    image_rng,
    segment_motions,
    synthetic_flow,
)
from ssn.flow import read_flo


def quadrants(height=20, width=30):
    rows, cols = np.indices((height, width))
    return (rows >= height // 2) * 2 + (cols >= width // 2) + 1  # ids 1..4


def test_each_segment_moves_by_its_own_affine_motion():
    segmentation = quadrants()
    motions = segment_motions(segmentation, np.random.default_rng(1))
    flow = affine_flow(segmentation, motions)
    assert flow.shape == (20, 30, 2) and flow.dtype == np.float32
    for segment, motion in motions.items():
        rows, cols = np.nonzero(segmentation == segment)
        moved = (motion.linear @ np.stack([cols - motion.centre[0], rows - motion.centre[1]])
                 ).T + motion.centre + motion.translation
        np.testing.assert_allclose(flow[rows, cols], moved - np.stack([cols, rows], 1),
                                   atol=1e-4)
        # Rotation and scale are about the segment's centroid.
        np.testing.assert_allclose(motion.centre, [cols.mean(), rows.mean()])


def test_motions_stay_within_their_ranges():
    ranges = MotionRange(max_translation=3, max_rotation=4, max_scale=0.1)
    rng = np.random.default_rng(2)
    for motion in segment_motions(np.arange(200).reshape(10, 20), rng, ranges).values():
        scale = np.sqrt(abs(np.linalg.det(motion.linear)))
        angle = np.degrees(np.arctan2(motion.linear[1, 0], motion.linear[0, 0]))
        assert 0.9 <= scale <= 1.1 and abs(angle) <= 4
        assert np.all(np.abs(motion.translation) <= 3)


def test_flow_jumps_exactly_at_segment_boundaries():
    segmentation = quadrants(24, 36)
    flow = synthetic_flow(segmentation, np.random.default_rng(3))
    for axis in (0, 1):
        jump = np.linalg.norm(np.diff(flow, axis=axis), axis=-1)
        boundary = np.diff(segmentation, axis=axis) != 0
        # Inside a segment the flow changes by at most the affine part per pixel step...
        assert jump[~boundary].max() < 0.1
        # ... and across every boundary by a translation-sized jump.
        assert jump[boundary].min() > 0.1


def test_one_segment_with_no_motion_has_zero_flow():
    motion = AffineMotion(np.eye(2), np.array([3.0, 4.0]), np.zeros(2))
    assert np.all(affine_flow(np.ones((5, 6), int), {1: motion}) == 0)


def test_a_segment_without_motion_is_an_error():
    with pytest.raises(ValueError, match=r"no motion for segment\(s\) \[2\]"):
        affine_flow(np.array([[1, 2]]), {1: AffineMotion(np.eye(2), np.zeros(2), np.zeros(2))})


def test_the_same_seed_and_id_give_the_same_flow_and_others_differ():
    segmentation = quadrants()
    first = synthetic_flow(segmentation, image_rng(5, "1001"))
    np.testing.assert_array_equal(first, synthetic_flow(segmentation, image_rng(5, "1001")))
    assert not np.array_equal(first, synthetic_flow(segmentation, image_rng(6, "1001")))
    assert not np.array_equal(first, synthetic_flow(segmentation, image_rng(5, "1002")))


def test_coarsest_takes_the_annotation_with_fewest_segments():
    fine, coarse = quadrants(), np.ones((20, 30), int)
    assert coarsest([fine, coarse, coarse * 2]) is not fine
    np.testing.assert_array_equal(coarsest([fine, coarse]), coarse)
    with pytest.raises(ValueError):
        coarsest([])


def test_bad_ranges_are_errors():
    with pytest.raises(ValueError):
        MotionRange(max_translation=-1)
    with pytest.raises(ValueError, match="max_scale"):
        MotionRange(max_scale=1.0)


def test_the_tool_writes_a_data_set_that_reads_back(tmp_path, sample_root):
    out = tmp_path / "flow"
    assert main(["--split", "val", "--out", str(out), "--seed", "3"]) == 0
    stems = sorted(p.stem for p in (out / "images").glob("*.jpg"))
    assert stems == ["9001", "9011", "9021"]
    first = read_flo(out / "targets" / "9001.flo")
    image = skio.imread(out / "images" / "9001.jpg")
    segments = skio.imread(out / "segments" / "9001.png")
    assert first.shape == image.shape[:2] + (2,) and segments.shape == image.shape[:2]
    np.testing.assert_array_equal(first, synthetic_flow(segments, image_rng(3, "9001")))
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 3 and config["ids"] == stems
    # A rerun keeps the files; another config in the same folder is refused.
    before = (out / "targets" / "9001.flo").stat().st_mtime_ns
    assert main(["--split", "val", "--out", str(out), "--seed", "3"]) == 0
    assert (out / "targets" / "9001.flo").stat().st_mtime_ns == before
    assert main(["--split", "val", "--out", str(out), "--seed", "4"]) == 2


def test_the_tool_reports_a_missing_data_root(tmp_path):
    assert main(["--out", str(tmp_path / "x"), "--data-root", str(tmp_path / "none")]) == 2
