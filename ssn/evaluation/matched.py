"""Methods compared at matched actual superpixel counts.

Asked for n, methods give very different actual counts (SSN about 1.6 n after
connectivity, scikit-image SLIC 0.65-0.9 n), so comparing them at one
requested count flatters whoever over-segments. Here each method's metric
curve (mean metric against mean actual count, one point per requested count)
is interpolated linearly in log count at fixed actual counts. Counts outside a
method's measured range give NaN: no extrapolation.
"""
from __future__ import annotations

import math

import numpy as np

MATCHED_COUNTS = (200, 400, 600, 1000, 1400)
MATCHED_METRICS = ("asa", "boundary_recall", "boundary_precision", "undersegmentation_error")


def interpolate_at(counts: np.ndarray, values: np.ndarray, target: float) -> float:
    """``values`` (against ``counts``) at ``target``, linear in log count; NaN outside."""
    order = np.argsort(counts)
    counts, values = np.log(np.asarray(counts, float)[order]), np.asarray(values, float)[order]
    where = math.log(target)
    if len(counts) == 0 or where < counts[0] - 1e-9 or where > counts[-1] + 1e-9:
        return float("nan")
    return float(np.interp(where, counts, values))


def matched_table(summary: list[dict], counts=MATCHED_COUNTS, metrics=MATCHED_METRICS
                  ) -> list[dict]:
    """One row per (method, target count): each metric interpolated at that actual count.

    ``summary`` rows need "method", "n_spixels" (the mean actual count) and the metrics.
    """
    table = []
    for method in sorted({row["method"] for row in summary}):
        rows = [row for row in summary if row["method"] == method]
        actual = np.array([row["n_spixels"] for row in rows], float)
        for target in counts:
            entry = {"method": method, "actual": target}
            for metric in metrics:
                entry[metric] = interpolate_at(actual, np.array([r[metric] for r in rows]),
                                               target)
            table.append(entry)
    return table


def format_table(table: list[dict], metrics=("asa", "boundary_recall")) -> str:
    """A Markdown table: one row per target count, one column pair per method."""
    methods = sorted({row["method"] for row in table})
    counts = sorted({row["actual"] for row in table})
    lookup = {(row["method"], row["actual"]): row for row in table}
    header = "| actual count | " + " | ".join(methods) + " |"
    lines = [header, "|---|" + "---|" * len(methods)]
    for count in counts:
        cells = []
        for method in methods:
            values = [lookup[(method, count)][metric] for metric in metrics]
            cells.append(" / ".join("-" if math.isnan(v) else f"{v:.4f}" for v in values))
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
