"""The training curve of ssn-eval-snapshots --curve: matched counts against fast-slic."""
from __future__ import annotations

import csv
import json
import math
import shutil

import pytest

from ssn.evaluation import training_curve as tc


def peer(values: dict) -> dict:
    """Peer scores {"fast-slic-c<C>": {target: {asa, boundary_recall}}} from
    {C: (asa, recall)} at target 200."""
    return {f"fast-slic-c{c:g}": {200: {"asa": asa, "boundary_recall": recall}}
            for c, (asa, recall) in values.items()}


def test_the_next_count_brackets_the_target_from_the_side_it_lies():
    def summary(*pairs):
        return [{"requested": r, "n_spixels": a} for r, a in pairs]
    assert tc.next_count(summary((200, 180.0), (260, 240.0)), 200) is None
    below = tc.next_count(summary((200, 150.0)), 200)
    assert below > 200 * 200 / 150  # enough to land above 200
    above = tc.next_count(summary((200, 250.0), (300, 360.0)), 200)
    assert above < 200 * 200 / 250
    assert tc.next_count([], 200) is None
    # Bracketed, but from too far below: one more just under the target.
    far = tc.next_count(summary((100, 70.0), (300, 240.0)), 200)
    assert 150 < 0.8 * far < 200


def test_scored_around_brackets_each_target():
    calls = []

    def run(count):  # a method giving 0.7x the requested count
        calls.append(count)
        return ("m", count, None)

    def fake_evaluate(runs, samples):
        return [{"method": "m", "requested": c, "n_spixels": 0.7 * c, "asa": 0.9,
                 "boundary_recall": 0.5, "boundary_precision": 0.1,
                 "undersegmentation_error": 0.1, "compactness": 0.3,
                 "explained_variation": 0.8} for _, c, _ in runs]
    original = tc.evaluate_runs
    tc.evaluate_runs = fake_evaluate
    try:
        rows = tc.scored_around(run, [], [200, 1000])
    finally:
        tc.evaluate_runs = original
    actual = sorted(row["n_spixels"] for row in rows)
    for target in (200, 1000):
        assert any(target / 1.3 <= a < target for a in actual)
        assert any(target < a <= target * 1.3 for a in actual)
    assert calls[:2] == [200, 1000] and len(calls) == len(set(calls)) <= 6


def test_the_peer_figure_is_the_best_compactness_for_each_metric_separately():
    scores = peer({5: (0.940, 0.70), 20: (0.946, 0.66), 40: (math.nan, math.nan)})
    assert tc.best_peer(scores, 200, "asa") == (0.946, "fast-slic-c20")
    assert tc.best_peer(scores, 200, "boundary_recall") == (0.70, "fast-slic-c5")
    assert math.isnan(tc.best_peer(peer({5: (math.nan, math.nan)}), 200, "asa")[0])


def test_curve_rows_give_leads_over_the_best_peer():
    ssn = {200: {"asa": 0.950, "boundary_recall": 0.78}}
    [row] = tc.curve_rows(5000, 38000, ssn, peer({5: (0.940, 0.70), 20: (0.946, 0.66)}))
    assert row["iteration"] == 5000 and row["patches_seen"] == 38000
    assert row["asa_lead"] == pytest.approx(0.004)
    assert row["recall_lead"] == pytest.approx(0.08)
    assert (row["peer_asa_compactness"], row["peer_recall_compactness"]) == ("20", "5")


def test_a_rescored_snapshot_replaces_its_rows_and_the_file_round_trips(tmp_path):
    scores = peer({10: (0.94, 0.7)})
    first = tc.curve_rows(0, 0, {200: {"asa": 0.95, "boundary_recall": 0.75}}, scores)
    later = tc.curve_rows(1000, 6000, {200: {"asa": 0.96, "boundary_recall": 0.76}}, scores)
    again = tc.curve_rows(0, 0, {200: {"asa": 0.951, "boundary_recall": 0.751}}, scores)
    rows = tc.merge_curve(tc.merge_curve(tc.merge_curve([], later), first), again)
    assert [(r["iteration"], r["ssn_asa"]) for r in rows] == [(0, 0.951), (1000, 0.96)]
    path = tmp_path / "curve.csv"
    tc.write_curve(path, rows)
    assert tc.read_curve(path) == [{**row, "peer_asa_compactness": "10",
                                    "peer_recall_compactness": "10"} for row in rows]
    assert path.with_suffix(".png").stat().st_size > 10000
    assert tc.read_curve(tmp_path / "none.csv") == []


@pytest.mark.slow
def test_curve_end_to_end_with_a_cached_peer(tmp_path, sample_root, repo_root):
    pytest.importorskip("fast_slic")
    from ssn.cli.eval_snapshots import main as snapshots_main
    (tmp_path / "snap").mkdir()
    for suffix in (".caffemodel", ".json"):
        shutil.copy(repo_root / "ssn" / "models" / f"ssn_bsds{suffix}",
                    tmp_path / "snap" / f"ssn_iter_7{suffix}")
    curve, out = tmp_path / "docs" / "curve.csv", tmp_path / "out"
    arguments = [str(tmp_path / "snap"), "--out", str(out), "--limit", "1",
                 "--num-steps", "2", "--curve", str(curve), "--matched-counts", "60",
                 "--batch-size", "6", "--patches-before", "100"]
    assert snapshots_main(arguments) == 0
    with open(curve, newline="") as stream:
        [row] = list(csv.DictReader(stream))
    assert (row["iteration"], row["patches_seen"], row["actual"]) == ("7", "142", "60")
    assert 0.5 < float(row["ssn_asa"]) <= 1 and 0.5 < float(row["peer_asa"]) <= 1
    assert float(row["asa_lead"]) == pytest.approx(
        float(row["ssn_asa"]) - float(row["peer_asa"]))
    cached = json.loads((out / "peer.json").read_text())
    assert cached["key"]["targets"] == [60] and len(cached["key"]["images"]) == 1
    # The peer comes from the cache the second time: a changed cache shows through.
    cached["scores"] = {"fast-slic-c10": {"60": {"asa": 0.5, "boundary_recall": 0.25}}}
    (out / "peer.json").write_text(json.dumps(cached))
    assert snapshots_main(arguments) == 0
    [row] = tc.read_curve(curve)
    assert (row["peer_asa"], row["peer_boundary_recall"]) == (0.5, 0.25)
    assert snapshots_main(arguments + ["--initial", str(tmp_path / "missing")]) == 2
    # The run's starting weights alone, before its first snapshot: iteration 0.
    (tmp_path / "empty").mkdir()
    initial = tmp_path / "snap" / "ssn_iter_7.caffemodel"
    assert snapshots_main([str(tmp_path / "empty")] + arguments[1:]
                          + ["--initial", str(initial)]) == 0
    assert [row["iteration"] for row in tc.read_curve(curve)] == [0, 7]
    assert snapshots_main([str(tmp_path / "empty")] + arguments[1:]) == 2
