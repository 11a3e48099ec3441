"""Tests for mia_core.train: a tiny training run, what it saves, and that it is reproducible."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from mia_core.data import Split, load_digits, random_split
from mia_core.schedule import NoiseSchedule
from mia_core.target import load_target
from mia_core.train import TrainConfig, build_unet, train

CFG = TrainConfig(steps=60, batch_size=32, block_out_channels=(16, 32), layers_per_block=1, log_every=20,
                  warmup_steps=10, lr=1e-3, seed=0)
COMMAND = "mia train --data default --out tiny --steps 60 (test)"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def _weights(folder):
    return load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def split_and_members():
    digits = load_digits()
    split = random_split(digits, seed=3).limit(64)
    return split, digits.subset(split.member_ids)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, split_and_members):
    split, members = split_and_members
    out = tmp_path_factory.mktemp("train") / "model"
    progress = []
    result = train(members, split, CFG, out, device="cpu", command=COMMAND,
                   progress=lambda s, n, loss: progress.append((s, n, loss)))
    return result, out, progress


def test_loss_curve_falls(trained):
    result, _, progress = trained
    assert [s for s, _ in result.losses] == [20, 40, 60]
    assert all(v > 0 for _, v in result.losses)
    assert result.losses[-1][1] < result.losses[0][1]
    assert [(s, n) for s, n, _ in progress] == [(20, 60), (40, 60), (60, 60)]


def test_saved_folder_reloads(trained):
    _, out, _ = trained
    for name in ("unet/config.json", "unet/diffusion_pytorch_model.safetensors",
                 "scheduler/scheduler_config.json", "model_index.json", "split.json", "train_log.json"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.bin"))  # no pickles
    a = load_target(str(out), device="cpu")
    b = load_target(str(out), device="cpu")
    assert a.fingerprint == b.fingerprint
    assert (a.resolution, a.channels) == (8, 1)
    assert list(a.unet.config.block_out_channels) == [16, 32]
    # the saved scheduler config reloads to exactly the schedule trained with
    assert torch.equal(a.schedule.alphas_cumprod, NoiseSchedule.linear().alphas_cumprod)
    x = torch.as_tensor(load_digits().to_unit_range()[:4])
    t = torch.tensor([0, 100, 500, 999])
    assert torch.equal(a.eps(x, t), b.eps(x, t))
    # The loaded model computes with exactly the saved weights.
    saved = _weights(out)
    state = a.unet.state_dict()
    assert set(saved) == set(state)
    assert all(torch.equal(saved[k], state[k]) for k in saved)


def test_saved_weights_are_the_ema(trained, split_and_members, tmp_path):
    """With ema_decay 0.999 the saved weights stay near the initialisation; with 0 they are the raw weights."""
    _, out, _ = trained
    split, members = split_and_members
    torch.manual_seed(CFG.seed)
    init = build_unet(8, 1, CFG).state_dict()  # train() builds its UNet right after seeding the same way
    raw_out = tmp_path / "raw"
    train(members, split, dataclasses.replace(CFG, ema_decay=0.0), raw_out, device="cpu")
    ema, raw = _weights(out), _weights(raw_out)

    def moved(w):
        return sum(float((w[k].float() - init[k].float()).square().sum()) for k in init) ** 0.5

    assert moved(raw) > 0
    assert 0 < moved(ema) < 0.25 * moved(raw)


def test_split_and_log_saved(trained, split_and_members):
    result, out, _ = trained
    split, _ = split_and_members
    saved = Split.load(out / "split.json")
    assert saved.member_ids == split.member_ids
    assert saved.nonmember_ids == split.nonmember_ids
    assert saved.data_fingerprint == split.data_fingerprint
    log = json.loads((out / "train_log.json").read_text())
    assert log["command"] == COMMAND
    assert log["config"] == json.loads(json.dumps(dataclasses.asdict(CFG)))
    assert log["weights"] == "EMA"
    assert log["n_members"] == 64
    assert [s for s, _ in log["loss_curve"]] == [20, 40, 60]
    assert log["loss_curve"][-1][1] == pytest.approx(result.losses[-1][1], abs=1e-6)


def test_same_seed_same_weights(trained, split_and_members, tmp_path):
    _, out, _ = trained
    split, members = split_and_members
    train(members, split, CFG, tmp_path / "again", device="cpu")
    first, second = _weights(out), _weights(tmp_path / "again")
    assert set(first) == set(second)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_train_input_validation(split_and_members, tmp_path):
    split, members = split_and_members
    other = load_digits().subset(split.nonmember_ids)
    with pytest.raises(ValueError, match="exactly the split's members"):
        train(other, split, CFG, tmp_path / "x", device="cpu")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="steps must be >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="not divisible"):
        build_unet(10, 1, TrainConfig(block_out_channels=(16, 32, 32)))
