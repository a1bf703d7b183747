"""CheckedNet checks any net, whatever feeds it, so that Caffe's fatal CHECKs never fire.

Each bad net raises NetCheckError naming the layer before caffe.Net sees it.
"""
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import caffe
import h5py
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P
from skimage import io

from ssn.grid import init_cells
from ssn.nets import stock_shapes
from ssn.nets.checked import CheckedNet
from ssn.nets.checks import GridFitWarning, NetCheckError, PositiveScaleWarning, infer_shapes

REPO = Path(__file__).resolve().parent.parent
DATA_MODULE = "ssn.training.data_layer"


def write_h5(folder: Path, **datasets) -> Path:
    """An HDF5 file of ``datasets`` and a source list naming it; returns the list."""
    path = folder / "part.h5"
    with h5py.File(path, "w") as handle:
        for name, array in datasets.items():
            handle[name] = array
    source = folder / "list.txt"
    source.write_text(f"{path}\n")
    return source


def hdf5_net(source, batch_size=2, tops=("data", "label")):
    n = caffe.NetSpec()
    data = L.HDF5Data(ntop=len(tops), hdf5_data_param=dict(source=str(source),
                                                           batch_size=batch_size))
    for top, blob in zip(tops, data if len(tops) > 1 else [data]):
        n[top] = blob
    return n


def write_images(folder: Path, sizes=((12, 16),)) -> Path:
    rng = np.random.default_rng(5)
    lines = []
    for index, (height, width) in enumerate(sizes):
        path = folder / f"im{index}.png"
        io.imsave(path, rng.integers(0, 255, (height, width, 3), dtype=np.uint8),
                  check_contrast=False)
        lines.append(f"{path} {index}")
    source = folder / "images.txt"
    source.write_text("\n".join(lines) + "\n")
    return source


@pytest.fixture
def image_data_known(monkeypatch):
    """ImageData counts as registered even in a Caffe built without OpenCV: the checks
    below refuse the net before Caffe would build it, so they need no OpenCV."""
    known = stock_shapes.known_layer_types() | {"ImageData"}
    monkeypatch.setattr(stock_shapes, "known_layer_types", lambda: known)


def image_net(source, **param):
    n = caffe.NetSpec()
    transform = param.pop("transform", None)
    extra = dict(transform_param=transform) if transform else {}
    n.data, n.label = L.ImageData(ntop=2, image_data_param=dict(
        source=str(source), batch_size=2, **param), **extra)
    return n


# 1. Data layers ----------------------------------------------------------------------

def test_hdf5_missing_source_list(tmp_path):
    n = hdf5_net(tmp_path / "nothing.txt")
    with pytest.raises(NetCheckError, match=r"HDF5Data layer 'data': source list '.*nothing"
                                            r"\.txt' does not exist"):
        CheckedNet(n.to_proto())


def test_hdf5_missing_file_and_dataset(tmp_path):
    source = tmp_path / "list.txt"
    source.write_text(f"{tmp_path / 'gone.h5'}\n")
    with pytest.raises(NetCheckError, match=r"HDF5Data layer 'data': HDF5 file '.*gone\.h5' "
                                            "does not exist"):
        CheckedNet(hdf5_net(source).to_proto())
    source = write_h5(tmp_path, data=np.zeros((4, 3, 5, 5), np.float32))
    with pytest.raises(NetCheckError, match=r"HDF5Data layer 'data': '.*part\.h5' has no "
                                            r"dataset 'label'"):
        CheckedNet(hdf5_net(source).to_proto())


def test_hdf5_shapes_reach_later_layers(tmp_path):
    source = write_h5(tmp_path, data=np.zeros((4, 3, 5, 5), np.float32),
                      label=np.zeros((4, 1), np.float32))
    n = hdf5_net(source, batch_size=3)
    n.conv = L.Convolution(n.data, num_output=4, kernel_size=3, group=2)
    with pytest.raises(NetCheckError, match=r"Convolution layer 'conv': group 2 must divide "
                                            r"both the input's 3 channels"):
        CheckedNet(n.to_proto())
    shapes = infer_shapes(hdf5_net(source, batch_size=3).to_proto())
    assert shapes == {"data": (3, 3, 5, 5), "label": (3, 1)}


def test_image_data_missing_list_and_image(tmp_path, image_data_known):
    with pytest.raises(NetCheckError, match=r"ImageData layer 'data': image list '.*none\.txt' "
                                            "does not exist"):
        CheckedNet(image_net(tmp_path / "none.txt").to_proto())
    source = tmp_path / "images.txt"
    source.write_text(f"{tmp_path / 'missing.png'} 0\n")
    with pytest.raises(NetCheckError, match=r"ImageData layer 'data': image '.*missing\.png' "
                                            "does not exist"):
        CheckedNet(image_net(source).to_proto())


def test_image_data_shapes_from_image_resize_and_crop(tmp_path, image_data_known):
    source = write_images(tmp_path)
    assert infer_shapes(image_net(source).to_proto())["data"] == (2, 3, 12, 16)
    net = image_net(source, new_height=20, new_width=30, is_color=False).to_proto()
    assert infer_shapes(net)["data"] == (2, 1, 20, 30)
    with pytest.raises(NetCheckError, match=r"ImageData layer 'data': crop 14 x 14 is larger "
                                            r"than its images \(12 x 16\)"):
        CheckedNet(image_net(source, transform=dict(crop_size=14)).to_proto())
    with pytest.raises(NetCheckError, match="give both new_height and new_width"):
        CheckedNet(image_net(source, new_height=20).to_proto())


def test_data_layer_needs_a_database(tmp_path):
    n = caffe.NetSpec()
    n.data, n.label = L.Data(ntop=2, data_param=dict(source=str(tmp_path / "db"),
                                                     batch_size=2, backend=P.Data.LMDB))
    with pytest.raises(NetCheckError, match=r"Data layer 'data': database '.*db' does not "
                                            "exist"):
        CheckedNet(n.to_proto())
    (tmp_path / "db").mkdir()
    with pytest.raises(NetCheckError, match=r"Data layer 'data': '.*db' is not a LMDB "
                                            r"database \(no data\.mdb in it\)"):
        CheckedNet(n.to_proto())


def test_memory_and_window_data(tmp_path):
    n = caffe.NetSpec()
    n.data, n.label = L.MemoryData(ntop=2, memory_data_param=dict(batch_size=2, channels=3,
                                                                  height=0, width=4))
    with pytest.raises(NetCheckError, match="MemoryData layer 'data': batch_size, channels, "
                                            "height and width must be positive"):
        CheckedNet(n.to_proto())
    net_param = n.to_proto()
    net_param.layer[0].type = "WindowData"
    net_param.layer[0].window_data_param.source = str(tmp_path / "windows.txt")
    if "WindowData" in stock_shapes.known_layer_types():
        with pytest.raises(NetCheckError, match="WindowData layer 'data': window file "
                                                "'.*windows.txt' does not exist"):
            CheckedNet(net_param)


def ssn_data_layer(n, **param):
    tops = ("img", "spixel_init", "feat_spixel_init", "label", "problabel")
    data = L.Python(module=DATA_MODULE, layer="BSDSDataLayer", ntop=len(tops),
                    param_str=json.dumps(param))
    for top, blob in zip(tops, data):
        n[top] = blob


def test_ssn_data_layer_shapes_follow_param_str():
    n = caffe.NetSpec()
    ssn_data_layer(n, batch_size=2, patch_height=30, patch_width=40, grid_h=3, grid_w=4)
    shapes = infer_shapes(n.to_proto(), caffe.TRAIN)
    assert shapes["img"] == (2, 3, 30, 40) and shapes["problabel"] == (2, 50, 30, 40)
    n.other = L.Input(shape=dict(dim=[2, 3, 31, 40]))
    n.both = L.Concat(n.img, n.other)
    with pytest.raises(NetCheckError, match=r"Concat layer 'both': bottoms must agree on every "
                                            r"axis but 1: bottom 0 'img' is 2 x 3 x 30 x 40, "
                                            r"bottom 1 'other' is 2 x 3 x 31 x 40"):
        CheckedNet(n.to_proto(), caffe.TRAIN)
    n = caffe.NetSpec()
    ssn_data_layer(n, patch_size=30)
    with pytest.raises(NetCheckError, match=r"Python layer 'img': bad param_str: .*unknown "
                                            r"param_str keys \['patch_size'\]"):
        CheckedNet(n.to_proto(), caffe.TRAIN)


def test_python_layer_module_and_class_must_import():
    n = caffe.NetSpec()
    n.data = L.Python(module="no_such_module_here", layer="Layer")
    with pytest.raises(NetCheckError, match=r"Python layer 'data': cannot import "
                                            r"python_param.module 'no_such_module_here'"):
        CheckedNet(n.to_proto())
    n = caffe.NetSpec()
    n.data = L.Python(module=DATA_MODULE, layer="NoSuchLayer")
    with pytest.raises(NetCheckError, match=rf"Python layer 'data': module '{DATA_MODULE}' has "
                                            r"no class 'NoSuchLayer'"):
        CheckedNet(n.to_proto())


def test_other_python_layers_have_unknown_tops():
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 2, 3, 3]))
    n.y = L.Python(n.x, module="json", layer="JSONDecoder")
    n.z = L.Concat(n.y, n.x)  # unknown bottom: its checks are skipped
    shapes = infer_shapes(n.to_proto())
    assert shapes["y"] is None and shapes["z"] is None
    n.y = L.Python(n.x, module=DATA_MODULE, layer="BSDSDataLayer")
    with pytest.raises(NetCheckError, match=r"Python layer 'y': takes no bottoms and 5 tops"):
        infer_shapes(n.to_proto())


# 2. Stock layers ---------------------------------------------------------------------

def one_layer(dims_list, make):
    n = caffe.NetSpec()
    bottoms = []
    for index, dims in enumerate(dims_list):
        n[f"b{index}"] = L.Input(shape=dict(dim=list(dims)))
        bottoms.append(n[f"b{index}"])
    tops = make(*bottoms)
    for index, top in enumerate(tops if isinstance(tops, tuple) else [tops]):
        n[f"out{index}" if index else "out"] = top
    return n.to_proto()


STOCK_CASES = {
    "concat axis": ([(1, 2, 3, 3)] * 2, lambda a, b: L.Concat(a, b, axis=4),
                    r"Concat layer 'out': axis 4 is out of range for its 4-D bottom"),
    "concat sizes": ([(1, 2, 3, 3), (1, 2, 4, 3)], lambda a, b: L.Concat(a, b),
                     r"Concat layer 'out': bottoms must agree on every axis but 1"),
    "conv group": ([(1, 3, 8, 8)], lambda a: L.Convolution(a, num_output=4, kernel_size=3,
                                                           group=2),
                   r"Convolution layer 'out': group 2 must divide both the input's 3"),
    "conv kernel": ([(1, 3, 4, 4)], lambda a: L.Convolution(a, num_output=4, kernel_size=7,
                                                            pad=1),
                    r"Convolution layer 'out': the kernel \(7 with dilation\) is larger than "
                    r"the padded input \(4 \+ 2 x 1\)"),
    "conv both kernels": ([(1, 3, 8, 8)], lambda a: L.Convolution(a, num_output=4,
                                                                  kernel_size=3, kernel_h=3,
                                                                  kernel_w=3),
                          "give kernel_size or kernel_h and kernel_w, not both"),
    "conv no kernel": ([(1, 3, 8, 8)], lambda a: L.Convolution(a, num_output=4, kernel_h=3),
                       r"Convolution layer 'out': kernel sizes must be positive, got \[3, 0\]"),
    "pool kernel": ([(1, 3, 8, 8)], lambda a: L.Pooling(a, kernel_size=3, kernel_h=3,
                                                        kernel_w=3),
                    "Pooling layer 'out': give kernel_size, or both kernel_h and kernel_w"),
    "pool pad": ([(1, 3, 8, 8)], lambda a: L.Pooling(a, kernel_size=2, pad=2),
                 r"Pooling layer 'out': pad \(2 x 2\) must be smaller than the kernel"),
    "pool 5-D": ([(1, 3, 8, 8, 2)], lambda a: L.Pooling(a, kernel_size=2),
                 "Pooling layer 'out': needs a 4-D bottom"),
    "reshape count": ([(1, 3, 4, 4)], lambda a: L.Reshape(a, shape=dict(dim=[1, 5, 4, 4])),
                      r"Reshape layer 'out': the new shape 1 x 5 x 4 x 4 holds 80 values, its "
                      r"bottom \(1 x 3 x 4 x 4\) 48"),
    "reshape two -1": ([(1, 3, 4, 4)], lambda a: L.Reshape(a, shape=dict(dim=[-1, -1])),
                       r"Reshape layer 'out': the new shape \[-1, -1\] has more than one -1"),
    "reshape copy": ([(6, 4)], lambda a: L.Reshape(a, shape=dict(dim=[0, 0, 0])),
                     r"Reshape layer 'out': the new shape \[0, 0, 0\] copies axis 2 \(a 0\), "
                     r"which its bottom \(6 x 4\) does not have"),
    "reshape infer": ([(1, 3, 5)], lambda a: L.Reshape(a, shape=dict(dim=[-1, 4])),
                      r"cannot infer the -1 of \[-1, 4\]: its bottom's 15 values"),
    "eltwise shapes": ([(1, 3, 4, 4), (1, 3, 4, 5)], lambda a, b: L.Eltwise(a, b),
                       r"Eltwise layer 'out': bottoms must have one shape: bottom 0 'b0' is "
                       r"1 x 3 x 4 x 4, bottom 1 'b1' is 1 x 3 x 4 x 5"),
    "eltwise coeff": ([(1, 3, 4, 4)] * 2, lambda a, b: L.Eltwise(a, b, coeff=[1, 2, 3]),
                      r"Eltwise layer 'out': takes one coeff per bottom \(2\), got 3"),
    "inner product axis": ([(2, 3)], lambda a: L.InnerProduct(a, num_output=4, axis=2),
                           r"InnerProduct layer 'out': axis 2 is out of range for its 2-D"),
    "slice points": ([(1, 6, 2, 2)], lambda a: L.Slice(a, ntop=3, slice_point=[4, 2]),
                     r"Slice layer 'out': slice points \[4, 2\] must increase"),
    "slice even": ([(1, 5, 2, 2)], lambda a: L.Slice(a, ntop=2),
                   r"Slice layer 'out': 2 tops do not divide axis 1 of size 5 evenly"),
    "crop": ([(1, 3, 4, 4), (1, 3, 6, 6)], lambda a, b: L.Crop(a, b, axis=2),
             r"Crop layer 'out': cannot crop 6 from axis 2 of size 4 at offset 0"),
    "tile": ([(1, 3, 4, 4)], lambda a: L.Tile(a, tiles=0),
             r"Tile layer 'out': tile_param.tiles must be given and positive"),
    "flatten": ([(1, 3, 4, 4)], lambda a: L.Flatten(a, axis=3, end_axis=1),
                r"Flatten layer 'out': end_axis \(1\) comes before axis \(3\)"),
    "softmax axis": ([(2, 3)], lambda a: L.Softmax(a, axis=-3),
                     r"Softmax layer 'out': axis -3 is out of range for its 2-D bottom"),
    "softmax loss": ([(2, 5, 3, 3), (2, 1, 3, 4)], lambda a, b: L.SoftmaxWithLoss(a, b),
                     r"SoftmaxWithLoss layer 'out': needs one label per prediction along "
                     r"axis 1 of 2 x 5 x 3 x 3: 18 labels, got 24"),
    "euclidean loss": ([(2, 5), (2, 4)], lambda a, b: L.EuclideanLoss(a, b),
                       r"EuclideanLoss layer 'out': both bottoms need the same count per item"),
    "loss batch": ([(2, 5), (3, 5)], lambda a, b: L.EuclideanLoss(a, b),
                   r"EuclideanLoss layer 'out': both bottoms need the same first axis"),
    "scale shape": ([(1, 3, 4, 4), (4,)], lambda a, b: L.Scale(a, b),
                    r"Scale layer 'out': the scale 'b1' \(4\) must match the axes from 1"),
    "bias extent": ([(1, 3)], lambda a: L.Bias(a, axis=1, num_axes=2),
                    r"Bias layer 'out': its bias \(axes 1 to 2\) extends past its 2-D bottom"),
    "batch norm": ([(3,)], lambda a: L.BatchNorm(a),
                   r"BatchNorm layer 'out': needs a bottom with a channel axis"),
    "blob count": ([(1, 3, 4, 4)] * 2, lambda a, b: L.Softmax(a, b),
                   r"Softmax layer 'out': takes 1 bottom blob\(s\), got 2"),
    "argmax": ([(1, 3)], lambda a: L.ArgMax(a, top_k=5, axis=1),
               r"ArgMax layer 'out': top_k 5 is more than axis 1 has"),
}


@pytest.mark.parametrize("case", sorted(STOCK_CASES))
def test_stock_layer_checks(case):
    dims_list, make, message = STOCK_CASES[case]
    with pytest.raises(NetCheckError, match=message):
        CheckedNet(one_layer(dims_list, make))


def test_weights_shaped_at_setup_refuse_another_size():
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.fc = L.InnerProduct(n.x, num_output=2)
    net = CheckedNet(n.to_proto())
    with pytest.raises(NetCheckError, match=r"InnerProduct layer 'fc': its input has 75 values "
                                            r"per item \(1 x 3 x 5 x 5\), its weights were "
                                            r"shaped for 48"):
        net.forward(x=np.zeros((1, 3, 5, 5)))
    net.forward(x=np.zeros((2, 3, 4, 4)))  # another batch is fine


BAD_NETS = {
    "eltwise": "n.a = L.Input(shape=dict(dim=[1, 3, 4, 4])); "
               "n.b = L.Input(shape=dict(dim=[1, 3, 40, 40])); n.c = L.Eltwise(n.b, n.a)",
    "concat": "n.a = L.Input(shape=dict(dim=[1, 3, 4, 4])); "
              "n.b = L.Input(shape=dict(dim=[1, 3, 5, 4])); n.c = L.Concat(n.a, n.b)",
    "conv": "n.a = L.Input(shape=dict(dim=[1, 3, 4, 4])); "
            "n.c = L.Convolution(n.a, num_output=2, kernel_size=3, group=2)",
    "type": "n.a = L.Input(shape=dict(dim=[1, 3, 4, 4])); n.c = L.Relu(n.a)",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_NETS))
def test_bad_nets_never_abort_the_interpreter(case):
    """The same nets in a fresh interpreter: a NetCheckError, never Caffe's abort (134)."""
    script = textwrap.dedent(f"""
        import caffe
        from caffe import layers as L
        from ssn.nets.checked import CheckedNet
        from ssn.nets.checks import NetCheckError
        n = caffe.NetSpec()
        {BAD_NETS[case]}
        try:
            CheckedNet(n.to_proto())
        except NetCheckError as error:
            print("refused:", error)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert done.returncode != 134, done.stderr[-2000:]
    assert done.returncode == 0 and "refused:" in done.stdout, done.stderr[-2000:]


# 3. Unknown layer types --------------------------------------------------------------

def test_unknown_layer_type_suggests_the_closest():
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, 3, 4, 4]))
    n.y = L.Convolutoin(n.x)
    with pytest.raises(NetCheckError, match=r"Convolutoin layer 'y': unknown layer type "
                                            r"'Convolutoin'.*did you mean 'Convolution'\?"):
        CheckedNet(n.to_proto())
    n.y = L.Relu(n.x)
    with pytest.raises(NetCheckError, match=r"did you mean 'ReLU'\?"):
        CheckedNet(n.to_proto())


# 4. Grids that disagree --------------------------------------------------------------

def two_passoc_net(second_grid):
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 20, 20]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 100]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 20, 20]))
    n.a1 = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=10, num_spixels_w=10, scale_value=-1))
    n.a2 = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=second_grid[0], num_spixels_w=second_grid[1], scale_value=-1))
    return n.to_proto()


def test_grids_of_one_cell_map_must_agree():
    with pytest.raises(NetCheckError, match=r"Passoc layer 'a2': reads the cell map 'cells' "
                                            r"with a 5x20 grid, but Passoc layer 'a1' reads it "
                                            r"with a 10x10 grid"):
        CheckedNet(two_passoc_net((5, 20)))
    infer_shapes(two_passoc_net((10, 10)))


def test_grid_of_the_data_layer_must_agree():
    n = caffe.NetSpec()
    ssn_data_layer(n, batch_size=1, patch_height=20, patch_width=20, grid_h=10, grid_w=10)
    n.feat = L.Input(shape=dict(dim=[1, 3, 20, 20]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 100]))
    n.rel = L.Input(shape=dict(dim=[1, 1, 20, 20]))
    n.ids = L.RelToAbsIndex(n.rel, n.spixel_init, rel_to_abs_index_param=dict(
        num_spixels_h=4, num_spixels_w=25))
    with pytest.raises(NetCheckError, match=r"RelToAbsIndex layer 'ids': reads the cell map "
                                            r"'spixel_init' with a 4x25 grid, but Python layer "
                                            r"'img' makes its cell maps for a 10x10 grid"):
        CheckedNet(n.to_proto(), caffe.TRAIN)


# 5. Positive scale_value -------------------------------------------------------------

def test_positive_scale_value_warns():
    net_param = two_passoc_net((10, 10))
    net_param.layer[-1].spixel_feature2_param.ClearField("scale_value")
    with pytest.warns(PositiveScaleWarning, match=r"Passoc layer 'a2': scale_value is 1, the "
                                                  r"default; SSN needs a negative scale"):
        CheckedNet(net_param)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PositiveScaleWarning)
        CheckedNet(two_passoc_net((10, 10)))


# 6. A deploy net given an image its grid was not made for ---------------------------

def deploy_inputs(height, width, grid=(8, 12)):
    cells = init_cells(height, width, *grid).astype(np.float32)[None, None]
    return dict(img=np.zeros((1, 3, height, width), np.float32), spixel_init=cells,
                feat_spixel_init=cells)


def test_deploy_net_warns_of_an_image_its_grid_does_not_fit():
    net = CheckedNet(REPO / "prototxt" / "ssn_deploy.prototxt")
    assert net.shapes["img"] == (1, 3, 321, 481)
    net.set_inputs(deploy_inputs(160, 240))  # the same aspect: the same 8x12 grid
    with pytest.warns(GridFitWarning, match=r"SlicIterations layer 'slic_iterations': its "
                                            r"8x12 grid was made for 481x321 \(W x H\) images "
                                            r"and does not fit a 321x481 image.*ssn-make-"
                                            r"prototxt --out DIR --deploy-height 481 "
                                            r"--deploy-width 321 --deploy-n-spixels 97"):
        net.set_inputs(deploy_inputs(481, 321))


# Correct nets fed by files pass --------------------------------------------------------

def test_hdf5_fed_net_passes(tmp_path):
    rng = np.random.default_rng(3)
    source = write_h5(tmp_path, data=rng.random((4, 3, 6, 6), dtype=np.float32),
                      label=rng.random((4, 2), dtype=np.float32))
    n = hdf5_net(source, batch_size=2)
    n.fc = L.InnerProduct(n.data, num_output=2)
    n.loss = L.EuclideanLoss(n.fc, n.label)
    net = CheckedNet(n.to_proto(), caffe.TRAIN)
    assert net.shapes["data"] == tuple(net.net.blobs["data"].data.shape) == (2, 3, 6, 6)
    net.forward()


def test_image_data_fed_net_passes(tmp_path):
    if "ImageData" not in caffe.layer_type_list():
        pytest.skip("this Caffe was built without OpenCV, so it has no ImageData layer")
    source = write_images(tmp_path, sizes=((12, 16), (12, 16)))
    n = image_net(source, transform=dict(crop_size=8))
    n.pool = L.Pooling(n.data, kernel_size=2, stride=2)
    net = CheckedNet(n.to_proto(), caffe.TRAIN)
    assert net.shapes["pool"] == tuple(net.net.blobs["pool"].data.shape) == (2, 3, 4, 4)
    net.forward()
