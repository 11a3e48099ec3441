"""Tests for mia_core.schedule: abar values, indexing, diffusers configs and the DDPM/DDIM formulas."""

from __future__ import annotations

import math

import pytest
import torch

from mia_core.schedule import NoiseSchedule, ddim_step, predict_x0, q_sample


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def test_linear_abar_by_hand():
    sched = NoiseSchedule.linear()
    abar = sched.alphas_cumprod
    assert abar.dtype == torch.float64
    assert sched.num_timesteps == 1000
    # 0-based: abar_0 = 1 - beta_0, not 1.
    assert abar[0].item() == pytest.approx(1 - 1e-4, rel=0, abs=1e-15)
    beta_1 = 1e-4 + (0.02 - 1e-4) / 999
    assert abar[1].item() == pytest.approx((1 - 1e-4) * (1 - beta_1), rel=1e-14)
    # abar_t = prod_{s <= t} (1 - beta_s) with beta_s = 1e-4 + s (0.02 - 1e-4) / 999
    for t in (10, 100, 200, 999):
        expected = math.prod(1 - (1e-4 + s * (0.02 - 1e-4) / 999) for s in range(t + 1))
        assert abar[t].item() == pytest.approx(expected, rel=1e-12), t
    # The last beta is beta_end.
    assert sched.betas[-1].item() == pytest.approx(0.02, rel=1e-12)
    assert sched.betas[0].item() == pytest.approx(1e-4, rel=1e-12)


def test_abar_indexing_is_zero_based_and_broadcasts():
    sched = NoiseSchedule.linear()
    like = torch.zeros(3, 1, 4, 4)
    assert sched.abar(0, like).item() == pytest.approx(float(sched.alphas_cumprod[0]), rel=1e-7)
    assert sched.abar(999, like).item() == pytest.approx(float(sched.alphas_cumprod[999]), rel=1e-7)
    t = torch.tensor([0, 5, 999])
    out = sched.abar(t, like)
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert torch.allclose(out.view(-1), sched.alphas_cumprod[t].float())


def test_from_scheduler_config_linear_equals_linear():
    from diffusers import DDPMScheduler

    config = dict(
        DDPMScheduler(num_train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear").config
    )
    sched = NoiseSchedule.from_scheduler_config(config)
    assert torch.equal(sched.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod)
    # And diffusers' own float32 abar agrees to float32 rounding.
    theirs = DDPMScheduler.from_config(config).alphas_cumprod.double()
    assert torch.allclose(sched.alphas_cumprod, theirs, rtol=1e-5, atol=0)


def test_from_scheduler_config_non_default_linear():
    cfg = {"num_train_timesteps": 500, "beta_start": 2e-4, "beta_end": 0.03, "beta_schedule": "linear"}
    sched = NoiseSchedule.from_scheduler_config(cfg)
    assert torch.equal(sched.alphas_cumprod, NoiseSchedule.linear(500, 2e-4, 0.03).alphas_cumprod)


def test_from_scheduler_config_cosine():
    from diffusers import DDPMScheduler

    cfg = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2"}
    sched = NoiseSchedule.from_scheduler_config(cfg)
    assert sched.num_timesteps == 1000
    assert "squaredcos_cap_v2" in sched.description
    theirs = DDPMScheduler.from_config(cfg).alphas_cumprod.double()
    assert torch.allclose(sched.alphas_cumprod, theirs, rtol=1e-5, atol=1e-9)
    # Not the linear schedule.
    assert not torch.allclose(sched.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod, rtol=1e-3)
    # Cosine: abar_t = f(t+1)/f(0) with f(t) = cos((t/T + s)/(1 + s) * pi/2)^2, s = 0.008 (before clipping betas).
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert sched.alphas_cumprod[100].item() == pytest.approx(f(101) / f(0), rel=1e-4)


def test_to_scheduler_config_round_trip():
    sched = NoiseSchedule.linear(1000, 1e-4, 0.02)
    again = NoiseSchedule.from_scheduler_config(sched.to_scheduler_config())
    assert torch.allclose(again.alphas_cumprod, sched.alphas_cumprod, rtol=1e-12, atol=0)


def test_saved_linear_config_is_exact():
    sched = NoiseSchedule.linear()
    config = sched.to_scheduler_config()
    assert config["beta_start"] == 1e-4 and config["beta_end"] == 0.02
    assert torch.equal(NoiseSchedule.from_scheduler_config(config).alphas_cumprod, sched.alphas_cumprod)


def test_q_sample_and_predict_x0_are_inverse():
    sched = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 3, 8, 8, generator=gen) * 2 - 1
    eps = torch.randn(4, 3, 8, 8, generator=gen)
    for t in (0, 10, 200, 999):
        x_t = q_sample(sched, x0, t, eps)
        abar = float(sched.alphas_cumprod[t])
        # 1 - abar is taken after the cast to float32, so at t = 0 (1 - abar = 1e-4) the noise
        # coefficient carries ~3e-4 relative rounding: compare at 1e-5 absolute.
        assert torch.allclose(x_t, math.sqrt(abar) * x0 + math.sqrt(1 - abar) * eps, rtol=0, atol=1e-5)
        assert torch.allclose(predict_x0(sched, x_t, t, eps), x0, atol=1e-3 if t == 999 else 1e-5), t
    # Per-sample timesteps.
    t = torch.tensor([0, 100, 500, 900])
    x_t = q_sample(sched, x0, t, eps)
    for i in range(4):
        assert torch.allclose(x_t[i], q_sample(sched, x0[i : i + 1], int(t[i]), eps[i : i + 1])[0], atol=1e-6)
    assert torch.allclose(predict_x0(sched, x_t, t, eps), x0, atol=1e-4)


def test_ddim_step_up_then_down_returns_start():
    sched = NoiseSchedule.linear()
    gen = torch.Generator().manual_seed(1)
    x_a = torch.randn(2, 1, 8, 8, generator=gen)
    eps = torch.randn(2, 1, 8, 8, generator=gen)
    x_b = ddim_step(sched, x_a, 90, 100, eps)
    assert not torch.allclose(x_b, x_a)
    # By hand: x_b = sqrt(abar_b) (x_a - sqrt(1 - abar_a) eps) / sqrt(abar_a) + sqrt(1 - abar_b) eps.
    aa, ab = (float(sched.alphas_cumprod[t]) for t in (90, 100))
    by_hand = math.sqrt(ab) * (x_a - math.sqrt(1 - aa) * eps) / math.sqrt(aa) + math.sqrt(1 - ab) * eps
    assert torch.allclose(x_b, by_hand, atol=1e-6)
    back = ddim_step(sched, x_b, 100, 90, eps)
    assert torch.allclose(back, x_a, atol=1e-5)


@pytest.mark.parametrize("bad", [-1, 1000, 12345])
def test_out_of_range_timesteps_raise(bad):
    sched = NoiseSchedule.linear()
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match=str(bad)):
        q_sample(sched, x, bad, x)
    with pytest.raises(ValueError, match=str(bad)):
        sched.abar(torch.tensor([0, bad]), x)
    with pytest.raises(ValueError, match="0..999"):
        sched.check_timesteps(bad)


def test_invalid_schedules_rejected():
    with pytest.raises(ValueError, match="non-increasing"):
        NoiseSchedule(torch.tensor([0.5, 0.9], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        NoiseSchedule(torch.tensor([1.5, 0.9], dtype=torch.float64))
    with pytest.raises(ValueError, match="1-D"):
        NoiseSchedule(torch.tensor([0.5], dtype=torch.float64))


def test_shipped_default_schedule_is_exactly_linear():
    import json

    from mia_core.target import DEFAULT_TARGET_DIR

    config = json.loads((DEFAULT_TARGET_DIR / "scheduler" / "scheduler_config.json").read_text())
    assert torch.equal(
        NoiseSchedule.from_scheduler_config(config).alphas_cumprod, NoiseSchedule.linear().alphas_cumprod
    )


# -- every schedule variant diffusers honours (issue 14, item 1) -------------------------------


SCHEDULE_VARIANTS = [
    {"beta_schedule": "linear"},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
    {"beta_schedule": "squaredcos_cap_v2"},
    {"beta_schedule": "sigmoid", "beta_start": 1e-4, "beta_end": 0.02},
    {"beta_schedule": "laplace"},
    {"beta_schedule": "linear", "rescale_betas_zero_snr": True},
    {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "rescale_betas_zero_snr": True},
    {"beta_schedule": "squaredcos_cap_v2", "rescale_betas_zero_snr": True},
    {"trained_betas": [1e-4 + 0.0199 * (i / 99) ** 2 for i in range(100)], "num_train_timesteps": 100},
    {
        "trained_betas": [1e-4 + 0.0199 * (i / 99) ** 2 for i in range(100)],
        "num_train_timesteps": 100,
        "rescale_betas_zero_snr": True,
    },
]


@pytest.mark.parametrize("scheduler", ["DDPMScheduler", "DDIMScheduler"])
@pytest.mark.parametrize(
    "variant",
    SCHEDULE_VARIANTS,
    ids=lambda v: "+".join(f"{k}" if k != "beta_schedule" else v[k] for k in v if k != "num_train_timesteps"),
)
def test_abar_equals_diffusers_for_every_variant(scheduler, variant):
    import diffusers

    cls = getattr(diffusers, scheduler)
    if scheduler == "DDIMScheduler" and variant.get("beta_schedule") in ("sigmoid", "laplace"):
        pytest.skip(f"diffusers' DDIMScheduler does not define {variant['beta_schedule']!r}")
    theirs = cls.from_config(dict(variant))
    config = {"_class_name": scheduler, **dict(theirs.config)}
    sched = NoiseSchedule.from_scheduler_config(config)
    assert sched.alphas_cumprod.dtype == torch.float64
    assert sched.num_timesteps == theirs.config.num_train_timesteps
    # diffusers computes in float32; ours is float64 (or diffusers' float32 betas, for laplace).
    assert torch.allclose(sched.alphas_cumprod, theirs.alphas_cumprod.double(), rtol=2e-5, atol=1e-7)
    if variant.get("rescale_betas_zero_snr"):
        assert float(sched.alphas_cumprod[-1]) == 0.0 == float(theirs.alphas_cumprod[-1])
        assert sched.zero_terminal_snr
        assert "zero terminal SNR" in sched.description
    else:
        assert float(sched.alphas_cumprod[-1]) > 0 and not sched.zero_terminal_snr
    # The schedule reloads identically from the config it reports.
    again = NoiseSchedule.from_scheduler_config(sched.to_scheduler_config())
    assert torch.allclose(again.alphas_cumprod, sched.alphas_cumprod, rtol=1e-12, atol=1e-15)


def test_trained_betas_are_used_not_recomputed():
    """The bug of issue 14: a linear beta_schedule with trained_betas gave linspace's abar."""
    betas = [1e-4 + 0.0199 * (i / 999) ** 3 for i in range(1000)]
    cfg = {"beta_schedule": "linear", "beta_start": 1e-4, "beta_end": 0.02, "trained_betas": betas}
    sched = NoiseSchedule.from_scheduler_config(cfg)
    expected = torch.cumprod(1 - torch.tensor(betas, dtype=torch.float64), 0)
    assert torch.allclose(sched.alphas_cumprod, expected, rtol=1e-12, atol=0)
    assert "trained betas" in sched.description


def test_zero_snr_linear_last_step_is_zero_not_linspace():
    sched = NoiseSchedule.from_scheduler_config({"beta_schedule": "linear", "rescale_betas_zero_snr": True})
    assert float(sched.alphas_cumprod[-1]) == 0.0
    assert float(sched.alphas_cumprod[-2]) > 0.0


def test_predict_x0_refuses_where_abar_is_zero():
    sched = NoiseSchedule.from_scheduler_config({"beta_schedule": "linear", "rescale_betas_zero_snr": True})
    x = torch.zeros(2, 1, 2, 2)
    assert torch.isfinite(predict_x0(sched, x, 998, x)).all()
    with pytest.raises(ValueError, match="zero terminal SNR.*t=999"):
        predict_x0(sched, x, 999, x)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        ddim_step(sched, x, 999, 990, x)
    with pytest.raises(ValueError, match="zero terminal SNR"):
        predict_x0(sched, x, torch.tensor([5, 999]), x)


@pytest.mark.parametrize(
    "bad",
    [
        {"beta_schedule": "exotic"},
        {"_class_name": "EDMEulerScheduler"},
        {"_class_name": "EulerDiscreteScheduler", "timestep_type": "continuous"},
        {"trained_betas": [0.1, 0.2], "num_train_timesteps": 1000},
    ],
)
def test_unknown_schedule_keys_are_refused_by_name(bad):
    key = [k for k in bad if k != "num_train_timesteps"][-1]
    with pytest.raises(ValueError, match=key if key != "_class_name" else bad[key]):
        NoiseSchedule.from_scheduler_config(bad)
