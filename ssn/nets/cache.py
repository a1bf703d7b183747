"""A least-recently-used cache of built nets, bounded by the memory they hold.

A count alone bounds memory badly: a deep net for a 481 x 321 image holds
about 740 MB of blobs and a pixel-feature one 13 MB, so a cache of four evicts
small nets that cost nothing to keep, and every evicted net is built and
allocated again on its next use (in a benchmark that alternates counts and
modes, that doubled pixel mode's time).
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Callable, NamedTuple


class CacheInfo(NamedTuple):
    hits: int
    misses: int
    max_bytes: int
    currsize: int
    bytes: int


def memory_bounded_cache(max_bytes: int, max_entries: int = 32) -> Callable:
    """Decorate a function that builds a net (anything with ``blob_bytes``) to keep
    its results, least recently used first out, while together they hold at most
    ``max_bytes`` and number at most ``max_entries``; the newest is always kept.

    The wrapper has ``cache_clear()`` and ``cache_info()`` like
    :func:`functools.lru_cache`'s. Arguments must be hashable.
    """
    def decorate(build: Callable) -> Callable:
        entries: OrderedDict = OrderedDict()
        counts = {"hits": 0, "misses": 0}

        @functools.wraps(build)
        def cached(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items())))
            if key in entries:
                counts["hits"] += 1
                entries.move_to_end(key)
                return entries[key]
            counts["misses"] += 1
            net = build(*args, **kwargs)
            entries[key] = net
            while len(entries) > 1 and (len(entries) > max_entries or
                                        held() > max_bytes):
                entries.popitem(last=False)
            return net

        def held() -> int:
            return sum(net.blob_bytes for net in entries.values())

        def cache_clear() -> None:
            entries.clear()
            counts.update(hits=0, misses=0)

        def cache_info() -> CacheInfo:
            return CacheInfo(counts["hits"], counts["misses"], max_bytes, len(entries), held())

        cached.cache_clear = cache_clear
        cached.cache_info = cache_info
        return cached
    return decorate
