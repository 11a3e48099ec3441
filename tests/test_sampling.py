"""mia_core.sampling: deterministic DDIM sampling and pixel-space nearest neighbours (tiny random UNet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_core import sampling
from mia_core.lab.train import TrainConfig, build_unet
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target


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
    """With a UNet that always predicts zero noise, x0_hat = x_t / sqrt(abar): check two steps by hand
    on diffusers' "leading" grid (T = 1000, 2 steps: t = 500, 0), clipping as the config says (True)."""
    monkeypatch.setattr(target, "model_output", lambda x, t: torch.zeros_like(x))
    assert sampling.sampling_scheduler(target, 2).timesteps.tolist() == [500, 0]
    out = sampling.generate(target, 2, steps=2, seed=0)
    x_T = sampling.initial_noise(2, (1, 8, 8), 0)
    abar = target.schedule.alphas_cumprod.float()
    x = abar[0].sqrt() * (x_T / abar[500].sqrt()).clamp(-1, 1)  # step 500 -> 0, eps = 0
    x = (x / abar[0].sqrt()).clamp(-1, 1)  # step 0 -> the end (abar_prev = 1)
    assert torch.allclose(out, x, atol=1e-5)
    progress = []
    sampling.ddim_sample(target, 2, steps=4, seed=0, progress=lambda d, t: progress.append((d, t)))
    assert progress[-1] == (4, 4)


def _with_config(target, **config):
    base = {"_class_name": "DDIMScheduler", "beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02}
    return Target(
        target.unet,
        target.schedule,
        device=torch.device("cpu"),
        scheduler_config={**base, **config},
        prediction_type=config.get("prediction_type", "epsilon"),
    )


def test_sampler_follows_clipping_and_spacing_of_the_config(target, monkeypatch):
    seen = []
    clipped, free = _with_config(target, clip_sample=True), _with_config(target, clip_sample=False)
    for tg in (clipped, free):
        monkeypatch.setattr(tg, "model_output", lambda x, t: (seen.append(int(t)), torch.zeros_like(x))[1])
    a, b = sampling.generate(clipped, 1, steps=2), sampling.generate(free, 1, steps=2)
    assert float(a.abs().max()) <= 1.0 + 1e-6 < float(b.abs().max())  # the old loop always clipped
    trailing = _with_config(target, timestep_spacing="trailing")
    assert sampling.sampling_scheduler(trailing, 4).timesteps.tolist() == [999, 749, 499, 249]
    # A PNDM config has no clip_sample key and never clipped: DDIM must not start clipping.
    pndm = Target(
        target.unet,
        target.schedule,
        device=torch.device("cpu"),
        scheduler_config={"_class_name": "PNDMScheduler", "beta_schedule": "linear"},
    )
    assert sampling.sampling_scheduler(pndm, 2).config.clip_sample is False


def test_sampler_follows_the_prediction_type(target):
    from tests.test_parameterisation import Reparameterised

    v_net = Reparameterised(target.unet, target.schedule, "v_prediction")
    v_target = Target(v_net, target.schedule, device=torch.device("cpu"), prediction_type="v_prediction")
    a = sampling.generate(target, 2, steps=5, seed=0)
    b = sampling.generate(v_target, 2, steps=5, seed=0)
    assert torch.allclose(a, b, atol=1e-3)
    # Read as eps, the v network's samples are different images.
    wrong = Target(v_net, target.schedule, device=torch.device("cpu"))
    assert not torch.allclose(sampling.generate(wrong, 2, steps=5, seed=0), a, atol=1e-2)


def test_latent_samples_are_decoded(tmp_path, tiny_unet_factory):
    from mia_core.target import load_target
    from tests.test_latent import save_latent_pipeline, tiny_vae

    folder = save_latent_pipeline(tmp_path / "ldm", tiny_unet_factory(8, 2), tiny_vae("kl"))
    images = sampling.ddim_sample(load_target(str(folder), device="cpu"), 2, steps=3)
    assert images.shape == (2, 16, 16, 1) and images.dtype == np.uint8


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
    mem = sampling.memorisation(samples, members, nonmembers, [f"m{i}" for i in range(6)], [f"n{i}" for i in range(5)])
    assert mem.member_id[0] == "m2" and mem.member_distance[0] == 0.0
    assert mem.nonmember_id[1] == "n4" and mem.nonmember_distance[1] == 0.0
    assert mem.n_closer_to_member == 1
    assert mem.heldout_distance.shape == (5,) and mem.heldout_median > 0
    rows = mem.rows()
    assert rows[0]["closer to"] == "member" and rows[1]["closer to"] == "non-member"
    with pytest.raises(ValueError):
        sampling.memorisation(samples, members, nonmembers, ["m0"], [f"n{i}" for i in range(5)])
