"""Float64 NumPy reference of the SSN layers, written from docs/LAYERS.md.

One module per layer, each with ``forward`` and (where the layer has one) ``backward``,
loop-based and mirroring that page's indexing. It is the oracle the Caffe CPU and CUDA layers
are tested against. :mod:`ssn.reference.grid` holds the superpixel-grid conventions, and
:mod:`ssn.reference.connectivity` the pure-Python connectivity pass that the compiled one
(:mod:`ssn.connectivity`) is tested against.
"""
from ssn.reference import (
    concat_convolution,
    connectivity,
    grid,
    interp,
    loss_without_softmax,
    passoc,
    pixel_feature,
    rel_to_abs_index,
    slic_iterations,
    smear,
    spixel_feature,
    spixel_feature2,
    spixel_to_pixel,
)

__all__ = [
    "concat_convolution",
    "connectivity",
    "grid",
    "interp",
    "loss_without_softmax",
    "passoc",
    "pixel_feature",
    "rel_to_abs_index",
    "slic_iterations",
    "smear",
    "spixel_feature",
    "spixel_feature2",
    "spixel_to_pixel",
]
