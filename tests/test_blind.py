"""Blind baseline (mia_core.lab.blind): chance on the default split, flags a shifted split."""

from __future__ import annotations

import numpy as np
import pytest

from mia_core.lab.blind import blind_baseline, blind_features


@pytest.fixture(scope="module")
def default_split():
    from mia_core.data import resolve_data

    images, split = resolve_data("default")
    ids, is_member = split.labelled()
    return images.subset(ids).images, np.asarray(is_member, dtype=bool)


def test_features_by_hand():
    img = np.zeros((1, 4, 4, 1), dtype=np.uint8)
    img[0, :2, :2, 0] = 255  # top-left quarter white
    f = blind_features(img, size=2)
    np.testing.assert_allclose(f[0, :4], [1.0, 0.0, 0.0, 0.0])
    assert f[0, 4] == pytest.approx(0.25)  # mean
    assert f[0, 5] == pytest.approx(np.sqrt(0.25 * 0.75))  # std
    with pytest.raises(ValueError, match="size"):
        blind_features(img, size=5)


def test_default_split_stays_near_chance(default_split):
    images, is_member = default_split
    b = blind_baseline(images, is_member, seed=0)
    m = b.metrics
    # Measured: AUC 0.477, CI [0.444, 0.514] (seed 0): the interval includes 0.5.
    assert m.auc_ci.low <= 0.5 <= m.auc_ci.high
    assert not b.biased and b.warning() is None
    sizes = b.partition.sizes()
    assert m.n_members == sizes["test_members"] and m.n_nonmembers == sizes["test_nonmembers"]
    assert len(b.scores) == len(b.test_rows) == sizes["test_members"] + sizes["test_nonmembers"]


def test_brightness_shifted_nonmembers_are_flagged(default_split):
    images, is_member = default_split
    shifted = images.astype(int)
    shifted[~is_member] += 8  # a faint brightness shift of the non-members only
    b = blind_baseline(np.clip(shifted, 0, 255).astype(np.uint8), is_member, seed=0)
    assert b.biased and b.metrics.auc_ci.low > 0.5
    assert "biased" in b.warning()
    assert b.to_json_dict()["biased"] is True


def test_faces_against_cifar_is_flagged(shared_dir):
    faces, cifar = shared_dir / "data/faces/faces_subset.npz", shared_dir / "data/cifar10/cifar10_subset.npz"
    if not (faces.exists() and cifar.exists()):
        pytest.skip("../shared/data faces or cifar10 subset not found")
    members = np.load(faces)["images"][:300]
    nonmembers = np.load(cifar)["images"][:300]
    b = blind_baseline(np.concatenate([members, nonmembers]), np.repeat([True, False], 300), seed=0)
    assert b.biased


def test_labels_and_images_must_match(default_split):
    images, is_member = default_split
    with pytest.raises(ValueError, match="same length"):
        blind_baseline(images[:10], is_member)
