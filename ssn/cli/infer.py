"""Compute SSN superpixels for many images.

Inputs are image files, directories, glob patterns or list files (.txt, one
path per line). For each image it writes, next to nothing else in --out:
<stem>.npy (int32 H x W labels 0..K-1), <stem>_labels.png (16-bit labels) and
<stem>_overlay.png (boundaries on the image); plus summary.csv / summary.json
(image, size, requested and actual count, seconds) and config.json. Images
already done are skipped unless --overwrite. A bad file is reported and
skipped; the exit code is 1 if any image failed.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ssn.atomic import write_atomic
from ssn.batch import expand_inputs, load_summary, process, save_summary
from ssn.cli import options
from ssn.device import use_device

log = logging.getLogger("ssn.cli.infer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/infer.py data/BSDS500/images/val --out out/val_100\n"
               "  python tools/infer.py 'photos/*.jpg' --n-segments 400 --features pixel "
               "--out out/p400\n"
               "  python tools/infer.py list.txt --weights model.caffemodel --gpu 0 "
               "--out out/x\n")
    parser.add_argument("inputs", nargs="+",
                        help="image files, directories, glob patterns or .txt list files")
    options.add_out(parser)
    options.add_count(parser, 100)
    options.add_steps(parser)
    parser.add_argument("--weights", type=Path,
                        help="trained .caffemodel (default: the bundled model, if any)")
    parser.add_argument("--features", choices=["deep", "pixel"],
                        help="deep: learned features (needs weights); pixel: SSN_pix, "
                             "position and Lab only (default: deep if weights exist)")
    options.add_gpu(parser)
    parser.add_argument("--connectivity", action=argparse.BooleanOptionalAction, default=True,
                        help="enforce connected superpixels (default: on)")
    parser.add_argument("--min-size-factor", type=float, default=0.06,
                        help="merge segments below this x H*W/n pixels (default: 0.06)")
    parser.add_argument("--max-size-factor", type=float, default=3.0,
                        help="split segments above this x H*W/n pixels (default: 3.0)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="recompute images whose results exist (default: skip them)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="run the SLIC iterations as one SlicIterations layer; "
                             "--no-fused runs the decomposed layers (default: fused)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        use_device(args.gpu)
    except ValueError as error:
        log.error("%s", error)
        return 2
    paths = expand_inputs(args.inputs)
    if not paths:
        log.error("no images found in %s", " ".join(args.inputs))
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    write_atomic(args.out / "config.json", json.dumps(config, indent=1))
    rows = load_summary(args.out / "summary.csv")
    failures = 0
    for path in tqdm(paths, unit="image", file=sys.stderr, disable=not sys.stderr.isatty()):
        if not args.overwrite and (args.out / f"{path.stem}.npy").exists():
            continue
        try:
            rows[str(path)] = process(path, args.out, args)
        except (ValueError, OSError) as error:
            failures += 1
            log.error("%s: %s", path, error)
            rows[str(path)] = dict(image=str(path), status=f"failed: {error}")
        save_summary(args.out, rows)
    done = sum(row.get("status") == "ok" for row in rows.values())
    log.info("%d image(s) done, %d failed; results in %s", done, failures, args.out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
