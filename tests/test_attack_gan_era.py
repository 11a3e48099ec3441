"""The GAN-era black-box baselines (GAN-Leaks full black box, Monte-Carlo set): what they measure on
tiny tensors by hand, the sample cache beside the result store, and their cost."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mia_core.attacks import REGISTRY, get_attack
from mia_core.attacks.gan_era import (
    GANLeaks,
    MonteCarloSet,
    fbb_scores,
    generated_samples,
    mc_set_scores,
    median_heuristic,
    sample_file_name,
)
from mia_core.data import load_digits


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def test_fbb_exact_copy_is_at_distance_zero_and_scores_top():
    queries = torch.tensor([[[[0.0, 0.5]]], [[[-1.0, 1.0]]], [[[0.2, 0.2]]]])  # (3, 1, 1, 2)
    samples = torch.tensor([[[[1.0, 1.0]]], [[[-1.0, 1.0]]]])  # sample 1 == query 1
    scores = fbb_scores(queries, samples)
    assert scores[1] == 0.0  # exactly
    assert int(scores.argmax()) == 1
    # by hand: query 0 -> sample 0 at sqrt(1 + 0.25), sample 1 at sqrt(1 + 0.25): 1.1180...
    assert scores[0] == pytest.approx(-math.sqrt(1.25))
    # query 2 -> sample 0: sqrt(0.64 + 0.64); sample 1: sqrt(1.44 + 0.64)
    assert scores[2] == pytest.approx(-math.sqrt(1.28))


def test_mc_set_by_hand():
    queries = torch.tensor([[0.0, 0.0], [3.0, 0.0]]).view(2, 1, 1, 2)
    samples = torch.tensor([[0.0, 1.0], [0.0, 2.0], [3.0, 0.5], [10.0, 0.0]]).view(4, 1, 1, 2)
    # distances: query 0 -> 1, 2, sqrt(9.25), 10; query 1 -> sqrt(10), sqrt(13), 0.5, 7
    scores = mc_set_scores(queries, samples, eps=2.0)
    assert scores.tolist() == [2 / 4, 1 / 4]
    assert mc_set_scores(queries, samples, eps=0.5).tolist() == [0.0, 1 / 4]  # the ball is closed
    # median heuristic: nearest distances 1 and 0.5 -> torch's lower median is 0.5
    assert median_heuristic(queries, samples) == 0.5


@pytest.fixture()
def fake_samples(monkeypatch):
    """Replace the DDIM sampler by a counting stub returning known uint8 samples (no UNet)."""
    calls = []
    digits = load_digits().images  # uint8 (1797, 8, 8, 1)

    def stub(target, n, steps=50, seed=0, **kwargs):
        calls.append((n, steps, seed))
        return digits[100 + seed : 100 + seed + n]

    monkeypatch.setattr("mia_core.sampling.ddim_sample", stub)
    return calls, digits


def test_gan_leaks_run_with_cache(tiny_target, fake_samples, tmp_path):
    calls, digits = fake_samples
    queries = np.concatenate([digits[100:103], digits[0:3]])  # the first three were "generated"
    x0 = queries.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    attack = GANLeaks(n_samples=50, sample_steps=7)
    res = attack.run(tiny_target, x0, seed=0, sample_dirs=[tmp_path])
    assert calls == [(50, 7, 0)]
    assert res.scores[:3].tolist() == [0.0, 0.0, 0.0]  # exact copies of generated samples
    assert np.all(res.scores[3:] < 0)
    assert res.unet_calls_per_image == 0 and res.info["sample_unet_calls"] == 350
    assert (tmp_path / sample_file_name(tiny_target.fingerprint, 50, 7, 0)).exists()
    # second run (and a smaller count, and the other baseline): from the cache, no sampling
    again = GANLeaks(n_samples=20, sample_steps=7).run(tiny_target, x0, seed=0, sample_dirs=[tmp_path])
    mc = MonteCarloSet(n_samples=50, sample_steps=7).run(tiny_target, x0, seed=0, sample_dirs=[tmp_path])
    assert calls == [(50, 7, 0)]
    assert again.info["samples_from_cache"] and mc.info["samples_from_cache"]
    assert np.array_equal(again.scores[:3], res.scores[:3])
    # another seed or step count is another sample set
    GANLeaks(n_samples=20, sample_steps=7).run(tiny_target, x0, seed=1, sample_dirs=[tmp_path])
    assert calls[-1] == (20, 7, 1)


def test_mc_set_run_median_heuristic(tiny_target, fake_samples, tmp_path):
    _, digits = fake_samples
    x0 = digits[94:104].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0  # last 4 are samples 0..3
    res = MonteCarloSet(n_samples=30, sample_steps=3).run(tiny_target, x0, sample_dirs=[tmp_path])
    samples, _ = generated_samples(tiny_target, 30, 3, 0, cache_dirs=[tmp_path])
    q, g = torch.from_numpy(x0).flatten(1).double(), torch.from_numpy(samples).flatten(1).double()
    nearest = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1).sqrt()  # (10, 30), written out
    eps = float(nearest.min(1).values.median())
    assert eps > 0 and res.info["eps"] == pytest.approx(eps)
    expected = (nearest <= eps).double().mean(1).numpy()
    np.testing.assert_allclose(res.scores, expected)
    assert np.all(res.scores[6:] >= 1 / 30)  # copies have at least themselves in the ball


def test_run_attacks_caches_samples_in_the_store(tiny_target, fake_samples, tmp_path):
    from mia_core.lab.runs import ResultStore, run_attacks

    calls, digits = fake_samples
    x0 = digits[:4].transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    store = ResultStore(tmp_path / "store")
    run_attacks(tiny_target, x0, ["a", "b", "c", "d"], "imgs", [GANLeaks(n_samples=9, sample_steps=2)], store=store)
    run_attacks(
        tiny_target, x0, ["a", "b", "c", "d"], "imgs", [MonteCarloSet(n_samples=9, sample_steps=2)], store=store
    )
    assert calls == [(9, 2, 0)]
    assert list((tmp_path / "store" / "samples").glob("*.npz"))
    assert all("samples" not in e["folder"] for e in store.entries())


def test_real_sampler_is_deterministic_and_cached(tiny_target, tmp_path):
    a, cached_a = generated_samples(tiny_target, 3, 2, 0, cache_dirs=[tmp_path])
    b, cached_b = generated_samples(tiny_target, 2, 2, 0, cache_dirs=[tmp_path])
    c, _ = generated_samples(tiny_target, 2, 2, 0)
    assert not cached_a and cached_b
    assert a.shape == (3, 1, 8, 8) and a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a[:2], b) and np.array_equal(b, c)


def test_gan_era_registered_black_box_and_costs():
    for name, cls in (("gan_leaks", GANLeaks), ("mc_set", MonteCarloSet)):
        assert REGISTRY[name] is cls and cls.access == "black" and cls.generates_samples
        attack = get_attack(name)
        assert attack.params.n_samples == 20_000  # GAN-Leaks' published default
        assert attack.unet_calls() == 0 and attack.setup_unet_calls() == 20_000 * 50


@pytest.mark.parametrize(
    ("cls", "params", "pattern"),
    [
        (GANLeaks, {"n_samples": 0}, "n_samples"),
        (MonteCarloSet, {"sample_steps": 0}, "sample_steps"),
        (MonteCarloSet, {"eps": -1.0}, "eps"),
    ],
)
def test_bad_params(cls, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        cls(**params)
