"""ReDiffuse (black box): its math by hand on a tiny UNet, its cost, determinism, and separation on a
memorising model (the embedded default target)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mia_core.attacks import REGISTRY, get_attack
from mia_core.attacks.rediffuse import ReDiffuse
from mia_core.data import load_digits
from mia_core.noise import per_image_noise


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def digits_x0() -> torch.Tensor:
    return torch.as_tensor(load_digits().to_unit_range()[:6])


def _abar(target, t: int) -> float:
    return float(target.schedule.alphas_cumprod[t])


def hand_variation(target, x0: torch.Tensor, eps: torch.Tensor, t: int, k: int) -> torch.Tensor:
    """Noise x0 to t with eps, then DDIM t -> t-k -> ... -> 0, every coefficient a Python float."""
    a = _abar(target, t)
    x = math.sqrt(a) * x0 + math.sqrt(1 - a) * eps
    for j in range(t, 0, -k):
        e = target.eps(x, j)
        aj, ap = _abar(target, j), _abar(target, j - k)
        x0_hat = (x - math.sqrt(1 - aj) * e) / math.sqrt(aj)
        x = math.sqrt(ap) * x0_hat + math.sqrt(1 - ap) * e
    return x


def test_rediffuse_by_hand(tiny_target, digits_x0):
    x0 = digits_x0
    n = 3
    noise = torch.randn((x0.shape[0], n, *x0.shape[1:]), generator=torch.Generator().manual_seed(1))
    attack = ReDiffuse(timestep=200, k=100, n_repeats=n, sweep=(100, 300))
    with torch.inference_mode():
        out = attack.compute(tiny_target, x0, noise)
        for t, col in ((200, None), (100, 0), (300, 1)):
            x_bar = torch.stack([hand_variation(tiny_target, x0, noise[:, r], t, 100) for r in range(n)]).mean(0)
            expected = ((x0 - x_bar) ** 2).sum(dim=(1, 2, 3))
            got = -out["score"] if col is None else out["trace"][:, col]
            np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4)
    assert out["trace"].shape == (x0.shape[0], 2)


def test_rediffuse_power_one(tiny_target, digits_x0):
    x0 = digits_x0[:2]
    noise = torch.randn((2, 2, *x0.shape[1:]), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        out = ReDiffuse(timestep=100, k=50, n_repeats=2, p=1, sweep=()).compute(tiny_target, x0, noise)
        x_bar = torch.stack([hand_variation(tiny_target, x0, noise[:, r], 100, 50) for r in range(2)]).mean(0)
    np.testing.assert_allclose(-out["score"].numpy(), (x0 - x_bar).abs().sum(dim=(1, 2, 3)).numpy(), rtol=1e-4)
    assert "trace" not in out


def test_rediffuse_run_uses_per_image_noise(tiny_target, digits_x0):
    """run() = compute() with mia_core.noise's per-image draws; same seed, same scores; any batch size."""
    attack = ReDiffuse(n_repeats=2, sweep=())
    ids = [f"img{i}" for i in range(6)]
    res = attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=5, batch_size=4)
    noise = per_image_noise(ids, 5, 2, tuple(digits_x0.shape[1:]))
    with torch.inference_mode():
        direct = attack.compute(tiny_target, digits_x0, noise)["score"].double().numpy()
    np.testing.assert_allclose(res.scores, direct, rtol=1e-5)
    again = attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=5, batch_size=1)
    np.testing.assert_allclose(again.scores, res.scores, rtol=1e-5)
    other = attack.run(tiny_target, digits_x0.numpy(), ids=ids, seed=6)
    assert np.all(other.scores != res.scores)


@pytest.mark.parametrize("trace", [False, True])
def test_rediffuse_unet_calls(tiny_target, digits_x0, monkeypatch, trace):
    seen = []
    original = tiny_target.unet.forward

    def counting_forward(sample, timestep, *args, **kwargs):
        seen.append(int(sample.shape[0]))
        return original(sample, timestep, *args, **kwargs)

    monkeypatch.setattr(tiny_target.unet, "forward", counting_forward)
    attack = get_attack("rediffuse", None if trace else {"sweep": []})
    attack.run(tiny_target, digits_x0[:3].numpy(), batch_size=2)
    assert sum(seen) == 3 * attack.unet_calls(trace=trace)
    assert ReDiffuse().unet_calls(trace=False) == 20  # the published 2 steps x 10 repetitions
    assert ReDiffuse().unet_calls(trace=True) == 10 * (1 + 2 + 3)


def test_rediffuse_is_black_box_and_registered():
    assert REGISTRY["rediffuse"] is ReDiffuse
    assert ReDiffuse.access == "black" and ReDiffuse.needs == ()


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"timestep": 150}, "multiple of k"),
        ({"sweep": (50,)}, "multiple of k"),
        ({"k": 0}, "k must"),
        ({"n_repeats": 0}, "n_repeats"),
        ({"p": -1}, "p must"),
    ],
)
def test_rediffuse_bad_params(params, pattern):
    with pytest.raises(ValueError, match=pattern):
        ReDiffuse(**params)


@pytest.mark.slow
def test_rediffuse_separates_members_of_the_default_target():
    """The embedded default memorises its 898 members: ReDiffuse must rank them above non-members."""
    from mia_core.data import resolve_data
    from mia_core.metrics import evaluate
    from mia_core.target import load_target

    target = load_target("default", device="cpu")
    images, split = resolve_data("default")
    split = split.limit(150)
    ids, is_member = split.labelled()
    x0 = images.subset(ids).to_unit_range()
    res = ReDiffuse(sweep=()).run(target, x0, ids=ids)
    m = evaluate(res.scores, is_member, n_bootstrap=0)
    assert m.auc > 0.75, m.auc
