"""Connectivity enforcement in plain Python: the oracle for the compiled one.

:func:`enforce_connectivity` transcribes the relabelling loop that
:mod:`ssn.connectivity` describes (and ``ssn/native/connectivity.cpp`` runs)
one pixel at a time, with Python lists, so that the compiled pass can be
compared with it pixel for pixel. It takes the same inputs, checked by the same
functions, and raises the same errors. Use it only on small maps: it runs at
about a microsecond per pixel-neighbour in CPython.
"""
from __future__ import annotations

import numpy as np

from ssn.connectivity import as_int32_labels, check_piece_sizes


def enforce_connectivity(labels: np.ndarray, min_size: int, max_size: int) -> np.ndarray:
    """Relabel ``labels`` (H x W) into 4-connected pieces of ``min_size`` to ``max_size``
    pixels, in raster order; int32 labels consecutive from 0 (H x W).

    Same parameters, result and errors as :func:`ssn.connectivity.enforce_connectivity`.
    """
    lab = as_int32_labels(labels)
    min_size, max_size = check_piece_sizes(min_size, max_size)
    height, width = lab.shape
    src = lab.tolist()
    out = [[-1] * width for _ in range(height)]
    next_label = 0
    for y0 in range(height):
        for x0 in range(width):
            if out[y0][x0] >= 0:
                continue
            label = src[y0][x0]
            adjacent = 0
            out[y0][x0] = next_label
            queue = [(y0, x0)]
            size = 1
            head = 0
            while head < size and size < max_size:
                y, x = queue[head]
                for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):   # +x, -x, +y, -y
                    yy, xx = y + dy, x + dx
                    if not (0 <= yy < height and 0 <= xx < width):
                        continue
                    if src[yy][xx] == label and out[yy][xx] == -1:
                        out[yy][xx] = next_label
                        queue.append((yy, xx))
                        size += 1
                        if size >= max_size:
                            break
                    elif out[yy][xx] >= 0 and out[yy][xx] != next_label:
                        adjacent = out[yy][xx]
                head += 1
            if size < min_size:
                for y, x in queue:
                    out[y][x] = adjacent
            else:
                next_label += 1
    return np.array(out, dtype=np.int32).reshape(height, width)

