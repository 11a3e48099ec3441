"""What-if perturbations of an uploaded image (mia_core.lab.perturb) and the out-of-distribution check."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mia_core.lab import perturb as P
from mia_core.lab.uploads import ood_reference, rms_distances


def _digitish(n=40, seed=0) -> np.ndarray:
    """(n, 8, 8, 1) uint8: black images with a bright bar somewhere (a stand-in for digits)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 8, 8, 1), np.uint8)
    for k in range(n):
        r = rng.integers(1, 7)
        out[k, r - 1 : r + 1, 1:7, 0] = 200 + rng.integers(0, 55)
    return out


def test_each_perturbation_keeps_shape_and_changes_the_image():
    img = np.zeros((16, 16), np.uint8)
    img[4:12, 6:9] = 255
    for kind, level in P.DEFAULT_PERTURBATIONS:
        out = P.perturb(img, kind, level)
        assert out.shape == img.shape and out.dtype == np.uint8
        assert not np.array_equal(out, img), kind
    assert np.array_equal(P.perturb(img, "flip"), img[:, ::-1])
    rgb = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    assert P.perturb(rgb, "jpeg", 30).shape == (12, 10, 3)
    assert P.perturb(rgb, "crop", 0.5).shape == (12, 10, 3)
    assert P.perturb(img[..., None], "blur", 1.0).shape == (16, 16, 1)
    labels = [v.label for v in P.variants(img)]
    assert labels[0] == "original" and "JPEG quality 30" in labels and "crop to 75%" in labels
    bad = (("blur", 0, "sigma"), ("jpeg", 100, "quality"), ("crop", 1.5, "fraction"), ("zoom", 1, "unknown"))
    for kind, level, match in bad:
        with pytest.raises(ValueError, match=match):
            P.perturb(img, kind, level)


def test_decode_image_keeps_grey_and_colour():
    buf = io.BytesIO()
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(buf, format="PNG")
    assert P.decode_image(buf.getvalue()).shape == (5, 7)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((5, 7, 4), np.uint8)).save(buf, format="PNG")
    assert P.decode_image(buf.getvalue()).shape == (5, 7, 3)


def test_score_variants_uses_the_same_noise_for_every_copy(tiny_target):
    from mia_core.attacks import get_attack

    img = np.zeros((8, 8), np.uint8)
    img[2:6, 3:5] = 255
    vs = P.variants(img, [("flip", 0), ("blur", 1.0)])
    vs = [vs[0], P.Variant("original", 0, img.copy()), *vs[1:]]  # the original twice
    scores = P.score_variants(tiny_target, get_attack("loss", {}), "x.png", vs, seed=0)
    assert scores.shape == (4,)
    assert scores[0] == pytest.approx(scores[1])  # same image, same id: same noise, same score
    assert scores[3] != pytest.approx(scores[0])


def test_ood_distance_flags_a_photo_not_a_split_like_image():
    split = _digitish()
    ref = ood_reference(split)
    # the threshold is the split's own 99 % nearest-neighbour distance
    d = rms_distances(ref.reference, ref.reference)
    np.fill_diagonal(d, np.inf)
    assert ref.threshold == pytest.approx(np.quantile(d.min(1), 0.99))
    like = _digitish(3, seed=1)  # new images of the same kind
    photo = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    checks = ref.check(np.concatenate([split[:1], like, photo]))
    assert [c.unlike for c in checks] == [False, False, False, False, True, True]
    assert checks[0].distance == 0.0
    assert "unlike the split's images" in checks[-1].sentence() and "99%" in checks[-1].sentence()
    with pytest.raises(ValueError, match="convert them"):
        ref.check(np.zeros((1, 16, 16, 1), np.uint8))
    with pytest.raises(ValueError, match="at least 2"):
        ood_reference(split[:1])


def test_rms_distance_units():
    a = np.full((1, 4), -1.0, np.float32)
    b = np.full((1, 4), 1.0, np.float32)
    assert rms_distances(a, b)[0, 0] == pytest.approx(2.0)
    assert rms_distances(a, a)[0, 0] == pytest.approx(0.0)
