"""A least-recently-used cache of built nets, bounded by the memory they hold.

A count alone bounds memory badly: a deep net for a 481 x 321 image holds
about 740 MB of blobs and a pixel-feature one 13 MB, so a cache of four evicts
small nets that cost nothing to keep, and every evicted net is built and
allocated again on its next use (in a benchmark that alternates counts and
modes, that doubled pixel mode's time).

A cached net is one set of blobs, so the threads of a process take turns with
the nets: :func:`net_lock` is held while one is built, looked up or run. pycaffe
keeps the GIL through a whole forward, so threads lose no parallelism to it.
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import Callable, NamedTuple

_lock = threading.RLock()


def net_lock() -> threading.RLock:
    """The lock (re-entrant) held while a cached net is built, looked up or used: two
    threads in one net overwrite each other's inputs and results, and one's reshape to
    its image size pulls the blobs from under the other's forward."""
    return _lock


def renew_lock() -> None:
    """A fresh :func:`net_lock`, for a forked child: a thread of the parent may have held
    the old one, and that thread does not exist in the child."""
    global _lock
    _lock = threading.RLock()


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
            with net_lock():
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
            with net_lock():
                entries.clear()
                counts.update(hits=0, misses=0)

        def cache_info() -> CacheInfo:
            with net_lock():
                return CacheInfo(counts["hits"], counts["misses"], max_bytes, len(entries),
                                 held())

        cached.cache_clear = cache_clear
        cached.cache_info = cache_info
        return cached
    return decorate
