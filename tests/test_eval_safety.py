"""ssn-eval trusts nothing it finds.

- Label folders from ssn-infer are read through their records: a folder whose
  records are stale (made with other settings than its config.json) or mixed
  (several settings) is refused (exit 2), and a label file that is not the one
  its record names is not scored.
- Ground truth must be unambiguous (one file per stem) and integer: two files of
  one stem stop the run (exit 2); fractional or NaN label maps are not scored.
- Method names must be unique: two --labels of one name would merge.

Everything runs on tiny synthetic images.
"""
import json
import logging

import numpy as np
import pytest
from skimage import io as skio

from ssn.cli.eval import main as eval_main
from ssn.cli.infer import main as infer_main

INFER = ["--num-steps", "3", "--features", "pixel", "--workers", "1"]


@pytest.fixture
def dataset(tmp_path):
    """Two 40 x 60 images (two halves) with .npy ground truths of two annotators."""
    images, truths = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    truths.mkdir()
    rng = np.random.default_rng(7)
    halves = np.zeros((40, 60), np.int32)
    halves[:, 30:] = 1
    for stem in ["a", "b"]:
        image = np.where(halves[..., None] == 1, 200, 40).repeat(3, axis=2)
        image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
        skio.imsave(images / f"{stem}.png", image, check_contrast=False)
        np.save(truths / f"{stem}.npy", np.stack([halves, halves]))
    return images, truths


def evaluate(tmp_path, dataset, *extra):
    images, truths = dataset
    return eval_main(["--out", str(tmp_path / "eval"), "--images", str(images), "--gt",
                      str(truths), *map(str, extra)])


def errors(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def infer(images, out, count, *extra):
    return infer_main([str(images), "--out", str(out), "--n-segments", str(count), *INFER,
                       *extra])


# --------------------------------------------------------------------------------------------
# Label folders: their records decide


@pytest.mark.slow
def test_a_fresh_folder_is_scored_at_its_recorded_count(tmp_path, dataset):
    labels = tmp_path / "labels"
    assert infer(dataset[0], labels, 12) == 0
    assert evaluate(tmp_path, dataset, "--labels", f"L={labels}") == 0
    (summary,) = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["requested"] == 12 and summary["rows"] == 4


def test_a_stale_folder_is_refused(tmp_path, dataset, caplog):
    """b keeps labels of 12 superpixels after a run asking for 20 redid only a."""
    labels = tmp_path / "labels"
    assert infer(dataset[0], labels, 12) == 0
    assert infer_main([str(dataset[0] / "a.png"), "--out", str(labels), "--n-segments", "20",
                       *INFER, "--overwrite"]) == 0
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path, dataset, "--labels", f"L={labels}") == 2
    assert any("stale" in message and "b" in message for message in errors(caplog)), \
        errors(caplog)
    assert not (tmp_path / "eval" / "rows.csv").exists()


def test_a_folder_of_mixed_settings_is_refused(tmp_path, dataset, caplog):
    labels, other = tmp_path / "labels", tmp_path / "other"
    assert infer(dataset[0] / "a.png", labels, 12) == 0
    assert infer(dataset[0] / "b.png", other, 20) == 0
    for path in other.glob("b*"):
        path.rename(labels / path.name)
    (labels / "config.json").unlink()
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path, dataset, "--labels", f"L={labels}") == 2
    assert any("mixed" in message for message in errors(caplog)), errors(caplog)


@pytest.mark.slow
def test_a_label_file_that_is_not_the_recorded_one_is_not_scored(tmp_path, dataset):
    labels = tmp_path / "labels"
    assert infer(dataset[0], labels, 12) == 0
    np.save(labels / "b.npy", np.zeros((40, 60), np.int32))  # replaced by hand
    assert evaluate(tmp_path, dataset, "--labels", f"L={labels}") == 1
    skipped = (tmp_path / "eval" / "skipped.csv").read_text()
    assert "b.npy" in skipped and "record" in skipped


def test_two_labels_of_one_name_are_refused(tmp_path, dataset, caplog):
    one, two = tmp_path / "one", tmp_path / "two"
    assert infer(dataset[0], one, 12) == 0
    assert infer(dataset[0], two, 20) == 0
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path, dataset, "--labels", f"L={one}", "--labels", f"L={two}") == 2
    assert any("L" in message and "twice" in message for message in errors(caplog))


def test_a_labels_name_equal_to_a_computed_method_is_refused(tmp_path, dataset, caplog):
    one = tmp_path / "one"
    assert infer(dataset[0], one, 12) == 0
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path, dataset, "--labels", f"SLIC={one}", "--n-segments", "12",
                    "--methods", "slic") == 2
    assert any("SLIC" in message and "twice" in message for message in errors(caplog))


# --------------------------------------------------------------------------------------------
# Ground truth


def test_two_ground_truths_of_one_stem_are_refused(tmp_path, dataset, caplog):
    halves = np.load(dataset[1] / "a.npy")[0]
    skio.imsave(dataset[1] / "a.png", halves.astype(np.uint8), check_contrast=False)
    caplog.set_level(logging.ERROR)
    assert evaluate(tmp_path, dataset, "--n-segments", "12", "--methods", "slic") == 2
    assert any("a.npy" in message and "a.png" in message for message in errors(caplog))


@pytest.mark.slow
@pytest.mark.parametrize("bad", [0.5, np.nan], ids=["fraction", "NaN"])
def test_a_non_integer_ground_truth_is_not_scored(tmp_path, dataset, bad):
    truth = np.load(dataset[1] / "a.npy").astype(np.float64)
    truth[0, 0, 0] = bad
    np.save(dataset[1] / "a.npy", truth)
    assert evaluate(tmp_path, dataset, "--n-segments", "12", "--methods", "slic") == 1
    skipped = (tmp_path / "eval" / "skipped.csv").read_text()
    assert "a" in skipped and "whole numbers" in skipped
    (summary,) = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["rows"] == 2  # b's two annotators alone
