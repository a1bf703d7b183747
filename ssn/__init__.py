"""Superpixel Sampling Networks for Caffe: references, network tools and helpers."""

__version__ = "0.1.0"
