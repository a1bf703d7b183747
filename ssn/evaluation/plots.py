"""One figure helper for every plot the tools write: a row-major grid of metric panels."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def metric_panels(path: Path, metrics: tuple, columns: int, panel_size=(4.3, 3.75)
                  ) -> Iterator[list]:
    """Yield (axis, metric) pairs of a new figure; save it to ``path`` (PNG) on exit.

    Each axis gets its metric as title and a light grid; the figure is written
    atomically and closed, with the non-interactive Agg backend.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssn.atomic import atomic_path

    rows = -(-len(metrics) // columns)
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(panel_size[0] * columns, panel_size[1] * rows))
    try:
        panels = list(zip(axes.flat, metrics))
        for axis, metric in panels:
            axis.set_title(metric.replace("_", " "), fontsize=10)
            axis.grid(alpha=0.3)
        yield panels
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(figure)
