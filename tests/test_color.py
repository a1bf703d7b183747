"""ssn.color: the compiled Lab conversion against scikit-image's rgb2lab in float64."""
import numpy as np
import pytest
from skimage import color

from ssn.color import rgb_to_lab, rgb_to_lab_planes


def skimage_lab(rgb):
    return color.rgb2lab(np.asarray(rgb, np.float64)).astype(np.float32)


def test_float_images_match_skimage_in_double_to_float_rounding():
    rng = np.random.default_rng(3)
    rgb = rng.uniform(size=(37, 53, 3)).astype(np.float32)
    rgb[0, :4] = [[0, 0, 0], [1, 1, 1], [0.04045, 0.04, 0.05], [1, 0, 1]]  # both branches
    lab = rgb_to_lab(rgb)
    assert lab.dtype == np.float32 and lab.shape == rgb.shape
    expected = skimage_lab(rgb)
    # Lab values up to 100: a float32 step there is 7.6e-6.
    np.testing.assert_allclose(lab, expected, rtol=0, atol=8e-6)
    assert np.mean(lab == expected) > 0.99


def test_uint8_means_k_over_255_exactly():
    rng = np.random.default_rng(4)
    rgb8 = rng.integers(0, 256, (29, 31, 3), dtype=np.uint8)
    rgb8[0, :256 // 3 + 1].flat[:256] = np.arange(256)  # every value
    as_float = rgb8.astype(np.float32) / 255
    np.testing.assert_array_equal(rgb_to_lab(rgb8), rgb_to_lab(as_float))
    np.testing.assert_allclose(rgb_to_lab(rgb8), skimage_lab(as_float), rtol=0, atol=8e-6)


def test_values_past_one_take_the_exact_cube_root():
    rgb = np.array([[[1.5, 1.2, 2.0], [1.0, 1.0, 1.0], [0.2, 3.0, 0.1]]], np.float32)
    np.testing.assert_allclose(rgb_to_lab(rgb), skimage_lab(rgb), rtol=0, atol=2e-5)


def test_planes_are_contiguous_and_the_view_transposes_back():
    rgb = np.random.default_rng(5).uniform(size=(5, 7, 3))
    planes = rgb_to_lab_planes(rgb)
    assert planes.shape == (3, 5, 7) and planes.flags.c_contiguous
    back = rgb_to_lab(rgb).transpose(2, 0, 1)
    assert back.flags.c_contiguous
    np.testing.assert_array_equal(back, planes)


def test_not_an_rgb_image():
    with pytest.raises(ValueError, match="H x W x 3"):
        rgb_to_lab_planes(np.zeros((4, 4)))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_the_values_do_not_depend_on_the_thread_count(dtype, monkeypatch):
    """Large images are split among threads (OMP_NUM_THREADS, else the cores), on
    whole blocks of pixels, with values past one among them; the split changes nothing."""
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (421, 317, 3)).astype(dtype)  # 133,457 pixels: 5 parts at most
    if dtype == np.float32:
        rgb /= 255
        rgb[-1, -3:] = 1.7
    results = []
    for threads in ("1", "2", "3", "16"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        results.append(rgb_to_lab_planes(rgb))
    for planes in results[1:]:
        np.testing.assert_array_equal(planes, results[0])
    as_float = rgb if dtype == np.float32 else rgb.astype(np.float32) / 255
    np.testing.assert_allclose(results[0], skimage_lab(as_float).transpose(2, 0, 1), atol=2e-5)
