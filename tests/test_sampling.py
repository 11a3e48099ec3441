"""mia_core.sampling: deterministic DDIM sampling and pixel-space nearest neighbours (tiny random UNet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_core import sampling
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target
from mia_core.lab.train import TrainConfig, build_unet


@pytest.fixture(scope="module")
def target() -> Target:
    torch.manual_seed(0)
    unet = build_unet(8, 1, TrainConfig(block_out_channels=(16, 32), layers_per_block=1))
    return Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))


def test_ddim_timesteps():
    ts = sampling.ddim_timesteps(1000, 50)
    assert ts[0] == 999 and ts[-1] == 0 and len(ts) == 50
    assert (np.diff(ts) < 0).all()
    assert sampling.ddim_timesteps(1000, 1).tolist() == [999]
    with pytest.raises(ValueError):
        sampling.ddim_timesteps(1000, 0)
    with pytest.raises(ValueError):
        sampling.ddim_timesteps(10, 11)


def test_ddim_sample_is_deterministic(target):
    a = sampling.ddim_sample(target, 3, steps=3, seed=0)
    b = sampling.ddim_sample(target, 3, steps=3, seed=0)
    c = sampling.ddim_sample(target, 3, steps=3, seed=1)
    assert a.shape == (3, 8, 8, 1) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # Sample i does not depend on n or on the batch size.
    d = sampling.ddim_sample(target, 4, steps=3, seed=0, batch_size=2)
    assert np.array_equal(d[:3], a)


def test_ddim_sample_follows_the_formula(target, monkeypatch):
    """With a UNet that always predicts zero noise, x0_hat = x_t / sqrt(abar): check one step by hand."""
    monkeypatch.setattr(target, "eps", lambda x, t: torch.zeros_like(x))
    out = sampling.ddim_sample(target, 2, steps=1, seed=0)
    x_T = sampling.initial_noise(2, (1, 8, 8), 0)
    abar = float(target.schedule.alphas_cumprod[999])
    expected = sampling.to_uint8((x_T / abar**0.5).clamp(-1, 1))
    assert np.array_equal(out, expected)
    progress = []
    sampling.ddim_sample(target, 2, steps=4, seed=0, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (4, 4)


def test_ddim_sample_rejects_bad_n(target):
    with pytest.raises(ValueError):
        sampling.ddim_sample(target, 0)


def test_nearest_neighbours_finds_exact_copy():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, size=(50, 8, 8, 1), dtype=np.uint8)
    samples = ref[[7, 23]].copy()
    samples[1, 0, 0, 0] ^= 1  # one pixel off by 1 -> distance 1
    idx, dist = sampling.nearest_neighbours(samples, ref, k=3)
    assert idx.shape == dist.shape == (2, 3) and idx.dtype == np.int64
    assert idx[0, 0] == 7 and dist[0, 0] == 0.0
    assert idx[1, 0] == 23 and dist[1, 0] == pytest.approx(1.0)
    assert (np.diff(dist, axis=1) >= 0).all()
    # Brute force agrees.
    brute = np.sqrt(((samples[:, None].astype(float) - ref[None].astype(float)) ** 2).sum(axis=(2, 3, 4)))
    np.testing.assert_allclose(np.sort(brute, axis=1)[:, :3], dist, rtol=1e-9)


def test_nearest_neighbours_checks_shapes():
    ref = np.zeros((4, 8, 8, 1), np.uint8)
    with pytest.raises(ValueError):
        sampling.nearest_neighbours(np.zeros((1, 8, 8, 3), np.uint8), ref)
    with pytest.raises(ValueError):
        sampling.nearest_neighbours(np.zeros((1, 8, 8, 1), np.uint8), ref, k=5)


def test_memorisation_report():
    rng = np.random.default_rng(1)
    members = rng.integers(0, 256, size=(6, 4, 4, 1), dtype=np.uint8)
    nonmembers = rng.integers(0, 256, size=(5, 4, 4, 1), dtype=np.uint8)
    samples = np.stack([members[2], nonmembers[4]])
    mem = sampling.memorisation(samples, members, nonmembers, [f"m{i}" for i in range(6)],
                                [f"n{i}" for i in range(5)])
    assert mem.member_id[0] == "m2" and mem.member_distance[0] == 0.0
    assert mem.nonmember_id[1] == "n4" and mem.nonmember_distance[1] == 0.0
    assert mem.n_closer_to_member == 1
    assert mem.heldout_distance.shape == (5,) and mem.heldout_median > 0
    rows = mem.rows()
    assert rows[0]["closer to"] == "member" and rows[1]["closer to"] == "non-member"
    with pytest.raises(ValueError):
        sampling.memorisation(samples, members, nonmembers, ["m0"], [f"n{i}" for i in range(5)])
