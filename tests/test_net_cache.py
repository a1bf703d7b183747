"""The memory-bounded cache of built nets (ssn.nets.cache)."""
from types import SimpleNamespace

import numpy as np
from skimage import data

from ssn import inference
from ssn.inference import superpixels
from ssn.nets.cache import memory_bounded_cache


def counting_builder(max_bytes, max_entries=32):
    built = []

    @memory_bounded_cache(max_bytes, max_entries)
    def build(name, size):
        built.append(name)
        return SimpleNamespace(name=name, blob_bytes=size)
    return build, built


def test_nets_within_the_budget_are_all_kept():
    build, built = counting_builder(max_bytes=100)
    for _ in range(3):
        for name in "abcdef":
            build(name, 10)
    assert built == list("abcdef")
    info = build.cache_info()
    assert (info.hits, info.misses, info.currsize, info.bytes) == (12, 6, 6, 60)


def test_the_least_recently_used_go_first_when_over_the_budget():
    build, built = counting_builder(max_bytes=100)
    build("a", 40)
    build("b", 40)
    build("a", 40)          # a is now the most recently used
    build("c", 40)          # 120 > 100: b goes
    assert build.cache_info().currsize == 2
    build("a", 40)
    build("b", 40)
    assert built == ["a", "b", "c", "b"]


def test_a_net_over_the_budget_alone_is_still_kept():
    build, built = counting_builder(max_bytes=100)
    build("small", 10)
    build("huge", 500)
    build("huge", 500)
    assert built == ["small", "huge"] and build.cache_info().currsize == 1


def test_the_entry_count_is_bounded_too():
    build, built = counting_builder(max_bytes=10**9, max_entries=2)
    for name in "abca":
        build(name, 1)
    assert built == list("abca")
    build.cache_clear()
    assert build.cache_info() == (0, 0, 10**9, 0, 0)


def test_alternating_counts_and_modes_reuse_every_net():
    """Six nets in turn (two modes, three counts) are each built once: a count-bounded
    cache of four rebuilt them on every call."""
    inference.deploy_net_for.cache_clear()
    image = data.astronaut()[::8, ::8]
    first = {}
    for _ in range(2):
        for features in ("pixel", "deep"):
            for n in (20, 40, 80):
                labels = superpixels(image, n, num_steps=2, features=features)
                np.testing.assert_array_equal(first.setdefault((features, n), labels), labels)
    info = inference.deploy_net_for.cache_info()
    assert (info.misses, info.hits, info.currsize) == (6, 6, 6)
    assert 0 < info.bytes <= inference.NET_CACHE_BYTES
