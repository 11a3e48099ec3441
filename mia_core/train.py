"""Training a target DDPM on the member part of a split (a minimal trainer; see issue 7 for the full one).

Notation: the DDPM objective (Ho et al. 2020, eq. 14, "L_simple"):

    t ~ U{0, ..., T-1}, eps ~ N(0, I), x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    loss = mean (eps - eps_theta(x_t, t))^2

Adam(W) with a linear warm-up, gradient clipping, and an exponential moving average (EMA) of the
weights; the **EMA weights** are what gets saved and attacked, as in SecMI / PIA / SimA.
Output: a diffusers pipeline folder (``unet/`` with safetensors, ``scheduler/``,
``model_index.json``) plus ``split.json`` (what it was trained on) and ``train_log.json``.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .data import ImageSet, Split
from .schedule import NoiseSchedule, q_sample
from .target import pick_device


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with the data and the seed)."""

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

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_timesteps", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")


def build_unet(resolution: int, channels: int, cfg: TrainConfig) -> Any:
    """A diffusers UNet2DModel; attention (if any) at the lowest resolution only."""
    from diffusers import UNet2DModel

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


@dataclass
class TrainResult:
    out_dir: Path
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0


def train(
    members: ImageSet,
    split: Split,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train on ``members`` (the split's member images) and save the EMA model to ``out_dir``.

    Parameters
    ----------
    members : ImageSet holding exactly ``split.member_ids`` (uint8 (N, H, W, C)).
    split : the split trained on; saved as ``out_dir/split.json``.
    cfg : TrainConfig
    progress : called as ``progress(step, steps, loss)`` every ``cfg.log_every`` steps.
    """
    if set(members.ids) != set(split.member_ids):
        raise ValueError("the training images must be exactly the split's members")
    dev = pick_device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    schedule = NoiseSchedule.linear(cfg.num_timesteps, cfg.beta_start, cfg.beta_end)
    data = torch.as_tensor(members.to_unit_range(), dtype=torch.float32).to(dev)  # (N, C, H, W)
    unet = build_unet(members.resolution, members.channels, cfg).to(dev).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched_lr = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, cfg.warmup_steps)))
    result = TrainResult(Path(out_dir))
    start, running = time.perf_counter(), torch.zeros((), device=dev)
    for step in range(1, cfg.steps + 1):
        # 1. A batch of members, timesteps and noise, all from the seeded CPU generator.
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        t = torch.randint(0, cfg.num_timesteps, (cfg.batch_size,), generator=gen)
        noise = torch.randn((cfg.batch_size, *data.shape[1:]), generator=gen)
        x0 = data[idx.to(dev)]
        if cfg.hflip:
            flip = (torch.rand(cfg.batch_size, generator=gen) < 0.5).to(dev)
            x0 = torch.where(flip.view(-1, 1, 1, 1), x0.flip(-1), x0)
        t, noise = t.to(dev), noise.to(dev)
        # 2. L_simple and one optimiser step.
        pred = unet(q_sample(schedule, x0, t, noise), t).sample
        loss = torch.nn.functional.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), cfg.grad_clip)
        opt.step()
        sched_lr.step()
        # 3. EMA of the weights (what is saved and attacked).
        with torch.no_grad():
            for p_ema, p in zip(ema.parameters(), unet.parameters()):
                p_ema.lerp_(p, 1.0 - cfg.ema_decay)
        running += loss.detach()  # stays on the device: no sync per step
        if step % cfg.log_every == 0 or step == cfg.steps:
            n_logged = step % cfg.log_every or cfg.log_every
            result.losses.append((step, float(running) / n_logged))
            running.zero_()
            if progress is not None:
                progress(step, cfg.steps, result.losses[-1][1])
    result.seconds = time.perf_counter() - start
    save_pipeline(ema, schedule, split, cfg, result, Path(out_dir), device=str(dev), command=command)
    return result


def save_pipeline(unet: Any, schedule: NoiseSchedule, split: Split, cfg: TrainConfig, result: TrainResult,
                  out_dir: Path, *, device: str, command: str) -> None:
    """Write the diffusers pipeline folder, the split manifest and the training log."""
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
        "config": asdict(cfg),
        "device": device,
        "seconds": round(result.seconds, 1),
        "weights": "EMA",
        "n_members": split.n_members,
        "data_fingerprint": split.data_fingerprint,
        "loss_curve": [[s, round(v, 6)] for s, v in result.losses],
        "torch": torch.__version__,
        "numpy": np.__version__,
    }
    (out_dir / "train_log.json").write_text(json.dumps(log, indent=1))
