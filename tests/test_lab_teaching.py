"""mia_core.lab.teaching: forward noising, one-step denoising, error curves, SecMI's round trip (tiny random UNet)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.lab import teaching as explain
from mia_core.lab.train import TrainConfig, build_unet, read_train_log
from mia_core.schedule import NoiseSchedule
from mia_core.target import DEFAULT_TARGET_DIR, Target


@pytest.fixture(scope="module")
def target() -> Target:
    torch.manual_seed(0)
    unet = build_unet(8, 1, TrainConfig(block_out_channels=(16, 32), layers_per_block=1))
    return Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))


def _images(n: int = 3, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, 8, 8), generator=gen) * 2 - 1


def test_fixed_noise_is_seeded():
    a = explain.fixed_noise((1, 8, 8), 3)
    assert torch.equal(a, explain.fixed_noise((1, 8, 8), 3))
    assert not torch.equal(a, explain.fixed_noise((1, 8, 8), 4))
    assert a.shape == (1, 8, 8) and a.dtype == torch.float32


def test_noised_matches_formula_and_weights():
    sched = NoiseSchedule.linear()
    x0, eps = _images(2), explain.fixed_noise((1, 8, 8), 0)
    abar, s, n = explain.signal_noise_weights(sched, 200)
    assert abar == pytest.approx(float(sched.alphas_cumprod[200]))
    assert s**2 + n**2 == pytest.approx(1.0)
    x_t = explain.noised(x0, 200, eps, sched)
    assert x_t.shape == x0.shape
    torch.testing.assert_close(x_t, s * x0 + n * eps.expand_as(x0), rtol=1e-5, atol=1e-6)
    # t = 0 keeps almost all of the image, t = 999 almost none.
    assert explain.signal_noise_weights(sched, 0)[0] > 0.999
    assert explain.signal_noise_weights(sched, 999)[0] < 1e-4


def test_one_step_denoise_shapes(target):
    x0 = _images(3)
    x_t, eps_pred, x0_hat = explain.one_step_denoise(target, x0, 100, explain.fixed_noise((1, 8, 8), 0))
    assert x_t.shape == eps_pred.shape == x0_hat.shape == (3, 1, 8, 8)
    single = explain.one_step_denoise(target, x0[0], 100, explain.fixed_noise((1, 8, 8), 0))
    assert all(t.shape == (1, 8, 8) for t in single)
    torch.testing.assert_close(single[2], x0_hat[0], rtol=1e-4, atol=1e-5)


def test_oracle_noise_reconstructs_x0_exactly(target, monkeypatch):
    """With a UNet that returns the true noise, x0_hat is x0 and both errors are 0."""
    x0 = _images(2)
    eps = explain.fixed_noise((1, 8, 8), 5)
    monkeypatch.setattr(target, "eps", lambda x_t, t: eps.expand(x_t.shape[0], -1, -1, -1).clone())
    for t in (0, 200, 700):
        x_t, eps_pred, x0_hat = explain.one_step_denoise(target, x0, t, eps)
        torch.testing.assert_close(x0_hat, x0, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(eps_pred, eps.expand_as(x0))
    curve = explain.reconstruction_error_curve(target, x0, [10, 300], seed=5)
    assert curve.eps_error.max() == pytest.approx(0.0, abs=1e-10)
    assert curve.x0_error.max() < 1e-8


def test_error_curve_shapes_and_consistency(target):
    x0 = _images(3)
    ts = (10, 200, 600)
    curve = explain.reconstruction_error_curve(target, x0, ts, seed=0)
    assert curve.timesteps.tolist() == list(ts)
    assert curve.x0_error.shape == curve.eps_error.shape == (3, 3)
    assert (curve.eps_error > 0).all()
    # x0 error = (1 - abar) / abar * eps error at each t (the docstring's identity).
    abar = target.schedule.alphas_cumprod[list(ts)].numpy()
    np.testing.assert_allclose(curve.x0_error, curve.eps_error * (1 - abar) / abar, rtol=1e-3)
    # Draw 0 of the curve is the same noise as one_step_denoise with fixed_noise(seed).
    _, eps_pred, _ = explain.one_step_denoise(target, x0, 200, explain.fixed_noise((1, 8, 8), 0))
    direct = (eps_pred - explain.fixed_noise((1, 8, 8), 0)).pow(2).flatten(1).mean(1).double().numpy()
    np.testing.assert_allclose(curve.eps_error[:, 1], direct, rtol=1e-4)
    again = explain.reconstruction_error_curve(target, x0, ts, seed=0)
    np.testing.assert_array_equal(curve.eps_error, again.eps_error)
    with pytest.raises(ValueError):
        explain.reconstruction_error_curve(target, x0, [1000], seed=0)


class _FakeImages:
    def __init__(self, images):
        self.images = images


class _FakeExp:
    def __init__(self):
        self.ids = ("a", "b", "c", "d")
        self.is_member = np.array([True, True, False, False])
        self.images = _FakeImages(np.arange(4 * 2 * 2, dtype=np.uint8).reshape(4, 2, 2, 1) * 10)


def test_member_vs_nonmember_defaults_and_checks():
    exp = _FakeExp()
    assert explain.member_vs_nonmember(exp) == (0, 2)
    assert explain.member_vs_nonmember(exp, "b", "d") == (1, 3)
    with pytest.raises(ValueError, match="non-member"):
        explain.member_vs_nonmember(exp, member_id="c")
    with pytest.raises(ValueError, match="not in"):
        explain.member_vs_nonmember(exp, nonmember_id="zzz")
    x = explain.images_x0(exp, [1, 3])
    assert x.shape == (2, 1, 2, 2)
    assert float(x[0, 0, 0, 0]) == pytest.approx(40 / 127.5 - 1)
    pm, pn = explain.population_indices(exp, 5)
    assert pm.tolist() == [0, 1] and pn.tolist() == [2, 3]


def test_one_train_log_reader(tmp_path):
    log = read_train_log(DEFAULT_TARGET_DIR)
    assert log is not None and log["n_members"] == 898
    assert not hasattr(explain, "read_train_log")  # one reader: mia_core.lab.train.read_train_log
    assert read_train_log(tmp_path) is None
    (tmp_path / "train_log.json").write_text("not json")
    with pytest.raises(ValueError, match="train_log.json"):
        read_train_log(tmp_path)


def test_secmi_round_trip_matches_the_attack(tiny_target):
    x0 = np.random.default_rng(0).uniform(-1, 1, size=(1, 8, 8)).astype(np.float32)
    out = explain.secmi_round_trip(tiny_target, x0, {"t_sec": 40, "k": 10, "trace": True})
    with torch.inference_mode():
        ref = get_attack("secmi", {"t_sec": 40, "k": 10, "trace": False}).compute(
            tiny_target, torch.as_tensor(x0)[None]
        )
    assert out["t_error"] == pytest.approx(float(-ref["score"][0]), rel=1e-5)
