"""The ssn package: SSN inference, nets, training, evaluation and their commands.

Caffe itself (pycaffe, libcaffe, the caffe tool) is built from source by
``python -m ssn_build`` (run from the checkout) into the same virtual
environment; see README.md and docs/BUILD.md.
"""
from setuptools import find_packages, setup

setup(
    name="ssn-caffe",
    version="0.1.0",
    description="Superpixel Sampling Networks as Caffe layers, with tools",
    packages=find_packages(include=["ssn", "ssn.*"]),
    # The shipped models, their settings (metadata files) and card; the native
    # sources, which the build tool compiles from the checkout, travel with the
    # package for reference.
    package_data={"ssn": ["models/*.caffemodel", "models/*.json", "models/*.md",
                          "native/*.cpp"]},
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.10",
        "scikit-image>=0.22",
        "h5py>=3.8",
        "protobuf>=3.20",
        "six",  # pycaffe imports it
        "tqdm>=4.60",
        "threadpoolctl>=3.1",  # OpenMP/BLAS threads per worker process
        "matplotlib>=3.5",  # evaluation curves
    ],
    # One command per ssn/cli module, named like it; tools/<module>.py runs the same.
    entry_points={
        "console_scripts": [
            "ssn-infer = ssn.cli.infer:main",
            "ssn-train = ssn.cli.train:main",
            "ssn-eval = ssn.cli.eval:main",
            "ssn-eval-snapshots = ssn.cli.eval_snapshots:main",
            "ssn-eval-task = ssn.cli.eval_task:main",
            "ssn-export-model = ssn.cli.export_model:main",
            "ssn-export-hdf5 = ssn.cli.export_hdf5:main",
            "ssn-make-prototxt = ssn.cli.make_prototxt:main",
            "ssn-demo = ssn.cli.demo:main",
            "ssn-bench-layers = ssn.cli.bench_layers:main",
            "ssn-bench-infer = ssn.cli.bench_infer:main",
            "ssn-bench-train = ssn.cli.bench_train:main",
            "ssn-bench-peers = ssn.cli.bench_peers:main",
            "ssn-bench-sizes = ssn.cli.bench_sizes:main",
            "ssn-bench-calibration = ssn.cli.bench_calibration:main",
            "ssn-data = ssn.cli.data:main",
            "ssn-synthflow = ssn.cli.synthflow:main",
            "ssn-target-regions = ssn.cli.target_regions:main",
            "ssn-eval-continuous = ssn.cli.eval_continuous:main",
        ],
    },
    extras_require={
        "test": ["pytest>=7", "ruff>=0.5", "cpplint>=2", "wheel", "dask[distributed]>=2023.1"],
        # ssn-infer --dask / --scheduler ADDRESS (a Dask cluster); the tests run one.
        "dask": ["dask[distributed]>=2023.1"],
        # Comparison baselines for ssn-eval and the peer benchmark. fast-slic builds
        # from source and needs Cython first:
        #   pip install .[bench] && pip install --no-build-isolation fast-slic
        "bench": ["opencv-contrib-python-headless", "cython"],
    },
)
