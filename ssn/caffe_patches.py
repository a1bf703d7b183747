"""Fixes to the pinned Caffe sdist's sources, applied in the build tree.

All of them are idempotent: applying one twice changes nothing, so trees made
by older versions of the build are brought up to date too.

* :func:`patch_source_tree`: what breaks a plain Makefile build (stale
  generated protobuf files, ``BUILD_DIR = temp``, a stray line in a test);
* :func:`patch_gpu_sources`: what nvcc 13 and CUDA 13 reject;
* :func:`restore_finetuning`: ``caffe train --weights`` copies the weights;
* :func:`fix_crop_copy`: the CPU Crop copies each row once.

Speed-ups of layers that work correctly are in :mod:`ssn.cpu_speedups`.
"""
from __future__ import annotations

import re
from pathlib import Path

# Generated files the sdist ships for an older protoc; protoc 3.21 remakes them.
STALE_GENERATED = (
    "include/caffe/proto/caffe.pb.h",
    "src/caffe/proto/caffe.pb.cc",
    "python/caffe/proto/caffe_pb2.py",
)

def write_if_changed(path: Path, content: bytes) -> bool:
    """Write ``content`` unless ``path`` already holds it (keeps make's mtimes)."""
    if path.exists() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
    return True


def patch_source_tree(tree: Path, gpu: bool = False) -> None:
    """Fix the sdist's defects that break a plain Makefile build.

    A GPU tree also gets :func:`patch_gpu_sources`.
    """
    for relative in STALE_GENERATED:
        (tree / relative).unlink(missing_ok=True)
    makefile = tree / "Makefile"
    # `BUILD_DIR = temp` overrides Makefile.config and breaks pycaffe's rpath.
    text = makefile.read_text()
    makefile.write_text(re.sub(r"(?m)^BUILD_DIR = temp\n", "", text))
    bbox_test = tree / "src/caffe/test/test_bbox_util.cpp"
    if bbox_test.exists():
        lines = bbox_test.read_text().splitlines(keepends=True)
        bbox_test.write_text("".join(line for line in lines if line.strip() != "cmake"))
    (tree / "Makefile.config").unlink(missing_ok=True)
    if gpu:
        patch_gpu_sources(tree)


# SSD-branch layers whose headers declare GPU functions that no .cu defines.
# Their .cpp defines them (STUB_GPU) only under CPU_ONLY, so a GPU link fails
# unless the declarations are CPU_ONLY too; without them the layers inherit
# Layer's GPU methods, which run the CPU code.
GPU_LESS_HEADERS = {
    "relu6_layer.hpp": ("Forward", "Backward"),
    "upsample_layer.hpp": ("Forward", "Backward"),
    "hardswish_layer.hpp": ("Forward", "Backward"),
    "hardsigmoid_layer.hpp": ("Forward", "Backward"),
    "maxunpool_layer.hpp": ("Forward", "Backward"),
    "pixelshuffle_layer.hpp": ("Forward", "Backward"),
    "proposal_layer.hpp": ("Backward",),  # proposal_layer.cu has the forward
}
GPU_GUARD = "#ifdef CPU_ONLY  // ssn/build.py: no GPU definition in this source\n"

# Caffe::DeviceQuery's reads of cudaDeviceProp fields that CUDA 13 removed.
REMOVED_DEVICE_PROPS = {
    "prop.clockRate": '"n/a (CUDA 13)"',
    '(prop.deviceOverlap ? "Yes" : "No")': '(prop.asyncEngineCount > 0 ? "Yes" : "No")',
    '(prop.kernelExecTimeoutEnabled ? "Yes" : "No")': '"n/a (CUDA 13)"',
}


def patch_text(path: Path, edit) -> None:
    """Apply ``edit`` (text -> text) to ``path``, writing only on a change."""
    text = path.read_text()
    write_if_changed(path, edit(text).encode())


def guard_gpu_declarations(text: str, passes: tuple[str, ...]) -> str:
    """Wrap the ``<pass>_gpu`` declarations of a header in ``#ifdef CPU_ONLY``.

    Declarations already wrapped are left alone, so applying it twice is a no-op.
    """
    for name in passes:
        pattern = re.compile(rf"(?m)(?<!{re.escape(GPU_GUARD)})"
                             rf"^[ \t]*virtual void {name}_gpu\([^;]*\);\n")
        text = pattern.sub(lambda match: GPU_GUARD + match.group(0) + "#endif\n", text)
    return text


def patch_gpu_sources(tree: Path) -> None:
    """Source fixes a CUDA 13 (nvcc 13) build of this sdist needs; idempotent.

    * ``common.cpp`` reads cudaDeviceProp fields that CUDA 13 removed;
    * SSD-branch headers declare GPU methods without a .cu (see
      ``GPU_LESS_HEADERS``): the declarations become CPU_ONLY;
    * ``proposal_layer.cu`` defines only the forward, so it instantiates only
      the forward.

    cuDNN stays off; the architectures are set in :func:`gpu_config_lines`.
    """
    def fix_props(text: str) -> str:
        for removed, replacement in REMOVED_DEVICE_PROPS.items():
            text = text.replace(removed, replacement)
        return text

    patch_text(tree / "src/caffe/common.cpp", fix_props)
    for header, passes in GPU_LESS_HEADERS.items():
        path = tree / "include/caffe/layers" / header
        if path.exists():
            patch_text(path, lambda text, passes=passes: guard_gpu_declarations(text, passes))
    proposal = tree / "src/caffe/layers/proposal_layer.cu"
    if proposal.exists():
        patch_text(proposal, lambda text: text.replace(
            "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer);",
            "INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer);"))


FINETUNE_MARKER = "ssn/build.py: copy --weights"
FINETUNE_ANCHOR = "  solver->SetActionFunction(signal_handler.GetActionFunction());\n"
FINETUNE_CODE = (
    "  if (FLAGS_weights.size()) {  // " + FINETUNE_MARKER + " (BVLC's finetuning)\n"
    "    LOG(INFO) << \"Finetuning from \" << FLAGS_weights;\n"
    "    solver->net()->CopyTrainedLayersFrom(FLAGS_weights);\n"
    "    for (int i = 0; i < solver->test_nets().size(); ++i) {\n"
    "      solver->test_nets()[i]->CopyTrainedLayersFrom(FLAGS_weights);\n"
    "    }\n"
    "  }\n")


CROP_MARKER = "ssn/build.py: one copy per row"
CROP_SLOW = """    // We are at the last dimensions, which is stored continously in memory
    for (int i = 0; i < top[0]->shape(cur_dim); ++i) {
      // prepare index vector reduced(red) and with offsets(off)
      std::vector<int> ind_red(cur_dim, 0);
      std::vector<int> ind_off(cur_dim+1, 0);
      for (int j = 0; j < cur_dim; ++j) {
          ind_red[j] = indices[j];
          ind_off[j] = indices[j] + offsets[j];
      }
      ind_off[cur_dim] = offsets[cur_dim];
      // do the copy
      if (is_forward) {
        caffe_copy(top[0]->shape(cur_dim),
            src_data + bottom[0]->offset(ind_off),
            dest_data + top[0]->offset(ind_red));
      } else {
        // in the backwards pass the src_data is top_diff
        // and the dest_data is bottom_diff
        caffe_copy(top[0]->shape(cur_dim),
            src_data + top[0]->offset(ind_red),
            dest_data + bottom[0]->offset(ind_off));
      }
    }
"""
CROP_FAST = """    // The last axis is contiguous: copy it once (""" + CROP_MARKER + """;
    // the sdist repeated the same copy once per element of that axis).
    std::vector<int> ind_red(cur_dim, 0);
    std::vector<int> ind_off(cur_dim+1, 0);
    for (int j = 0; j < cur_dim; ++j) {
      ind_red[j] = indices[j];
      ind_off[j] = indices[j] + offsets[j];
    }
    ind_off[cur_dim] = offsets[cur_dim];
    if (is_forward) {
      caffe_copy(top[0]->shape(cur_dim),
          src_data + bottom[0]->offset(ind_off),
          dest_data + top[0]->offset(ind_red));
    } else {
      caffe_copy(top[0]->shape(cur_dim),
          src_data + top[0]->offset(ind_red),
          dest_data + bottom[0]->offset(ind_off));
    }
"""


def fix_crop_copy(tree: Path) -> None:
    """Make the CPU Crop layer copy each row once.

    This sdist's crop_copy loops over the last axis and repeats the same row
    copy W times: the two Crops of the SSN feature CNN took about 0.7 s each
    on a 481x321 image. Idempotent.
    """
    source = tree / "src/caffe/layers/crop_layer.cpp"
    text = source.read_text()
    if CROP_MARKER in text:
        return
    if CROP_SLOW not in text:
        raise RuntimeError(f"{source}: the row-copy loop to fix was not found")
    write_if_changed(source, text.replace(CROP_SLOW, CROP_FAST).encode())


def restore_finetuning(tree: Path) -> None:
    """Make ``caffe train --weights`` copy the weights again.

    This sdist's tools/caffe.cpp accepts --weights for training but never uses
    it (BVLC Caffe copies them into the train and test nets). Idempotent.
    """
    source = tree / "tools/caffe.cpp"
    text = source.read_text()
    if FINETUNE_MARKER in text:
        return
    if FINETUNE_ANCHOR not in text:
        raise RuntimeError(f"{source}: cannot find where to restore --weights")
    write_if_changed(source, text.replace(FINETUNE_ANCHOR, FINETUNE_ANCHOR + FINETUNE_CODE)
                     .encode())
