"""A VE-SDE target is sampled with diffusers' ScoreSdeVeScheduler (predictor-corrector) and taught with
sigma(t): checked on a score model whose score is exact (the data are one image), so the answers are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mia_core import sampling
from mia_core.lab import teaching
from mia_core.score_sde import ScoreTarget, VESchedule


class Config(dict):
    """A dict with attribute access, like diffusers' FrozenDict configs."""

    __getattr__ = dict.__getitem__


class PointScore(torch.nn.Module):
    """The exact score of data that are a single image x*: noised at sigma, p_sigma = N(x*, sigma^2 I), so
    s(x, sigma) = (x* - x) / sigma^2. Called as a diffusers UNet2DModel: ``unet(x, sigma).sample``."""

    def __init__(self, point: torch.Tensor) -> None:
        super().__init__()
        self.point = torch.nn.Parameter(point.clone(), requires_grad=False)
        c, h, _ = point.shape
        self.config = Config(in_channels=c, out_channels=c, sample_size=h, block_out_channels=(1,))

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> SimpleNamespace:
        assert sigma.dtype == torch.float32  # a float tensor, never a Python float (diffusers casts those to long)
        return SimpleNamespace(sample=(self.point - x) / sigma.view(-1, 1, 1, 1) ** 2)


@pytest.fixture(scope="module")
def point_target() -> tuple[ScoreTarget, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    point = torch.rand((1, 8, 8), generator=gen) * 0.8 + 0.1  # data space [0, 1]
    unet = PointScore(point)
    schedule = VESchedule(sigma_min=0.01, sigma_max=8.0, num_timesteps=1000)
    config = {**schedule.to_scheduler_config(), "snr": 0.15, "correct_steps": 1}
    return ScoreTarget(unet, schedule, device=torch.device("cpu"), scheduler_config=config), point


def test_predictor_corrector_samples_an_exact_score_model_to_its_one_image(point_target):
    target, point = point_target
    calls = []
    x = sampling.generate(target, 3, steps=40, seed=1, progress=lambda d, t: calls.append((d, t)))
    assert x.shape == (3, 1, 8, 8) and calls[-1] == (40, 40)
    # x* in [-1, 1]; the pipeline's last predictor mean sits at sigma_min = 0.01 around it
    assert torch.allclose(x, (point * 2 - 1).expand_as(x), atol=0.05), (x - (point * 2 - 1)).abs().max()
    assert sampling.unet_calls_per_step(target) == 2  # one corrector step + one predictor step
    assert "ScoreSdeVeScheduler" in sampling.sampler_description(target, 40)
    # seeded: the same request gives the same images
    assert torch.equal(x, sampling.generate(target, 3, steps=40, seed=1))


def test_sampling_scheduler_is_built_from_the_models_config(point_target):
    target, _ = point_target
    sched = sampling.sampling_scheduler(target, 10)
    assert type(sched).__name__ == "ScoreSdeVeScheduler"
    assert (sched.config.sigma_max, sched.config.snr, sched.config.correct_steps) == (8.0, 0.15, 1)
    assert len(sched.timesteps) == 10 and float(sched.sigmas[0]) == pytest.approx(8.0, rel=1e-4)


def test_learn_views_noise_with_sigma_and_denoise_by_tweedie(point_target):
    target, point = point_target
    x0 = point * 2 - 1  # the image in [-1, 1]
    z = teaching.fixed_noise((1, 8, 8), 3)
    t = 500
    sigma = 0.01 * (8.0 / 0.01) ** (1e-5 + (1 - 1e-5) * t / 999)  # sigma(t_i), step i on the grid t_i
    x_t, z_pred, x0_hat = teaching.one_step_denoise(target, x0, t, z)
    assert torch.allclose(x_t, 2 * (point + sigma * z) - 1, atol=1e-5)  # x_t = x + sigma z, shown in [-1, 1]
    # the exact score gives back the noise and the image exactly
    assert torch.allclose(z_pred, z, atol=1e-4) and torch.allclose(x0_hat, x0, atol=1e-4)
    curve = teaching.reconstruction_error_curve(target, x0[None], (10, 500, 900), seed=3, draws=2)
    assert curve.eps_error.shape == (1, 3) and np.all(curve.eps_error < 1e-8)  # the DSM error of a perfect model
    assert teaching.ve_noise_level(target.schedule, t)[1] == pytest.approx(sigma, rel=1e-9)
