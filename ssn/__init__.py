"""Superpixel Sampling Networks for Caffe: inference, nets, training, evaluation, commands.

The public entry point is :func:`ssn.inference.superpixels`.
"""

__version__ = "0.1.0"
