"""The build tool (ssn_build): the patch series over pristine sources, the shared
tree key, and the native library."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from ssn import native
from ssn_build import make, patches, splice
from ssn_build.native import build_native
from ssn_build.source import CAFFE_SDIST, NATIVE_DIR, PATCH_DIR

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "g++")) is None,
                                    reason="no C++ compiler")
needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="no 'patch' program")

UPSTREAM_MAIN = """#include <cstdio>

int answer() {
  return 41;
}

int main() {
  std::printf("%d\\n", answer());
  return 0;
}
"""


def make_tarball(path: Path, files: dict[str, str]) -> Path:
    """An sdist-like tarball: every file under one top folder."""
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"upstream-1.0/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def answer_patch(value: int) -> str:
    return (f"Make the answer {value}.\n\n"
            "--- a/src/main.cpp\n+++ b/src/main.cpp\n@@ -1,7 +1,7 @@\n #include <cstdio>\n \n"
            f" int answer() {{\n-  return 41;\n+  return {value};\n }}\n \n int main() {{\n")


@pytest.fixture
def upstream(tmp_path):
    """(tarball, patch folder, tree) of a one-file project, the tree unpacked pristine."""
    tarball = make_tarball(tmp_path / "upstream.tar.gz",
                           {"src/main.cpp": UPSTREAM_MAIN, "README": "upstream\n"})
    patch_dir = tmp_path / "patches"
    patch_dir.mkdir()
    (patch_dir / "0001-answer.patch").write_text(answer_patch(42))
    (patch_dir / "series").write_text("# the only patch\n0001-answer.patch\n")
    tree = tmp_path / "tree"
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (tmp_path / "unpacked" / "upstream-1.0").rename(tree)
    return tarball, patch_dir, tree


def compile_and_run(tree: Path, tmp_path: Path) -> str:
    binary = tmp_path / "answer"
    subprocess.run([os.environ.get("CXX", "g++"), str(tree / "src/main.cpp"), "-o", str(binary)],
                   check=True)
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout


@needs_patch
@needs_compiler
def test_an_edited_patch_changes_the_compiled_code(upstream, tmp_path):
    tarball, patch_dir, tree = upstream
    assert patches.apply_series(tree, tarball, patch_dir) == ["src/main.cpp"]
    assert compile_and_run(tree, tmp_path) == "42\n"
    # Edit the patch only: no marker, no rename. The next build must follow it.
    (patch_dir / "0001-answer.patch").write_text(answer_patch(43))
    assert patches.apply_series(tree, tarball, patch_dir) == ["src/main.cpp"]
    assert compile_and_run(tree, tmp_path) == "43\n"
    assert patches.stale_files(tree, tarball, patch_dir) == []


@needs_patch
def test_patched_files_are_restored_from_the_tarball_first(upstream):
    tarball, patch_dir, tree = upstream
    patches.apply_series(tree, tarball, patch_dir)
    (tree / "src/main.cpp").write_text("// hand-edited in the cache\n")
    assert patches.stale_files(tree, tarball, patch_dir) == ["src/main.cpp"]
    patches.apply_series(tree, tarball, patch_dir)
    assert "return 42;" in (tree / "src/main.cpp").read_text()
    assert "hand-edited" not in (tree / "src/main.cpp").read_text()


@needs_patch
def test_an_unchanged_series_rewrites_nothing(upstream):
    tarball, patch_dir, tree = upstream
    patches.apply_series(tree, tarball, patch_dir)
    stamp = (tree / "src/main.cpp").stat().st_mtime_ns
    assert patches.apply_series(tree, tarball, patch_dir) == []
    assert (tree / "src/main.cpp").stat().st_mtime_ns == stamp  # make rebuilds nothing


@needs_patch
def test_a_dropped_patch_leaves_the_pristine_file(upstream):
    tarball, patch_dir, tree = upstream
    patches.apply_series(tree, tarball, patch_dir)
    (patch_dir / "series").write_text("# no patches\n")
    assert patches.apply_series(tree, tarball, patch_dir) == ["src/main.cpp"]
    assert (tree / "src/main.cpp").read_text() == UPSTREAM_MAIN


@needs_patch
def test_a_patch_that_does_not_apply_names_itself(upstream):
    tarball, patch_dir, tree = upstream
    (patch_dir / "0001-answer.patch").write_text(answer_patch(42).replace("return 41", "return 7"))
    with pytest.raises(patches.PatchError, match="0001-answer.patch does not apply"):
        patches.apply_series(tree, tarball, patch_dir)


def test_series_errors_are_clear(tmp_path):
    with pytest.raises(patches.PatchError, match="no series file"):
        patches.read_series(tmp_path)
    (tmp_path / "series").write_text("0009-missing.patch\n")
    with pytest.raises(patches.PatchError, match="0009-missing.patch does not exist"):
        patches.read_series(tmp_path)
    (tmp_path / "0009-missing.patch").write_text("not a diff\n")
    with pytest.raises(patches.PatchError, match="not a unified diff"):
        patches.touched_files(tmp_path / "0009-missing.patch")


def test_every_patch_has_a_header_and_is_in_the_series():
    listed = [patch.name for patch in patches.read_series(PATCH_DIR)]
    assert sorted(listed) == sorted(path.name for path in PATCH_DIR.glob("*.patch"))
    for patch in patches.read_series(PATCH_DIR):
        header = patch.read_text().split("\n--- a/", 1)[0]
        assert len(header.split()) >= 8, f"{patch.name}: say what it changes and why"


def cached_tarball() -> Path:
    return make.default_cache() / "downloads" / CAFFE_SDIST


@pytest.mark.slow
@needs_patch
@pytest.mark.skipif(not cached_tarball().exists(), reason="no Caffe sdist downloaded yet")
def test_the_series_applies_to_the_pinned_caffe_and_the_built_tree_is_current():
    import sys
    config = make.BuildConfig(venv=Path(sys.prefix), cache=make.default_cache())
    contents = patches.patched_sources(cached_tarball(), patches.read_series(PATCH_DIR))
    assert "ssn::softmax_forward" in contents["src/caffe/layers/softmax_layer.cpp"].decode()
    tree = make.tree_dir(config)
    if tree.exists():
        assert patches.stale_files(tree, cached_tarball(), PATCH_DIR) == []
        # Applying the series again leaves make's outputs alone (it once deleted the
        # generated caffe_pb2.py, and a second clone then installed pycaffe without it).
        assert patches.apply_series(tree, cached_tarball(), PATCH_DIR) == []
        assert (tree / "python/caffe/proto/caffe_pb2.py").exists()


def test_a_changed_caffe_proto_rebuilds_every_caffe_object(tmp_path, monkeypatch):
    """A new field changes LayerParameter's size, which every object built against
    caffe.pb.h bakes in; Caffe's Makefile cannot see that dependency, so the splice
    marks those sources changed (not gtest's), and only when the proto changed."""
    proto = "message LayerParameter {\n  optional string name = 1;\n}\n"
    tarball = make_tarball(tmp_path / "caffe.tar.gz", {splice.CAFFE_PROTO: proto})
    fragment = tmp_path / "ssn.proto"
    fragment.write_text("// BEGIN LayerParameter fields\n  optional X x = 2001;\n"
                        "// END LayerParameter fields\nmessage X {}\n")
    monkeypatch.setattr(splice, "PROTO_FRAGMENT", fragment)
    monkeypatch.setattr(splice, "splice_destinations", dict)
    tree = tmp_path / "tree"
    users = ["src/caffe/layers/conv_layer.cpp", "src/caffe/layers/conv_layer.cu",
             "tools/caffe.cpp", "python/caffe/_caffe.cpp"]
    others = ["src/gtest/gtest-all.cpp", "src/caffe/proto/README"]

    def age_sources():
        for name in users + others:
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / name).touch()
            os.utime(tree / name, (1000, 1000))

    def touched():
        return sorted(name for name in users + others
                      if (tree / name).stat().st_mtime > 1000)

    age_sources()
    assert splice.splice(tree, tarball) == [splice.CAFFE_PROTO]
    assert "optional X x = 2001;" in (tree / splice.CAFFE_PROTO).read_text()
    assert touched() == sorted(users)
    age_sources()
    assert splice.splice(tree, tarball) == []
    assert touched() == []


def test_the_tree_key_does_not_depend_on_the_checkout(monkeypatch, tmp_path):
    import sys
    config = make.BuildConfig(venv=Path(sys.prefix), cache=tmp_path)
    first = make.tree_dir(config)
    monkeypatch.setattr(make, "numpy_include", lambda: "/elsewhere/.venv/numpy/_core/include")
    assert make.tree_dir(config) == first
    assert "/elsewhere/" in make.makefile_config(config)


# --------------------------------------------------------------------------------------------
# The native library


@pytest.mark.slow
@needs_compiler
def test_build_native_only_when_stale(tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    source = src_dir / "connectivity.cpp"
    shutil.copy(NATIVE_DIR / "connectivity.cpp", source)
    out_dir = tmp_path / "lib"
    library = build_native(out_dir, src_dir)
    assert library == out_dir / native.LIBRARY_NAME and library.exists()
    stamp = library.stat().st_mtime_ns
    assert build_native(out_dir, src_dir) == library
    assert library.stat().st_mtime_ns == stamp          # up to date: not rebuilt
    future = library.stat().st_mtime + 100
    os.utime(source, (future, future))
    build_native(out_dir, src_dir)
    assert library.stat().st_mtime_ns != stamp          # source newer: rebuilt
    assert sorted(p.name for p in out_dir.iterdir()) == [native.LIBRARY_NAME]


@needs_compiler
def test_build_native_reports_compiler_errors(tmp_path):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    (src_dir / "broken.cpp").write_text("int f( { return 0; }\n")
    with pytest.raises(RuntimeError, match="broken.cpp"):
        build_native(tmp_path / "lib", src_dir)
    assert not any((tmp_path / "lib").iterdir())       # no half-written library left


def test_build_native_without_sources(tmp_path):
    with pytest.raises(RuntimeError, match="no C\\+\\+ sources"):
        build_native(tmp_path / "lib", tmp_path)


def test_a_missing_native_library_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "library_path", lambda: tmp_path / native.LIBRARY_NAME)
    native.load_native.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="python -m ssn_build"):
            native.load_native()
    finally:
        native.load_native.cache_clear()


@pytest.mark.slow
def test_the_wheel_carries_the_package_its_model_and_no_build_tool(tmp_path, repo_root):
    """``pip install .`` (not only editable) must find the bundled model and every part."""
    import sys
    import zipfile
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path), str(repo_root)], check=True,
                   cwd=tmp_path)
    (wheel,) = tmp_path.glob("ssn_caffe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("ssn/models/ssn_bsds.caffemodel", "ssn/models/MODEL_CARD.md",
                   "ssn/cli/infer.py", "ssn/nets/generators.py", "ssn/training/solver.py",
                   "ssn/evaluation/metrics.py", "ssn/benchmarks/layers.py",
                   "ssn/native/__init__.py", "ssn/native/connectivity.cpp"):
        assert needed in names, needed
    assert not any(name.startswith("ssn_build/") for name in names)
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "ssn-infer = ssn.cli.infer:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


TOY_MAKEFILE = """.PHONY: all broken
all: a.o b.o
%.o:
\t@echo CXX src/$*.cpp
\t@echo compiler chatter for $*
\t@touch $@
broken:
\t@echo CXX src/broken.cpp
\t@echo "broken.cpp:1: error: expected ';'"
\t@false
"""


def test_make_runs_quietly_into_a_log_and_fails_with_its_end(tmp_path, caplog):
    import logging
    (tmp_path / "Makefile").write_text(TOY_MAKEFILE)
    assert make.planned_compiles(tmp_path, ["make"], ["all"]) == 2
    counter = {"done": 0}
    with caplog.at_level(logging.INFO, logger="ssn_build"), \
            open(tmp_path / "build.log", "w") as log_file:
        make.run_logged(["make", "all"], tmp_path, log_file, counter, 2)
        with pytest.raises(make.MakeError, match="make broken failed"):
            make.run_logged(["make", "broken"], tmp_path, log_file, counter, 2)
    assert counter["done"] == 3
    assert "compiled 2/2 files" in caplog.text and "chatter" not in caplog.text
    logged = (tmp_path / "build.log").read_text()
    assert "compiler chatter for a" in logged and "error: expected ';'" in logged


def test_the_cuda_check_compiles_the_patched_caffe_cuda_sources_too(tmp_path):
    """--check-cuda compiles every .cu file a patch changes, as patched in the tree."""
    from ssn_build.cuda_check import patched_cuda_sources
    sources = patched_cuda_sources(tmp_path)
    assert tmp_path / "src/caffe/layers/conv_layer.cu" in sources
    assert all(path.suffix == ".cu" and path.is_relative_to(tmp_path) for path in sources)


def test_an_edited_header_recompiles_every_source_that_includes_it(tmp_path):
    """Caffe's Makefile sees no header dependency (-isystem): the build tool touches the
    sources that include a changed header, also through other headers (a patched
    Caffe header that includes one of ours)."""
    import os

    from ssn_build.splice import touch_includers
    files = {
        "include/caffe/util/ours.hpp": "int ours();\n",
        "include/caffe/layers/theirs.hpp": '#include "caffe/util/ours.hpp"\n',
        "src/caffe/layers/uses_theirs.cpp": '#include "caffe/layers/theirs.hpp"\n',
        "src/caffe/util/uses_ours.cu": '  #  include "caffe/util/ours.hpp"\n',
        "tools/unrelated.cpp": '#include "caffe/blob.hpp"\n',
        "python/caffe/unrelated.cpp": "int main() {}\n",
    }
    for relative, text in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
        os.utime(tmp_path / relative, (1, 1))
    touched = touch_includers(tmp_path, ["include/caffe/util/ours.hpp"])
    assert sorted(touched) == ["src/caffe/layers/uses_theirs.cpp", "src/caffe/util/uses_ours.cu"]
    assert (tmp_path / "tools/unrelated.cpp").stat().st_mtime == 1
    assert (tmp_path / "src/caffe/layers/uses_theirs.cpp").stat().st_mtime > 1
    assert touch_includers(tmp_path, []) == []


def patch_header_fields(patch: Path) -> dict[str, str]:
    """The DEP-3 fields of ``patch``'s header (the text before its first ``--- a/``):
    {field: value}, continuation lines (starting with a space) joined to their field."""
    header = patch.read_text().split("\n--- a/", 1)[0]
    fields: dict[str, str] = {}
    name = None
    for line in header.splitlines():
        if line.startswith(" ") and name is not None:
            fields[name] += "\n" + line.strip()
        elif ":" in line and not line.startswith(" "):
            name, value = line.split(":", 1)
            assert name.replace("-", "").isalpha(), f"{patch.name}: not a field: {line!r}"
            fields[name] = value.strip()
        elif line.strip():
            raise AssertionError(f"{patch.name}: header line outside a field: {line!r}")
    return fields


@pytest.mark.parametrize("patch", patches.read_series(PATCH_DIR), ids=lambda path: path.name)
def test_each_patch_in_the_series_says_what_and_why(patch):
    """Debian-style (DEP-3) headers: a Description whose first line is the summary,
    and a Why, each non-empty."""
    fields = patch_header_fields(patch)
    assert fields.get("Description"), f"{patch.name}: no Description field"
    assert fields.get("Why"), f"{patch.name}: no Why field"


def test_a_header_without_why_is_refused(tmp_path):
    patch = tmp_path / "0001-x.patch"
    patch.write_text("Description: something.\n more of it.\n\n--- a/x\n+++ b/x\n")
    assert "Why" not in patch_header_fields(patch)
    patch.write_text("something, said in prose.\n\n--- a/x\n+++ b/x\n")
    with pytest.raises(AssertionError, match="outside a field"):
        patch_header_fields(patch)


def test_only_layer_headers_go_beside_caffes_layers():
    """Helper headers go to include/caffe/ssn/ (or caffe/test/ for the tests'
    fixture), never to include/caffe/layers/, which holds one header per layer."""
    places = splice.splice_destinations()
    layer_headers = [place for place in places if place.startswith("include/caffe/layers/")]
    assert layer_headers and all(place.endswith("_layer.hpp") for place in layer_headers)
    assert "include/caffe/ssn/math.hpp" in places
    assert "include/caffe/test/test_ssn_util.hpp" in places
    assert not [place for place in places if place.startswith("include/caffe/util/")]


def test_every_ssn_include_names_a_spliced_header():
    """Each ``#include "caffe/ssn/..."`` or ``"caffe/test/test_ssn_..."`` in our C++ and
    CUDA sources, and in the patches, names a header the splice installs."""
    places = set(splice.splice_destinations())
    sources = [path for path in splice.splice_destinations().values()
               if path.suffix in (".hpp", ".cpp", ".cu", ".cuh")]
    sources += patches.read_series(PATCH_DIR)
    for source in sources:
        text = source.read_text()
        if source.suffix == ".patch":  # the lines a patch adds
            text = "\n".join(line[1:] for line in text.splitlines() if line.startswith("+"))
        for included in splice.INCLUDE.findall(text):
            if included.startswith(("caffe/ssn/", "caffe/test/test_ssn")):
                assert f"include/{included}" in places, f"{source.name}: {included}"
