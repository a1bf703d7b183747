"""The GPU training run folders: a GPU solver, nets on the exported files, and weights
that start from the shipped model."""
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.examples.gpu_runs import HDF5_DIR, VARIANTS, write_variant
from ssn.inference import BUNDLED_WEIGHTS
from ssn.nets.checked import read_caffemodel


def blobs_by_layer(path) -> dict[str, list]:
    return {layer.name: [list(blob.data) for blob in layer.blobs]
            for layer in read_caffemodel(path).layer if layer.blobs}


def test_a_variant_folder_fine_tunes_the_shipped_model_on_the_gpu(tmp_path):
    name, options = next(iter(VARIANTS.items()))
    folder = write_variant(name, options, tmp_path)
    solver = text_format.Parse((folder / "solver.prototxt").read_text(),
                               caffe_pb2.SolverParameter())
    assert solver.solver_mode == caffe_pb2.SolverParameter.GPU
    assert solver.net == "train_val.prototxt"
    net = text_format.Parse((folder / "train_val.prototxt").read_text(),
                            caffe_pb2.NetParameter())
    sources = {layer.hdf5_data_param.source for layer in net.layer if layer.type == "HDF5Data"}
    assert sources == {f"{HDF5_DIR}/train.txt", f"{HDF5_DIR}/val.txt"}
    shipped, initial = blobs_by_layer(BUNDLED_WEIGHTS), blobs_by_layer(folder / "init.caffemodel")
    # The train net has no fixed helper weights the shipped model lacks: its label loss's
    # decoder is a SpixelToPixel layer and its renormalisation is done by the loss layer.
    assert shipped and set(shipped) == set(initial)
    for name, blobs in shipped.items():
        assert initial[name] == blobs, name
