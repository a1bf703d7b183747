"""Deep features of large images, computed in tiles: equal to the whole net's, and any
photo size runs."""
from __future__ import annotations

import caffe
import numpy as np
import pytest
from caffe import layers as L
from skimage import data, transform
from skimage import io as skio

from ssn import inference, tiling
from ssn.cli.infer import main as infer_main
from ssn.color import rgb_to_lab
from ssn.inference import superpixels
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import SSNConfig, deploy_net, feature_net, position_scale

HEIGHT, WIDTH = 301, 403  # odd sizes: the last tiles are remainders


def resized_astronaut(height: int, width: int) -> np.ndarray:
    image = transform.resize(data.astronaut(), (height, width), anti_aliasing=False)
    return (image * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def whole_net_features():
    """(pixel features, trans_features) of the untiled deploy net, on a 301x403 image."""
    lab = rgb_to_lab(inference.as_rgb(resized_astronaut(HEIGHT, WIDTH))).transpose(2, 0, 1)
    scale = position_scale(100, HEIGHT, WIDTH)
    net = CheckedNet(deploy_net(SSNConfig(height=HEIGHT, width=WIDTH, grid_request=100,
                                          num_steps=1, feature_dim=20, pos_scale=scale)),
                     caffe.TEST, weights=str(inference.bundled_weights()))
    cells = np.zeros((1, 1, HEIGHT, WIDTH), np.float32)
    net.forward(outputs=[], img=lab[None], spixel_init=cells, feat_spixel_init=cells)
    pixel_feats = tiling.pixel_feature_array(lab, scale)
    np.testing.assert_array_equal(pixel_feats, net.net.blobs["pixel_features"].data[0])
    return pixel_feats, net.net.blobs["trans_features"].data[0].copy()


def test_the_cnn_reaches_22_pixels_so_tiles_overlap_by_24():
    """conv1-2: 2; pool1 (3x3, stride 2): 3; conv3-4 at stride 2: 7; pool2: 9; conv5-6 at
    stride 4: 17; Interp2 (x4): 21; conv7: 22 (the Interp1 branch reaches 10)."""
    assert tiling.receptive_field(feature_net(64, 64, 20)) == (22, 4)
    assert tiling.feature_margin(20) == (24, 4)


def test_receptive_field_refuses_a_layer_it_does_not_know():
    spec = caffe.NetSpec()
    spec.pixel_features = L.Input(shape=dict(dim=[1, 5, 8, 8]))
    spec.trans_features = L.LRN(spec.pixel_features)
    with pytest.raises(ValueError, match="cannot tell the receptive field of LRN"):
        tiling.receptive_field(spec.to_proto())


@pytest.mark.slow
@pytest.mark.parametrize("tile", [(100, 120), (64, 64), (96, 200), (300, 400), None])
def test_tiled_features_equal_the_whole_nets(whole_net_features, tile):
    pixel_feats, whole = whole_net_features
    tiled = tiling.tiled_features(pixel_feats, str(inference.bundled_weights()), 20, tile=tile)
    np.testing.assert_allclose(tiled, whole, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_a_margin_below_the_receptive_radius_is_not_enough(whole_net_features):
    """The derived margin is also the smallest that works (20 < 22 <= 24)."""
    pixel_feats, whole = whole_net_features
    tiled = tiling.tiled_features(pixel_feats, str(inference.bundled_weights()), 20,
                                  tile=(96, 200), margin=20)
    assert np.abs(tiled - whole).max() > 1e-3


@pytest.mark.slow
def test_tiles_must_keep_the_pooling_grid(whole_net_features):
    with pytest.raises(ValueError, match="multiples of the CNN's stride 4"):
        tiling.tiled_features(whole_net_features[0], str(inference.bundled_weights()), 20,
                              tile=(98, 200))


@pytest.mark.parametrize("size, limit", [(301, 100), (4000, 976), (7, 976), (976, 976),
                                         (977, 976)])
def test_tiles_cover_the_image_once_from_multiples_of_4(size, limit):
    core = tiling.tile_core(size, limit, 4)
    assert core % 4 == 0 and core <= max(limit, 4)
    covered = np.zeros(size, int)
    for start, stop, in_start, in_stop in tiling.spans(size, core, 24):
        assert start % 4 == 0 and in_start % 4 == 0
        assert in_start == max(0, start - 24) and in_stop == min(size, stop + 24)
        covered[start:stop] += 1
    assert (covered == 1).all()


@pytest.mark.slow
def test_tiled_labels_equal_the_whole_nets(monkeypatch):
    image = resized_astronaut(HEIGHT, WIDTH)
    whole = superpixels(image, n_segments=100, features="deep")
    monkeypatch.setattr(inference, "TILE_PIXELS", 0)
    monkeypatch.setattr(tiling, "TILE_PIXELS", 160 * 160)
    assert inference.tiled(HEIGHT, WIDTH, "deep")
    np.testing.assert_array_equal(superpixels(image, n_segments=100, features="deep"), whole)
    inference._slic_net.cache_clear()
    tiling._feature_net.cache_clear()


@pytest.mark.slow
def test_tiles_use_the_position_weight(monkeypatch):
    image = resized_astronaut(HEIGHT, WIDTH)
    whole = superpixels(image, n_segments=100, features="deep", position_weight=2)
    assert np.mean(whole != superpixels(image, n_segments=100, features="deep")) > 0.05
    monkeypatch.setattr(inference, "TILE_PIXELS", 0)
    monkeypatch.setattr(tiling, "TILE_PIXELS", 160 * 160)
    np.testing.assert_array_equal(
        superpixels(image, n_segments=100, features="deep", position_weight=2), whole)
    inference._slic_net.cache_clear()
    tiling._feature_net.cache_clear()


@pytest.mark.slow
@pytest.mark.parametrize("features", ["deep", "pixel"])
def test_a_2_megapixel_photo_runs(features):
    """1200x1600 used to abort (a 1773 x 1200 x 1600 im2col shape over INT_MAX)."""
    labels = superpixels(resized_astronaut(1200, 1600), n_segments=100, features=features)
    assert labels.shape == (1200, 1600) and labels.min() == 0
    assert 70 <= labels.max() + 1 <= 130
    inference._slic_net.cache_clear()


@pytest.mark.slow
def test_infer_tool_on_a_folder_with_a_2_megapixel_photo(tmp_path, val_images):
    images = tmp_path / "images"
    images.mkdir()
    skio.imsave(images / "a_big.png", resized_astronaut(1200, 1600))
    skio.imsave(images / "b_small.png", skio.imread(val_images[0]))
    out = tmp_path / "out"
    assert infer_main([str(images), "--out", str(out), "--n-segments", "100"]) == 0
    assert np.load(out / "a_big.npy").shape == (1200, 1600)
    assert np.load(out / "b_small.npy").shape == skio.imread(val_images[0]).shape[:2]
    inference._slic_net.cache_clear()


@pytest.mark.slow
def test_the_size_benchmark_measures_a_run_in_a_fresh_process():
    from ssn.benchmarks.sizes import measure, megapixel_size, table_row
    result = measure(60, 90, "pixel", 20)
    assert result["seconds"] > 0 and 50e6 < result["peak"] < 4e9 and result["count"] > 5
    assert table_row(0.0054, 60, 90, "pixel", result).startswith("| 0.0054 MP (90x60) | pixel |")
    assert "failed: " in table_row(1, 2, 3, "deep", measure(2, 3, "deep", 20))
    assert megapixel_size(24) == (4000, 6000) and megapixel_size(6) == (2000, 3000)
