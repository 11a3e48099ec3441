"""Issue 14, item 1: the network's parameterisation comes from the scheduler config and is converted
to eps in one place (Target.eps); v- and sample-predicting wrappers around an eps network give the
eps network's attack scores."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mia_core.attacks import REGISTRY, get_attack
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target, TargetLoadError, load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


class Reparameterised(torch.nn.Module):
    """The same network, returning v or x0_hat instead of eps (integer or real-valued t)."""

    def __init__(self, inner, schedule: NoiseSchedule, kind: str):
        super().__init__()
        self.inner, self.kind, self.schedule = inner, kind, schedule
        self.config = inner.config

    def forward(self, x, t):
        eps = self.inner(x, t).sample
        a = self.schedule.abar_between(torch.as_tensor(t, dtype=torch.float32).reshape(-1).expand(x.shape[0]))
        a = a.view(-1, 1, 1, 1).to(x.device)
        if self.kind == "v_prediction":  # v = sqrt(a) eps - sqrt(1 - a) x0 = (eps - sqrt(1 - a) x_t) / sqrt(a)
            out = (eps - (1 - a).sqrt() * x) / a.sqrt()
        else:  # x0_hat
            out = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return SimpleNamespace(sample=out)


def _targets(tiny_unet_factory, schedule):
    inner = tiny_unet_factory(8, 1, seed=3)
    eps_t = Target(inner, schedule, device=torch.device("cpu"))
    v_t = Target(
        Reparameterised(inner, schedule, "v_prediction"),
        schedule,
        device=torch.device("cpu"),
        prediction_type="v_prediction",
    )
    x_t = Target(
        Reparameterised(inner, schedule, "sample"), schedule, device=torch.device("cpu"), prediction_type="sample"
    )
    return eps_t, v_t, x_t


CHEAP = ["loss", "secmi", "pia", "pian", "sima", "elbo", "rediffuse"]


def test_cheap_list_covers_the_registry_threshold_attacks():
    # learned, ODE and sample-based attacks are covered elsewhere; GSA refuses other parameterisations;
    # CLiD runs on text-to-image targets only (tests/test_attack_clid.py)
    assert set(CHEAP) | {"secmi_nn", "qr", "likelihood", "gan_leaks", "mc_set", "gsa1", "gsa2", "clid"} == set(REGISTRY)


def test_gsa_refuses_v_prediction(tiny_unet_factory):
    _, v_t, _ = _targets(tiny_unet_factory, NoiseSchedule.linear())
    assert "epsilon-prediction loss" in (get_attack("gsa1").applies_to(v_t) or "")


@pytest.mark.parametrize("name", CHEAP)
def test_v_and_sample_wrappers_give_the_eps_scores(tiny_unet_factory, name):
    eps_t, v_t, x_t = _targets(tiny_unet_factory, NoiseSchedule.linear())
    gen = torch.Generator().manual_seed(0)
    x0 = (torch.randint(0, 256, (6, 1, 8, 8), generator=gen).float() / 127.5 - 1.0).numpy()
    params = {"elbo": {"n_timesteps": 20}, "rediffuse": {"n_repeats": 2, "sweep": ()}}.get(name, {})
    ref = get_attack(name, params).run(eps_t, x0)
    for other in (v_t, x_t):
        res = get_attack(name, params).run(other, x0)
        np.testing.assert_allclose(
            res.scores, ref.scores, rtol=2e-3, atol=1e-4, err_msg=f"{name} {other.prediction_type}"
        )
        np.testing.assert_allclose(res.trace, ref.trace, rtol=2e-3, atol=1e-4)
    # Without the conversion the scores differ: the wrapper's raw output is not eps.
    raw = Target(v_t.unet, v_t.schedule, device=torch.device("cpu"))
    assert not np.allclose(get_attack(name, params).run(raw, x0).scores, ref.scores, rtol=1e-2)


def test_conversion_on_zero_snr_schedule_and_real_valued_t(tiny_unet_factory):
    sched = NoiseSchedule.from_scheduler_config({"beta_schedule": "linear", "rescale_betas_zero_snr": True})
    eps_t, v_t, _ = _targets(tiny_unet_factory, sched)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    for t in (0, 500, 998):
        assert torch.allclose(v_t.eps(x, t), eps_t.eps(x, t), atol=2e-4), t
    t = torch.tensor([0.0, 10.5, 700.25])
    assert torch.allclose(v_t.eps_float_t(x, t), eps_t.eps_float_t(x, t), atol=2e-4)
    # At t = T-1 (abar = 0) a v network's eps is x_t: no division by zero.
    raw_v = Target(eps_t.unet, sched, device=torch.device("cpu"), prediction_type="v_prediction")
    assert torch.allclose(raw_v.eps(x, 999), x)


def test_learn_views_use_the_conversion(tiny_unet_factory):
    from mia_core.lab import teaching

    eps_t, v_t, _ = _targets(tiny_unet_factory, NoiseSchedule.linear())
    x0 = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(2)) * 2 - 1
    noise = teaching.fixed_noise((2, 1, 8, 8), 0)
    a = teaching.one_step_denoise(eps_t, x0, 200, noise)
    b = teaching.one_step_denoise(v_t, x0, 200, noise)
    for u, w in zip(a, b):
        if isinstance(u, torch.Tensor):
            assert torch.allclose(u, w, atol=1e-4)


def test_fingerprint_depends_on_the_parameterisation(tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=4)
    a = Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))
    b = Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"), prediction_type="v_prediction")
    assert a.fingerprint != b.fingerprint


def _save_pipeline(folder, unet, scheduler_config):
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config))
    return folder


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_folder_prediction_type_is_read(tmp_path, tiny_unet_factory, prediction):
    cfg = {"_class_name": "DDPMScheduler", "prediction_type": prediction, "variance_type": "fixed_small"}
    folder = _save_pipeline(tmp_path / prediction, tiny_unet_factory(8, 1), cfg)
    target = load_target(str(folder), device="cpu")
    assert target.prediction_type == prediction
    assert target.variance_type == "fixed_small"


def test_unknown_prediction_type_and_learned_variance_channels_refused(tmp_path, tiny_unet_factory):
    folder = _save_pipeline(tmp_path / "flow", tiny_unet_factory(8, 1), {"prediction_type": "flow_prediction"})
    with pytest.raises(TargetLoadError, match="flow_prediction"):
        load_target(str(folder), device="cpu")
    folder = _save_pipeline(tmp_path / "learned", tiny_unet_factory(8, 1), {"variance_type": "learned_range"})
    with pytest.raises(TargetLoadError, match="learned_range.*2 output channels"):
        load_target(str(folder), device="cpu")


def test_learned_variance_uses_the_first_half(tiny_unet_factory):
    from mia_core.lab.train import TrainConfig, build_unet

    torch.manual_seed(0)
    unet = build_unet(8, 1, TrainConfig(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8))
    from diffusers import UNet2DModel

    cfg = dict(unet.config)
    cfg["out_channels"] = 2
    torch.manual_seed(0)
    wide = UNet2DModel.from_config(cfg)
    target = Target(wide, NoiseSchedule.linear(), device=torch.device("cpu"), variance_type="learned_range")
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        full = wide(x, torch.tensor([5, 5])).sample
    assert torch.allclose(target.eps(x, 5), full[:, :1], atol=1e-6)
    assert "learned" in (get_attack("elbo").applies_to(target) or "")


def test_variance_type_read_by_the_elbo(tiny_unet_factory):
    unet = tiny_unet_factory(8, 1, seed=5)
    x0 = (torch.randint(0, 256, (4, 1, 8, 8), generator=torch.Generator().manual_seed(0)).float() / 127.5 - 1).numpy()
    large = get_attack("elbo", {"n_timesteps": 999}).run(
        Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"), variance_type="fixed_large"), x0
    )
    small = get_attack("elbo", {"n_timesteps": 999}).run(
        Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"), variance_type="fixed_small"), x0
    )
    unstated = get_attack("elbo", {"n_timesteps": 999}).run(
        Target(unet, NoiseSchedule.linear(), device=torch.device("cpu")), x0
    )
    np.testing.assert_array_equal(unstated.scores, large.scores)
    assert not np.allclose(small.scores, large.scores)
    # fixed_small: the KL terms at t >= 1 have no variance part, so they are >= 0 and smaller
    # than fixed_large's for an untrained (bad) model only through the weights; check the formula
    # at one term by hand instead.
    from mia_core.attacks.likelihood import posterior_kl_nats

    sched = NoiseSchedule.linear()
    eps, pred = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    t = torch.tensor([300])
    b, a, ap = (float(sched.betas[300]), float(sched.alphas_cumprod[300]), float(sched.alphas_cumprod[299]))
    var_q = b * (1 - ap) / (1 - a)
    by_hand = b * b / (2 * var_q * (1 - b) * (1 - a)) * float((eps - pred).square().sum())
    assert float(posterior_kl_nats(sched, t, eps, pred, "fixed_small")) == pytest.approx(by_hand, rel=1e-6)


def test_zero_snr_refuses_the_likelihood_attacks(tiny_unet_factory):
    sched = NoiseSchedule.from_scheduler_config({"beta_schedule": "linear", "rescale_betas_zero_snr": True})
    target = Target(tiny_unet_factory(8, 1), sched, device=torch.device("cpu"), prediction_type="v_prediction")
    for name in ("likelihood", "elbo"):
        assert "zero terminal SNR" in (get_attack(name).applies_to(target) or "")
        with pytest.raises(ValueError, match="zero terminal SNR"):
            get_attack(name).run(target, np.zeros((1, 1, 8, 8), dtype=np.float32))
    for name in ("loss", "secmi", "pia", "pian", "sima"):
        assert (get_attack(name).applies_to(target) or "") == ""
