"""The classical baselines and the matched-count comparison of ssn-eval."""
from __future__ import annotations

import builtins
import json
import math

import numpy as np
import pytest

from ssn.evaluation import baselines
from ssn.evaluation.matched import format_table, interpolate_at, matched_table

OPTIONAL = {"fast-slic": "fast_slic", "opencv-slico": "cv2", "opencv-lsc": "cv2",
            "opencv-seeds": "cv2"}


def quadrants(height=96, width=128) -> np.ndarray:
    """Four flat colours, one per quadrant, float RGB in [0, 1]."""
    image = np.zeros((height, width, 3))
    image[: height // 2, : width // 2] = (0.9, 0.1, 0.1)
    image[: height // 2, width // 2:] = (0.1, 0.9, 0.1)
    image[height // 2:, : width // 2] = (0.1, 0.1, 0.9)
    image[height // 2:, width // 2:] = (0.9, 0.9, 0.2)
    return image


@pytest.mark.parametrize("name", sorted(baselines.LABELLERS))
def test_every_baseline_gives_consecutive_labels_that_respect_the_quadrants(name):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name], reason=f"{name}: pip install .[bench]")
    image = quadrants()
    labels = baselines.baseline(name)(image, 24)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    assert labels.min() == 0 and np.array_equal(np.unique(labels), np.arange(labels.max() + 1))
    assert 6 <= labels.max() + 1 <= 60
    # No superpixel straddles a colour edge by more than a sliver.
    colours = (image * 10).astype(int) @ [100, 10, 1]
    for label in range(labels.max() + 1):
        inside = np.bincount(np.unique(colours[labels == label], return_inverse=True)[1])
        assert inside.max() >= 0.9 * inside.sum(), (name, label)


def test_a_missing_optional_package_says_how_to_install_it(monkeypatch):
    real_import = builtins.__import__

    def no_fast_slic(name, *args, **kwargs):
        if name.startswith("fast_slic"):
            raise ImportError("no module named fast_slic")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fast_slic)
    with pytest.raises(baselines.BaselineMissing, match="pip install --no-build-isolation"):
        baselines.baseline("fast-slic")


@pytest.mark.slow
def test_eval_skips_a_missing_baseline_with_a_message(tmp_path, val_images, monkeypatch,
                                                     caplog):
    from ssn.cli.eval import main as eval_main

    def missing(*args, **kwargs):
        raise baselines.BaselineMissing("fast-slic is not installed: pip install ...")

    monkeypatch.setitem(baselines.LABELLERS, "fast-slic", missing)
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--n-segments", "30", "60", "--methods", "slic",
                      "fast-slic", "--limit", "1", "--matched-counts", "30", "40"]) == 0
    assert "skipping fast-slic: fast-slic is not installed" in caplog.text
    summary = json.loads((out / "summary.json").read_text())
    assert {row["method"] for row in summary} == {"SLIC"}
    assert (out / "matched.csv").exists() and "| actual count |" in (out / "matched.md").read_text()


@pytest.mark.slow
def test_compactness_flags_name_the_method(tmp_path, val_images):
    from ssn.cli.eval import main as eval_main
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--n-segments", "40", "--methods", "slic",
                      "--compactness", "slic=20", "--limit", "1"]) == 0
    assert json.loads((out / "summary.json").read_text())[0]["method"] == "SLIC-c20"
    assert eval_main(["--out", str(out), "--n-segments", "40", "--methods", "slic",
                      "--compactness", "slick=20"]) == 2
    assert eval_main(["--out", str(out), "--n-segments", "40", "--methods", "slic",
                      "--compactness", "slic=high"]) == 2


def test_interpolation_is_linear_in_log_count_and_never_extrapolates():
    counts, values = np.array([100.0, 400.0]), np.array([0.90, 0.96])
    assert interpolate_at(counts, values, 200) == pytest.approx(0.93)  # log2 midpoint
    assert interpolate_at(counts[::-1], values[::-1], 200) == pytest.approx(0.93)
    assert interpolate_at(counts, values, 400) == pytest.approx(0.96)
    assert math.isnan(interpolate_at(counts, values, 99)) and math.isnan(
        interpolate_at(counts, values, 401))


def test_matched_table_rows_and_markdown():
    summary = [
        {"method": "A", "n_spixels": 100.0, "asa": 0.90, "boundary_recall": 0.5},
        {"method": "A", "n_spixels": 400.0, "asa": 0.96, "boundary_recall": 0.8},
        {"method": "B", "n_spixels": 150.0, "asa": 0.92, "boundary_recall": 0.6},
        {"method": "B", "n_spixels": 600.0, "asa": 0.97, "boundary_recall": 0.9},
    ]
    table = matched_table(summary, counts=(200, 500), metrics=("asa", "boundary_recall"))
    rows = {(row["method"], row["actual"]): row for row in table}
    assert rows[("A", 200)]["asa"] == pytest.approx(0.93)
    assert math.isnan(rows[("A", 500)]["asa"])
    text = format_table(table)
    assert text.splitlines()[0] == "| actual count | A | B |"
    assert "| 500 | - / - | " in text
