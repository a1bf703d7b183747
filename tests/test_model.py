"""The shipped BSDS500 model: it loads by default, and on a few val images its
superpixels stay ahead of SLIC's at the same requested count."""
import numpy as np
import pytest
from skimage import data

from ssn.bsds import load_bsds, read_split
from ssn.evaluation.baselines import slic_labels
from ssn.evaluation.metrics import evaluate
from ssn.inference import (
    BUNDLED_WEIGHTS,
    as_rgb,
    bundled_weights,
    resolve_features,
    superpixels,
)

VAL_IMAGES = 4
REQUESTED = 200


def test_the_model_is_shipped_and_used_by_default():
    weights = bundled_weights()
    assert weights is not None, "ssn/models/ssn_bsds.caffemodel is missing"
    assert weights.stat().st_size < 2_000_000
    assert resolve_features(None, None) == ("deep", str(weights))


@pytest.fixture(scope="module")
def val_scores(bsds_root):
    """Mean (ASA, boundary recall) over (image, annotator) rows of SSN and SLIC."""
    rows = {"ssn": [], "slic": []}
    for image_id in read_split("val", bsds_root)[:VAL_IMAGES]:
        sample = load_bsds(image_id, "val", bsds_root)
        rgb = as_rgb(sample.rgb)
        maps = {"ssn": superpixels(rgb, REQUESTED), "slic": slic_labels(rgb, REQUESTED)}
        for method, labels in maps.items():
            rows[method] += evaluate(labels, sample.segmentations, rgb)
    return {method: (np.mean([r["asa"] for r in found]),
                     np.mean([r["boundary_recall"] for r in found]))
            for method, found in rows.items()}


@pytest.mark.slow
def test_shipped_model_beats_slic_on_val_images(val_scores):
    ssn_asa, ssn_recall = val_scores["ssn"]
    slic_asa, slic_recall = val_scores["slic"]
    assert ssn_asa > slic_asa, val_scores
    assert ssn_recall > slic_recall, val_scores


def test_the_synthetic_flow_model_is_shipped_and_complete():
    """docs/TASKS.md's flow-aware model loads as a whole deploy model and is its own."""
    path = BUNDLED_WEIGHTS.parent / "ssn_synthflow.caffemodel"
    assert path.is_file() and path.stat().st_size < 2_000_000
    image = data.astronaut()[::4, ::4]
    flow = superpixels(image, 100, weights=path, position_weight=2)
    shipped = superpixels(image, 100, position_weight=2)
    assert flow.max() > 50 and not np.array_equal(flow, shipped)
