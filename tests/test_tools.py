"""Every command-line tool answers --help, and tools/eval.py runs end to end."""
import csv
import importlib
import json

import pytest

TOOL_MODULES = ["ssn.build", "ssn.benchmark", "ssn.benchmark_train", "ssn.prototxt",
                "ssn.train", "ssn.hdf5_export", "ssn.infer_cli", "ssn.evaluate",
                "ssn.benchmark_infer"]


@pytest.mark.parametrize("module", TOOL_MODULES)
def test_help(module, capsys):
    with pytest.raises(SystemExit) as stop:
        importlib.import_module(module).main(["--help"])
    assert stop.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_eval_compares_inferred_maps_with_slic(tmp_path):
    from ssn.data import read_split
    from ssn.evaluate import main as eval_main
    from ssn.infer_cli import main as infer_main
    from ssn.inference import REPO_ROOT
    first = read_split("val")[0]  # --limit 1 evaluates this image
    image = REPO_ROOT.parent / "shared/data/BSDS500/images/val" / f"{first}.jpg"
    assert infer_main([str(image), "--out", str(tmp_path / "ssn"), "--n-spixels", "60",
                       "--num-steps", "3", "--features", "pixel"]) == 0
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--method", f"SSN={tmp_path / 'ssn'}",
                      "--slic", "60", "--limit", "1"]) == 0
    summary = {row["method"]: row for row in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"SSN", "SLIC"} and summary["SSN"]["requested"] == 60
    for row in summary.values():
        assert 0.5 < row["asa"] <= 1 and 0 < row["boundary_recall"] <= 1
    with open(out / "rows.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * summary["SSN"]["rows"]  # one row per (method, annotator)
    assert (out / "curves.png").stat().st_size > 10000


def test_eval_on_a_folder_of_images_with_npy_ground_truth(tmp_path):
    import numpy as np
    from skimage import io as skio

    from ssn.evaluate import main as eval_main
    images, truths = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    truths.mkdir()
    rng = np.random.default_rng(2)
    halves = np.zeros((40, 60), np.int32)
    halves[:, 30:] = 1
    image = np.where(halves[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
    skio.imsave(images / "a.png", image, check_contrast=False)
    np.save(truths / "a.npy", np.stack([halves, halves]))  # two annotators
    skio.imsave(images / "no_truth.png", image, check_contrast=False)
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--images", str(images), "--gt", str(truths),
                      "--slic", "12"]) == 0
    (summary,) = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 2 and summary["asa"] > 0.95
    assert eval_main(["--out", str(out), "--images", str(images), "--slic", "12"]) == 2
