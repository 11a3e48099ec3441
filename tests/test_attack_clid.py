"""Issue 15, item 4: CLiD (conditional likelihood discrepancy), threshold variant, on tiny random
text-to-image targets: the statistic against a hand computation, the scaler and the score by hand,
and its behaviour (calibration part never scored, cost, refusals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_core.attacks import NotApplicable, get_attack
from mia_core.attacks.clid import CLiDFeatures, CLiDParams, clid_scores, clip_words, robust_scale
from mia_core.noise import per_image_noise
from mia_core.schedule import q_sample

CAPTIONS = ["a handwritten seven", "a handwritten one"]


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    yield


def test_word_clipping_follows_the_authors_rule():
    # weights: the stand-in (length, longest first); rates 0.3 / 0.5 / 0.7 of three words clip 1 / 2 / 3 words
    e = "<|endoftext|>"
    assert clip_words("a handwritten seven", 0.3) == f"a {e} seven"
    assert clip_words("a handwritten seven", 0.5) == f"a {e} {e}"
    assert clip_words("a handwritten seven", 0.7) == f"{e} {e} {e}"
    # given importances: threshold = sorted(weights, desc)[int(rate * n - 0.01)], words >= threshold clipped
    assert clip_words("a b c d", 0.5, [0.1, 0.9, 0.5, 0.2]) == f"a {e} {e} d"
    assert clip_words("", 0.5) == ""


def test_robust_scale_is_sklearns_robust_scaler():
    # sorted ref 1 1 2 3 4 5 6 9: 25th percentile 1.75, median 3.5, 75th 5.25 (linear), IQR 3.5 (what
    # sklearn's RobustScaler().fit(ref) gives; checked once by hand, not imported here: it costs seconds)
    ref = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0])
    values = np.array([0.0, 2.5, 10.0])
    np.testing.assert_allclose(robust_scale(values, ref), (values - 3.5) / 3.5)
    np.testing.assert_allclose(robust_scale(values, np.ones(4)), values - 1.0)  # IQR 0: scale 1, as sklearn
    # the score by hand: alpha S(D) + (1 - alpha) S(-L), medians and IQRs of the reference rows
    loss, d = np.array([1.0, 2.0]), np.array([0.5, -0.5])
    ref_l, ref_d = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # IQR 2, medians 3 / 2
    got = clid_scores(loss, d, 0.3, ref_l, ref_d)
    np.testing.assert_allclose(got, 0.3 * (d - 2.0) / 2.0 + 0.7 * (-loss + 3.0) / 2.0)


def test_features_equal_a_hand_computation(tiny_t2i_target):
    t = tiny_t2i_target
    p = CLiDParams(timesteps=(440, 450), cut_percents=(50,))
    x = np.random.default_rng(1).uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    res = CLiDFeatures(p, conditioning="caption").run(
        t, x, ids=["a", "b"], seed=5, captions=CAPTIONS, keep=("features",)
    )
    feats = res.extras["features"]
    assert feats.shape == (2, 3) and res.unet_calls_per_image == 2 * 3
    # By hand, image by image: the same eps_j (one per t_j) for every condition.
    z0 = t.encode(torch.from_numpy(x))
    noise = per_image_noise(["a", "b"], 5, 2, t.model_shape)

    def mean_loss(i, prompt):  # l(c) of image i: mean over the two t_j and the latent elements
        errs = []
        for j, step in enumerate((440, 450)):
            z = q_sample(t.schedule, z0[i : i + 1], step, noise[i : i + 1, j])
            with torch.no_grad():
                pred = t.unet(z, torch.tensor([step]), encoder_hidden_states=t.embed([prompt])).sample
            errs.append(float((pred - noise[i : i + 1, j]).square().mean()))
        return np.mean(errs)

    for i, caption in enumerate(CAPTIONS):
        own = mean_loss(i, caption)
        clipped = "a <|endoftext|> <|endoftext|>"  # half of three words: the two longest
        expected = [own, mean_loss(i, clipped) - own, mean_loss(i, "") - own]
        np.testing.assert_allclose(feats[i], expected, rtol=1e-5, atol=1e-8)


def test_clid_calibrates_on_one_part_and_scores_the_other(tiny_t2i_target):
    t = tiny_t2i_target
    n = 10
    x = np.random.default_rng(2).uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32)
    ids = [f"im{k}" for k in range(n)]
    captions = [f"a digit {k}" for k in range(n)]
    labels = np.arange(n) < 5
    a = get_attack("clid", {"conditioning": "caption"})
    assert (
        a.unet_calls() == 15
        and get_attack("clid", {"conditioning": {"mode": "caption", "guidance_scale": 2}}).unet_calls() == 30
    )
    res = a.fit_score(t, x, ids, labels, seed=0, captions=captions)
    assert set(res.ids).isdisjoint(res.train_ids) and len(res.ids) + len(res.train_ids) == n
    assert len(res.train_ids) == 2  # 20 % of each class calibrates
    assert (
        res.info["alpha"] in [round(0.1 * k, 1) for k in range(11)] and len(res.info["calibration_auc_per_alpha"]) == 11
    )
    assert np.isfinite(res.scores).all() and res.params["conditioning"]["mode"] == "caption"
    # alpha = 0: the score is S(-L), a decreasing function of the loss alone
    only_loss = get_attack("clid", {"pick_alpha": False, "alpha": 0.0}).fit_score(
        t, x, ids, labels, seed=0, captions=captions
    )
    assert (np.argsort(only_loss.scores) == np.argsort(-only_loss.extras["loss"])).all()


def test_without_caption_information_the_discrepancy_is_zero(tiny_t2i_target):
    x = np.random.default_rng(3).uniform(-1, 1, (2, 1, 8, 8)).astype(np.float32)
    feats = (
        CLiDFeatures(CLiDParams(timesteps=(450,)))
        .run(tiny_t2i_target, x, captions=["", ""], keep=("features",))
        .extras["features"]
    )
    assert (feats[:, 1:] == 0).all() and (feats[:, 0] > 0).all()


def test_clid_refuses_pixel_targets_and_the_empty_prompt(tiny_t2i_target, tiny_target):
    with pytest.raises(NotApplicable, match="text-to-image"):
        get_attack("clid").check_applies(tiny_target)
    with pytest.raises(NotApplicable, match="nothing to reduce"):
        get_attack("clid", {"conditioning": "empty"}).check_applies(tiny_t2i_target)
