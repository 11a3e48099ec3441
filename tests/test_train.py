"""Tests for mia_core.lab.train: a tiny training run, what it saves, resuming, augmentation, DP-SGD."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mia_core.data import Split, load_digits, random_split
from mia_core.lab.train import (
    TrainConfig,
    augment_batch,
    build_unet,
    denoising_loss,
    make_grad_sample_module,
    read_train_log,
    shift_reflect,
    train,
)
from mia_core.schedule import NoiseSchedule
from mia_core.target import load_target

CFG = TrainConfig(
    steps=60,
    batch_size=32,
    block_out_channels=(16, 32),
    layers_per_block=1,
    log_every=20,
    warmup_steps=10,
    lr=1e-3,
    seed=0,
)
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
    result = train(
        members,
        split,
        CFG,
        out,
        device="cpu",
        command=COMMAND,
        progress=lambda s, n, loss: progress.append((s, n, loss)),
        snapshot_steps=(20,),
    )
    return result, out, progress


def test_loss_curve_falls(trained):
    result, _, progress = trained
    assert [s for s, _ in result.losses] == [20, 40, 60]
    assert all(v > 0 for _, v in result.losses)
    assert result.losses[-1][1] < result.losses[0][1]
    assert [(s, n) for s, n, _ in progress] == [(20, 60), (40, 60), (60, 60)]


def test_saved_folder_reloads(trained):
    _, out, _ = trained
    for name in (
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "scheduler/scheduler_config.json",
        "model_index.json",
        "split.json",
        "train_log.json",
    ):
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


def test_same_seed_same_weights_while_another_thread_loads_models(split_and_members, tmp_path):
    """The app loads targets on a loader thread while the worker trains: loading a model draws
    from torch's global generator, which also gives training its seeded initial weights."""
    import threading

    from mia_core.target import load_target

    split, members = split_and_members
    cfg = dataclasses.replace(CFG, steps=2, log_every=1)
    train(members, split, cfg, tmp_path / "alone", device="cpu")
    stop = threading.Event()

    def keep_loading() -> None:
        while not stop.is_set():
            load_target("default", device="cpu")

    loader = threading.Thread(target=keep_loading, daemon=True)
    loader.start()
    try:
        for k in range(3):  # several builds, so some overlap a load
            train(members, split, cfg, tmp_path / f"busy{k}", device="cpu")
    finally:
        stop.set()
        loader.join()
    alone = _weights(tmp_path / "alone")
    for k in range(3):
        busy = _weights(tmp_path / f"busy{k}")
        assert all(torch.equal(alone[name], busy[name]) for name in alone), k


def test_train_input_validation(split_and_members, tmp_path):
    split, members = split_and_members
    other = load_digits().subset(split.nonmember_ids)
    with pytest.raises(ValueError, match="exactly the split's members"):
        train(other, split, CFG, tmp_path / "x", device="cpu")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="not divisible"):
        build_unet(10, 1, TrainConfig(block_out_channels=(16, 32, 32)))


# -- resuming and snapshots ------------------------------------------------------------------


def test_resume_is_bitwise_the_uninterrupted_run(trained, split_and_members, tmp_path):
    """25 steps + a checkpoint, then 35 more from it == the 60-step run, weights and loss curve alike."""
    result, out, _ = trained
    split, members = split_and_members
    first = tmp_path / "first"
    train(members, split, dataclasses.replace(CFG, steps=25, checkpoint_every=25), first, device="cpu")
    state = first / "checkpoint"
    assert {p.name for p in state.iterdir()} == {"training_state.safetensors", "training_state.json"}
    resumed = train(members, split, CFG, tmp_path / "resumed", device="cpu", resume_from=first)
    a, b = _weights(out), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # 25 is not a multiple of log_every = 20: the window 21..40 spans the interruption.
    assert resumed.losses == result.losses
    assert resumed.resumed_at == [25]
    assert json.loads((tmp_path / "resumed" / "train_log.json").read_text())["resumed_at"] == [25]


def test_resume_refuses_another_run(split_and_members, tmp_path):
    split, members = split_and_members
    first = tmp_path / "first"
    cfg = dataclasses.replace(CFG, steps=5, checkpoint_every=5)
    train(members, split, cfg, first, device="cpu")
    with pytest.raises(ValueError, match=r"config differs \(lr: 0.001 -> 0.002\)"):
        train(members, split, dataclasses.replace(CFG, lr=2e-3), tmp_path / "x", device="cpu", resume_from=first)
    other = random_split(load_digits(), seed=4).limit(64)
    with pytest.raises(ValueError, match="other members"):
        train(load_digits().subset(other.member_ids), other, CFG, tmp_path / "x", device="cpu", resume_from=first)
    with pytest.raises(ValueError, match="beyond steps=3"):
        train(members, split, dataclasses.replace(CFG, steps=3), tmp_path / "x", device="cpu", resume_from=first)
    with pytest.raises(ValueError, match="no training checkpoint"):
        train(members, split, CFG, tmp_path / "x", device="cpu", resume_from=tmp_path)


def test_snapshot_is_the_shorter_run(trained, split_and_members, tmp_path):
    """The learning rate is constant after warm-up, so the step-20 snapshot is a 20-step run."""
    _, out, _ = trained
    split, members = split_and_members
    snap = out / "snapshots" / "step-20"
    train(members, split, dataclasses.replace(CFG, steps=20), tmp_path / "short", device="cpu")
    a, b = _weights(snap), _weights(tmp_path / "short")
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = read_train_log(snap)
    assert log["config"]["steps"] == 20 and log["snapshot_of"]["steps"] == 60
    assert [s for s, _ in log["loss_curve"]] == [20]
    assert Split.load(snap / "split.json").member_ids == split.member_ids


# -- schedule, config, logs ------------------------------------------------------------------


def test_cosine_schedule_round_trip(split_and_members, tmp_path):
    split, members = split_and_members
    cfg = dataclasses.replace(CFG, steps=2, schedule="cosine")
    train(members, split, cfg, tmp_path / "cos", device="cpu")
    sched = json.loads((tmp_path / "cos" / "scheduler" / "scheduler_config.json").read_text())
    assert sched["beta_schedule"] == "squaredcos_cap_v2" and sched["num_train_timesteps"] == 1000
    loaded = load_target(str(tmp_path / "cos"), device="cpu").schedule
    assert torch.equal(loaded.alphas_cumprod, NoiseSchedule.cosine(1000).alphas_cumprod)
    assert loaded.kind == "cosine" and "cosine" in loaded.description
    # Nichol & Dhariwal eq. 17 by hand: abar_t = f(t+1)/f(0) with f(u) = cos^2((u/T + s)/(1 + s) pi/2)
    # while no beta is capped (t < 990 or so), here at t = 0 and t = 500.
    f = [math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2 for u in (0, 1, 501)]
    assert float(loaded.alphas_cumprod[0]) == pytest.approx(f[1] / f[0], rel=1e-12)
    assert float(loaded.alphas_cumprod[500]) == pytest.approx(f[2] / f[0], rel=1e-9)
    assert float(loaded.betas[-1]) == pytest.approx(0.999)  # the cap


def test_config_reads_old_logs_and_validates():
    old = json.loads((load_target.__globals__["DEFAULT_TARGET_DIR"] / "train_log.json").read_text())["config"]
    assert "augment" not in old  # made before augment existed
    cfg = TrainConfig.from_dict(old)
    assert cfg.augment == "none" and cfg.schedule == "linear" and cfg.dp_epsilon is None
    assert cfg.block_out_channels == (32, 64, 64)
    assert TrainConfig.from_dict({**old, "hflip": True}).augment == "hflip"
    assert TrainConfig(augment="hflip").hflip is True and TrainConfig(augment="strong").hflip is False
    assert TrainConfig.from_dict(TrainConfig(augment="strong").to_dict()) == TrainConfig(augment="strong")
    with pytest.raises(ValueError, match="conflicts with augment='strong'"):
        TrainConfig(hflip=True, augment="strong")
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['colour'\]"):
        TrainConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="quadratic")
    with pytest.raises(ValueError, match="dp_epsilon must be a finite number > 0"):
        TrainConfig(dp_epsilon=0.0)
    with pytest.raises(ValueError, match="dp_delta"):
        TrainConfig(dp_delta=1.0)
    assert TrainConfig().delta_for(898) == pytest.approx(898**-1.1)
    assert TrainConfig(dp_delta=1e-5).delta_for(898) == 1e-5


def test_read_train_log(trained, tmp_path):
    _, out, _ = trained
    log = read_train_log(out)
    assert log["command"] == COMMAND and log["dp"] is None and log["config"]["augment"] == "none"
    assert read_train_log(out / "unet")["command"] == COMMAND  # a unet/ folder finds its pipeline's log
    assert read_train_log(tmp_path) is None
    (tmp_path / "train_log.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_train_log(tmp_path)


# -- augmentation ------------------------------------------------------------------------------


def test_shift_reflect_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)  # rows [0 1 2 3], [4 5 6 7], ...
    right = shift_reflect(x, torch.tensor([[0, 1]]), pad=1)[0, 0]
    assert right[0].tolist() == [1, 0, 1, 2]  # content moves right; column -1 reflects column 1
    down = shift_reflect(x, torch.tensor([[1, 0]]), pad=1)[0, 0]
    assert down[:, 0].tolist() == [4, 0, 4, 8]
    left_up = shift_reflect(x, torch.tensor([[-1, -1]]), pad=1)[0, 0]
    assert left_up[0].tolist() == [5, 6, 7, 6] and left_up[3].tolist() == [9, 10, 11, 10]
    assert torch.equal(shift_reflect(x, torch.tensor([[0, 0]]), pad=1), x)
    two = torch.stack([x[0], -x[0]])  # each image gets its own shift
    out = shift_reflect(two, torch.tensor([[0, 1], [0, 0]]), pad=1)
    assert torch.equal(out[0], shift_reflect(x, torch.tensor([[0, 1]]), pad=1)[0]) and torch.equal(out[1], -x[0])
    with pytest.raises(ValueError, match="shifts must be"):
        shift_reflect(x, torch.tensor([[0, 2]]), pad=1)


def test_augment_batch():
    x = torch.rand(64, 1, 8, 8) * 2 - 1
    assert augment_batch(x, "none", torch.Generator().manual_seed(0)) is x
    flipped = augment_batch(x, "hflip", torch.Generator().manual_seed(0))
    which = torch.rand(64, generator=torch.Generator().manual_seed(0)) < 0.5  # the same draw
    assert 10 < int(which.sum()) < 54
    assert torch.equal(flipped[which], x[which].flip(-1)) and torch.equal(flipped[~which], x[~which])

    strong = augment_batch(x, "strong", torch.Generator().manual_seed(0))
    assert strong.shape == x.shape
    assert strong.min() >= x.min() and strong.max() <= x.max()
    for k in range(64):  # pixels are moved, never mixed: each output value is one of the image's own
        assert bool(torch.isin(strong[k], x[k]).all())
    changed = (strong != x).flatten(1).any(1)
    assert int(changed.sum()) > 48  # (1 - P(no shift and no flip) = 1 - 1/18)
    assert torch.equal(strong, augment_batch(x, "strong", torch.Generator().manual_seed(0)))
    assert not torch.equal(strong, augment_batch(x, "strong", torch.Generator().manual_seed(1)))


def test_augmented_training_runs_and_differs(split_and_members, tmp_path):
    split, members = split_and_members
    cfg = dataclasses.replace(CFG, steps=3, log_every=1)
    plain = train(members, split, cfg, tmp_path / "plain", device="cpu")
    strong = train(members, split, dataclasses.replace(cfg, augment="strong"), tmp_path / "strong", device="cpu")
    assert plain.losses[0] == strong.losses[0] or plain.losses != strong.losses
    assert not torch.equal(
        _weights(tmp_path / "plain")["conv_in.weight"], _weights(tmp_path / "strong")["conv_in.weight"]
    )
    assert json.loads((tmp_path / "strong" / "train_log.json").read_text())["config"]["augment"] == "strong"


# -- utility -----------------------------------------------------------------------------------


def test_denoising_loss_by_hand(tiny_target):
    x0 = torch.as_tensor(load_digits().to_unit_range()[:5])
    losses = denoising_loss(tiny_target, x0, n_draws=3, seed=7, batch_size=2)
    assert losses.shape == (5,) and np.isfinite(losses).all()
    gen = torch.Generator().manual_seed(7)
    t = torch.randint(0, 1000, (5, 3), generator=gen)
    noise = torch.randn((5, 3, 1, 8, 8), generator=gen)
    sched = tiny_target.schedule
    for d in range(3):  # image 2, by hand
        x_t = (
            sched.abar(int(t[2, d]), x0).sqrt() * x0[2:3]
            + (1 - sched.abar(int(t[2, d]), x0)).sqrt() * noise[2, d : d + 1]
        )
        err = float((tiny_target.eps(x_t, int(t[2, d])) - noise[2, d : d + 1]).square().mean())
        assert err > 0
        if d == 0:
            total = err
        else:
            total += err
    assert losses[2] == pytest.approx(total / 3, rel=1e-5)
    np.testing.assert_allclose(denoising_loss(tiny_target, x0, n_draws=3, seed=7, batch_size=5), losses, rtol=1e-6)
    with pytest.raises(ValueError, match="n_draws"):
        denoising_loss(tiny_target, x0, n_draws=0)


# -- DP-SGD ------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Full backward hook is firing")
def test_opacus_per_sample_gradients_of_the_unet():
    """The per-sample gradients DP training uses are each sample's own gradient on our UNet (every
    layer: attention, GroupNorm, the convolutions after attention that Opacus' hook rules get wrong),
    and the DP optimizer clips each one to C before summing."""
    from opacus.optimizers import DPOptimizer

    torch.manual_seed(0)
    unet = build_unet(8, 1, CFG)
    reference = build_unet(8, 1, CFG)
    reference.load_state_dict(unet.state_dict())  # the same weights, without Opacus' hooks
    gsm = make_grad_sample_module(unet)
    x, noise = torch.randn(3, 1, 8, 8), torch.randn(3, 1, 8, 8)
    t = torch.tensor([5, 300, 900])
    torch.nn.functional.mse_loss(gsm(x, t).sample, noise).backward()
    params = [p for p in unet.parameters() if p.requires_grad]
    assert len(params) == len(list(reference.parameters()))
    for i in range(3):
        loss_i = torch.nn.functional.mse_loss(reference(x[i : i + 1], t[i : i + 1]).sample, noise[i : i + 1])
        ref = torch.autograd.grad(loss_i, list(reference.parameters()))
        for p, g in zip(params, ref):
            torch.testing.assert_close(p.grad_sample[i], g, rtol=1e-4, atol=1e-6)
    norms = torch.stack([torch.cat([p.grad_sample[i].flatten() for p in params]).norm() for i in range(3)])
    clip = float(norms.min()) / 2  # every sample is clipped
    opt = DPOptimizer(
        torch.optim.SGD(params, lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=clip,
        expected_batch_size=3,
        loss_reduction="mean",
    )
    opt.clip_and_accumulate()
    factors = clip / (norms + 1e-6)
    for p in params:
        expected = (p.grad_sample * factors.view(-1, *[1] * p.dim())).sum(0)
        torch.testing.assert_close(p.summed_grad, expected, rtol=1e-4, atol=1e-7)
    total = torch.cat([p.summed_grad.flatten() for p in params]).norm()
    assert float(total) <= 3 * clip * (1 + 1e-4)


@pytest.fixture(scope="module")
def dp_trained(tmp_path_factory, split_and_members):
    split, members = split_and_members
    cfg = dataclasses.replace(CFG, steps=20, batch_size=8, dp_epsilon=8.0, attention=False)
    out = tmp_path_factory.mktemp("dp") / "model"
    return cfg, train(members, split, cfg, out, device="cpu"), out


def test_dp_reports_a_finite_epsilon(dp_trained):
    cfg, result, out = dp_trained
    dp = result.dp
    assert dp["noise_multiplier"] > 0 and math.isfinite(dp["noise_multiplier"])
    assert math.isfinite(dp["achieved_epsilon"]) and 0.5 * 8.0 < dp["achieved_epsilon"] <= 8.0 * 1.05
    assert dp["delta"] == pytest.approx(64**-1.1) and dp["sample_rate"] == pytest.approx(8 / 64)
    assert dp["max_grad_norm"] == 1.0 and dp["accountant"] == "rdp" and dp["steps"] == 20
    log = read_train_log(out)
    assert log["dp"] == pytest.approx(dp)
    assert log["config"]["dp_epsilon"] == 8.0
    # More noise for a smaller target epsilon, from the same accountant.
    from opacus.accountants.utils import get_noise_multiplier

    sigma_1 = get_noise_multiplier(
        target_epsilon=1.0, target_delta=dp["delta"], sample_rate=dp["sample_rate"], steps=20, accountant="rdp"
    )
    assert sigma_1 > dp["noise_multiplier"]
    assert np.isfinite([v for _, v in result.losses]).all()
    load_target(str(out), device="cpu")  # a DP model is an ordinary target


def test_dp_needs_a_batch_smaller_than_the_data(split_and_members, tmp_path):
    split, members = split_and_members
    with pytest.raises(ValueError, match="batch_size < the number of members"):
        train(members, split, dataclasses.replace(CFG, batch_size=64, dp_epsilon=1.0), tmp_path / "x", device="cpu")


def test_dp_resume_is_bitwise(split_and_members, tmp_path):
    """A DP run cut at step 3 and resumed (Poisson sampling, noise generator, accountant) == the whole run."""
    split, members = split_and_members
    cfg = dataclasses.replace(
        CFG, steps=6, batch_size=8, dp_epsilon=8.0, attention=False, log_every=1, checkpoint_every=3
    )
    whole = tmp_path / "whole"
    saved = tmp_path / "at3"

    def keep_step_3(step, _steps, _loss):  # at step 4 the checkpoint folder still holds step 3
        if step == 4:
            shutil.copytree(whole / "checkpoint", saved)

    first = train(members, split, cfg, whole, device="cpu", progress=keep_step_3)
    assert json.loads((saved / "training_state.json").read_text())["step"] == 3
    resumed = train(members, split, cfg, tmp_path / "resumed", device="cpu", resume_from=saved)
    a, b = _weights(whole), _weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.losses == first.losses
    assert resumed.dp["achieved_epsilon"] == first.dp["achieved_epsilon"] and resumed.dp["steps"] == 6
    with pytest.raises(ValueError, match="config differs"):  # under DP, sigma was set for steps=6
        train(members, split, dataclasses.replace(cfg, steps=9), tmp_path / "x", device="cpu", resume_from=saved)


def test_train_command_parses_back_to_the_same_config():
    import shlex

    from mia_core.cli import _train_config, build_parser
    from mia_core.lab.train import train_command

    cfg = TrainConfig(
        steps=123,
        batch_size=16,
        lr=3e-4,
        warmup_steps=7,
        ema_decay=0.99,
        block_out_channels=(16, 32),
        layers_per_block=1,
        attention=False,
        schedule="cosine",
        augment="strong",
        dp_epsilon=4.0,
        dp_delta=1e-5,
        dp_max_grad_norm=0.5,
        dp_accountant="prv",
        log_every=3,
        seed=9,
    )
    command = train_command("default", "out dir/with space", cfg)
    assert command.startswith("mia train --data default --out 'out dir/with space' --steps 123")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.out == "out dir/with space"
    assert _train_config(args) == cfg
    # defaults stay short: no DP flags, no --log-every
    plain = train_command("default", "o", TrainConfig())
    assert "--dp-" not in plain and "--log-every" not in plain and "--no-attention" not in plain
    assert _train_config(build_parser().parse_args(shlex.split(plain)[1:])) == TrainConfig()


def test_ema_update_matches_the_fused_lerp_bitwise():
    """ema_update (public Tensor.lerp_) gives the bits of the fused multi-tensor lerp it replaced."""
    from mia_core.lab.train import ema_update

    gen = torch.Generator().manual_seed(0)
    shapes = [(16, 3, 3, 3), (16,), (32, 16), (7,)]
    params = [torch.randn(s, generator=gen) for s in shapes]
    ema = [torch.randn(s, generator=gen) for s in shapes]
    fused = [e.clone() for e in ema]
    for decay in (0.999, 0.9, 0.0):
        ema_update(ema, params, decay)
        torch._foreach_lerp_(fused, params, 1.0 - decay)  # the reference only; the library never calls it
        for a, b in zip(ema, fused):
            assert torch.equal(a, b)
    assert torch.equal(ema[0], params[0])  # decay 0 copies the weights


def test_dp_accountant_history_round_trips_through_the_public_api():
    from opacus.accountants import RDPAccountant

    from mia_core.lab.train import DPState

    a = DPState(0.1, 1e-5, 1.2, RDPAccountant(), torch.Generator())
    for _ in range(3):
        a.accountant.step(noise_multiplier=1.2, sample_rate=0.1)
    saved = json.loads(json.dumps(a.history()))  # as a checkpoint stores it
    b = DPState(0.1, 1e-5, 1.2, RDPAccountant(), torch.Generator())
    b.restore_history(saved)
    assert b.history() == [(1.2, 0.1, 3)]
    assert b.accountant.get_epsilon(delta=1e-5) == a.accountant.get_epsilon(delta=1e-5)
    assert b.record(CFG)["steps"] == 3
