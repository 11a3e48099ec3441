"""Train a score-based VE-SDE target (Song et al. 2021, continuous VE; the kind Hu & Pang attack).

The model is a diffusers ``UNet2DModel`` with Gaussian Fourier features of log sigma
(``time_embedding_type="fourier"``, as NCSN++ in diffusers): it is conditioned on sigma and divides
its output by sigma, so ``unet(x, sigma).sample`` is the score s_theta(x, sigma). It is saved with a
``ScoreSdeVeScheduler`` config, so :func:`mia_core.target.load_target` loads it as a
:class:`mia_core.score_sde.ScoreTarget`. Notation as in :mod:`mia_core.score_sde`.

Training objective (score_sde ``losses.py``, continuous VE, no likelihood weighting), per step:

    x       member images in [0, 1] (uint8 / 255), (B, C, H, W)
    t       ~ U(eps, 1), eps = 1e-5;  sigma = sigma_min (sigma_max / sigma_min)^t
    z       ~ N(0, I);  x_t = x + sigma z
    loss    mean over B, C, H, W of (sigma s_theta(x_t, sigma) + z)^2      (DSM with weight sigma^2)

AdamW with linear warm-up, gradient clipping and an EMA of the weights (the EMA is saved and
attacked), as :mod:`mia_core.lab.train` does for DDPMs.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mia_core.data import ImageSet, Split
from mia_core.lab.train import TrainResult, save_pipeline
from mia_core.lazy import MODEL_BUILD_LOCK, diffusers_class
from mia_core.score_sde import VESchedule
from mia_core.target import pick_device


@dataclass(frozen=True)
class VETrainConfig:
    """Everything that decides the trained weights (with the data and the seed).

    sigma_min, sigma_max : the VE noise range in data units ([0, 1] images); sigma_max should be
        about the largest distance between two training images (Song & Ermon 2020): 50 is
        score_sde's CIFAR-10 value, ~8 suffices for 8x8 digits.
    num_timesteps : N, the integer grid the attacks' timesteps index (t_i = eps + (1 - eps) i / (N - 1)).
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
    sigma_min: float = 0.01
    sigma_max: float = 50.0
    num_timesteps: int = 1000
    sampling_eps: float = 1e-5
    seed: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "layers_per_block", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (self.lr > 0 and 0 <= self.ema_decay < 1 and self.grad_clip > 0 and self.warmup_steps >= 0):
            raise ValueError(f"need lr > 0, 0 <= ema_decay < 1, grad_clip > 0, warmup_steps >= 0; got {self}")
        self.schedule()  # validates the sigmas

    def schedule(self) -> VESchedule:
        return VESchedule(
            float(self.sigma_min), float(self.sigma_max), int(self.num_timesteps), float(self.sampling_eps)
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d


def build_score_unet(resolution: int, channels: int, cfg: VETrainConfig) -> Any:
    """A ``UNet2DModel`` conditioned on sigma (Gaussian Fourier features of log sigma, output / sigma)."""
    UNet2DModel = diffusers_class("UNet2DModel")
    n = len(cfg.block_out_channels)
    if resolution % 2 ** (n - 1):
        raise ValueError(f"resolution {resolution} is not divisible by 2^{n - 1} for {n} UNet levels")
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D" if cfg.attention else "DownBlock2D"]
    up = ["AttnUpBlock2D" if cfg.attention else "UpBlock2D"] + ["UpBlock2D"] * (n - 1)
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
        time_embedding_type="fourier",
    )


#: what a VE run did: the DDPM loop's record (out_dir, loss curve, seconds; no DP, no resuming).
VETrainResult = TrainResult


def train_ve(
    members: ImageSet,
    split: Split,
    cfg: VETrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    progress: Callable[[int, int, float], None] | None = None,
) -> VETrainResult:
    """Train on ``members`` (exactly the split's members) and save the EMA score model to ``out_dir``.

    Writes ``unet/`` (safetensors), ``scheduler/scheduler_config.json`` (ScoreSdeVeScheduler),
    ``model_index.json`` (ScoreSdeVePipeline), ``split.json`` and ``train_log.json``.
    ``progress(step, steps, loss)`` every ``cfg.log_every`` steps.
    """
    if set(members.ids) != set(split.member_ids) or members.n != split.n_members:
        raise ValueError("the training images must be exactly the split's members")
    dev = pick_device(device)
    schedule = cfg.schedule()
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    data = ((torch.as_tensor(members.to_unit_range(), dtype=torch.float32) + 1.0) * 0.5).to(dev)  # [0, 1]
    with MODEL_BUILD_LOCK:
        torch.manual_seed(cfg.seed)
        unet = build_score_unet(members.resolution, members.channels, cfg)
    unet = unet.to(dev).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    params, ema_params = list(unet.parameters()), list(ema.parameters())
    losses: list[tuple[int, float]] = []
    running, n_running = 0.0, 0
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * min(1.0, step / max(1, cfg.warmup_steps))
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        t = cfg.sampling_eps + (1.0 - cfg.sampling_eps) * torch.rand(cfg.batch_size, generator=gen, dtype=torch.float64)
        sigma = schedule.sigma(t).to(torch.float32)
        z = torch.randn((cfg.batch_size, *data.shape[1:]), generator=gen)
        sigma, z = sigma.to(dev), z.to(dev)
        x_t = data[idx.to(dev)] + sigma.view(-1, 1, 1, 1) * z
        score = unet(x_t, sigma).sample
        loss = (sigma.view(-1, 1, 1, 1) * score + z).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1.0 - cfg.ema_decay)
        running += float(loss.detach())
        n_running += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            losses.append((step, running / n_running))
            running, n_running = 0.0, 0
            if progress is not None:
                progress(step, cfg.steps, losses[-1][1])
    result = VETrainResult(Path(out_dir), losses, time.perf_counter() - start)
    # the one writer of every training run: unet/, scheduler/ (ScoreSdeVeScheduler), model_index.json
    # (ScoreSdeVePipeline), split.json and train_log.json (with "kind": "ve")
    save_pipeline(ema, schedule, split, cfg, result, result.out_dir, device=str(dev), command=command)
    return result
