"""Quality of training snapshots on BSDS500 val, to pick one and to see learning
progress .

Each snapshot runs SSN (deep features, connectivity on) on the first --limit
images of the split at each requested count; ssn.evaluation.runs's protocol gives the
means over (image, annotator) rows. SSN_pix (pixel features) and SLIC on the
same images give the reference lines. Writes snapshots.csv and
snapshots.png (metric against training iteration) to --out.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

from ssn.evaluation.baselines import slic_labels
from ssn.evaluation.plots import metric_panels
from ssn.evaluation.runs import evaluate_runs, summarise
from ssn.inference import superpixels

log = logging.getLogger("ssn.evaluation.snapshots")
PLOTTED = ("asa", "boundary_recall", "undersegmentation_error")


def snapshot_iteration(path: Path) -> int:
    """The iteration in a Caffe snapshot name (``<prefix>_iter_<N>.caffemodel``)."""
    match = re.search(r"_iter_(\d+)\.caffemodel$", path.name)
    if match is None:
        raise ValueError(f"not a Caffe snapshot name (<prefix>_iter_<N>.caffemodel): {path}")
    return int(match.group(1))


def find_snapshots(paths: list[Path], every: int = 1) -> list[Path]:
    """Snapshot files given directly or found in directories, by iteration; with
    ``every`` > 1 only the iterations divisible by it (and always the last)."""
    found = []
    for path in paths:
        found += sorted(path.glob("*_iter_*.caffemodel")) if path.is_dir() else [path]
    for path in found:
        if not path.is_file():
            raise FileNotFoundError(f"snapshot not found: {path}")
    found = sorted(set(found), key=snapshot_iteration)
    return [path for index, path in enumerate(found)
            if snapshot_iteration(path) % every == 0 or index == len(found) - 1]


def ssn_runs(name: str, counts: list[int], num_steps: int, features: str,
             weights: Optional[Path]):
    return [(name, count, lambda stem, rgb, count=count: superpixels(
        rgb, count, num_steps=num_steps, weights=weights, features=features)) for count in counts]


def evaluate_snapshots(snapshots: list[Path], samples, counts: list[int], num_steps: int
                       ) -> list[dict]:
    """Summary rows (method, requested, means of the metrics, iteration) of every
    snapshot and of the SSN_pix and SLIC references (iteration -1)."""
    runs = ssn_runs("SSN_pix", counts, num_steps, "pixel", None)
    runs += [("SLIC", count, lambda stem, rgb, count=count: slic_labels(rgb, count))
             for count in counts]
    for snapshot in snapshots:
        runs += ssn_runs(f"iter {snapshot_iteration(snapshot)}", counts, num_steps, "deep",
                         snapshot)
    summary = summarise(evaluate_runs(runs, samples))
    for entry in summary:
        entry["iteration"] = (int(entry["method"].split()[1])
                              if entry["method"].startswith("iter ") else -1)
    return sorted(summary, key=lambda e: (e["iteration"], e["method"], e["requested"]))


def plot_progress(summary: list[dict], path: Path) -> None:
    """One panel per plotted metric: each count's value against the iteration, with
    SSN_pix and SLIC as dashed and dotted lines."""
    counts = sorted({entry["requested"] for entry in summary})
    with metric_panels(path, PLOTTED, columns=len(PLOTTED), panel_size=(5, 4)) as panels:
        for axis, metric in panels:
            for index, count in enumerate(counts):
                color = f"C{index}"
                points = [(e["iteration"], e[metric]) for e in summary
                          if e["iteration"] >= 0 and e["requested"] == count]
                if points:
                    axis.plot(*zip(*points), marker="o", color=color, label=f"SSN n={count}")
                for method, style in (("SSN_pix", "--"), ("SLIC", ":")):
                    for e in summary:
                        if e["method"] == method and e["requested"] == count:
                            axis.axhline(e[metric], color=color, linestyle=style, linewidth=1)
            axis.set_xlabel("training iteration (dashed: SSN_pix, dotted: SLIC)")
        panels[0][0].legend(fontsize=8)
