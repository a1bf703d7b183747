"""Our layers in Caffe's tree: sources copied in, our proto fragment merged into caffe.proto."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ssn.atomic import write_if_changed
from ssn_build.patches import read_pristine
from ssn_build.source import CUDA_DIR, LAYER_DIR, PROTO_FRAGMENT

SPLICE_MANIFEST = ".ssn_spliced_files"
CAFFE_PROTO = "src/caffe/proto/caffe.proto"


def splice_destinations() -> dict[str, Path]:
    """Map each destination in the Caffe tree (relative) to our source file.

    ``caffe_layers/include/`` mirrors the tree's ``include/``: the SSN helper
    headers (``caffe/ssn/``, shared by the CPU and CUDA code) and the C++ tests'
    fixture (``caffe/test/``) keep their path. Layer headers ``caffe_layers/*.hpp``
    go to ``include/caffe/layers`` beside Caffe's own, C++ tests (``test_*.cpp``)
    to ``src/caffe/test``, the other sources beside Caffe's own, and the
    CUDA-only ``cuda/*.cuh`` to ``include/caffe/ssn``.
    """
    places: dict[str, Path] = {}
    include_dir = LAYER_DIR / "include"
    for source in sorted(include_dir.rglob("*")):
        if source.is_file():
            places[f"include/{source.relative_to(include_dir).as_posix()}"] = source
    for source in sorted(LAYER_DIR.glob("*.hpp")):
        places[f"include/caffe/layers/{source.name}"] = source
    for folder, home in (("", "src/caffe/layers"), ("util", "src/caffe/util"),
                         ("test", "src/caffe/test")):
        for source in sorted((LAYER_DIR / folder).glob("*.cpp")):
            place = "src/caffe/test" if source.name.startswith("test_") else home
            places[f"{place}/{source.name}"] = source
    for source in sorted(CUDA_DIR.glob("*.cuh")):
        places[f"include/caffe/ssn/{source.name}"] = source
    for source in sorted(CUDA_DIR.glob("*.cu")):
        places[f"src/caffe/layers/{source.name}"] = source
    return places


def spliced_proto(original: str, fragment: str) -> str:
    """Return caffe.proto with our LayerParameter fields and messages added.

    Works on the pristine text, so applying it again gives the same result.
    """
    match = re.search(r"// BEGIN LayerParameter fields\n(.*?)// END LayerParameter fields\n",
                      fragment, re.S)
    if match is None:
        raise ValueError(f"{PROTO_FRAGMENT}: missing the LayerParameter fields block")
    fields, messages = match.group(1), fragment[match.end():]
    anchor = re.search(r"message LayerParameter \{.*?\n\}\n", original, re.S)
    if anchor is None:
        raise ValueError("caffe.proto: message LayerParameter not found")
    closing = anchor.end() - 2  # position of the final "}" of LayerParameter
    return (original[:closing] + "  // SSN layers (caffe_layers/ssn.proto)\n" + fields
            + original[closing:] + "\n// ---- SSN layers (caffe_layers/ssn.proto) ----\n"
            + messages)


INCLUDE = re.compile(r'^\s*#\s*include\s+"(caffe/[^"]+)"', re.MULTILINE)
HEADER_SUFFIXES = (".h", ".hpp", ".cuh")


def touch_includers(tree: Path, headers: list[str]) -> list[str]:
    """Mark every compiled source that includes one of ``headers`` (tree paths such as
    ``include/caffe/ssn/shifted_conv.hpp``), directly or through other headers of the
    tree, as changed; return the sources touched.

    Caffe's Makefile passes include directories with -isystem, so its dependency
    files omit headers: an edit to a header (one of ours, or one a patch rewrites)
    must be made visible to make by hand. Caffe's own sources include ours through
    the patches (base_conv_layer.hpp holds a ShiftedConv by value), so they are
    found by following the includes, not by name: an object left stale would
    disagree with the others on a class's layout.
    """
    def included(path: Path) -> set[str]:
        return set(INCLUDE.findall(path.read_text(errors="replace")))

    include_dir = tree / "include"
    affected = {header[len("include/"):] for header in headers if header.startswith("include/")}
    graph = {str(path.relative_to(include_dir)): included(path)
             for path in include_dir.rglob("*") if path.suffix in HEADER_SUFFIXES}
    grown = True
    while grown:  # headers that include an affected header are affected too
        newly = {name for name, includes in graph.items()
                 if name not in affected and includes & affected}
        affected |= newly
        grown = bool(newly)
    touched = []
    for folder in PROTO_USERS:
        for path in (tree / folder).rglob("*"):
            if path.suffix in (".cpp", ".cu") and path.is_file() and included(path) & affected:
                os.utime(path)
                touched.append(str(path.relative_to(tree)))
    return touched


# Folders of the tree whose C++ and CUDA sources build against caffe.pb.h
# (src/gtest does not include it).
PROTO_USERS = ("src/caffe", "tools", "python/caffe")


def touch_proto_users(tree: Path) -> None:
    """Mark every compiled source of Caffe's tree as changed, for a new caffe.proto.

    A new field changes the generated caffe.pb.h, and with it the size of
    LayerParameter, which every Caffe object builds in (libcaffe, pycaffe's
    _caffe.so, the tools, the tests). Caffe's Makefile cannot see that
    dependency (-isystem, as above), so an object left alone would allocate the
    old, smaller layout and corrupt memory at the first net built.
    """
    for folder in PROTO_USERS:
        for path in (tree / folder).rglob("*"):
            if path.suffix in (".cpp", ".cu") and path.is_file():
                os.utime(path)


def splice(tree: Path, tarball: Path) -> list[str]:
    """Copy our sources and proto fragment into ``tree``; return what changed."""
    changed = []
    places = splice_destinations()
    manifest = tree / SPLICE_MANIFEST
    previous = manifest.read_text().split() if manifest.exists() else []
    for stale in set(previous) - set(places):
        (tree / stale).unlink(missing_ok=True)
        changed.append(stale)
    for relative, source in places.items():
        if write_if_changed(tree / relative, source.read_bytes()):
            changed.append(relative)
    write_if_changed(manifest, "\n".join(sorted(places)).encode())
    touch_includers(tree, [name for name in changed if name.endswith(HEADER_SUFFIXES)])

    pristine = read_pristine(tarball, {CAFFE_PROTO})[CAFFE_PROTO].decode()
    text = spliced_proto(pristine, PROTO_FRAGMENT.read_text())
    if write_if_changed(tree / CAFFE_PROTO, text.encode()):
        changed.append(CAFFE_PROTO)
        touch_proto_users(tree)
    return changed
