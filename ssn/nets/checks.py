"""Checks of SSN nets done in Python, before Caffe's fatal CHECKs would kill the interpreter.

Caffe reports a bad parameter or a shape mismatch with a fatal CHECK. These
checks find the same problems first and raise :class:`NetCheckError` (a
``ValueError``) that names the layer. This module gathers them under one name;
each job has its own module:

* :mod:`ssn.nets.layer_params`: one layer's parameters and blob counts
  (:func:`check_layer_params`), and the tables of SSN layer kinds.
* :mod:`ssn.nets.shape_inference`: blob shapes through a whole net
  (:func:`infer_shapes`), with Caffe's stock layers in :mod:`ssn.nets.stock_shapes`.
* :mod:`ssn.nets.net_rules`: whole-net rules (:func:`check_forward_only`,
  :func:`check_grids_agree`, :func:`warn_positive_scale`, :func:`check_grid_fits`).
* :mod:`ssn.nets.index_checks`: the ids fed to index bottoms
  (:func:`check_index_inputs`, :func:`runtime_index_checks`).
* :mod:`ssn.nets.memory_budget`: blob counts over INT_MAX and nets larger than
  the memory left (:func:`check_blob_sizes`).
"""
from __future__ import annotations

from ssn.nets.errors import NetCheckError, NetTooLargeError
from ssn.nets.index_checks import check_index_inputs, check_index_values, runtime_index_checks
from ssn.nets.layer_params import (
    BOTTOM_COUNTS,
    CONVOLUTIONS,
    FORWARD_ONLY,
    GRID_LAYERS,
    INDEX_BOTTOMS,
    NUM_NEIGHBOURS,
    SUPPORTED_PIXEL_FEATURES,
    TOP_COUNTS,
    TRAIN_WITH,
    blob_values,
    check_layer_params,
    grid_of,
    layers_for_phase,
)
from ssn.nets.memory_budget import FLOAT_BYTES, INT_MAX, available_memory, check_blob_sizes
from ssn.nets.net_rules import (
    CELL_MAP_BOTTOM,
    GridFitWarning,
    PositiveScaleWarning,
    check_forward_only,
    check_grid_fits,
    check_grids_agree,
    grid_count,
    warn_positive_scale,
)
from ssn.nets.shape_inference import (
    SOURCE_LAYERS,
    concat_convolution_shapes,
    infer_shapes,
    interp_output_size,
)

__all__ = ["NetCheckError", "NetTooLargeError", "infer_shapes", "check_layer_params",
           "check_forward_only", "check_index_inputs", "runtime_index_checks",
           "check_blob_sizes", "check_grid_fits", "GridFitWarning", "warn_positive_scale",
           "PositiveScaleWarning", "check_grids_agree", "check_index_values",
           "layers_for_phase", "grid_of", "grid_count", "blob_values", "available_memory",
           "concat_convolution_shapes", "interp_output_size", "BOTTOM_COUNTS", "TOP_COUNTS",
           "INDEX_BOTTOMS", "CONVOLUTIONS", "FORWARD_ONLY", "GRID_LAYERS", "NUM_NEIGHBOURS",
           "SUPPORTED_PIXEL_FEATURES", "TRAIN_WITH", "SOURCE_LAYERS", "CELL_MAP_BOTTOM",
           "INT_MAX", "FLOAT_BYTES"]
