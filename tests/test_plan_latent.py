"""The Attack lab's cost and time estimate counts a latent target's VAE (mia_core.lab.plan)."""

from __future__ import annotations

import math

import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.lab import plan
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target


@pytest.fixture(scope="module")
def latent_target(tiny_unet_factory):
    from diffusers import AutoencoderKL

    from mia_core.lazy import MODEL_BUILD_LOCK

    with MODEL_BUILD_LOCK:
        torch.manual_seed(0)
        vae = AutoencoderKL(
            block_out_channels=[8, 16],
            in_channels=1,
            out_channels=1,
            latent_channels=2,
            down_block_types=["DownEncoderBlock2D"] * 2,
            up_block_types=["UpDecoderBlock2D"] * 2,
            norm_num_groups=4,
            sample_size=16,
            layers_per_block=1,
        )
    return Target(tiny_unet_factory(8, 2, seed=1), NoiseSchedule.linear(), device=torch.device("cpu"), vae=vae)


def test_a_vae_pass_costs_its_share_of_unet_work(latent_target, tiny_target):
    t = latent_target
    expected = t.n_vae_parameters * (1 * 16 * 16) / (t.n_parameters * (2 * 8 * 8))
    assert plan.vae_pass_cost(t) == pytest.approx(expected) and expected > 0
    assert plan.vae_pass_cost(tiny_target) == 0.0
    # the UNet's work is on the 2x8x8 latents, not on the 1x16x16 images
    assert plan.guess_target_throughput(t) == pytest.approx(plan.guess_throughput(t.n_parameters, 8, 2, "cpu"))
    assert plan.guess_target_throughput(tiny_target) == plan.guess_throughput(tiny_target.n_parameters, 8, 1, "cpu")


def test_the_plan_counts_encodes_and_sample_decodes(latent_target):
    cost = plan.vae_pass_cost(latent_target)
    loss, secmi, leaks = get_attack("loss"), get_attack("secmi"), get_attack("gan_leaks")
    p = plan.make_plan([loss, secmi, leaks], {"loss"}, 100, 1000.0, measured=False, vae_pass_cost=cost)
    samples = leaks.params.n_samples
    assert [r["vae_passes"] for r in p.rows] == [100, 100, 100 + samples]  # one encode per image; samples decoded
    assert (p.vae_total, p.vae_to_compute) == (300 + samples, 200 + samples)
    assert p.seconds == pytest.approx((p.calls_to_compute + (200 + samples) * cost) / 1000.0)
    # a measured rate already holds the VAE's time; a pixel target has no VAE
    measured = plan.make_plan([secmi], set(), 100, 1000.0, measured=True, vae_pass_cost=cost)
    assert measured.seconds == pytest.approx(measured.calls_to_compute / 1000.0) and measured.vae_total == 100
    pixel = plan.make_plan([secmi], set(), 100, 1000.0, measured=False)
    assert pixel.vae_total == 0 and math.isclose(pixel.seconds, pixel.calls_to_compute / 1000.0)
