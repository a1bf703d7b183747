"""The ssn package: NumPy reference, net helpers, checks and the Caffe build.

Caffe itself (pycaffe, libcaffe, the caffe tool) is built from source by
``python -m ssn.build`` into the same virtual environment; see README.md.
"""
from setuptools import find_packages, setup

setup(
    name="ssn-caffe",
    version="0.1.0",
    description="Superpixel Sampling Networks as Caffe layers, with tools",
    packages=find_packages(include=["ssn", "ssn.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.26",
        "scipy>=1.10",
        "scikit-image>=0.22",
        "h5py>=3.8",
        "protobuf>=3.20",
        "six",  # pycaffe imports it
        "tqdm>=4.60",
        "matplotlib>=3.5",  # evaluation curves
    ],
    extras_require={"test": ["pytest>=7", "ruff>=0.5"]},
)
