"""Run folders for training SSN variants with ``caffe train`` on a bare GPU machine.

``python -m ssn.examples.gpu_runs --out .gpu-run`` writes one folder per variant
(``solver.prototxt``, ``train_val.prototxt``, ``init.caffemodel``), whose nets read
HDF5 files that ``tools/gpu_train.sh`` exports on the GPU machine into
``HDF5_DIR``; that script then trains every variant side by side on one GPU for a
fixed wall-clock time and brings back the last snapshot of each. The CPU
recipe (``--recipe bsds_cpu``) is what the shipped model was trained with.
"""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Optional

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.atomic import write_atomic
from ssn.inference import BUNDLED_WEIGHTS
from ssn.nets.generators import train_net
from ssn.nets.prototxt import HEADER, PrototxtOptions, data_shapes, solver
from ssn.nets.weights import write_initial_weights

log = logging.getLogger("ssn.examples.gpu_runs")

HDF5_DIR = "/tmp/ssn-h5"  # where tools/gpu_train.sh writes the exported samples


GPU_OPTIONS = PrototxtOptions(batch_size=6, base_lr=1e-4, max_iter=500000, snapshot=1000,
                              test_interval=100000000, test_iter=1, snapshot_prefix="snap/ssn")
# Run folder name -> options; every variant fine-tunes the shipped model.
VARIANTS = {
    "finetune_b6_s5": GPU_OPTIONS,
    "finetune_b6_s10": replace(GPU_OPTIONS, num_steps=10),
}


def write_variant(name: str, options: PrototxtOptions, out: Path) -> Path:
    """Write ``out/<name>/``: the train net on HDF5_DIR's files, a GPU solver, and the
    shipped model's weights (with the fixed helper weights of a net that has any)."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    net_param = train_net(options.train_config(),
                          hdf5_sources=(f"{HDF5_DIR}/train.txt", f"{HDF5_DIR}/val.txt"))
    write_atomic(folder / "train_val.prototxt",
                 HEADER + text_format.MessageToString(net_param))
    solver_param = solver(options, "train_val.prototxt")
    solver_param.solver_mode = caffe_pb2.SolverParameter.GPU
    solver_param.display = 100
    write_atomic(folder / "solver.prototxt", HEADER + text_format.MessageToString(solver_param))
    # The weights come from the same net with the Python data layer, which
    # write_initial_weights replaces by Input layers.
    write_initial_weights(train_net(options.train_config()), data_shapes(options),
                          folder / "init.caffemodel", trained=BUNDLED_WEIGHTS)
    return folder


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for the run folders")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for name, options in VARIANTS.items():
        log.info("wrote %s", write_variant(name, options, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
