"""The training loop (see the package doc for the objective, DP-SGD and EMA), the UNet it trains,
the augmentations, and two measurements: training speed and the denoising loss of a model."""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mia_core.data import ImageSet, Split
from mia_core.lab.train.checkpoint import CHECKPOINT_DIR, LoopState, load_checkpoint, save_checkpoint, save_pipeline
from mia_core.lab.train.config import AUGMENTS, TrainConfig
from mia_core.lab.train.dp import setup_dp
from mia_core.lazy import MODEL_BUILD_LOCK
from mia_core.schedule import q_sample
from mia_core.target import pick_device


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


# -- members on the device ------------------------------------------------------------------


def device_pixels(images: ImageSet, device: torch.device | str) -> torch.Tensor:
    """The images' uint8 pixels (N, H, W, C) as a tensor on ``device`` (lazy images decoded here): what a training
    loop keeps of its members, a quarter of them as float32; :func:`unit_range_rows` converts a batch."""
    pixels = np.asarray(images.images)
    if not pixels.flags.writeable:  # an ImageSet's read-only view (torch warns on those): a copy, 1 byte per pixel
        pixels = pixels.copy()
    return torch.from_numpy(pixels).to(device)


def unit_range_rows(pixels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` ((k,) ints on ``pixels``' device) of uint8 (N, H, W, C) pixels as float32 (k, C, H, W) in
    [-1, 1]: bit for bit the rows of :func:`mia_core.data.images.to_unit_range` of all of them, in the same memory
    layout (channels-last strides for one channel, NCHW-contiguous for three; convolutions read them differently).
    The divisor is a tensor on the device, so no device replaces the division by a multiplication."""
    x = pixels[idx].to(torch.float32)
    x = torch.div(x, torch.tensor(127.5, dtype=torch.float32, device=x.device), out=x).sub_(1.0)
    x = x.permute(0, 3, 1, 2)
    return x if x.is_contiguous() else x.contiguous()


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


@torch.no_grad()
def ema_update(ema_params: Iterable[torch.Tensor], params: Iterable[torch.Tensor], decay: float) -> None:
    """One EMA step in place: ema <- ema + (1 - decay) * (param - ema), i.e. decay * ema + (1 - decay) * param.

    ``Tensor.lerp_`` per parameter: on a CPU the same arithmetic, bit for bit, as the fused
    multi-tensor lerp that ``torch.optim.swa_utils.get_ema_multi_avg_fn`` uses (which is built on a
    private torch function); a test compares the two.
    """
    weight = 1.0 - decay
    for e, p in zip(ema_params, params, strict=True):
        e.lerp_(p, weight)


@dataclass
class TrainResult:
    """What a run did: the output folder, the loss curve [(step, mean loss)], seconds, the DP record."""

    out_dir: Path
    losses: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    dp: dict[str, Any] | None = None
    resumed_at: list[int] = field(default_factory=list)


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
    latents: torch.Tensor | None = None,
    vae: Any = None,
    extra_log: dict[str, Any] | None = None,
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
    latents, vae : latent diffusion (:mod:`mia_core.lab.train.latent`): the UNet trains on ``latents``
        ((N, C', H', W') float32, the members' encodings in ``members``' order) instead of the images,
        and ``vae`` (the AutoencoderKL that made them) is saved beside it in ``vae/``. No augmentation
        (a flipped latent is not the latent of a flipped image) and no DP (the VAE saw the members
        without it, so the guarantee would not hold).
    extra_log : more keys for ``train_log.json`` (the latent run's VAE record).
    """
    if set(members.ids) != set(split.member_ids) or members.n != split.n_members:
        raise ValueError("the training images must be exactly the split's members")
    if latents is not None:
        if (vae is None) or latents.ndim != 4 or latents.shape[0] != members.n:
            raise ValueError(
                f"latents must be (N={members.n}, C, H, W) with their vae, got shape {tuple(latents.shape)}"
            )
        if cfg.augment != "none" or cfg.uses_dp:
            raise ValueError(
                "latent training takes neither augmentation nor DP (augment='none', dp_epsilon=None), got "
                f"augment={cfg.augment!r}, dp_epsilon={cfg.dp_epsilon!r}"
            )
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
    if latents is None:
        # uint8 (N, H, W, C) on the device, converted a batch at a time: 1 byte per pixel, not float32's 4
        data = device_pixels(members, dev)
        shape = (members.channels, members.height, members.width)  # (C, H, W) of a batch's images

        def batch_of(idx: torch.Tensor) -> torch.Tensor:
            return unit_range_rows(data, idx)
    else:
        data = latents.detach().to(dev, torch.float32)
        shape = tuple(int(d) for d in data.shape[1:])

        def batch_of(idx: torch.Tensor) -> torch.Tensor:
            return data[idx]

    n_members = data.shape[0]
    # The initial weights come from torch's global generator: seed it and build under the lock that
    # every model construction in mia_core takes, so a model loading on another thread of the app
    # cannot draw from it in between (the same seed gives the same weights).
    with MODEL_BUILD_LOCK:
        torch.manual_seed(cfg.seed)
        unet = build_unet(int(shape[-1]), int(shape[0]), cfg)
    unet = unet.to(dev).train()
    ema = copy.deepcopy(unet).eval().requires_grad_(False)
    inner_opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.0)
    model, opt, dp = unet, inner_opt, None
    if cfg.uses_dp:
        model, opt, dp = setup_dp(cfg, n_members, unet, inner_opt, dev)

    result = TrainResult(out_dir)
    state = LoopState()
    if resume_from is not None:
        state = load_checkpoint(Path(resume_from), cfg, split, unet, ema, inner_opt, gen, dp)
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
        noise = torch.randn((n, *shape), generator=gen)
        x0 = augment_batch(batch_of(to_device(idx)), cfg.augment, gen)
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
        ema_update(ema_params, params, cfg.ema_decay)
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
                save_pipeline(
                    copy.deepcopy(ema),
                    schedule,
                    split,
                    dataclasses.replace(cfg, steps=step),
                    snap,
                    snap_dir,
                    device=str(dev),
                    command=command,
                    snapshot_of=cfg.steps,
                    vae=vae,
                    extra_log=extra_log,
                )
        if cfg.checkpoint_every and (step % cfg.checkpoint_every == 0 or step == cfg.steps):
            save_checkpoint(
                out_dir / CHECKPOINT_DIR,
                cfg,
                split,
                unet,
                ema,
                inner_opt,
                gen,
                dp,
                LoopState(step, list(result.losses), float(running), n_running, elapsed(), result.resumed_at),
            )
    if step == cfg.steps and cfg.steps % cfg.log_every and progress is not None and n_running:
        progress(cfg.steps, cfg.steps, float(running) / n_running)
    result.losses = curve()
    result.seconds = elapsed()
    result.dp = dp.record(cfg) if dp is not None else None
    save_pipeline(
        ema, schedule, split, cfg, result, out_dir, device=str(dev), command=command, vae=vae, extra_log=extra_log
    )
    return result


def measure_steps_per_second(
    members: ImageSet, split: Split, cfg: TrainConfig, *, device: str | None = None, n_steps: int = 6
) -> float:
    """Training steps per second of this recipe on this machine: a few real steps into a scratch
    folder, timed from the end of step 2 (step 1 pays for warming up). NaN with fewer than 3 steps."""
    import tempfile

    stamps: list[float] = []
    with tempfile.TemporaryDirectory(prefix="mia-train-speed-") as tmp:
        train(
            members,
            split,
            dataclasses.replace(cfg, steps=n_steps, log_every=1),
            tmp,
            device=device,
            progress=lambda *_: stamps.append(time.perf_counter()),
        )
    return (len(stamps) - 2) / max(stamps[-1] - stamps[1], 1e-9) if len(stamps) > 2 else float("nan")


# -- utility of a trained model --------------------------------------------------------------


def denoising_loss(
    target: Any, x0: np.ndarray | torch.Tensor, *, n_draws: int = 4, seed: int = 0, batch_size: int = 256
) -> np.ndarray:
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
