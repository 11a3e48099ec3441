"""Training a target DDPM on the member part of a split, with augmentation, DP-SGD and resuming.

Notation: the DDPM objective (Ho et al. 2020, eq. 14, "L_simple"):

    t ~ U{0, ..., T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    loss = mean (eps - eps_theta(x_t, t))^2           (mean over the batch and C, H, W)

DP-SGD (Abadi et al. 2016, Algorithm 1), through Opacus:

    q         sample rate = batch_size / N: each member joins a step's batch with probability q
              (Poisson sampling, the sampling the privacy accountant assumes)
    C         dp_max_grad_norm: every per-sample gradient g_i is clipped to g_i * min(1, C / |g_i|)
    sigma     noise multiplier: g = (sum_i clip(g_i) + N(0, sigma^2 C^2 I)) / batch_size
    (eps, delta)  the guarantee after ``steps`` such steps; sigma is the smallest one for which
              Opacus' accountant gives eps <= dp_epsilon, and the achieved eps is reported.

Adam(W) with a linear warm-up, gradient clipping (DP-SGD: per-sample clipping instead), and an
exponential moving average (EMA) of the weights; the **EMA weights** are what gets saved and
attacked, as in SecMI / PIA / SimA. The learning rate is constant after the warm-up, so a
snapshot at step s is the model a run of s steps would have given (bit for bit without DP; with
DP the noise multiplier was set for the whole run).

Output: a diffusers pipeline folder (``unet/`` with safetensors, ``scheduler/``,
``model_index.json``) plus ``split.json`` (what it was trained on) and ``train_log.json`` (the
command, config, loss curve and, with DP, the privacy guarantee). With ``checkpoint_every`` a
training checkpoint (safetensors + JSON, no pickles) goes to ``out_dir/checkpoint`` and
``train(..., resume_from=...)`` continues from it exactly.

DP and the UNet: Opacus computes per-sample gradients layer by layer. Its default hook rules
(``grad_sample_mode="hooks"``) cover every layer type of diffusers' ``UNet2DModel`` (Conv2d,
Linear, GroupNorm) but give WRONG gradients for some of its convolutions: Opacus' ``unfold2d``
assumes a contiguous (N, C, H, W) input, and the tensors leaving an attention block are laid out
channels-last (Opacus 1.6; the mid block's and the first up block's convolutions are hit; a test
compares every per-sample gradient with autograd on the sample alone). We therefore use
Opacus' functorch mode (``GradSampleModule(..., force_functorch=True)``: ``torch.func`` vmap of
each layer's own forward), which is exact for every layer, attention included, at about 1.6x
the cost of the hooks on a CPU. ``attention=False`` only makes DP training cheaper.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from mia_core.data import ImageSet, Split
from mia_core.lazy import MODEL_BUILD_LOCK
from mia_core.schedule import NoiseSchedule, q_sample
from mia_core.target import pick_device

SCHEDULES = ("linear", "cosine")
AUGMENTS = ("none", "hflip", "strong")
DP_ACCOUNTANTS = ("rdp", "prv")
CHECKPOINT_FORMAT = "mia-train-checkpoint/1"
CHECKPOINT_DIR = "checkpoint"
_STATE_FILE = "training_state.safetensors"
_STATE_JSON = "training_state.json"
# Fields a resumed run may change; everything else must match the checkpoint.
_RESUMABLE_CHANGES = ("steps", "checkpoint_every")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with the data and the seed).

    The first fields and their defaults are those the shipped default target was trained with.

    schedule : "linear" (betas beta_start..beta_end) or "cosine" (Nichol & Dhariwal; ignores the betas)
    augment : "none", "hflip" (random horizontal flip) or "strong" (random shift by up to 1/8 of
        the size with reflection padding, then a random flip); see :func:`augment_batch`
    hflip : the old spelling of ``augment="hflip"``; kept so old configs and logs load. It is set
        to ``augment == "hflip"`` after validation.
    dp_epsilon : target epsilon of DP-SGD; None trains without DP
    dp_delta : delta of the guarantee; None means 1 / N^1.1 for N members (below 1/N, as a
        meaningful delta must be: 5.6e-4 for the 898 digits, 1.8e-4 for 2,500 CIFAR images)
    dp_max_grad_norm : C, the per-sample gradient clipping norm (replaces ``grad_clip`` under DP)
    dp_accountant : "rdp" (Renyi DP, Mironov 2017; Opacus' classic) or "prv" (tighter, slower)
    checkpoint_every : write a resumable checkpoint every that many steps and at the end (0: never)
    """

    steps: int = 6000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 2
    attention: bool = True
    norm_num_groups: int = 8
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    hflip: bool = False
    seed: int = 0
    log_every: int = 100
    schedule: str = "linear"
    augment: str = "none"
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_timesteps", "log_every", "layers_per_block", "norm_num_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip!r}")
        channels = tuple(int(c) for c in self.block_out_channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"block_out_channels must be positive integers, got {self.block_out_channels!r}")
        bad = [c for c in channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}")
        object.__setattr__(self, "block_out_channels", channels)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.hflip and self.augment not in ("none", "hflip"):
            raise ValueError(f"hflip=True (the old spelling of augment='hflip') conflicts with augment={self.augment!r}")
        object.__setattr__(self, "augment", "hflip" if self.hflip else self.augment)
        object.__setattr__(self, "hflip", self.augment == "hflip")
        if self.dp_epsilon is not None and not (math.isfinite(self.dp_epsilon) and self.dp_epsilon > 0):
            raise ValueError(f"dp_epsilon must be a finite number > 0 or None (no DP), got {self.dp_epsilon!r}")
        if self.dp_delta is not None and not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must be in (0, 1) or None (1 / N^1.1), got {self.dp_delta!r}")
        if not self.dp_max_grad_norm > 0:
            raise ValueError(f"dp_max_grad_norm must be > 0, got {self.dp_max_grad_norm!r}")
        if self.dp_accountant not in DP_ACCOUNTANTS:
            raise ValueError(f"dp_accountant must be one of {DP_ACCOUNTANTS}, got {self.dp_accountant!r}")

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon is not None

    def delta_for(self, n_members: int) -> float:
        """The DP delta for ``n_members`` training images: ``dp_delta``, or 1 / N^1.1 when None."""
        return float(self.dp_delta) if self.dp_delta is not None else 1.0 / float(n_members) ** 1.1

    def make_schedule(self) -> NoiseSchedule:
        if self.schedule == "cosine":
            return NoiseSchedule.cosine(self.num_timesteps)
        return NoiseSchedule.linear(self.num_timesteps, self.beta_start, self.beta_end)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict`; also reads older logs (``hflip`` without ``augment``).

        Unknown keys raise ``ValueError`` naming them.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        values = dict(d)
        if "block_out_channels" in values:
            values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)


def build_unet(resolution: int, channels: int, cfg: TrainConfig) -> Any:
    """A diffusers UNet2DModel; attention (if any) at the lowest resolution only."""
    from mia_core.lazy import diffusers_class

    UNet2DModel = diffusers_class("UNet2DModel")

    n = len(cfg.block_out_channels)
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D" if cfg.attention else "DownBlock2D"]
    up = ["AttnUpBlock2D" if cfg.attention else "UpBlock2D"] + ["UpBlock2D"] * (n - 1)
    if resolution % 2 ** (n - 1):
        raise ValueError(f"resolution {resolution} is not divisible by 2^{n - 1} for {n} UNet levels")
    return UNet2DModel(
        sample_size=resolution,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(cfg.block_out_channels),
        down_block_types=tuple(down),
        up_block_types=tuple(up),
        layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups,
        attention_head_dim=8,
    )


# -- augmentation ----------------------------------------------------------------------------


def shift_reflect(x: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image by (dy, dx) pixels, filling the border by reflection.

    out[n, :, y, x] = reflect(x)[n, :, y - dy_n, x - dx_n]; a positive dx moves the content right.

    Parameters
    ----------
    x : (N, C, H, W)
    shifts : (N, 2) integers in [-pad, pad]: (dy, dx) per image
    pad : the largest shift; must be < H and < W (reflection padding needs that)
    """
    n, _, h, w = x.shape
    if not 0 < pad < min(h, w):
        raise ValueError(f"pad must be in 1..{min(h, w) - 1} for {h}x{w} images, got {pad}")
    if shifts.shape != (n, 2) or int(shifts.abs().max()) > pad:
        raise ValueError(f"shifts must be (N, 2) integers in [-{pad}, {pad}], got shape {tuple(shifts.shape)}")
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect").permute(0, 2, 3, 1)  # (N, H+2p, W+2p, C)
    shifts = shifts.to(x.device, torch.long)
    rows = pad - shifts[:, 0:1] + torch.arange(h, device=x.device)  # (N, H) rows of the padded image
    cols = pad - shifts[:, 1:2] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def augment_batch(x0: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Random augmentation of a batch (N, C, H, W), drawn from ``generator`` (a CPU generator).

    * ``"none"``: x0 unchanged, nothing drawn.
    * ``"hflip"``: each image mirrored left-right with probability 1/2 (one uniform per image).
    * ``"strong"``: each image shifted by (dy, dx), both uniform in -p..p with p = max(1, H // 8)
      (reflection padding, see :func:`shift_reflect`), then mirrored with probability 1/2. Values
      stay in the input's range (pixels are moved, never mixed).
    """
    if kind == "none":
        return x0
    n, _, h, _ = x0.shape
    if kind == "hflip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(x0.device)
        return torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
    if kind == "strong":
        pad = max(1, h // 8)
        shifts = torch.randint(-pad, pad + 1, (n, 2), generator=generator)
        flip = (torch.rand(n, generator=generator) < 0.5).to(x0.device)
        shifted = shift_reflect(x0, shifts, pad)
        return torch.where(flip.view(-1, 1, 1, 1), shifted.flip(-1), shifted)
    raise ValueError(f"augment must be one of {AUGMENTS}, got {kind!r}")


# -- training --------------------------------------------------------------------------------


@dataclass
class TrainResult:
    """What a run did: the output folder, the loss curve [(step, mean loss)], seconds, the DP record."""

    out_dir: Path
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    dp: dict[str, Any] | None = None
    resumed_at: list[int] = field(default_factory=list)


@dataclass
class _DP:
    """The DP-SGD state of one run besides the wrapped model and optimizer: q, delta, sigma, accountant, noise RNG."""

    sample_rate: float
    delta: float
    noise_multiplier: float
    accountant: Any
    noise_generator: torch.Generator

    def record(self, cfg: TrainConfig) -> dict[str, Any]:
        eps = float(self.accountant.get_epsilon(delta=self.delta)) if self.accountant.history else 0.0
        return {
            "target_epsilon": cfg.dp_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": cfg.dp_max_grad_norm,
            "achieved_epsilon": eps,
            "accountant": cfg.dp_accountant,
            "sample_rate": self.sample_rate,
            "steps": sum(int(n) for _, _, n in self.accountant.history),
            "sampling": "Poisson",
            "grad_sample_mode": "functorch",
        }


def _make_accountant(name: str) -> Any:
    from opacus.accountants import PRVAccountant, RDPAccountant

    return RDPAccountant() if name == "rdp" else PRVAccountant()


def make_grad_sample_module(unet: Any) -> Any:
    """Opacus' per-sample-gradient wrapper as DP training uses it (functorch mode; see the module doc).

    After ``loss.backward()`` on a batch mean, each parameter's ``grad_sample`` (N, *shape) holds
    the gradient of each sample's own loss.
    """
    from opacus import GradSampleModule

    return GradSampleModule(unet, batch_first=True, loss_reduction="mean", strict=True, force_functorch=True)


def _setup_dp(cfg: TrainConfig, n_members: int, unet: Any, opt: torch.optim.Optimizer, device: torch.device):
    """Wrap the UNet and the optimizer for DP-SGD; the noise multiplier comes from Opacus' accountant."""
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer

    sample_rate = cfg.batch_size / n_members
    if sample_rate >= 1:
        raise ValueError(f"DP-SGD needs batch_size < the number of members (sample rate q = batch_size / N); "
                         f"got batch_size {cfg.batch_size} for {n_members} members")
    delta = cfg.delta_for(n_members)
    sigma = float(get_noise_multiplier(target_epsilon=cfg.dp_epsilon, target_delta=delta, sample_rate=sample_rate,
                                       steps=cfg.steps, accountant=cfg.dp_accountant))
    model = make_grad_sample_module(unet)
    noise_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    dp_opt = DPOptimizer(opt, noise_multiplier=sigma, max_grad_norm=cfg.dp_max_grad_norm,
                         expected_batch_size=cfg.batch_size, loss_reduction="mean", generator=noise_generator)
    dp = _DP(sample_rate, delta, sigma, _make_accountant(cfg.dp_accountant), noise_generator)
    return model, dp_opt, dp


def train(
    members: ImageSet,
    split: Split,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
    resume_from: str | Path | None = None,
    snapshot_steps: Iterable[int] = (),
    snapshot_dir: Callable[[int], str | Path] | None = None,
) -> TrainResult:
    """Train on ``members`` (the split's member images) and save the EMA model to ``out_dir``.

    Parameters
    ----------
    members : ImageSet holding exactly ``split.member_ids`` (uint8 (N, H, W, C)).
    split : the split trained on; saved as ``out_dir/split.json``.
    cfg : TrainConfig
    device : "cpu", "cuda", or None / "auto" (CUDA when present). On CUDA matmuls use TF32.
    progress : called as ``progress(step, steps, loss)`` every ``cfg.log_every`` steps and at the end.
    resume_from : a checkpoint folder (or an output folder holding ``checkpoint/``) written by a run
        with the same config except ``steps`` / ``checkpoint_every`` (under DP ``steps`` too must
        match) on the same members; training continues from its step. On a CPU the result is
        bitwise the one of an uninterrupted run.
    snapshot_steps : steps at which the EMA model is also saved as a full model folder (with its
        split, and a log truncated at that step); ``snapshot_dir(step)`` names the folder (default
        ``out_dir/snapshots/step-<step>``).
    """
    if set(members.ids) != set(split.member_ids) or members.n != split.n_members:
        raise ValueError("the training images must be exactly the split's members")
    out_dir = Path(out_dir)
    snapshots = sorted({int(s) for s in snapshot_steps})
    if snapshots and not 1 <= snapshots[0] <= snapshots[-1] <= cfg.steps:
        raise ValueError(f"snapshot_steps must lie in 1..{cfg.steps}, got {snapshots}")
    name_snapshot = snapshot_dir or (lambda s: out_dir / "snapshots" / f"step-{s}")
    dev = pick_device(device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    schedule = cfg.make_schedule()
    data = torch.as_tensor(members.to_unit_range(), dtype=torch.float32).to(dev)  # (N, C, H, W)
    n_members = data.shape[0]
    # The initial weights come from torch's global generator: seed it and build under the lock that
    # every model construction in mia_core takes, so a model loading on another thread of the app
    # cannot draw from it in between (the same seed gives the same weights).
    with MODEL_BUILD_LOCK:
        torch.manual_seed(cfg.seed)
        unet = build_unet(members.resolution, members.channels, cfg)
    unet = unet.to(dev).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    inner_opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    model, opt, dp = unet, inner_opt, None
    if cfg.uses_dp:
        model, opt, dp = _setup_dp(cfg, n_members, unet, inner_opt, dev)

    result = TrainResult(out_dir)
    state = _LoopState()
    if resume_from is not None:
        state = _load_checkpoint(Path(resume_from), cfg, split, unet, ema, inner_opt, gen, dp)
        result.resumed_at = state.resumed_at + [state.step]
    result.losses = list(state.losses)
    running = torch.tensor(state.running_sum, dtype=torch.float32, device=dev)
    n_running = state.running_n
    start = time.perf_counter() - state.seconds
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    abar_table = schedule.alphas_cumprod.to(dev)  # float64, cast per batch as q_sample does

    def to_device(x: torch.Tensor) -> torch.Tensor:
        # On a GPU: pinned memory and an asynchronous copy, so the CPU draws the next batch
        # while the GPU still works on this one (a plain copy would wait for the GPU).
        return x.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else x

    def elapsed() -> float:
        return time.perf_counter() - start

    def curve() -> list[tuple[int, float]]:  # the logged means plus the unfinished window, if any
        tail = [(step, float(running) / n_running)] if n_running else []
        return result.losses + tail

    step = state.step
    for step in range(state.step + 1, cfg.steps + 1):
        # 1. The learning rate: linear warm-up, then constant (step is 1-based).
        for group in inner_opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, step / max(1, cfg.warmup_steps))
        # 2. A batch of members, timesteps and noise, all from the seeded CPU generator. DP-SGD
        #    draws a Poisson batch (each member with probability q), the setting its accountant assumes.
        if dp is None:
            idx = torch.randint(0, n_members, (cfg.batch_size,), generator=gen)
        else:
            idx = (torch.rand(n_members, generator=gen) < dp.sample_rate).nonzero().squeeze(1)
        n = idx.shape[0]
        t = torch.randint(0, cfg.num_timesteps, (n,), generator=gen)
        noise = torch.randn((n, *data.shape[1:]), generator=gen)
        x0 = augment_batch(data[to_device(idx)], cfg.augment, gen)
        t, noise = to_device(t), to_device(noise)
        # 3. L_simple (x_t as in q_sample, DDPM eq. 4; t < T by construction, so no range check and
        #    no GPU sync) and one optimiser step (DP: per-sample clipping and noise inside opt.step()).
        opt.zero_grad(set_to_none=True)
        if n > 0:
            abar = abar_table[t].to(torch.float32).view(-1, 1, 1, 1)
            x_t = abar.sqrt() * x0 + (1.0 - abar).sqrt() * noise
            pred = model(x_t, t).sample
            loss = F.mse_loss(pred, noise)
            loss.backward()
            running += loss.detach()  # stays on the device: no sync per step
            n_running += 1
        else:  # an empty Poisson batch: DP-SGD still takes a (pure noise) step
            for p in params:
                p.grad_sample = torch.zeros((0, *p.shape), device=p.device)
        if dp is None:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if dp is not None:
            dp.accountant.step(noise_multiplier=dp.noise_multiplier, sample_rate=dp.sample_rate)
        # 4. EMA of the weights (what is saved and attacked).
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - cfg.ema_decay)
        # 5. Logging, snapshots, checkpoints.
        if step % cfg.log_every == 0 and n_running:
            result.losses.append((step, float(running) / n_running))
            running.zero_()
            n_running = 0
            if progress is not None:
                progress(step, cfg.steps, result.losses[-1][1])
        if step in snapshots:
            snap_dir = Path(name_snapshot(step))
            if snap_dir.resolve() != out_dir.resolve():
                snap = TrainResult(snap_dir, curve(), elapsed(), dp.record(cfg) if dp else None, result.resumed_at)
                save_pipeline(copy.deepcopy(ema), schedule, split, dataclasses.replace(cfg, steps=step), snap,
                              snap_dir, device=str(dev), command=command, snapshot_of=cfg.steps)
        if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            _save_checkpoint(out_dir / CHECKPOINT_DIR, cfg, split, unet, ema, inner_opt, gen, dp,
                             _LoopState(step, list(result.losses), float(running), n_running, elapsed(),
                                        result.resumed_at))
    if step == cfg.steps and cfg.steps % cfg.log_every and progress is not None and n_running:
        progress(cfg.steps, cfg.steps, float(running) / n_running)
    result.losses = curve()
    result.seconds = elapsed()
    result.dp = dp.record(cfg) if dp is not None else None
    save_pipeline(ema, schedule, split, cfg, result, out_dir, device=str(dev), command=command)
    return result


def save_pipeline(unet: Any, schedule: NoiseSchedule, split: Split, cfg: TrainConfig, result: TrainResult,
                  out_dir: Path, *, device: str, command: str, snapshot_of: int | None = None) -> None:
    """Write the diffusers pipeline folder, the split manifest and the training log."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out_dir / "unet", safe_serialization=True)
    (out_dir / "scheduler").mkdir(exist_ok=True)
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(schedule.to_scheduler_config(), indent=2))
    (out_dir / "model_index.json").write_text(json.dumps(
        {"_class_name": "DDPMPipeline", "scheduler": ["diffusers", "DDPMScheduler"], "unet": ["diffusers", "UNet2DModel"]},
        indent=2))
    split.save(out_dir / "split.json")
    log = {
        "command": command,
        "config": cfg.to_dict(),
        "device": device,
        "seconds": round(result.seconds, 1),
        "weights": "EMA",
        "n_members": split.n_members,
        "data_fingerprint": split.data_fingerprint,
        "loss_curve": [[s, round(v, 6)] for s, v in result.losses],
        "dp": result.dp,
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    if result.resumed_at:
        log["resumed_at"] = list(result.resumed_at)
    if snapshot_of is not None:
        log["snapshot_of"] = {"steps": snapshot_of,
                              "note": f"EMA weights at step {cfg.steps} of a {snapshot_of}-step run"}
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))


def train_command(data: str, out: str, cfg: TrainConfig) -> str:
    """The ``mia train`` command line that trains exactly ``cfg`` on ``data`` into ``out``.

    Every flag that changes the weights is spelled out; ``--log-every`` only when it differs from
    the default (it sets the loss curve's resolution, not the weights).
    """
    import shlex

    defaults = TrainConfig()
    args: list[Any] = [
        "mia", "train", "--data", data, "--out", out, "--steps", cfg.steps, "--batch-size", cfg.batch_size,
        "--lr", f"{cfg.lr:g}", "--warmup-steps", cfg.warmup_steps, "--ema-decay", f"{cfg.ema_decay:g}",
        "--channels", ",".join(map(str, cfg.block_out_channels)), "--layers-per-block", cfg.layers_per_block,
        "--schedule", cfg.schedule, "--augment", cfg.augment,
    ]
    if not cfg.attention:
        args.append("--no-attention")
    if cfg.dp_epsilon is not None:
        args += ["--dp-epsilon", f"{cfg.dp_epsilon:g}"]
        if cfg.dp_delta is not None:
            args += ["--dp-delta", f"{cfg.dp_delta:g}"]
        args += ["--dp-max-grad-norm", f"{cfg.dp_max_grad_norm:g}"]
        if cfg.dp_accountant != defaults.dp_accountant:
            args += ["--dp-accountant", cfg.dp_accountant]
    if cfg.log_every != defaults.log_every:
        args += ["--log-every", cfg.log_every]
    args += ["--seed", cfg.seed]
    return " ".join(shlex.quote(str(a)) for a in args)


def measure_steps_per_second(members: ImageSet, split: Split, cfg: TrainConfig, *, device: str | None = None,
                             n_steps: int = 6) -> float:
    """Training steps per second of this recipe on this machine: a few real steps into a scratch
    folder, timed from the end of step 2 (step 1 pays for warming up). NaN with fewer than 3 steps."""
    import tempfile

    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mia-train-speed-") as tmp:
        train(members, split, dataclasses.replace(cfg, steps=n_steps, log_every=1), tmp, device=device,
              progress=lambda *_: stamps.append(time.perf_counter()))
    return (len(stamps) - 2) / max(stamps[-1] - stamps[1], 1e-9) if len(stamps) > 2 else float("nan")


def read_train_log(folder: str | Path) -> dict[str, Any] | None:
    """A model folder's ``train_log.json`` (or its parent's, for a ``unet/`` folder), None if it has none.

    Logs of older versions are brought up to date: ``config.augment`` is filled in from
    ``config.hflip`` and ``dp`` is None when absent. With DP, ``log["dp"]`` holds
    ``target_epsilon, delta, noise_multiplier, max_grad_norm, achieved_epsilon, accountant,
    sample_rate`` (see :func:`train`). A log that is not valid JSON raises ``ValueError`` naming it.
    """
    folder = Path(folder)
    for path in (folder / "train_log.json", folder.parent / "train_log.json"):
        if path.is_file():
            break
    else:
        return None
    try:
        log = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"training log {path} is not valid JSON: {err}") from err
    if not isinstance(log, dict):
        raise ValueError(f"training log {path} is not a JSON object")
    config = log.get("config")
    if isinstance(config, dict) and "augment" not in config:
        config["augment"] = "hflip" if config.get("hflip") else "none"
    log.setdefault("dp", None)
    return log


# -- checkpoints -----------------------------------------------------------------------------


@dataclass
class _LoopState:
    step: int = 0
    losses: list[tuple[int, float]] = field(default_factory=list)
    running_sum: float = 0.0
    running_n: int = 0
    seconds: float = 0.0
    resumed_at: list[int] = field(default_factory=list)


def _members_digest(split: Split) -> str:
    return hashlib.sha256("\n".join(split.member_ids).encode()).hexdigest()[:16]


def _save_checkpoint(folder: Path, cfg: TrainConfig, split: Split, unet: Any, ema: Any,
                     opt: torch.optim.Optimizer, gen: torch.Generator, dp: _DP | None, state: _LoopState) -> None:
    """Model, EMA, optimizer moments and RNG states as safetensors; the rest as JSON (no pickles).

    Files are written under temporary names and renamed, the JSON last, so a run killed while
    saving leaves the previous checkpoint readable (the step is in both files and must agree).
    """
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, value in unet.state_dict().items():
        tensors[f"unet.{name}"] = value.detach().cpu().contiguous()
    for name, value in ema.state_dict().items():
        tensors[f"ema.{name}"] = value.detach().cpu().contiguous()
    opt_state = opt.state_dict()
    for index, param_state in opt_state["state"].items():
        for key, value in param_state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    tensors["rng.batches"] = gen.get_state()
    if dp is not None:
        tensors["rng.dp_noise"] = dp.noise_generator.get_state().cpu()
    tmp = folder / (_STATE_FILE + ".tmp")
    save_file(tensors, str(tmp), metadata={"step": str(state.step)})
    os.replace(tmp, folder / _STATE_FILE)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "step": state.step,
        "config": cfg.to_dict(),
        "members_digest": _members_digest(split),
        "n_members": split.n_members,
        "losses": [[s, v] for s, v in state.losses],
        "running_sum": state.running_sum,
        "running_n": state.running_n,
        "seconds": state.seconds,
        "resumed_at": state.resumed_at,
        "dp_accountant_history": [list(h) for h in dp.accountant.history] if dp is not None else None,
        "torch": torch.__version__,
    }
    tmp_json = folder / (_STATE_JSON + ".tmp")
    tmp_json.write_text(json.dumps(meta, indent=1))
    os.replace(tmp_json, folder / _STATE_JSON)


def _load_checkpoint(folder: Path, cfg: TrainConfig, split: Split, unet: Any, ema: Any,
                     opt: torch.optim.Optimizer, gen: torch.Generator, dp: _DP | None) -> _LoopState:
    from safetensors import safe_open
    from safetensors.torch import load_file

    if (folder / CHECKPOINT_DIR / _STATE_JSON).is_file():
        folder = folder / CHECKPOINT_DIR
    meta_path, state_path = folder / _STATE_JSON, folder / _STATE_FILE
    if not meta_path.is_file() or not state_path.is_file():
        raise ValueError(f"no training checkpoint in {folder} (expected {_STATE_JSON} and {_STATE_FILE})")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{meta_path}: unsupported checkpoint format {meta.get('format')!r}")
    with safe_open(str(state_path), framework="pt") as fh:
        tensor_step = int((fh.metadata() or {}).get("step", -1))
    if tensor_step != meta["step"]:
        raise ValueError(f"{folder}: the tensors are of step {tensor_step} but the JSON of step {meta['step']} "
                         "(a save was interrupted); resume from an earlier copy or start again")
    saved_cfg = TrainConfig.from_dict(meta["config"])
    allowed = () if cfg.uses_dp else _RESUMABLE_CHANGES  # DP: sigma was set for the whole run's steps
    allowed = allowed + ("checkpoint_every",)
    differ = [f.name for f in dataclasses.fields(cfg)
              if f.name not in allowed and getattr(cfg, f.name) != getattr(saved_cfg, f.name)]
    if differ:
        diffs = ", ".join(f"{k}: {getattr(saved_cfg, k)!r} -> {getattr(cfg, k)!r}" for k in differ)
        raise ValueError(f"cannot resume from {folder}: the config differs ({diffs})")
    if meta["members_digest"] != _members_digest(split):
        raise ValueError(f"cannot resume from {folder}: it was trained on other members")
    if meta["step"] > cfg.steps:
        raise ValueError(f"cannot resume from {folder}: it is at step {meta['step']}, beyond steps={cfg.steps}")

    tensors = load_file(str(state_path))
    unet.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("unet.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            opt_state.setdefault(int(index), {})[name] = value
    # The hyper-parameters come from cfg (checked equal above) and the lr is set every step.
    opt.load_state_dict({"state": opt_state, "param_groups": opt.state_dict()["param_groups"]})
    gen.set_state(tensors["rng.batches"])
    if dp is not None:
        dp.noise_generator.set_state(tensors["rng.dp_noise"])
        dp.accountant.history = [tuple(h) for h in meta["dp_accountant_history"] or []]
    return _LoopState(int(meta["step"]), [(int(s), float(v)) for s, v in meta["losses"]], float(meta["running_sum"]),
                      int(meta["running_n"]), float(meta["seconds"]), list(meta.get("resumed_at", [])))


# -- utility of a trained model --------------------------------------------------------------


def denoising_loss(target: Any, x0: np.ndarray | torch.Tensor, *, n_draws: int = 4, seed: int = 0,
                   batch_size: int = 256) -> np.ndarray:
    """Per-image L_simple of a target: mean over ``n_draws`` (t, eps) draws of mean_{C,H,W} (eps - eps_theta)^2.

    The training objective evaluated on given images (the same per-pixel mean as the loss curve;
    about 1 for a model that predicts nothing). t ~ U{0..T-1} and eps ~ N(0, I) come from a
    generator seeded with ``seed``, drawn for all images up front, so the same images get the same
    draws whatever the model or batch size: differences between models are not draw noise.

    Parameters
    ----------
    target : a :class:`~mia_core.target.Target`
    x0 : (N, C, H, W) float images in [-1, 1]

    Returns
    -------
    (N,) float64 array.
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be an integer >= 1, got {n_draws!r}")
    x0 = torch.as_tensor(np.asarray(x0), dtype=torch.float32)
    n = x0.shape[0]
    gen = torch.Generator().manual_seed(seed)
    t_all = torch.randint(0, target.schedule.num_timesteps, (n, n_draws), generator=gen)
    noise_all = torch.randn((n, n_draws, *x0.shape[1:]), generator=gen)
    out = np.empty(n, dtype=np.float64)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        b = hi - lo
        x = x0[lo:hi].repeat_interleave(n_draws, 0)  # (b * n_draws, C, H, W), draws of one image adjacent
        t = t_all[lo:hi].reshape(-1)
        noise = noise_all[lo:hi].reshape(b * n_draws, *x0.shape[1:])
        pred = target.eps(q_sample(target.schedule, x, t, noise), t).cpu()
        err = (pred - noise).square().mean(dim=(1, 2, 3)).double().view(b, n_draws)
        out[lo:hi] = err.mean(dim=1).numpy()
    return out
