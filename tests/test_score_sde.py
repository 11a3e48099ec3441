"""Score-based (VE-SDE / SMLD) targets: loading, the continuous-time loss and likelihood, what does not apply."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mia_core.attacks import REGISTRY, NotApplicable, get_attack, not_applicable
from mia_core.attacks.likelihood import ve_probability_flow_bpd
from mia_core.cli import main
from mia_core.data import load_digits
from mia_core.lab.train_ve import VETrainConfig, build_score_unet
from mia_core.score_sde import NotADDPMError, ScoreTarget, VESchedule
from mia_core.target import Target, load_target

TINY = VETrainConfig(block_out_channels=(16, 32), layers_per_block=1, attention=False, sigma_max=8.0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(single_thread):
    yield


def _save_ve_folder(folder: Path, seed: int = 0) -> Path:
    from diffusers import ScoreSdeVeScheduler

    torch.manual_seed(seed)
    build_score_unet(8, 1, TINY).save_pretrained(folder / "unet", safe_serialization=True)
    ScoreSdeVeScheduler(num_train_timesteps=1000, sigma_min=0.01, sigma_max=8.0).save_pretrained(folder / "scheduler")
    return folder


def test_ve_folder_loads_as_a_score_target(tmp_path):
    target = load_target(str(_save_ve_folder(tmp_path / "ve")), device="cpu")
    assert isinstance(target, ScoreTarget) and target.kind == "ve-sde"
    sched = target.schedule
    assert (sched.sigma_min, sched.sigma_max, sched.num_timesteps) == (0.01, 8.0, 1000)
    # step i -> t_i on [eps, 1] -> sigma(t) = sigma_min (sigma_max / sigma_min)^t
    assert float(sched.time_of_step(0)) == pytest.approx(1e-5)
    assert float(sched.sigma(sched.time_of_step(999))) == pytest.approx(8.0)
    assert float(sched.sigma(0.5)) == pytest.approx(0.01 * math.sqrt(800))
    card = target.card()
    assert "VE-SDE" in card["kind"] and "VE-SDE" in card["schedule"]
    with pytest.raises(NotADDPMError, match="no DDPM noise prediction"):
        target.eps(torch.zeros(1, 1, 8, 8), 10)
    # the UNet is conditioned on sigma as a float tensor (a Python float would be cast to long: 0.5 -> 0)
    x = torch.rand(2, 1, 8, 8)
    s = target.score(x, torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        assert torch.allclose(s, target.unet(x, torch.tensor([0.5, 0.5])).sample)
        assert not torch.allclose(s, target.unet(x, torch.tensor([0, 0])).sample)


def test_loss_is_denoising_score_matching_at_sigma_t(tmp_path):
    target = load_target(str(_save_ve_folder(tmp_path / "ve")), device="cpu")
    x0 = torch.rand(3, 1, 8, 8) * 2 - 1
    attack = get_attack("loss", {"timesteps": [300], "sweep": [0, 300]})
    noise = torch.randn(3, 1, 1, 8, 8)
    out = attack.compute(target, x0, noise)
    sigma = float(0.01 * 800 ** (1e-5 + (1 - 1e-5) * 300 / 999))
    z = noise[:, 0]
    s = target.score((x0 + 1) / 2 + sigma * z, torch.full((3,), sigma))
    expected = (sigma * s + z).square().flatten(1).sum(1)
    torch.testing.assert_close(out["score"], -expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(out["trace"][:, 1], expected, rtol=1e-5, atol=1e-4)


def test_ve_likelihood_matches_a_gaussian_in_closed_form():
    """Data ~ N(0, tau^2 I) has the exact VE score -x / (tau^2 + sigma^2); the ODE's log p must be
    log N(x; 0, (tau^2 + sigma(eps)^2) I) up to the prior's tau^2 / sigma_max^2 and the solver."""
    tau, schedule = 0.3, VESchedule(0.01, 50.0, 1000, 1e-5)
    x = torch.randn(3, 2, 2, 3, generator=torch.Generator().manual_seed(0)).double() * tau
    probes = torch.sign(torch.randn(3, 1, 2, 2, 3, generator=torch.Generator().manual_seed(1)))

    def exact_score(xr: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return -xr / (tau**2 + sigma.view(-1, 1, 1, 1).double() ** 2).float()

    bpd, nfe = ve_probability_flow_bpd(exact_score, schedule, x.float(), probes, rtol=1e-6, atol=1e-6)
    var = tau**2 + float(schedule.sigma(1e-5)) ** 2
    dims = 12
    logp = -0.5 * dims * math.log(2 * math.pi * var) - 0.5 * x.flatten(1).square().sum(1) / var
    expected = -logp / (dims * math.log(2)) + 8.0
    np.testing.assert_allclose(bpd.numpy(), expected.numpy(), atol=2e-3)
    assert (nfe > 10).all()


def test_ddpm_only_attacks_say_why_they_do_not_apply(tmp_path, tiny_target):
    target = load_target(str(_save_ve_folder(tmp_path / "ve")), device="cpu")
    attacks = [get_attack(name) for name in REGISTRY]
    skipped = not_applicable(attacks, target)
    assert {"secmi", "pia", "pian", "sima", "secmi_nn", "qr", "elbo"} <= set(skipped)
    assert "loss" not in skipped and "likelihood" not in skipped
    assert "VE-SDE" in skipped["secmi"] and "DDPM" in skipped["secmi"]
    with pytest.raises(NotApplicable, match="secmi does not apply"):
        get_attack("secmi").run(target, np.zeros((2, 1, 8, 8), dtype=np.float32))
    with pytest.raises(NotApplicable):
        get_attack("secmi_nn").fit_score(
            target, np.zeros((4, 1, 8, 8), dtype=np.float32), list("abcd"), np.array([1, 1, 0, 0], dtype=bool)
        )
    assert set(not_applicable(attacks, tiny_target)) == {"clid"}  # a DDPM: everything but the text-to-image attack


def test_likelihood_does_not_apply_to_a_lookup_table_time_embedding(tiny_unet_factory):
    from diffusers import UNet2DModel

    from mia_core.schedule import NoiseSchedule

    unet = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        time_embedding_type="learned",
        num_train_timesteps=1000,
    )
    target = Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))
    reason = get_attack("likelihood").applies_to(target)
    assert reason and "lookup table" in reason and "real-valued t" in reason
    assert get_attack("elbo").applies_to(target) is None


@pytest.mark.slow
def test_mia_train_ve_memorises_and_the_loss_and_likelihood_separate_members(tmp_path, capsys):
    """A tiny VE model trained by `mia train --kind ve` on 8 digits; then `mia attack`."""
    digits = load_digits()
    images = digits.images[:16]
    is_member = np.array([True] * 8 + [False] * 8)
    np.savez(tmp_path / "digits16.npz", images=images, is_member=is_member)
    out = tmp_path / "ve_target"
    assert (
        main(
            [
                "train",
                "--kind",
                "ve",
                "--data",
                str(tmp_path / "digits16.npz"),
                "--out",
                str(out),
                "--steps",
                "250",
                "--batch-size",
                "16",
                "--lr",
                "2e-3",
                "--warmup-steps",
                "20",
                "--ema-decay",
                "0.95",
                "--channels",
                "16,32",
                "--layers-per-block",
                "1",
                "--no-attention",
                "--sigma-max",
                "8",
                "--log-every",
                "50",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    log = json.loads((out / "train_log.json").read_text())
    assert log["kind"] == "ve" and log["loss_curve"][-1][1] < log["loss_curve"][0][1]
    assert isinstance(load_target(str(out), device="cpu"), ScoreTarget)
    capsys.readouterr()
    run = tmp_path / "run"
    params = json.dumps(
        {"loss": {"timesteps": [100], "n_draws": 4, "sweep": [0, 100, 300]}, "likelihood": {"rtol": 1e-3, "atol": 1e-3}}
    )
    assert (
        main(
            [
                "attack",
                "--target",
                str(out),
                "--data",
                str(tmp_path / "digits16.npz"),
                "--attacks",
                "loss,secmi,pia,likelihood",
                "--params",
                params,
                "--bootstrap",
                "10",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()  # the skipped attacks on stderr as the run starts, and under the table
    assert "not applicable  secmi:" in captured.err and "pia: not applicable" in captured.out
    metrics = json.loads((run / "metrics.json").read_text())
    assert "VE-SDE" in metrics["secmi"]["not_applicable"] and "auc" not in metrics["pia"]
    assert metrics["loss"]["auc"] >= 0.9, metrics["loss"]
    assert metrics["likelihood"]["auc"] >= 0.9, metrics["likelihood"]
