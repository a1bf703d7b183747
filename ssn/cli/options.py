"""Flags that several commands share, so each means the same everywhere."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional, Sequence, Union


def add_count(parser: argparse.ArgumentParser, default: Union[int, Sequence[int], None],
              many: bool = False, help: str = "requested superpixels") -> None:
    """``--n-segments N`` (``N [N ...]`` with ``many``); ``--n-spixels`` is an alias."""
    parser.add_argument("--n-segments", "--n-spixels", dest="n_segments", type=positive_int,
                        nargs="+" if many else None, default=default, metavar="N",
                        help=help if "(default" in help else f"{help} (default: {default})")


def add_grid(parser: argparse.ArgumentParser) -> None:
    """``--grid calibrated|original``: how the initial grid follows the requested count."""
    parser.add_argument("--grid", choices=["calibrated", "original"], default="calibrated",
                        help="calibrated: about --n-segments superpixels come out; original: "
                             "the original release's grid for --n-segments, about 1.4-1.8x "
                             "as many after connectivity (default: calibrated)")


def add_gpu(parser: argparse.ArgumentParser) -> None:
    """``--gpu ID``: -1 for the CPU."""
    parser.add_argument("--gpu", type=int, default=-1, metavar="ID",
                        help="GPU id, -1 for the CPU (default: -1)")


FEATURES = ("deep", "pixel")
BSDS_SPLITS = ("train", "val", "test")


def add_features(parser: argparse.ArgumentParser, nargs: Optional[str] = None,
                 help: str = "deep: learned features (needs weights); pixel: SSN_pix, "
                             "position and Lab only (default: deep if weights exist)") -> None:
    """``--features deep|pixel`` (several with ``nargs``): which pixel features SSN uses."""
    parser.add_argument("--features", choices=FEATURES, nargs=nargs, help=help)


def add_limit(parser: argparse.ArgumentParser, default: Optional[int] = None,
              what: str = "images of the split") -> None:
    """``--limit N``: only the first N items."""
    shown = "all" if default is None else default
    parser.add_argument("--limit", type=positive_int, default=default, metavar="N",
                        help=f"only the first N {what} (default: {shown})")


def add_split(parser: argparse.ArgumentParser, default: str = "val",
              choices: Sequence[str] = BSDS_SPLITS, help: str = "BSDS500 split") -> None:
    """``--split NAME``: a BSDS500 split."""
    parser.add_argument("--split", choices=choices, default=default,
                        help=f"{help} (default: {default})")


def add_data_root(parser: argparse.ArgumentParser) -> None:
    """``--data-root DIR``: the BSDS500 folder."""
    parser.add_argument("--data-root", type=Path, metavar="DIR",
                        help="BSDS500 folder (default: $SSN_DATA_ROOT, else ./data/BSDS500)")


MODEL_DEFAULT = "the model's, from its metadata file; 1{} without one"


def add_steps(parser: argparse.ArgumentParser, default: Optional[int] = 10) -> None:
    """``--num-steps N``: differentiable SLIC iterations; None: the model's setting."""
    shown = default if default is not None else MODEL_DEFAULT.format("0")
    parser.add_argument("--num-steps", type=positive_int, default=default, metavar="N",
                        help=f"SLIC iterations (default: {shown})")


def add_out(parser: argparse.ArgumentParser, default: Optional[Path] = None,
            help: str = "output folder") -> None:
    """``--out PATH``: where results go (required unless there is a default)."""
    parser.add_argument("--out", type=Path, default=default, required=default is None,
                        help=help + (f" (default: {default})" if default is not None else ""))


def add_workers(parser: argparse.ArgumentParser) -> None:
    """``--workers N`` and ``--threads N``: processes, and OpenMP/BLAS threads in each."""
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="worker processes sharing the images (default: this machine's "
                             "cores)")
    parser.add_argument("--threads", type=positive_int, metavar="N",
                        help="OpenMP/BLAS threads in each worker process (default: the cores "
                             "shared evenly among the workers; one process: as it is)")


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def position_weight(text: str) -> float:
    """An argparse type: a position weight in the range ``superpixels()`` accepts."""
    from ssn.inference import position_weight_argument
    try:
        return position_weight_argument(float(text), "--position-weight")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_position_weight(parser: argparse.ArgumentParser) -> None:
    """``--position-weight W``: SSN's compactness, a factor on the position features' scale
    (default: the model's setting)."""
    parser.add_argument("--position-weight", type=position_weight, default=None, metavar="W",
                        help="SSN's compactness: multiplies the scale of the pixel positions "
                             "(larger: more compact, regular superpixels; smaller: closer to "
                             "colour and learned edges) (default: "
                             f"{MODEL_DEFAULT.format('')})")


def add_compactness(parser: argparse.ArgumentParser) -> None:
    """``--compactness METHOD=VALUE``, repeatable: a classical baseline's setting."""
    parser.add_argument("--compactness", action="append", default=[], metavar="METHOD=VALUE",
                        help="a classical method's compactness (SLIC's m, LSC's ratio, "
                             "SEEDS' prior), repeatable; default: each method's usual value")


def compactness_values(specs: Sequence[str]) -> dict[str, float]:
    """``--compactness`` flags as {method: value}, checked (ValueError names the flag)."""
    from ssn.evaluation.baselines import LABELLERS

    values = {}
    for spec in specs:
        method, _, value = spec.partition("=")
        if method not in LABELLERS:
            raise ValueError(f"--compactness: unknown method {method!r}; one of "
                             f"{', '.join(LABELLERS)}")
        try:
            values[method] = float(value)
        except ValueError:
            raise ValueError(f"--compactness wants METHOD=NUMBER, got {spec!r}") from None
    return values
