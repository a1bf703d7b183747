"""The superpixels() API and tools/infer.py end to end, bad inputs included."""
import json

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage import io as skio

from ssn import inference, settings
from ssn.cli.infer import main as infer_main
from ssn.evaluation.metrics import compactness
from ssn.inference import superpixels


def assert_valid_labels(labels, shape):
    assert labels.shape == shape and labels.dtype == np.int32
    count = labels.max() + 1
    np.testing.assert_array_equal(np.unique(labels), np.arange(count))
    for label in range(count):  # each superpixel is one 4-connected piece
        _, pieces = ndimage.label(labels == label)
        assert pieces == 1, f"label {label} has {pieces} pieces"


def test_pixel_mode_superpixels_of_a_sample_image():
    image = data.astronaut()[::3, ::3]
    labels = superpixels(image, n_spixels=60, num_steps=5, features="pixel")
    assert_valid_labels(labels, image.shape[:2])
    # Pixel features follow colour closely: textured areas keep fragments above the
    # connectivity minimum, so the count can exceed the request.
    assert 0.5 * 60 <= labels.max() + 1 <= 2.5 * 60


def test_without_connectivity_labels_are_consecutive_grid_ids():
    image = data.coffee()[::4, ::4]
    labels = superpixels(image, n_spixels=30, num_steps=3, features="pixel",
                         connectivity=False)
    np.testing.assert_array_equal(np.unique(labels), np.arange(labels.max() + 1))


@pytest.mark.parametrize("convert", [
    lambda im: (im.mean(2)).astype(np.uint8),                       # grayscale
    lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)]),  # RGBA
    lambda im: im.astype(np.uint16) * 257,                          # 16 bit
    lambda im: im / 255.0,                                          # float
], ids=["gray", "rgba", "uint16", "float"])
def test_image_kinds_are_converted(convert):
    image = data.chelsea()[::5, ::5]
    labels = superpixels(convert(image), n_spixels=20, num_steps=2, features="pixel")
    assert labels.shape == image.shape[:2]


@pytest.mark.parametrize("image, kwargs, message", [
    (np.zeros((4, 5, 3), np.uint8), dict(n_spixels=100), "too small"),
    (np.zeros((40, 50, 3)) + 2.0, dict(), r"must lie in \[0, 1\]"),
    (np.zeros((40, 50, 3, 2)), dict(), "expected an H x W"),  # (2 channels: test_masks_channels)
    (np.zeros((40, 50, 3), np.uint8), dict(n_spixels=0), "n_segments must be >= 1"),
    (np.zeros((40, 50, 3), np.uint8), dict(num_steps=0), "num_steps must be >= 1"),
    (np.zeros((40, 50, 3), np.uint8), dict(features="other"), "features must be one of"),
])
def test_bad_inputs_say_why(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        superpixels(image, features=kwargs.pop("features", "pixel"), **kwargs)


def test_deep_features_need_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "BUNDLED_WEIGHTS", tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="needs weights"):
        superpixels(np.zeros((40, 50, 3), np.uint8), features="deep")


def test_nets_are_built_once_per_geometry():
    inference.deploy_net_for.cache_clear()
    image = data.camera()[::8, ::8]
    for _ in range(3):
        superpixels(image, n_spixels=16, num_steps=2, features="pixel")
    assert inference.deploy_net_for.cache_info().misses == 1
    assert inference.deploy_net_for.cache_info().hits == 2


@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_a_new_net_gives_the_labels_of_a_used_one(features):
    """A net's blobs are allocated on first use; when that happened inside a layer's
    parallel loop (Interp, Passoc), two threads each allocated, and the rows of
    one were lost in the first forward of every new geometry."""
    image = data.astronaut()[100:250, 150:350]  # enough rows for the parallel paths
    inference.deploy_net_for.cache_clear()
    first = superpixels(image, n_spixels=100, features=features)
    np.testing.assert_array_equal(superpixels(image, n_spixels=100, features=features), first)


@pytest.mark.slow
@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_fused_and_decomposed_label_bsds_images_alike(features, bsds_root):
    """The fused SLIC layer gives the decomposed layers' labels on real images, except
    at float ties: over 99.9% of the pixels agree on BSDS-size images."""
    from ssn.bsds import load_bsds, read_split
    for image_id in read_split("val", bsds_root)[:3]:
        rgb = load_bsds(image_id, "val", bsds_root).rgb
        fused, decomposed = (superpixels(rgb, 400, features=features, fused=fused,
                                         enforce_connectivity=False)
                             for fused in (True, False))
        assert fused.shape == rgb.shape[:2] and fused.max() > 200
        assert np.mean(fused == decomposed) > 0.999, image_id
    inference.deploy_net_for.cache_clear()  # a deep net at this size holds over a GB


def test_infer_tool_runs_fused_or_decomposed(tmp_path, val_images):
    outputs = []
    for flag in ("--fused", "--no-fused"):
        out = tmp_path / flag
        assert infer_main([str(val_images[0]), "--out", str(out), "--n-segments", "50",
                           "--num-steps", "3", "--features", "pixel", flag]) == 0
        assert json.loads((out / "config.json").read_text())["fused"] == (flag == "--fused")
        outputs.append(np.load(out / f"{val_images[0].stem}.npy"))
    assert np.mean(outputs[0] == outputs[1]) > 0.999


@pytest.mark.slow
def test_infer_tool_end_to_end_with_bad_files(tmp_path, val_images):
    images = tmp_path / "images"
    images.mkdir()
    good = [val_images[0], val_images[1]]
    skio.imsave(images / "gray.png", data.camera()[::4, ::4], check_contrast=False)
    (images / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    skio.imsave(images / "tiny.png", np.zeros((3, 3, 3), np.uint8), check_contrast=False)
    out = tmp_path / "out"
    args = [str(good[0]), str(good[1]), str(images), str(images / "missing.jpg"),
            "--out", str(out), "--n-segments", "50", "--num-steps", "3", "--features", "pixel"]
    assert infer_main(args) == 1  # corrupt, tiny and missing fail; the rest is written
    for stem in (good[0].stem, good[1].stem, "gray"):
        labels = np.load(out / f"{stem}.npy")
        assert_valid_labels(labels, labels.shape)
        assert skio.imread(out / f"{stem}_labels.png").dtype == np.uint16
        assert (out / f"{stem}_overlay.png").exists()
    rows = {row["image"]: row for row in json.loads((out / "summary.json").read_text())}
    assert rows[str(good[0])]["status"] == "ok" and rows[str(good[0])]["requested"] == 50
    failed = [row for row in rows.values() if row["status"].startswith("failed")]
    assert len(failed) == 3
    assert any("too small" in row["status"] for row in failed)
    assert any("file not found" in row["status"] for row in failed)
    assert json.loads((out / "config.json").read_text())["n_segments"] == 50

    before = (out / f"{good[0].stem}.npy").stat().st_mtime_ns
    same = ["--out", str(out), "--features", "pixel", "--n-segments", "50", "--num-steps", "3"]
    assert infer_main(args[:2] + same) == 0  # verified and kept
    assert (out / f"{good[0].stem}.npy").stat().st_mtime_ns == before
    # Other settings into the same --out: refused, nothing touched.
    assert infer_main(args[:2] + ["--out", str(out), "--features", "pixel"]) == 2
    assert (out / f"{good[0].stem}.npy").stat().st_mtime_ns == before
    assert infer_main(args[:1] + same + ["--overwrite"]) == 0
    assert (out / f"{good[0].stem}.npy").stat().st_mtime_ns != before


# --------------------------------------------------------------------------------------------
# scikit-image's keyword names, the SSN aliases, and argument checks


def small_image():
    return data.astronaut()[::8, ::8]  # 64 x 64 x 3


def test_sklearn_names_and_ssn_aliases_agree():
    image = small_image()
    by_name = superpixels(image, n_segments=16, num_steps=2, features="pixel",
                          enforce_connectivity=False)
    by_alias = superpixels(image, n_spixels=16, num_steps=2, features="pixel",
                           connectivity=False)
    np.testing.assert_array_equal(by_name, by_alias)
    with pytest.raises(TypeError, match="n_segments or its alias n_spixels, not both"):
        superpixels(image, n_segments=16, n_spixels=16, features="pixel")


def test_only_the_image_and_count_go_by_position():
    # scikit-image's slic(img, 200, 10) means compactness 10: here it must not mean 10 steps.
    with pytest.raises(TypeError, match=r"num_steps=\.\.\..*compactness"):
        superpixels(small_image(), 16, 10)
    with pytest.raises(TypeError, match="by keyword"):
        superpixels(small_image(), 16, 2, None, features="pixel")


@pytest.mark.parametrize("count", [16, 16.0, np.int64(16), np.float32(16)])
def test_whole_numbers_of_any_type_are_counts(count):
    labels = superpixels(small_image(), n_segments=count, num_steps=np.int32(2),
                         features="pixel")
    np.testing.assert_array_equal(labels, superpixels(small_image(), 16, num_steps=2,
                                                      features="pixel"))


@pytest.mark.parametrize("name, value, error, message", [
    ("n_segments", 20.7, ValueError, "n_segments must be a whole number"),
    ("n_segments", "20", TypeError, "n_segments must be a whole number, got str"),
    ("n_segments", None, None, None),  # the default
    ("num_steps", 2.5, ValueError, "num_steps must be a whole number"),
    ("num_steps", "3", TypeError, "num_steps must be a whole number"),
    ("num_steps", True, TypeError, "num_steps must be a whole number"),
    ("n_segments", float("nan"), ValueError, "n_segments must be a whole number"),
])
def test_counts_that_are_not_whole_numbers_name_the_argument(name, value, error, message):
    if error is None:
        assert superpixels(small_image(), **{name: value}, num_steps=1,
                           features="pixel").max() > 0
        return
    with pytest.raises(error, match=message):
        superpixels(small_image(), **{name: value}, features="pixel")


def test_start_label_and_channel_axis():
    image = small_image()
    labels = superpixels(image, 16, num_steps=2, features="pixel")
    one = superpixels(image, 16, num_steps=2, features="pixel", start_label=1)
    np.testing.assert_array_equal(one, labels + 1)
    first_axis = superpixels(np.moveaxis(image, -1, 0), 16, num_steps=2, features="pixel",
                             channel_axis=0)
    np.testing.assert_array_equal(first_axis, labels)
    gray = superpixels(image[:, :, 0], 16, num_steps=2, features="pixel", channel_axis=None)
    assert gray.shape == (64, 64)
    with pytest.raises(ValueError, match="start_label must be 0 or 1"):
        superpixels(image, 16, num_steps=2, features="pixel", start_label=2)
    with pytest.raises(ValueError, match="channel_axis=None needs a 2-D"):
        superpixels(image, 16, num_steps=2, features="pixel", channel_axis=None)


@pytest.mark.parametrize("shape", [(20, 300), (300, 20), (31, 31)])
def test_one_superpixel_on_any_aspect_ratio(shape):
    image = np.random.default_rng(1).integers(0, 255, size=shape + (3,), dtype=np.uint8)
    labels = superpixels(image, n_segments=1, num_steps=2, features="pixel")
    assert labels.shape == shape and labels.max() == 0


def test_a_gpu_on_a_cpu_only_build_is_a_clear_error(tmp_path, monkeypatch, capsys):
    from ssn import device
    monkeypatch.setattr(device, "caffe_has_gpu", lambda: False)
    with pytest.raises(ValueError, match="built CPU-only"):
        device.use_device(0)
    image = tmp_path / "a.png"
    skio.imsave(image, small_image(), check_contrast=False)
    assert infer_main([str(image), "--out", str(tmp_path / "out"), "--gpu", "0"]) == 2
    assert not (tmp_path / "out" / "a.npy").exists()


def test_this_build_records_its_flavour():
    from caffe import _ssn_build

    from ssn.device import caffe_has_gpu
    assert caffe_has_gpu() == (not _ssn_build.CPU_ONLY)


def test_the_runtime_grid_is_the_reference_grid_where_that_has_one():
    from ssn import grid
    from ssn.reference import grid as reference_grid
    rng = np.random.default_rng(7)
    for _ in range(300):
        n, height, width = (int(v) for v in rng.integers(1, [2000, 800, 800]))
        try:
            expected = reference_grid.grid_shape(n, height, width)
        except ValueError:  # an extreme aspect ratio: the runtime still gives a grid
            grid_h, grid_w = grid.grid_shape(n, height, width)
            assert 1 <= grid_h * grid_w <= n
            continue
        assert grid.grid_shape(n, height, width) == expected
        np.testing.assert_array_equal(grid.init_cells(height % 97 + 1, width % 89 + 1, *expected),
                                      reference_grid.init_cells(height % 97 + 1,
                                                                width % 89 + 1, *expected))


# --------------------------------------------------------------------------------------------
# The requested count is honoured: the calibrated grid


@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_the_calibrated_grid_is_the_original_grid_for_a_smaller_count(features):
    from ssn.grid import grid_request
    from ssn.model_metadata import shipped_calibration
    image = data.astronaut()[100:250, 150:350]
    calibrated = superpixels(image, 60, num_steps=3, features=features)
    smaller = grid_request(60, *image.shape[:2], shipped_calibration(features))
    assert 25 <= smaller < 60
    np.testing.assert_array_equal(
        calibrated, superpixels(image, smaller, num_steps=3, features=features, grid="original"))
    with pytest.raises(ValueError, match="grid must be one of"):
        superpixels(image, 60, num_steps=3, features=features, grid="square")


def test_grid_requests_aim_at_the_requested_count():
    from ssn.grid import expected_count, grid_request
    from ssn.model_metadata import shipped_calibration
    for name in ("deep", "pixel"):
        calibration = shipped_calibration(name)
        for n in (10, 50, 100, 200, 400, 600, 1000, 1400, 5000):
            for height, width in ((321, 481), (481, 321), (1080, 1920), (200, 200)):
                request = grid_request(n, height, width, calibration)
                assert 1 <= request <= n
                # Within the grid's granularity (a square image steps through k x k cells).
                assert abs(expected_count(request, height, width, calibration) - n) <= 0.2 * n + 2
        assert grid_request(100, 321, 481, calibration, "original") == 100
        assert grid_request(1, 321, 481, calibration) == 1


def test_a_larger_position_weight_gives_more_compact_superpixels():
    image = data.astronaut()[::3, ::3]
    measured = {features: [compactness(superpixels(image, 60, num_steps=5, features=features,
                                                   position_weight=weight))
                           for weight in (0.5, 1, 3)]
                for features in ("pixel", "deep")}
    low, default, high = measured["pixel"]
    assert low < default < high
    low, default, high = measured["deep"]  # the CNN sees the positions too
    assert high > max(low, default)
    np.testing.assert_array_equal(superpixels(image, 60, num_steps=5, features="pixel"),
                                  superpixels(image, 60, num_steps=5, features="pixel",
                                              position_weight=1))


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1.0, ValueError),
                                          (float("nan"), ValueError), ("2", TypeError),
                                          (True, TypeError)])
def test_a_bad_position_weight_names_the_argument(value, error):
    with pytest.raises(error, match="position_weight"):
        superpixels(data.astronaut()[::8, ::8], 20, features="pixel", position_weight=value)


def test_evaluation_runs_name_and_use_the_position_weight():
    from ssn.evaluation.runs import ssn_run
    image = data.astronaut()[::8, ::8]
    name, count, labeller = ssn_run(20, "pixel", 3, None, position_weight=2)
    assert (name, count) == ("SSN-pixel-pw2", 20)
    np.testing.assert_array_equal(labeller("x", image), superpixels(
        image, 20, num_steps=3, features="pixel", position_weight=2))
    assert ssn_run(20, "pixel", 3, None)[0] == "SSN-pixel"


def test_weights_that_give_non_finite_features_are_an_error(tmp_path):
    """Huge but finite weights (a diverged model) make the features NaN: an error, not
    degenerate labels."""
    from caffe.proto import caffe_pb2

    from ssn.inference import bundled_weights
    model = caffe_pb2.NetParameter.FromString(bundled_weights().read_bytes())
    first = next(layer for layer in model.layer if layer.type == "Convolution")
    values = np.full(len(first.blobs[0].data), 1e38, dtype=np.float32)
    first.blobs[0].ClearField("data")
    first.blobs[0].data.extend(values.tolist())
    huge = tmp_path / "diverged.caffemodel"
    huge.write_bytes(model.SerializeToString())
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="give NaN or infinite features"):
        superpixels(image, n_segments=20, weights=huge)


@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_pixel_features_made_outside_the_net_give_the_layers_labels(features):
    """superpixels() makes the pixel features in NumPy at every size; the PixelFeature
    layer of the exported deploy net gives the same labels, bit for bit."""
    from ssn.color import rgb_to_lab_planes
    from ssn.grid import decide_grid
    from ssn.nets.generators import position_scale
    from ssn.settings import InferenceSettings

    image = data.astronaut()[100:228, 150:310]
    ours = superpixels(image, 40, num_steps=3, features=features, position_weight=1.5,
                       enforce_connectivity=False)
    settings = InferenceSettings.build(40, num_steps=3, features=features,
                                       position_weight=1.5)
    grid = decide_grid(40, 128, 160, settings.model.calibration, position_weight=1.5)
    net = inference.deploy_net_for.__wrapped__(
        128, 160, grid, 3, features, settings.weights, position_weight=1.5,
        color_scale=settings.color_scale, feature_dim=settings.feature_dim)
    cells = inference.cell_input(128, 160, grid)
    net.forward(outputs=[], img=rgb_to_lab_planes(image)[None], spixel_init=cells,
                feat_spixel_init=cells)
    layer = net.net.blobs["new_spix_indices"].data[0, 0]
    np.testing.assert_array_equal(np.unique(layer, return_inverse=True)[1].reshape(128, 160),
                                  ours)
    assert net.net.blobs["pixel_features"].data[0, 0, 1, 0] == np.float32(
        1.5 * position_scale(grid, 128, 160))


def test_timings_come_from_the_call_itself():
    timings = {}
    superpixels(small_image(), 16, num_steps=2, features="pixel", timings=timings)
    assert set(timings) == set(inference.STAGES) - {"features"}
    assert all(seconds >= 0 for seconds in timings.values())
    superpixels(small_image(), 16, num_steps=2, features="pixel", timings=timings)
    assert timings["forward"] > 0
