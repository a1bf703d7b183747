"""Regions of continuous targets (ssn.training.regions) and ssn-target-regions."""
import numpy as np
import pytest
from skimage import io as skio

from ssn.cli.target_regions import main
from ssn.flow import write_flo
from ssn.training.pairs import check_dataset
from ssn.training.regions import target_regions
from tests.pair_data import write_image


def piecewise_affine_flow(height=40, width=50):
    """Three segments (left, top right, bottom right), each moving by its own
    affine motion: small steps inside, a jump of at least 2 px between them."""
    ys, xs = np.mgrid[:height, :width].astype(float)
    segments = np.where(xs < 20, 0, np.where(ys < 15, 1, 2))
    motions = [(0.0, 0.0, 0.01), (3.0, -1.0, -0.02), (-2.0, 4.0, 0.015)]
    flow = np.zeros((height, width, 2))
    for index, (u, v, rotation) in enumerate(motions):
        inside = segments == index
        flow[inside, 0] = u - rotation * (ys[inside] - height / 2)
        flow[inside, 1] = v + rotation * (xs[inside] - width / 2)
    return flow, segments


def test_regions_recover_the_moving_segments_largest_first():
    flow, segments = piecewise_affine_flow()
    regions = target_regions(flow, 0.5)
    assert regions.dtype == np.int32 and regions.min() == 1 and regions.max() == 3
    for label in (1, 2, 3):
        assert len(np.unique(segments[regions == label])) == 1
    areas = np.bincount(regions.ravel())[1:]
    assert list(areas) == sorted(areas, reverse=True)
    assert areas[0] == np.sum(segments == 0)  # 40 x 20, the largest


def test_the_threshold_is_the_largest_step_inside_a_region():
    step = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert target_regions(step, 1.0).max() == 1           # a step of 1 joins at 1
    assert target_regions(step, 0.999).max() == 2
    # Euclidean over channels: (0.6, 0.8) is a step of 1.
    two = np.zeros((1, 2, 2))
    two[0, 1] = [0.6, 0.8]
    assert target_regions(two, 1.0).max() == 1 and target_regions(two, 0.99).max() == 2


@pytest.mark.parametrize("target, threshold, message", [
    (np.zeros((3, 3)), 0, "threshold must be > 0"),
    (np.zeros((3,)), 1, "H x W or H x W x C"),
    (np.array([[0.0, np.nan]]), 1, "NaN"),
])
def test_bad_arguments_say_why(target, threshold, message):
    with pytest.raises(ValueError, match=message):
        target_regions(target, threshold)


def test_the_tool_writes_a_label_data_set_and_skips_a_bad_pair(tmp_path, caplog):
    data = tmp_path / "flow"
    flow, segments = piecewise_affine_flow()
    for stem in ("a", "b"):
        write_image(data / "images" / f"{stem}.png", 40, 50)
        write_flo(data / "targets" / f"{stem}.flo", flow)
    write_image(data / "images" / "c.png", 40, 50)
    (data / "targets" / "c.flo").write_bytes(b"not a flow file")
    out = tmp_path / "regions"
    assert main(["--dataset", str(data), "--threshold", "0.5", "--out", str(out)]) == 1
    assert "c.flo" in caplog.text
    pairs, _ = check_dataset(out / "pairs.txt", "labels")
    assert sorted(pair.stem for pair in pairs) == ["a", "b"]
    regions = skio.imread(out / "regions" / "a.png")
    np.testing.assert_array_equal(regions, target_regions(flow, 0.5))
    assert all(pair.image.resolve() == (data / "images" / f"{pair.stem}.png").resolve()
               for pair in pairs)


def test_the_tool_refuses_a_threshold_that_is_not_positive(tmp_path):
    assert main(["--dataset", str(tmp_path), "--threshold", "-1", "--out",
                 str(tmp_path / "o")]) == 2
