"""Tests for mia_core.attacks: each attack's math by hand, costs, determinism, validation,
agreement with the papers' own code, and separation on the embedded default target.

The hand computations below call ``target.eps`` directly and write every formula out with
Python-float coefficients from ``schedule.alphas_cumprod``; none of them calls the attacks'
helpers or ``mia_core.schedule``'s q_sample / ddim_step.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mia_core.attacks import DEFAULT_ATTACKS, DEFAULT_SWEEP, REGISTRY, get_attack
from mia_core.attacks.loss import LossAttack
from mia_core.attacks.pia import PIA, PIAN
from mia_core.attacks.secmi import SecMIStat
from mia_core.attacks.sima import SimA
from mia_core.data import load_digits

NO_TRACE = {
    "loss": {"sweep": []},
    "secmi": {"trace": False},
    "pia": {"sweep": []},
    "pian": {"sweep": []},
    "sima": {"sweep": []},
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


# --------------------------------------------------------------------------- helpers


def rel_diff(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(np.abs(b), 1e-30)


def abar(target, t: int) -> float:
    return float(target.schedule.alphas_cumprod[t])


def hand_noised(target, x0: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, written out."""
    a = abar(target, t)
    return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * eps


def hand_ddim(target, x_a: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """One deterministic DDIM move a -> b with eps = eps_theta(x_a, a), written out."""
    e = target.eps(x_a, a)
    aa, ab = abar(target, a), abar(target, b)
    x0_hat = (x_a - math.sqrt(1.0 - aa) * e) / math.sqrt(aa)
    return math.sqrt(ab) * x0_hat + math.sqrt(1.0 - ab) * e


@pytest.fixture(scope="module")
def digits_x0() -> torch.Tensor:
    """12 real 8x8 digits in [-1, 1], (12, 1, 8, 8)."""
    images = load_digits()
    return torch.as_tensor(images.to_unit_range()[:12])


# --------------------------------------------------------------------------- the math, by hand


def test_loss_by_hand(tiny_target, digits_x0):
    x0 = digits_x0
    noise = torch.randn((x0.shape[0], 1, *x0.shape[1:]), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        out = LossAttack(sweep=()).compute(tiny_target, x0, noise)
    x_t = hand_noised(tiny_target, x0, 200, noise[:, 0])
    expected = ((noise[:, 0] - tiny_target.eps(x_t, 200)) ** 2).sum(dim=(1, 2, 3))
    assert "trace" not in out
    assert out["score"].shape == (x0.shape[0],)
    assert rel_diff(out["score"], -expected).max() < 1e-5


def test_loss_average_and_trace_by_hand(tiny_target, digits_x0):
    x0 = digits_x0[:5]
    noise = torch.randn((5, 2, *x0.shape[1:]), generator=torch.Generator().manual_seed(4))
    attack = LossAttack(timesteps=(100, 300), n_draws=2, sweep=(50, 100, 400))
    with torch.inference_mode():
        out = attack.compute(tiny_target, x0, noise)

    def loss(t, d):
        x_t = hand_noised(tiny_target, x0, t, noise[:, d])
        return ((noise[:, d] - tiny_target.eps(x_t, t)) ** 2).sum(dim=(1, 2, 3))

    expected = -(loss(100, 0) + loss(100, 1) + loss(300, 0) + loss(300, 1)) / 4
    assert rel_diff(out["score"], expected).max() < 1e-5
    assert out["trace"].shape == (5, 3)
    for j, t in enumerate((50, 100, 400)):  # trace: draw 0 at each sweep t
        assert rel_diff(out["trace"][:, j], loss(t, 0)).max() < 1e-5
    assert attack.unet_calls(trace=False) == 4 and attack.unet_calls(trace=True) == 6


def _spy_noise(attack, monkeypatch):
    """Record the noise ``run`` hands to ``compute``, batch by batch."""
    batches = []
    original = attack.compute

    def spy(target, x0, noise):
        batches.append(noise.clone())
        return original(target, x0, noise)

    monkeypatch.setattr(attack, "compute", spy)
    return batches


def test_loss_run_by_hand_with_its_noise(tiny_target, digits_x0, monkeypatch):
    x0 = digits_x0
    ids = [f"img-{i}" for i in range(12)]
    attack = get_attack("loss", {"sweep": []})
    batches = _spy_noise(attack, monkeypatch)
    res = attack.run(tiny_target, x0.numpy(), ids=ids, seed=7, batch_size=5)
    assert [b.shape[0] for b in batches] == [5, 5, 2]
    noise = torch.cat(batches)
    assert noise.shape == (12, 1, 1, 8, 8) and noise.dtype == torch.float32
    x_t = hand_noised(tiny_target, x0, 200, noise[:, 0])
    expected = ((noise[:, 0] - tiny_target.eps(x_t, 200)) ** 2).sum(dim=(1, 2, 3)).double().numpy()
    assert res.scores.dtype == np.float64
    assert rel_diff(res.scores, -expected).max() < 1e-5
    assert res.ids == tuple(ids)
    assert res.attack == "loss"
    # Looks like N(0, I): 768 values.
    assert abs(float(noise.mean())) < 0.2
    assert 0.85 < float(noise.std()) < 1.15
    # Each image has its own noise.
    flat = noise.flatten(1)
    assert all(not torch.equal(flat[i], flat[j]) for i in range(12) for j in range(i))


def test_noise_depends_only_on_seed_and_id(tiny_target, digits_x0, monkeypatch):
    ids = [f"img-{i}" for i in range(12)]
    attack = get_attack("loss", {"sweep": []})
    batches = _spy_noise(attack, monkeypatch)
    attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=7)
    full = torch.cat(batches)
    batches.clear()
    pick = [9, 0, 4]
    attack.run(tiny_target, digits_x0[pick].numpy(), ids=[ids[i] for i in pick], seed=7, batch_size=2)
    assert torch.equal(torch.cat(batches), full[pick])
    batches.clear()
    attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=8)
    assert (torch.cat(batches) != full).float().mean() > 0.99


@pytest.mark.parametrize("sweep", [(), (10, 100, 200, 450)])
def test_pia_by_hand(tiny_target, digits_x0, sweep):
    x0 = digits_x0
    with torch.inference_mode():
        out = PIA(sweep=sweep).compute(tiny_target, x0, None)
    eps0 = tiny_target.eps(x0, 0)

    def dist(t):
        x_t = math.sqrt(abar(tiny_target, t)) * x0 + math.sqrt(1 - abar(tiny_target, t)) * eps0
        return ((eps0 - tiny_target.eps(x_t, t)).abs() ** 4).sum(dim=(1, 2, 3))

    assert rel_diff(out["score"], -dist(200)).max() < 1e-4
    if sweep:
        assert out["trace"].shape == (x0.shape[0], len(sweep))
        for j, t in enumerate(sweep):
            assert rel_diff(out["trace"][:, j], dist(t)).max() < 1e-4
        # the score's t is in the sweep here: the trace column equals minus the score
        assert torch.allclose(out["trace"][:, sweep.index(200)], -out["score"])
    else:
        assert "trace" not in out


def test_pian_by_hand(tiny_target, digits_x0):
    x0 = digits_x0
    with torch.inference_mode():
        out = PIAN(sweep=()).compute(tiny_target, x0, None)
    raw = tiny_target.eps(x0, 0)
    eps0 = raw * math.sqrt(2 / math.pi) / raw.abs().mean(dim=(1, 2, 3), keepdim=True)
    a = abar(tiny_target, 200)
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps0
    expected = ((eps0 - tiny_target.eps(x_t, 200)).abs() ** 4).sum(dim=(1, 2, 3))
    assert rel_diff(out["score"], -expected).max() < 1e-4
    # PIAN differs from PIA (the rescaling is applied).
    with torch.inference_mode():
        pia = PIA(sweep=()).compute(tiny_target, x0, None)
    assert rel_diff(pia["score"], out["score"]).max() > 1e-3


def test_pia_run_equals_hand(tiny_target, digits_x0):
    x0 = digits_x0
    res = get_attack("pia", {"sweep": [100, 300]}).run(tiny_target, x0.numpy(), batch_size=5)
    eps0 = tiny_target.eps(x0, 0)
    for t, col in ((200, None), (100, 0), (300, 1)):
        x_t = math.sqrt(abar(tiny_target, t)) * x0 + math.sqrt(1 - abar(tiny_target, t)) * eps0
        d = ((eps0 - tiny_target.eps(x_t, t)).abs() ** 4).sum(dim=(1, 2, 3)).double().numpy()
        got = -res.scores if col is None else res.trace[:, col]
        assert rel_diff(got, d).max() < 1e-4, t
    assert list(res.trace_timesteps) == [100, 300]
    assert np.allclose(res.trace_scores(), -res.trace)


def test_sima_by_hand(tiny_target, digits_x0):
    x0 = digits_x0
    with torch.inference_mode():
        out = SimA().compute(tiny_target, x0, None)
    expected = (tiny_target.eps(x0, 100).abs() ** 4).sum(dim=(1, 2, 3))
    assert rel_diff(out["score"], -expected).max() < 1e-4
    assert out["trace"].shape == (x0.shape[0], len(DEFAULT_SWEEP))
    for j, t in enumerate(DEFAULT_SWEEP):
        assert rel_diff(out["trace"][:, j], (tiny_target.eps(x0, t).abs() ** 4).sum(dim=(1, 2, 3))).max() < 1e-4
    # p is honoured: p = 2 gives the sum of squares
    with torch.inference_mode():
        out2 = SimA(p=2, sweep=()).compute(tiny_target, x0, None)
    assert rel_diff(out2["score"], -(tiny_target.eps(x0, 100) ** 2).sum(dim=(1, 2, 3))).max() < 1e-4


def test_rgb_32_by_hand(tiny_rgb_target):
    """PIA and SimA on a 3-channel 32x32 target: sums run over C, H and W."""
    target = tiny_rgb_target
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1
    res = get_attack("sima", {"sweep": []}).run(target, x0.numpy())
    expected = (target.eps(x0, 100).abs() ** 4).sum(dim=(1, 2, 3)).double().numpy()
    assert rel_diff(res.scores, -expected).max() < 1e-4
    with torch.inference_mode():
        out = PIA(sweep=()).compute(target, x0, None)
    eps0 = target.eps(x0, 0)
    a = abar(target, 200)
    x_t = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps0
    assert rel_diff(out["score"], -((eps0 - target.eps(x_t, 200)).abs() ** 4).sum(dim=(1, 2, 3))).max() < 1e-4
    with pytest.raises(ValueError, match=r"shape \(N, 3, 32, 32\)"):
        get_attack("sima").run(target, np.zeros((2, 1, 32, 32), np.float32))


def _hand_secmi(target, x0):
    """Invert 0 -> 10 -> ... -> 90 by hand; return the inverted points and the 90 -> 100 -> 90 round trip."""
    points = {0: x0}
    for a in range(0, 100, 10):  # up to x_100 = phi(x_90)
        points[a + 10] = hand_ddim(target, points[a], a, a + 10)
    recon_90 = hand_ddim(target, points[100], 100, 90)
    return points, recon_90


def test_secmi_by_hand(tiny_target, digits_x0):
    x0 = digits_x0
    points, recon_90 = _hand_secmi(tiny_target, x0)
    with torch.inference_mode():
        out = SecMIStat(trace=False).compute(tiny_target, x0, None)
    assert "trace" not in out
    assert torch.allclose(out["x_tilde"], points[90], rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["x_recon"], recon_90, rtol=1e-4, atol=1e-5)
    t_error = ((points[90] - recon_90) ** 2).sum(dim=(1, 2, 3))
    assert rel_diff(out["score"], -t_error).max() < 1e-3
    # the inversion really moved the image: x_90 is not x_0
    assert (points[90] - x0).abs().max() > 0.1


def test_secmi_trace_by_hand(tiny_target, digits_x0):
    x0 = digits_x0[:6]
    points, _ = _hand_secmi(tiny_target, x0)
    with torch.inference_mode():
        out = SecMIStat().compute(tiny_target, x0, None)
    trace = out["trace"]
    assert trace.shape == (6, 10)
    assert SecMIStat().trace_timesteps() == tuple(range(0, 100, 10))
    assert torch.equal(trace[:, -1], -out["score"])
    for j, t in enumerate(range(0, 100, 10)):
        # round trip at t: psi(phi(x_t)) with phi(x_t) = x_{t+10}, the next inverted point
        recon = hand_ddim(tiny_target, points[t + 10], t + 10, t)
        expected = ((points[t] - recon) ** 2).sum(dim=(1, 2, 3))
        assert rel_diff(trace[:, j], expected).max() < 1e-3, t


# --------------------------------------------------------------------------- costs


def test_unet_calls_defaults():
    calls = {
        name: (REGISTRY[name]().unet_calls(trace=False), REGISTRY[name]().unet_calls(trace=True))
        for name in DEFAULT_ATTACKS
    }
    assert calls["loss"][0] == 1
    assert calls["secmi"] == (11, 20)
    assert calls["pia"][0] == 2 and calls["pian"][0] == 2
    assert calls["sima"][0] == 1
    # with the default sweep (11 timesteps, 200 and 100 among them)
    assert calls["loss"][1] == len(DEFAULT_SWEEP)
    assert calls["pia"][1] == 1 + len(DEFAULT_SWEEP)
    assert calls["sima"][1] == len(DEFAULT_SWEEP)
    assert set(DEFAULT_ATTACKS) == {"loss", "secmi", "pia", "pian", "sima"}


@pytest.mark.parametrize("name", DEFAULT_ATTACKS)
@pytest.mark.parametrize("trace", [False, True])
def test_real_unet_calls(tiny_target, digits_x0, monkeypatch, name, trace):
    seen = []
    original = tiny_target.unet.forward

    def counting_forward(sample, timestep, *args, **kwargs):
        seen.append(int(sample.shape[0]))
        return original(sample, timestep, *args, **kwargs)

    monkeypatch.setattr(tiny_target.unet, "forward", counting_forward)
    x0 = digits_x0[:7]
    attack = get_attack(name, None if trace else NO_TRACE[name])
    res = attack.run(tiny_target, x0.numpy(), batch_size=4)
    assert sum(seen) == 7 * get_attack(name).unet_calls(trace=trace)
    assert res.unet_calls_per_image == attack.unet_calls(trace=True)
    assert res.trace.shape == (7, len(res.trace_timesteps))
    assert (res.trace.shape[1] > 0) == trace


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", DEFAULT_ATTACKS)
def test_same_seed_same_scores(tiny_target, digits_x0, name):
    attack = get_attack(name, NO_TRACE[name])
    a = attack.run(tiny_target, digits_x0.numpy(), seed=3)
    b = attack.run(tiny_target, digits_x0.numpy(), seed=3)
    assert np.array_equal(a.scores, b.scores)
    assert np.all(np.isfinite(a.scores))


def test_different_seed_changes_loss(tiny_target, digits_x0):
    attack = get_attack("loss", {"sweep": []})
    a = attack.run(tiny_target, digits_x0.numpy(), seed=0)
    b = attack.run(tiny_target, digits_x0.numpy(), seed=1)
    assert np.all(a.scores != b.scores)


def test_loss_score_independent_of_batch_and_subset(tiny_target, digits_x0):
    attack = get_attack("loss", {"sweep": [0, 300]})
    ids = [f"d{i}" for i in range(12)]
    full = attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=5)
    small = attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=5, batch_size=3)
    np.testing.assert_allclose(small.scores, full.scores, rtol=1e-5, atol=0)
    np.testing.assert_allclose(small.trace, full.trace, rtol=1e-5, atol=0)
    pick = [7, 2, 10]
    sub = attack.run(tiny_target, digits_x0[pick].numpy(), ids=[ids[i] for i in pick], seed=5)
    np.testing.assert_allclose(sub.scores, full.scores[pick], rtol=1e-5, atol=0)


def test_progress_reports_every_batch(tiny_target, digits_x0):
    calls = []
    get_attack("sima", {"sweep": []}).run(
        tiny_target, digits_x0.numpy(), batch_size=5, progress=lambda d, n: calls.append((d, n))
    )
    assert calls == [(5, 12), (10, 12), (12, 12)]


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name", DEFAULT_ATTACKS)
def test_wrong_shape_rejected(tiny_target, name):
    attack = get_attack(name, NO_TRACE[name])
    with pytest.raises(ValueError, match=r"shape \(N, 1, 8, 8\).*got \(2, 3, 8, 8\)"):
        attack.run(tiny_target, np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"got \(2, 8, 8\)"):
        attack.run(tiny_target, np.zeros((2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="shape"):
        attack.run(tiny_target, np.zeros((2, 1, 16, 16), np.float32))


def test_out_of_range_images_rejected(tiny_target):
    attack = get_attack("sima", {"sweep": []})
    x = np.full((2, 1, 8, 8), 200.0, np.float32)
    with pytest.raises(ValueError, match=r"\[-1, 1\].*200"):
        attack.run(tiny_target, x)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        attack.run(tiny_target, np.full((2, 1, 8, 8), -1.5, np.float32))


def test_other_run_errors(tiny_target):
    attack = get_attack("sima", {"sweep": []})
    with pytest.raises(ValueError, match="no images"):
        attack.run(tiny_target, np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(ValueError, match="3 ids for 2 images"):
        attack.run(tiny_target, np.zeros((2, 1, 8, 8), np.float32), ids=["a", "b", "c"])
    with pytest.raises(ValueError, match="noise"):
        LossAttack().compute(tiny_target, torch.zeros(2, 1, 8, 8), None)


@pytest.mark.parametrize(
    ("name", "params", "pattern"),
    [
        ("pia", {"timestep": -5}, r"timestep.*-5"),
        ("pian", {"sweep": [10, -1]}, r"timestep.*-1"),
        ("sima", {"timestep": -1}, r"timestep.*-1"),
        ("loss", {"timesteps": [-3]}, r"timestep.*-3"),
        ("loss", {"timesteps": []}, "at least one timestep"),
        ("loss", {"n_draws": 0}, "n_draws"),
        ("secmi", {"t_sec": -10}, r"t_sec.*-10"),
        ("secmi", {"t_sec": 100, "k": 15}, r"multiple of k.*t_sec=100, k=15"),
        ("secmi", {"t_sec": 10, "k": 10}, ">= 2k"),
        ("secmi", {"k": 0}, "k must be"),
        ("pia", {"p": 0}, "p must be a positive number, got 0"),
        ("pian", {"p": -2}, "positive"),
        ("sima", {"p": float("nan")}, "positive"),
        ("pia", {"timestep": 2.5}, "integer"),
        ("pia", {"bogus": 1}, r"unknown parameter.*'bogus'.*known:.*'timestep'"),
        ("secmi", {"tsec": 100}, r"unknown parameter.*'tsec'.*'t_sec'"),
    ],
)
def test_bad_params_rejected(name, params, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_attack(name, params)


def test_unknown_attack_name():
    with pytest.raises(ValueError, match=r"unknown attack 'gsa'; known: loss, secmi, pia, pian, sima"):
        get_attack("gsa")


def test_timestep_beyond_schedule_rejected_at_run(tiny_target, digits_x0):
    attack = get_attack("pia", {"timestep": 1000, "sweep": []})
    with pytest.raises(ValueError, match="1000"):
        attack.run(tiny_target, digits_x0[:2].numpy())


def test_get_attack_lists_become_tuples():
    attack = get_attack("sima", {"sweep": [10, 20]})
    assert attack.params.sweep == (10, 20)
    assert attack.params_dict()["sweep"] == [10, 20]


# --------------------------------------------------------------------------- the papers' own code


@pytest.fixture(scope="module")
def official(official_dir):
    from mia_core.target import load_folder

    target = load_folder(official_dir / "tiny_unet", device="cpu")
    with np.load(official_dir / "images.npz") as f:
        images = f["images"]
    x0 = torch.as_tensor(images.astype(np.float32) / 255.0 * 2 - 1).permute(0, 3, 1, 2).contiguous()
    with np.load(official_dir / "expected.npz") as f:
        expected = {k: f[k] for k in f.files}
    return target, x0, expected


def test_official_pia(official):
    target, x0, exp = official
    with torch.inference_mode():
        out = PIA(sweep=()).compute(target, x0, None)
    assert rel_diff(-out["score"], exp["pia_t200_l4_distance"]).max() < 1e-4


def test_official_pian(official):
    target, x0, exp = official
    with torch.inference_mode():
        out = PIAN(sweep=()).compute(target, x0, None)
    assert rel_diff(-out["score"], exp["pian_t200_l4_distance"]).max() < 1e-4


def test_official_pia_sweep(official):
    target, x0, exp = official
    sweep = tuple(range(10, 101, 10))
    n = 16  # 11 UNet calls per image at 32x32: the first 16 images keep this test fast
    with torch.inference_mode():
        out = PIA(sweep=sweep).compute(target, x0[:n], None)
    assert out["trace"].shape == (n, 10)
    assert rel_diff(out["trace"].T, exp["pia_sweep_t10to100_l4_distance"][:, :n]).max() < 1e-4


def test_official_secmi(official):
    target, x0, exp = official
    n = 32  # 11 UNet calls per image at 32x32: half of the 64 images keeps this test fast
    with torch.inference_mode():
        out = SecMIStat(t_sec=100, k=10, trace=False).compute(target, x0[:n], None)
    assert rel_diff(-out["score"], exp["secmi_stat_tsec100_k10_t_error"][:n]).max() < 1e-4
    np.testing.assert_allclose(out["x_tilde"][:4].numpy(), exp["secmi_x_tilde_90_first4"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["x_recon"][:4].numpy(), exp["secmi_x_recon_90_first4"], rtol=1e-4, atol=1e-5)


def test_official_loss(official):
    target, x0, exp = official
    noise = torch.as_tensor(exp["loss_t200_noise"])
    with torch.inference_mode():
        out = LossAttack(sweep=()).compute(target, x0, noise[:, None])
    assert rel_diff(-out["score"], exp["loss_t200_sum_sq"]).max() < 1e-4


# --------------------------------------------------------------------------- separation on the default target


@pytest.fixture(scope="module")
def default_run():
    from mia_core.data import resolve_data
    from mia_core.target import load_target

    target = load_target("default", device="cpu")
    images, split = resolve_data("default")
    ids, is_member = split.labelled()
    x0 = images.subset(ids).to_unit_range()
    return target, x0, ids, is_member


@pytest.mark.parametrize(
    ("name", "min_auc", "min_tpr1"),
    [("sima", 0.95, 0.5), ("pia", 0.9, None), ("secmi", 0.85, None), ("loss", 0.6, None)],
)
def test_default_target_leaks(default_run, name, min_auc, min_tpr1):
    from mia_core.metrics import evaluate

    target, x0, ids, is_member = default_run
    assert is_member.sum() == 898 and (~is_member).sum() == 899
    res = get_attack(name, NO_TRACE[name]).run(target, x0, ids=ids)
    m = evaluate(res.scores, is_member, n_bootstrap=0)
    assert m.auc >= min_auc if name != "loss" else m.auc > min_auc
    if min_tpr1 is not None:
        assert m.tpr_at_1pct_fpr >= min_tpr1
    assert res.scores[is_member].mean() > res.scores[~is_member].mean()
