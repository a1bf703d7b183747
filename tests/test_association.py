"""superpixels(return_association=True): the soft association of the last SLIC step, checked
against an independent recomputation (pixel mode), the decomposed net, the grid's neighbour
rule and the labels; pool() and spread() against the SpixelFeature2 and SpixelToPixel
layers; the documented scikit-image snippet."""
import re
from pathlib import Path

import numpy as np
import pytest
from skimage import data

from ssn.association import OUTSIDE, Association, candidate_cells, from_blobs, pool, spread
from ssn.color import rgb_to_lab
from ssn.grid import grid_shape
from ssn.inference import superpixels, tiled
from ssn.nets.checked import single_layer_net
from ssn.nets.generators import position_scale
from ssn.reference import grid as reference_grid
from ssn.tiling import pixel_feature_array

README = Path(__file__).resolve().parent.parent / "README.md"


def image_of(height, width, seed=0):
    """A crop of a real photo (edges and texture), odd sizes welcome."""
    photo = data.astronaut()[::3, ::3]
    top = np.random.default_rng(seed).integers(0, photo.shape[0] - height)
    return np.ascontiguousarray(photo[top:top + height, :width])


def soft_of(image, n_segments, **kwargs):
    labels, soft = superpixels(image, n_segments, grid="original", return_association=True,
                               **kwargs)
    return labels, soft


@pytest.mark.parametrize("features", ["pixel", "deep"])
@pytest.mark.parametrize("shape, n_segments", [((37, 53), 12), ((61, 29), 7), ((40, 40), 1)],
                         ids=["37x53", "61x29", "one_cell"])
def test_association_is_a_distribution_over_the_grid_neighbours(features, shape, n_segments):
    image = image_of(*shape)
    _, soft = soft_of(image, n_segments, features=features, num_steps=3)
    height, width = shape
    grid_h, grid_w = grid_shape(n_segments, height, width)
    assert soft.grid_shape == (grid_h, grid_w) and soft.n_superpixels == grid_h * grid_w
    assert soft.weights.shape == soft.candidates.shape == (height, width, 9)
    assert soft.weights.dtype == np.float32 and soft.candidates.dtype == np.int32
    assert soft.centres.shape == (grid_h * grid_w, 20 if features == "deep" else 5)
    np.testing.assert_allclose(soft.weights.sum(-1), 1.0, atol=1e-5)
    assert (soft.weights >= 0).all()
    assert (soft.weights[soft.candidates == OUTSIDE] == 0).all()
    # Candidates: the reference grid's neighbour rule around each pixel's initial cell.
    cells = reference_grid.init_cells(height, width, grid_h, grid_w)
    for y, x in [(0, 0), (height - 1, width - 1), (height // 2, width // 3), (1, width - 2)]:
        expected = [reference_grid.neighbour_index(int(cells[y, x]), i, grid_h, grid_w)
                    for i in range(9)]
        np.testing.assert_array_equal(soft.candidates[y, x], expected)
    # The hard labels are each pixel's heaviest candidate (exact ties excepted).
    heaviest = np.take_along_axis(soft.candidates, soft.weights.argmax(-1)[..., None], -1)[..., 0]
    top_two = np.sort(soft.weights, -1)[..., -2:]
    clear = top_two[..., 1] - top_two[..., 0] > 1e-6
    np.testing.assert_array_equal(heaviest[clear], soft.grid_labels[clear])


def test_candidate_cells_match_the_reference_everywhere():
    height, width, grid_h, grid_w = 11, 7, 4, 3
    candidates = candidate_cells(height, width, grid_h, grid_w)
    cells = reference_grid.init_cells(height, width, grid_h, grid_w)
    for y in range(height):
        for x in range(width):
            assert list(candidates[y, x]) == [
                reference_grid.neighbour_index(int(cells[y, x]), i, grid_h, grid_w)
                for i in range(9)]


def softmax_of_distances(features, centres, candidates):
    """Q[p, i] = softmax_i(-|F_p - S_{cand(p, i)}|^2), outside candidates excluded (float64)."""
    feats = np.moveaxis(features, 0, -1).astype(np.float64)
    gathered = centres.astype(np.float64)[np.where(candidates == OUTSIDE, 0, candidates)]
    distance = ((feats[:, :, None, :] - gathered) ** 2).sum(-1)
    logits = np.where(candidates == OUTSIDE, -np.inf, -distance)
    logits -= logits.max(-1, keepdims=True)
    weights = np.exp(logits)
    return weights / weights.sum(-1, keepdims=True)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "decomposed"])
@pytest.mark.parametrize("num_steps", [1, 4])
def test_pixel_mode_weights_are_the_softmax_of_distances_to_the_centres(fused, num_steps):
    # Independent of the nets: the pixel features by NumPy, the softmax by NumPy.
    image = image_of(43, 58, seed=1)
    n_segments, position_weight = 15, 1.5
    _, soft = soft_of(image, n_segments, features="pixel", num_steps=num_steps, fused=fused,
                      position_weight=position_weight)
    scale = position_weight * position_scale(n_segments, 43, 58)
    features = pixel_feature_array(rgb_to_lab(image).transpose(2, 0, 1), scale)
    expected = softmax_of_distances(features, soft.centres, soft.candidates)
    np.testing.assert_allclose(soft.weights, expected, atol=2e-4)
    if num_steps == 1:  # S^0: the mean features of each initial cell
        cells = soft.candidates[..., 4].ravel()
        means = np.stack([np.bincount(cells, channel.ravel()) / np.bincount(cells)
                          for channel in features], axis=1)
        np.testing.assert_allclose(soft.centres, means, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("features", ["pixel", "deep"])
def test_fused_and_decomposed_give_the_same_association(features):
    image = image_of(45, 62, seed=2)
    kwargs = dict(features=features, num_steps=5, enforce_connectivity=False)
    _, fused = soft_of(image, 20, **kwargs)
    _, decomposed = soft_of(image, 20, fused=False, **kwargs)
    np.testing.assert_array_equal(fused.candidates, decomposed.candidates)
    np.testing.assert_allclose(fused.weights, decomposed.weights, atol=1e-3)
    np.testing.assert_allclose(fused.centres, decomposed.centres, rtol=1e-3, atol=1e-3)
    assert (fused.grid_labels == decomposed.grid_labels).mean() > 0.99


def test_labels_without_connectivity_are_the_grid_labels_renumbered():
    image = image_of(50, 47, seed=3)
    labels, soft = soft_of(image, 16, features="pixel", enforce_connectivity=False,
                           start_label=1)
    ranks = np.unique(soft.grid_labels, return_inverse=True)[1].reshape(labels.shape)
    np.testing.assert_array_equal(labels, ranks + 1)


def test_labels_with_connectivity_are_pieces_of_the_grid_labels_merged():
    # Each final label is mostly one grid cell's: connectivity only moves small fragments.
    image = image_of(64, 80, seed=4)
    labels, soft = soft_of(image, 20, features="deep")
    for label in np.unique(labels):
        cells = soft.grid_labels[labels == label]
        assert np.bincount(cells).max() >= 0.5 * cells.size
    plain = superpixels(image, 20, grid="original", features="deep")
    np.testing.assert_array_equal(labels, plain)  # asking for it changes nothing


# --------------------------------------------------------------------------------------------
# pool() and spread() against the Caffe layers


def random_association(rng, height, width, grid_h, grid_w):
    """An Association with random weights (zero outside the grid, rows summing to 1),
    and the same as Caffe blobs (1 x 9 x H x W, cells 1 x 1 x H x W)."""
    candidates = candidate_cells(height, width, grid_h, grid_w)
    raw = rng.uniform(0.05, 1.0, size=(height, width, 9)) * (candidates != OUTSIDE)
    weights = (raw / raw.sum(-1, keepdims=True)).astype(np.float32)
    blob = np.moveaxis(weights, -1, 0)[None]
    cells = candidates[..., 4][None, None].astype(np.float32)
    soft = from_blobs(blob[0], np.zeros((1, 1, grid_h * grid_w)), candidates[..., 4],
                      grid_h, grid_w)
    return soft, blob, cells


GEOMETRIES = [(7, 9, 2, 3), (13, 8, 4, 3), (5, 6, 1, 1), (6, 11, 1, 4), (9, 5, 3, 1)]


@pytest.mark.parametrize("height, width, grid_h, grid_w", GEOMETRIES)
def test_pool_equals_the_spixel_feature2_layer(height, width, grid_h, grid_w):
    rng = np.random.default_rng(5)
    soft, blob, cells = random_association(rng, height, width, grid_h, grid_w)
    values = rng.normal(size=(height, width, 3))
    net = single_layer_net(
        "SpixelFeature2", [(1, 3, height, width), blob.shape, cells.shape],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    layer = net.forward(bottom0=np.moveaxis(values, -1, 0)[None], bottom1=blob,
                        bottom2=cells)["top0"]
    pooled = pool(values, soft)
    assert pooled.shape == (grid_h * grid_w, 3)
    np.testing.assert_allclose(pooled, layer[0, :, 0, :].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(pool(values[..., 1], soft), pooled[:, 1])  # H x W values


@pytest.mark.parametrize("height, width, grid_h, grid_w", GEOMETRIES)
def test_spread_equals_the_spixel_to_pixel_layer(height, width, grid_h, grid_w):
    rng = np.random.default_rng(6)
    soft, blob, cells = random_association(rng, height, width, grid_h, grid_w)
    values = rng.normal(size=(grid_h * grid_w, 2))
    net = single_layer_net(
        "SpixelToPixel", [(1, 2, 1, grid_h * grid_w), blob.shape, cells.shape],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    layer = net.forward(bottom0=values.T[None, :, None, :], bottom1=blob,
                        bottom2=cells)["top0"]
    spread_values = spread(values, soft)
    assert spread_values.shape == (height, width, 2)
    np.testing.assert_allclose(spread_values, np.moveaxis(layer[0], 0, -1), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(spread(values[:, 0], soft), spread_values[..., 0])


def test_pool_of_a_dead_superpixel_is_zero_as_in_the_layer():
    rng = np.random.default_rng(7)
    soft, _, _ = random_association(rng, 9, 9, 3, 3)
    weights = soft.weights.copy()
    weights[soft.candidates == 4] = 0  # nobody is associated with the centre cell
    weights /= weights.sum(-1, keepdims=True)
    dead = Association(soft.candidates, weights, soft.centres, soft.grid_labels,
                       soft.grid_shape)
    pooled = pool(np.ones((9, 9, 2)), dead)
    np.testing.assert_array_equal(pooled[4], 0)
    np.testing.assert_allclose(np.delete(pooled, 4, axis=0), 1)


def test_pool_and_spread_of_a_real_association():
    image = image_of(39, 50, seed=8)
    _, soft = soft_of(image, 12, features="deep", num_steps=4)
    colour = image.astype(np.float64)
    means = pool(colour, soft)
    # A constant spreads to itself (rows sum to 1), and the mix stays within the values.
    np.testing.assert_allclose(spread(np.full(len(means), 3.0), soft), 3.0, rtol=1e-5)
    mixed = spread(means, soft)
    assert mixed.min() >= colour.min() - 1e-3 and mixed.max() <= colour.max() + 1e-3


@pytest.mark.parametrize("call, error, message", [
    (lambda soft: pool(np.zeros((5, 5, 3)), soft), ValueError, "H x W x C or H x W"),
    (lambda soft: pool(np.zeros((7, 9, 3, 2)), soft), ValueError, "H x W x C or H x W"),
    (lambda soft: pool(np.full((7, 9), "a"), soft), TypeError, "values must be numbers"),
    (lambda soft: spread(np.zeros((5, 2)), soft), ValueError, "K x C or K with K = 6"),
    (lambda soft: pool(np.zeros((7, 9)), "soft"), TypeError, "association must be"),
    (lambda soft: spread(np.zeros(6), None), TypeError, "association must be"),
])
def test_bad_arguments_are_named(call, error, message):
    soft, _, _ = random_association(np.random.default_rng(9), 7, 9, 2, 3)
    with pytest.raises(error, match=message):
        call(soft)


def test_return_association_must_be_a_bool_like_flag():
    with pytest.raises(TypeError, match="return_association"):
        superpixels(image_of(20, 20), 4, features="pixel", return_association="yes")


# --------------------------------------------------------------------------------------------
# The README's snippet: labels into scikit-image's regionprops and region adjacency graph


def readme_snippet(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"<!-- snippet: {name} -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README has no snippet {name!r}"
    return match.group(1)


@pytest.mark.slow
def test_readme_regions_and_graph_snippet_runs():
    namespace = {}
    exec(compile(readme_snippet("regions"), "README.md", "exec"), namespace)  # noqa: S102
    labels, soft = namespace["labels"], namespace["soft"]
    assert labels.min() == 1
    assert len(namespace["regions"]) == labels.max()
    assert namespace["rag"].number_of_nodes() == labels.max()
    assert namespace["smooth"].shape == labels.shape + (3,)
    assert namespace["cell_colours"].shape == (soft.n_superpixels, 3)


@pytest.mark.slow
def test_association_of_an_image_whose_features_are_computed_in_tiles():
    image = np.ascontiguousarray(np.tile(data.astronaut(), (2, 2, 1))[:700, :650])
    assert tiled(700, 650, "deep")
    labels, soft = superpixels(image, 300, return_association=True, num_steps=3)
    assert soft.weights.shape == (700, 650, 9) and soft.centres.shape[1] == 20
    np.testing.assert_allclose(soft.weights.sum(-1), 1.0, atol=1e-5)
    assert (soft.weights[soft.candidates == OUTSIDE] == 0).all()
    assert np.isfinite(soft.centres).all()
