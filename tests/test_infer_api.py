"""ssn.infer.run_batch, the library's entry point: its result object, its errors, and the
old ssn.batch / ssn.engines names that still work."""
from __future__ import annotations

import argparse
import json

import pytest

from ssn.infer import BatchResult, run_batch

OPTIONS = dict(n_segments=30, num_steps=3, features="pixel", workers=1)


@pytest.fixture
def images(val_images):
    return val_images[:2]


def test_run_batch_returns_what_it_did(tmp_path, images):
    out = tmp_path / "out"
    result = run_batch(images, out, **OPTIONS)
    assert isinstance(result, BatchResult) and result.complete
    assert (result.computed, result.verified, result.failed) == (2, 0, 0)
    assert result.out == out.absolute() and result.seconds > 0
    assert [row["output"] for row in result.rows] == sorted(image.stem for image in images)
    config = json.loads((out / "config.json").read_text())
    assert config["inputs"] == [str(image) for image in images] and config["workers"] == 1
    again = run_batch(images, out, **OPTIONS)
    assert (again.computed, again.verified) == (0, 2) and again.complete


def test_run_batch_reports_run_problems_in_its_result(tmp_path, images, caplog):
    out = tmp_path / "out"
    assert run_batch(images[:1], out, **OPTIONS).complete
    refused = run_batch(images[:1], out, **dict(OPTIONS, n_segments=40))
    assert not refused.complete and "n_segments 30 -> 40" in refused.error
    assert refused.computed == 0 and refused.error in caplog.text
    (tmp_path / "empty").mkdir()
    empty = run_batch(tmp_path / "empty", tmp_path / "other", **OPTIONS)
    assert empty.error == f"no images found in {tmp_path / 'empty'}" and not empty.rows
    missing = run_batch([tmp_path / "nothing-here"], tmp_path / "other", **OPTIONS)
    assert missing.error is None and missing.failed == 1 and not missing.complete
    assert missing.rows[0]["status"] == "failed: file not found"


@pytest.mark.parametrize("bad, error", [(dict(n_segments=0), ValueError),
                                        (dict(min_size_factor=5.0), ValueError),
                                        (dict(mask_dir="/no/such/folder"), ValueError)])
def test_run_batch_raises_for_an_option_that_can_never_work(tmp_path, images, bad, error):
    with pytest.raises(error):
        run_batch(images, tmp_path / "out", **dict(OPTIONS, **bad))
    assert not (tmp_path / "out").exists()


def test_the_old_module_names_still_work(tmp_path, images):
    from ssn import batch, engines
    from ssn.infer import engines as new_engines
    from ssn.infer import job, task
    assert batch.Job is job.Job and batch.process is task.process
    assert batch.RunError is engines.RunError is job.RunError
    assert engines.run_processes is new_engines.run_processes
    args = argparse.Namespace(inputs=[str(images[0])], out=tmp_path / "out", n_segments=30,
                              num_steps=3, grid="calibrated", position_weight=None,
                              weights=None, features="pixel", gpu=-1, mask_dir=None,
                              connectivity=True, min_size_factor=0.06, max_size_factor=3.0,
                              overwrite=False, fused=True, workers=1, threads=None,
                              dask=False, scheduler=None)
    with pytest.deprecated_call():
        assert batch.run(args) == 0
    assert (tmp_path / "out" / f"{images[0].stem}.npy").exists()
