"""SecMI / PIA index splits (``CIFAR10_train_ratio0.5.npz``) over a data set given as an .npz or a folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mia_core.data import Split, resolve_data
from mia_core.data.splits import read_index_split

SPLIT_FILE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "fixtures"
    / "papers_checkpoint"
    / "CIFAR10_train_ratio0.5.npz"
)


@pytest.fixture(scope="module")
def papers_split() -> Path:
    if not SPLIT_FILE.is_file():
        pytest.skip("../shared/fixtures/papers_checkpoint/CIFAR10_train_ratio0.5.npz not found")
    return SPLIT_FILE


def _small_split(tmp_path: Path, members, nonmembers) -> Path:
    path = tmp_path / "split.npz"
    np.savez(
        path,
        mia_train_idxs=np.asarray(members, dtype=np.int64),
        mia_eval_idxs=np.asarray(nonmembers, dtype=np.int64),
        ratio=np.float64(0.5),
    )
    return path


def test_papers_split_over_a_full_cifar_like_training_set(papers_split, tmp_path):
    """50,000 tiny fake 'CIFAR-10 training' images in their original order (row k = image k)."""
    rng = np.random.default_rng(0)
    fake = rng.integers(0, 256, size=(50_000, 2, 2, 3), dtype=np.uint8)
    np.savez(tmp_path / "cifar10_train.npz", images=fake)
    images, split = resolve_data(f"{papers_split}@{tmp_path / 'cifar10_train.npz'}")
    members, nonmembers = read_index_split(papers_split)
    assert (split.n_members, split.n_nonmembers) == (25_000, 25_000)
    # members in the split file's order: limit(n) takes SecMI's first n
    assert split.member_ids[:5] == tuple(str(i) for i in members[:5])
    assert split.nonmember_ids[-1] == str(nonmembers[-1])
    first = images.subset([split.member_ids[0]]).images[0]
    np.testing.assert_array_equal(first, fake[members[0]])
    assert "25000 of 25000 members" in split.description
    # the split round-trips through a JSON manifest over the same images
    split.save(tmp_path / "split.json")
    _, again = resolve_data(str(tmp_path / "split.json"))
    assert again.member_ids == split.member_ids


def test_partial_copy_with_orig_index_keeps_training_images_only(tmp_path):
    # rows: 6 training images with scattered original indices, then 2 test images (index 3 and 7 in the test set)
    orig = np.array([40, 3, 17, 8, 25, 7, 3, 7])
    part = np.array(["train"] * 6 + ["test"] * 2)
    imgs = np.arange(8, dtype=np.uint8)[:, None, None, None] * np.ones((8, 4, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "subset.npz", images=imgs, orig_index=orig, split=part)
    split_file = _small_split(tmp_path, members=[7, 40, 99, 3], nonmembers=[8, 1000, 17])
    images, split = resolve_data(f"{split_file}@{tmp_path / 'subset.npz'}")
    # member indices 7, 40, 3 are present (in that order: the split file's); 99 is not; test rows never count
    assert split.member_ids == ("5", "0", "1") and split.nonmember_ids == ("3", "2")
    assert "3 of 4 members and 2 of 3 non-members" in split.description
    assert images.n == 5


def test_image_folder_with_integer_file_names(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for k in (0, 1, 2, 10, 11):
        Image.fromarray(np.full((4, 4, 3), k * 20, dtype=np.uint8)).save(folder / f"{k:05d}.png")
    split_file = _small_split(tmp_path, members=[10, 0], nonmembers=[2, 11])
    images, split = resolve_data(f"{split_file}@{folder}")
    assert split.member_ids == ("00010.png", "00000.png") and split.nonmember_ids == ("00002.png", "00011.png")
    assert int(images.subset(["00010.png"]).images[0, 0, 0, 0]) == 200


def test_index_split_errors_name_the_problem(tmp_path):
    np.savez(tmp_path / "imgs.npz", images=np.zeros((3, 2, 2, 3), dtype=np.uint8))
    split_file = _small_split(tmp_path, members=[0], nonmembers=[1])
    with pytest.raises(ValueError, match="SecMI / PIA split .*@IMAGES"):
        resolve_data(str(split_file))  # the split alone: says how to give the images
    (tmp_path / "far").mkdir()
    far = _small_split(tmp_path / "far", members=[500], nonmembers=[1])
    with pytest.raises(ValueError, match="none of the split's 1 members is among the 3 images"):
        resolve_data(f"{far}@{tmp_path / 'imgs.npz'}")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_data(f"{tmp_path / 'missing.npz'}@{tmp_path / 'imgs.npz'}")
    with pytest.raises(ValueError, match="does not exist"):
        resolve_data(f"{split_file}@{tmp_path / 'nothing.npz'}")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mia_train_idxs=np.array([1, 2]), mia_eval_idxs=np.array([2, 3]))
    with pytest.raises(ValueError, match="both member and non-member"):
        read_index_split(bad)
    assert isinstance(resolve_data(f"{split_file}@{tmp_path / 'imgs.npz'}")[1], Split)
