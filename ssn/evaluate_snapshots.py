"""Quality of training snapshots on BSDS500 val, to pick one and to see learning
progress (used by tools/eval_snapshots.py).

Each snapshot runs SSN (deep features, connectivity on) on the first --limit
images of the split at each requested count; ssn.evaluate's protocol gives the
means over (image, annotator) rows. SSN_pix (pixel features) and SLIC on the
same images give the reference lines. Writes snapshots.csv and
snapshots.png (metric against training iteration) to --out.
"""
from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from pathlib import Path
from typing import Optional

from ssn.data import data_root
from ssn.evaluate import bsds_samples, evaluate_runs, slic_labels, summarise
from ssn.inference import superpixels

log = logging.getLogger("ssn.evaluate_snapshots")
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
        rgb, count, num_steps, weights, True, features)) for count in counts]


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
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    counts = sorted({entry["requested"] for entry in summary})
    figure, axes = plt.subplots(1, len(PLOTTED), figsize=(5 * len(PLOTTED), 4))
    for axis, metric in zip(axes, PLOTTED):
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
        axis.set_xlabel("training iteration")
        axis.set_title(f"{metric.replace('_', ' ')} (dashed SSN_pix, dotted SLIC)", fontsize=9)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/eval_snapshots.py models/bsds_cpu --out out/snapshots\n"
               "  python tools/eval_snapshots.py models/bsds_cpu/ssn_iter_2000.caffemodel "
               "--counts 100 400 --limit 50 --out out/snap2000\n")
    parser.add_argument("snapshots", type=Path, nargs="+",
                        help="snapshot .caffemodel files or directories holding them")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--counts", type=int, nargs="+", default=[200],
                        help="requested superpixel counts (default: 200)")
    parser.add_argument("--limit", type=int, default=20,
                        help="evaluate the first N images of the split (default: 20)")
    parser.add_argument("--every", type=int, default=1,
                        help="only snapshots whose iteration is a multiple of this "
                        "(the last one always)")
    parser.add_argument("--split", default="val", help="BSDS500 split (default: val)")
    parser.add_argument("--data-root", type=Path, help="BSDS500 directory (default: "
                        "$SSN_DATA_ROOT or ../shared/data/BSDS500)")
    parser.add_argument("--num-steps", type=int, default=10,
                        help="SLIC iterations (default: 10)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        snapshots = find_snapshots(args.snapshots, args.every)
        if not snapshots:
            raise ValueError(f"no *_iter_*.caffemodel in {args.snapshots}")
        samples = bsds_samples(args.split, data_root(args.data_root), args.limit)
    except (ValueError, OSError) as error:
        log.error("%s", error)
        return 2
    summary = evaluate_snapshots(snapshots, samples, args.counts, args.num_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "snapshots.csv", "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)
    plot_progress(summary, args.out / "snapshots.png")
    for entry in summary:
        log.info("%-12s n=%-5d actual %7.1f  ASA %.4f  BR %.4f  UE %.4f", entry["method"],
                 entry["requested"], entry["n_spixels"], entry["asa"],
                 entry["boundary_recall"], entry["undersegmentation_error"])
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
