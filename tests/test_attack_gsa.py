"""GSA1 / GSA2 (white box): the gradient-norm features by hand (plain autograd, one image at a time),
the shadow pool and splits, shadow models trained and cached by mia_core.lab.shadow, and separation on
a memorising tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mia_core.attacks import REGISTRY, get_attack
from mia_core.attacks.gsa import GSA1, GSA2, Shadow, gradient_features
from mia_core.data import load_digits
from mia_core.noise import per_image_noise


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def digits_x0() -> torch.Tensor:
    return torch.as_tensor(load_digits().to_unit_range()[:3])


def hand_features(target, x0, ids, timesteps, seed, per_t):
    """Per image: noise with its per-image draws, L_k = mean (eps_theta - eps)^2, autograd, norms per tensor."""
    unet = target.unet
    params = list(unet.parameters())
    out = []
    eps_all = per_image_noise(ids, seed, len(timesteps), tuple(x0.shape[1:]))
    for i in range(x0.shape[0]):
        losses = []
        for k, t in enumerate(timesteps):
            a = float(target.schedule.alphas_cumprod[t])
            x_t = math.sqrt(a) * x0[i : i + 1] + math.sqrt(1 - a) * eps_all[i, k : k + 1]
            with torch.enable_grad():
                unet.requires_grad_(True)
                pred = unet(x_t, torch.tensor([t])).sample
                losses.append(((pred - eps_all[i, k : k + 1]) ** 2).mean())
        with torch.enable_grad():
            if per_t:
                feats = []
                for loss in losses:
                    grads = torch.autograd.grad(loss, params, retain_graph=True)
                    feats.append(torch.stack([g.norm() for g in grads]))
                out.append(torch.stack(feats).mean(0))
            else:
                grads = torch.autograd.grad(torch.stack(losses).mean(), params)
                out.append(torch.stack([g.norm() for g in grads]))
        unet.requires_grad_(False)
    return torch.stack(out).double().numpy()


@pytest.mark.parametrize("per_t", [False, True])
def test_gradient_features_by_hand(tiny_target, digits_x0, per_t):
    ids = ["a", "b", "c"]
    timesteps = (99, 499, 999)
    got = gradient_features(tiny_target, digits_x0, ids, timesteps=timesteps, per_timestep=per_t, seed=4, batch_size=2)
    expected = hand_features(tiny_target, digits_x0, ids, timesteps, 4, per_t)
    n_tensors = len(list(tiny_target.unet.parameters()))
    assert got.shape == (3, n_tensors)
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=1e-7)
    # GSA1 and GSA2 differ (norm of the mean vs mean of the norms)
    if per_t:
        other = gradient_features(tiny_target, digits_x0, ids, timesteps=timesteps, per_timestep=False, seed=4)
        assert np.all(other <= got * (1 + 1e-5) + 1e-9)  # triangle inequality: ||mean g_k|| <= mean ||g_k||


def test_partition_uses_only_nonmembers():
    ids = [f"i{k}" for k in range(48)]
    is_member = np.arange(48) < 8
    attack = GSA1()
    pool, evaluation = attack.partition(ids, is_member, seed=0)
    assert len(pool) == 20 and not set(pool) & set(ids[:8])  # round(0.5 * 40) non-members
    assert set(pool) | set(evaluation) == set(ids) and not set(pool) & set(evaluation)
    assert attack.partition(list(reversed(ids)), is_member[::-1], seed=0)[0] == tuple(reversed(pool))
    splits = attack.shadow_splits(pool, seed=0)
    assert len(splits) == 2
    for members, nonmembers in splits:
        assert len(members) == 10 and set(members) | set(nonmembers) == set(pool) and not set(members) & set(nonmembers)
    assert splits[0] != splits[1]


def test_gsa_registered_white_box_with_shadows():
    for name, cls in (("gsa1", GSA1), ("gsa2", GSA2)):
        assert REGISTRY[name] is cls and cls.access == "white" and cls.learns and cls.uses_shadow_models
        assert any("shadow" in n for n in cls.needs)
        assert get_attack(name).params.timesteps == tuple(range(99, 1000, 100))


def test_gsa_refuses_without_shadows(tiny_target, digits_x0):
    with pytest.raises(ValueError, match="needs shadow models"):
        GSA1().fit_score(tiny_target, digits_x0, ["a", "b", "c"], np.array([True, False, False]))


def test_gsa_refuses_shadow_outside_pool(tiny_target, digits_x0):
    ids = ["a", "b", "c", "d"]
    x0 = torch.as_tensor(load_digits().to_unit_range()[:4])
    bad = Shadow(tiny_target, ("a",), ("c",))  # "a" is a target member
    with pytest.raises(ValueError, match="shadow pool"):
        GSA1(n_shadows=1).fit_score(tiny_target, x0, ids, np.array([True, True, False, False]), shadows=[bad])


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"timesteps": ()}, "at least one"),
        ({"n_shadows": 0}, "n_shadows"),
        ({"shadow_fraction": 1.0}, "shadow_fraction"),
    ],
)
def test_bad_params(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        GSA1(**params)


@pytest.mark.slow
def test_gsa_separates_members_of_a_memorising_model_and_caches_its_shadows(tmp_path, monkeypatch):
    """A tiny UNet trained on 16 digits (300 steps, EMA 0.9) memorises them; GSA1 with two shadows trained by
    mia_core.lab.shadow with the same recipe on disjoint non-members must rank its members first. A second
    call reads the shadows from the cache (no training)."""
    import dataclasses

    from mia_core.data import Split
    from mia_core.lab import shadow as shadow_mod
    from mia_core.lab.train import TrainConfig, train
    from mia_core.metrics import evaluate
    from mia_core.target import load_folder

    digits = load_digits()
    ids = digits.ids[:96]
    members, nonmembers = ids[:16], ids[16:]
    cfg = TrainConfig(
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        steps=300,
        batch_size=16,
        warmup_steps=20,
        log_every=50,
        ema_decay=0.9,
        lr=1e-3,
    )
    split = Split(members, nonmembers, seed=None, data_fingerprint=digits.fingerprint, source="sklearn-digits")
    train(digits.subset(members), split, cfg, tmp_path / "target", device="cpu")
    target = load_folder(tmp_path / "target", device="cpu", source=str(tmp_path / "target"))
    x0 = digits.subset(ids).to_unit_range()
    is_member = np.arange(96) < 16
    attack = GSA1(shadow_steps=300, shadow_batch_size=16)
    shadows = shadow_mod.shadow_targets(attack, target, x0, ids, is_member, cache_dir=tmp_path / "shadows")
    assert [tuple(s.target.unet.config.block_out_channels) for s in shadows] == [(16, 32)] * 2  # the target's recipe
    assert dataclasses.replace(
        shadow_mod.shadow_config(target, attack, 0, 0), seed=0, steps=300
    ) == dataclasses.replace(cfg, batch_size=16, ema_decay=min(0.9, 1 - 10 / 300), seed=0)
    res = attack.fit_score(target, x0, ids, is_member, shadows=shadows)
    assert not set(res.ids) & set(res.train_ids) and not set(res.train_ids) & set(members)
    labels = np.isin(res.ids, members)
    assert labels.sum() == 16 and (~labels).sum() == 40
    assert evaluate(res.scores, labels, n_bootstrap=0).auc > 0.75

    def no_training(*args, **kwargs):
        raise AssertionError("the shadows should come from the cache")

    monkeypatch.setattr(shadow_mod, "train", no_training)
    again = shadow_mod.shadow_targets(attack, target, x0, ids, is_member, cache_dir=tmp_path / "shadows")
    assert [s.target.fingerprint for s in again] == [s.target.fingerprint for s in shadows]
