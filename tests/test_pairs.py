"""Data sets of image + target pairs (ssn.training.pairs) and their training samples."""
import numpy as np
import pytest
from skimage import io as skio

from ssn.flow import write_flo
from ssn.training.pairs import (
    DatasetError,
    check_dataset,
    folder_pairs,
    list_pairs,
    load_pair,
    open_pairs,
    read_continuous,
    read_labels,
)
from ssn.training.samples import PairSampler, make_continuous_sample
from tests.pair_data import flow_folder, label_folder, write_image


def test_a_folder_pairs_images_and_targets_by_stem(tmp_path):
    pairs = folder_pairs(label_folder(tmp_path), "labels")
    assert [(p.stem, p.image.name, p.target.name) for p in pairs] == [
        ("a", "a.png", "a.png"), ("b", "b.png", "b.png")]


def test_unpaired_files_are_listed(tmp_path):
    root = label_folder(tmp_path)
    write_image(root / "images" / "lonely.jpg")
    np.save(root / "targets" / "orphan.npy", np.zeros((2, 2), int))
    with pytest.raises(DatasetError, match=r"(?s)lonely.jpg: no target.*orphan.npy: no image"):
        folder_pairs(root, "labels")


def test_targets_of_the_other_kind_are_named(tmp_path):
    root = flow_folder(tmp_path, stems=("a",))
    with pytest.raises(DatasetError, match=r"a.jpg: no target .* \(found a.flo: not a target"):
        folder_pairs(root, "labels")


def test_a_folder_without_targets_says_what_is_expected(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError, match="targets is missing"):
        open_pairs(tmp_path, "labels")
    with pytest.raises(DatasetError, match="no data set at"):
        open_pairs(tmp_path / "nothing", "labels")


def test_two_targets_of_one_stem_are_an_error(tmp_path):
    root = flow_folder(tmp_path, stems=("a",))
    np.save(root / "targets" / "a.npy", np.zeros((12, 16)))
    with pytest.raises(DatasetError, match="several files for one stem"):
        folder_pairs(root, "continuous")


def test_a_list_file_names_pairs_relative_to_itself(tmp_path):
    flow_folder(tmp_path / "d")
    listing = tmp_path / "train.txt"
    listing.write_text("# image target\nd/images/a.jpg d/targets/a.flo\n\n"
                       "d/images/b.jpg,d/targets/b.flo\n")
    pairs = list_pairs(listing)
    assert [p.stem for p in pairs] == ["a", "b"] and pairs[1].target == tmp_path / "d/targets/b.flo"
    listing.write_text("d/images/a.jpg d/targets/zzz.flo\nonly-one-field\n")
    with pytest.raises(DatasetError, match=r"(?s)line 1: no such file .*zzz.flo.*line 2: expected"):
        list_pairs(listing)


def test_mismatched_sizes_name_both_files(tmp_path):
    root = flow_folder(tmp_path, stems=("a",))
    write_flo(root / "targets" / "a.flo", np.zeros((12, 15, 2)))
    with pytest.raises(DatasetError,
                       match=r"a.jpg is 12 x 16 pixels, its target .*a.flo is 12 x 15"):
        check_dataset(root, "continuous")


@pytest.mark.parametrize("array, message", [
    (np.zeros((4, 4), np.float32), "holds float32 values: labels are integer"),
    (np.zeros((4, 4, 3), np.int32), "expected one H x W channel"),
])
def test_labels_of_the_wrong_kind_are_errors(tmp_path, array, message):
    np.save(tmp_path / "t.npy", array)
    with pytest.raises(ValueError, match=message):
        read_labels(tmp_path / "t.npy")


def test_flow_is_not_a_label_map(tmp_path):
    write_flo(tmp_path / "t.flo", np.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="use --target continuous"):
        read_labels(tmp_path / "t.flo")


def test_continuous_targets_read_as_float_channels(tmp_path):
    np.save(tmp_path / "d.npy", np.arange(12, dtype=np.int16).reshape(3, 4))
    skio.imsave(tmp_path / "d.png", np.full((3, 4), 40000, np.uint16), check_contrast=False)
    depth = read_continuous(tmp_path / "d.npy")
    assert depth.shape == (3, 4, 1) and depth.dtype == np.float32 and depth[2, 3, 0] == 11
    assert read_continuous(tmp_path / "d.png")[0, 0, 0] == 40000  # 16-bit values as they are


@pytest.mark.parametrize("array, message", [
    (np.array([[1.0, np.nan]]), "NaN or infinite"),
    (np.zeros((2, 2), bool), "expected real numbers"),
    (np.zeros((2, 2, 2, 2)), "expected H x W or H x W x C"),
])
def test_bad_continuous_targets_are_errors(tmp_path, array, message):
    np.save(tmp_path / "t.npy", array)
    with pytest.raises(ValueError, match=message):
        read_continuous(tmp_path / "t.npy")


def test_every_bad_pair_is_reported_at_once(tmp_path):
    root = flow_folder(tmp_path)
    (root / "targets" / "b.flo").write_bytes(b"junk")
    (root / "images" / "c.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"(?s)2 of 3 pairs.*b.flo.*c.jpg"):
        check_dataset(root, "continuous")


def test_targets_with_different_channels_are_an_error(tmp_path):
    root = flow_folder(tmp_path, stems=("a",))
    write_image(root / "images" / "z.jpg")
    np.save(root / "targets" / "z.npy", np.zeros((12, 16)))
    with pytest.raises(DatasetError, match="different channel counts"):
        check_dataset(root, "continuous")


def test_flow_vectors_follow_the_augmentation():
    rgb = np.zeros((30, 40, 3), np.uint8)
    flow = np.zeros((30, 40, 2), np.float32) + [2.0, 3.0]
    image = load_image(rgb, flow)
    for seed in range(6):
        lab, target = make_continuous_sample(image, np.random.default_rng(seed), (21, 23),
                                             flow=True)
        plain = make_continuous_sample(image, np.random.default_rng(seed), (21, 23))[1]
        assert lab.shape == (3, 21, 23) and target.shape == (2, 21, 23)
        np.testing.assert_allclose(plain[1], 3.0)  # not flow: values as they are
        scale = target[1, 0, 0] / 3.0  # v only scales
        assert 0.75 <= scale <= 3.0
        assert abs(target[0, 0, 0]) == pytest.approx(2.0 * scale)  # u scales and may flip
    np.testing.assert_array_equal(flow, image.segmentations[0])  # the cached target is intact


def load_image(rgb, target):
    from ssn.bsds import BSDSImage
    return BSDSImage(rgb=rgb, segmentations=[target])


def test_flipped_flow_changes_the_sign_of_u():
    signs = set()
    image = load_image(np.zeros((30, 40, 3), np.uint8),
                       np.zeros((30, 40, 2), np.float32) + [2.0, 0.0])
    for seed in range(12):
        target = make_continuous_sample(image, np.random.default_rng(seed), (21, 23), True)[1]
        signs.add(float(np.sign(target[0, 0, 0])))
    assert signs == {-1.0, 1.0}


def test_pair_batches_are_seeded_and_shaped(tmp_path):
    pairs = check_dataset(flow_folder(tmp_path), "continuous")[0]
    sampler = PairSampler(pairs, "continuous", (9, 11), (2, 2), batch_size=2, flow=True)
    first, again = sampler.batch(3), sampler.batch(3)
    for a, b in zip(first.tops(), again.tops()):
        np.testing.assert_array_equal(a, b)
    assert [t.shape for t in first.tops()] == [(2, 3, 9, 11), (2, 1, 9, 11), (2, 1, 9, 11),
                                              (2, 2, 9, 11)]


def test_label_pairs_give_the_bsds_batch(tmp_path):
    pairs = folder_pairs(label_folder(tmp_path), "labels")
    assert load_pair(pairs[0], "labels").segmentations[0].dtype == np.int64
    batch = PairSampler(pairs, "labels", (9, 11), (2, 2), batch_size=2,
                        num_label_channels=4).batch(0)
    assert batch.problabel.shape == (2, 4, 9, 11)
    assert set(np.unique(batch.label)) <= {0.0, 1.0}
    np.testing.assert_array_equal(batch.problabel.sum(1), 1)
