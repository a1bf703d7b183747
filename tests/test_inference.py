"""The superpixels() API and tools/infer.py end to end, bad inputs included."""
import json

import numpy as np
import pytest
from scipy import ndimage
from skimage import data
from skimage import io as skio

from ssn import inference
from ssn.cli.infer import main as infer_main
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
    (np.zeros((40, 50, 2)), dict(), "expected an H x W"),
    (np.zeros((40, 50, 3), np.uint8), dict(n_spixels=0), "n_spixels must be >= 1"),
    (np.zeros((40, 50, 3), np.uint8), dict(num_steps=0), "num_steps must be >= 1"),
    (np.zeros((40, 50, 3), np.uint8), dict(features="other"), "features must be one of"),
])
def test_bad_inputs_say_why(image, kwargs, message):
    with pytest.raises(ValueError, match=message):
        superpixels(image, features=kwargs.pop("features", "pixel"), **kwargs)


def test_deep_features_need_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(inference, "BUNDLED_WEIGHTS", tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="needs weights"):
        superpixels(np.zeros((40, 50, 3), np.uint8), features="deep")


def test_nets_are_built_once_per_geometry():
    inference._net.cache_clear()
    image = data.camera()[::8, ::8]
    for _ in range(3):
        superpixels(image, n_spixels=16, num_steps=2, features="pixel")
    assert inference._net.cache_info().misses == 1
    assert inference._net.cache_info().hits == 2


@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_a_new_net_gives_the_labels_of_a_used_one(features):
    """A net's blobs are allocated on first use; when that happened inside a layer's
    parallel loop (Interp, Passoc), two threads each allocated, and the rows of
    one were lost in the first forward of every new geometry."""
    image = data.astronaut()[100:250, 150:350]  # enough rows for the parallel paths
    inference._net.cache_clear()
    first = superpixels(image, n_spixels=100, features=features)
    np.testing.assert_array_equal(superpixels(image, n_spixels=100, features=features), first)


def test_infer_tool_end_to_end_with_bad_files(tmp_path, val_images):
    images = tmp_path / "images"
    images.mkdir()
    good = [val_images[0], val_images[1]]
    skio.imsave(images / "gray.png", data.camera()[::4, ::4], check_contrast=False)
    (images / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    skio.imsave(images / "tiny.png", np.zeros((3, 3, 3), np.uint8), check_contrast=False)
    out = tmp_path / "out"
    args = [str(good[0]), str(good[1]), str(images), str(images / "missing.jpg"),
            "--out", str(out), "--n-spixels", "50", "--num-steps", "3", "--features", "pixel"]
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
    assert json.loads((out / "config.json").read_text())["n_spixels"] == 50

    before = (out / f"{good[0].stem}.npy").stat().st_mtime_ns
    assert infer_main(args[:2] + ["--out", str(out), "--features", "pixel"]) == 0  # skipped
    assert (out / f"{good[0].stem}.npy").stat().st_mtime_ns == before
    assert infer_main(args[:1] + ["--out", str(out), "--features", "pixel", "--n-spixels",
                                  "50", "--num-steps", "3", "--overwrite"]) == 0
    assert (out / f"{good[0].stem}.npy").stat().st_mtime_ns != before
