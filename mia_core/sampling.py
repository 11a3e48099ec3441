"""Samples from the target and their nearest training images: direct evidence of memorisation.

``ddim_sample`` draws images with deterministic DDIM (eta = 0, Song et al. 2021) from seeded
Gaussian noise, with diffusers' ``DDIMScheduler`` built from the model's own scheduler config
(:func:`sampling_scheduler`), so generation follows the model as its authors' pipeline would:

    timesteps  diffusers' grid for S steps and the config's ``timestep_spacing`` / ``steps_offset``
               (e.g. "leading", S = 50: 980, 960, ..., 0; "trailing": 999, 979, ..., 19)
    x          x_{tau_0} ~ N(0, I), one seeded generator per sample
    step       out = the network's output (eps, v or x0_hat: ``prediction_type``, converted by the
               scheduler with the same formulas as ``Target.to_epsilon``); x0_hat clipped to
               +-``clip_sample_range`` only if the config says ``clip_sample`` (or dynamically
               thresholded with ``thresholding``); x <- sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev) eps
    output     the last prev_sample (abar_prev = 1 at the end with ``set_alpha_to_one``), decoded by
               the VAE for a latent target, as uint8 (N, H, W, C)

A score-based VE-SDE target (:class:`mia_core.score_sde.ScoreTarget`) is sampled as its authors'
pipeline (diffusers' ``ScoreSdeVePipeline``, Song et al. 2021, Algorithm 2) does, with diffusers'
``ScoreSdeVeScheduler`` built from the model's own scheduler config (:func:`sampling_scheduler`):

    times      t_j = linspace(1, sampling_eps, S), sigma_j = sigma_min (sigma_max / sigma_min)^t_j
    x          x ~ N(0, sigma_max^2 I) (``init_noise_sigma``), in the model's data space
    step j     ``correct_steps`` Langevin corrector steps at sigma_j (``step_correct``, step size from
               the config's ``snr``), then one reverse-diffusion predictor step (``step_pred``); every
               UNet call gets sigma_j as a float tensor, through ``ScoreTarget.score``
    output     the last predictor mean, clamped to [0, 1] as the pipeline does, mapped to [-1, 1]

so a VE sample costs S (1 + correct_steps) UNet calls. The noise of sample i comes from its own
seeded generator (diffusers' schedulers take one generator per batch row), but the corrector's step
size is diffusers' (from the batch's mean score norm): the same (n, steps, seed, batch size) gives
the same images, and a sample can change with the batch it is drawn in.

A config without ``clip_sample`` clips only when it is a DDPM or DDIM config (their default): a
PNDM / Euler / ... config never clipped, and DDIMScheduler.from_config would otherwise turn
clipping on (a trap for Stable-Diffusion-style latents).

``nearest_neighbours`` finds, for each sample, the closest reference images by L2 distance in
pixel space (uint8 values as floats), with one matrix product, no loop over pixels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .data.images import to_uint8
from .target import Target

#: UNet inputs per forward pass: 2^16 input pixels on a CPU, 2^22 on a GPU.
_CPU_BATCH_PIXELS = 2**16
_GPU_BATCH_PIXELS = 2**22


def ddim_timesteps(num_timesteps: int, steps: int) -> np.ndarray:
    """``steps`` evenly spaced 0-based timesteps from T-1 down to 0 (int64, strictly decreasing)."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > num_timesteps:
        raise ValueError(f"steps must be <= the schedule's {num_timesteps} timesteps, got {steps}")
    if steps == 1:
        return np.asarray([num_timesteps - 1], dtype=np.int64)
    return np.rint(np.linspace(num_timesteps - 1, 0, int(steps))).astype(np.int64)


def _sample_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"ddim:{int(seed)}:{int(index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def initial_noise(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """x_T for samples 0 .. n-1: (n, C, H, W) float32 on the CPU, sample i from its own generator.

    Sample i is the same whatever n is (asking for 8 samples gives the first 4 of 4 and 4 more).
    """
    out = torch.empty((n, *shape), dtype=torch.float32)
    gen = torch.Generator()
    for i in range(n):  # one generator per sample, not a loop over pixels
        gen.manual_seed(_sample_seed(seed, i))
        out[i] = torch.randn(shape, generator=gen)
    return out


def _is_score_sde(target: Target) -> bool:
    return getattr(target, "kind", "ddpm") == "ve-sde"


def sampling_scheduler(target: Target, steps: int) -> Any:
    """diffusers' DDIMScheduler from the model's scheduler config, with ``steps`` timesteps set; for a
    VE-SDE target its ``ScoreSdeVeScheduler`` (timesteps and sigmas set for ``steps`` steps).

    The target's own ``prediction_type`` is used; a target without a config (built in memory) uses
    its schedule's :meth:`~mia_core.schedule.NoiseSchedule.to_scheduler_config`.
    """
    from .lazy import diffusers_class

    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > target.schedule.num_timesteps:
        raise ValueError(f"steps must be <= the schedule's {target.schedule.num_timesteps} timesteps, got {steps}")
    source = dict(target.scheduler_config) if target.scheduler_config else target.schedule.to_scheduler_config()
    if _is_score_sde(target):
        scheduler = diffusers_class("ScoreSdeVeScheduler").from_config(
            {k: v for k, v in source.items() if not k.startswith("_")}
        )
        scheduler.set_timesteps(int(steps))
        scheduler.set_sigmas(int(steps))
        return scheduler
    cls_name = source.get("_class_name", "DDPMScheduler")
    config = {k: v for k, v in source.items() if not k.startswith("_")}
    config.setdefault("clip_sample", cls_name in ("DDPMScheduler", "DDIMScheduler"))
    config["prediction_type"] = target.prediction_type
    scheduler = diffusers_class("DDIMScheduler").from_config(config)
    scheduler.set_timesteps(int(steps))
    return scheduler


def unet_calls_per_step(target: Target) -> int:
    """UNet calls per sampling step: 1 for DDIM, 1 + ``correct_steps`` for a VE-SDE's predictor-corrector."""
    if not _is_score_sde(target):
        return 1
    cfg = target.scheduler_config or target.schedule.to_scheduler_config()
    return 1 + int(cfg.get("correct_steps", 1))


def sampler_description(target: Target, steps: int) -> str:
    """One line: which sampler :func:`generate` uses on ``target`` with ``steps`` steps, and its cost."""
    if _is_score_sde(target):
        cfg = target.scheduler_config or target.schedule.to_scheduler_config()
        calls = unet_calls_per_step(target)
        return (
            f"predictor-corrector (diffusers' ScoreSdeVeScheduler from the model's config: {steps} reverse-diffusion "
            f"steps from sigma_max {float(cfg.get('sigma_max', target.schedule.sigma_max)):g}, each with "
            f"{calls - 1} Langevin corrector step(s) at snr {float(cfg.get('snr', 0.15)):g}): {calls} UNet calls per step"
        )
    return f"deterministic DDIM (eta = 0, diffusers' DDIMScheduler from the model's config), {steps} steps: 1 UNet call each"


def _generate_ve(
    target: Target,
    n: int,
    steps: int,
    seed: int,
    batch_size: int | None,
    progress: Callable[[int, int], None] | None,
) -> torch.Tensor:
    """VE-SDE predictor-corrector samples (module doc): (n, C, H, W) float32 CPU, in [-1, 1]."""
    scheduler = sampling_scheduler(target, steps)
    shape = tuple(target.model_shape)
    budget = _GPU_BATCH_PIXELS if target.device.type == "cuda" else _CPU_BATCH_PIXELS
    bs = int(batch_size) if batch_size else max(1, budget // int(np.prod(shape)))
    x_all = initial_noise(int(n), shape, seed)
    correct = unet_calls_per_step(target) - 1
    n_batches = -(-int(n) // bs)
    total, done = n_batches * len(scheduler.timesteps), 0
    out = []
    with torch.inference_mode():
        for start in range(0, int(n), bs):
            x = x_all[start : start + bs] * float(scheduler.init_noise_sigma)
            gens = [torch.Generator().manual_seed(_sample_seed(seed + 1, start + i)) for i in range(x.shape[0])]
            mean = x
            for j, t in enumerate(scheduler.timesteps):
                sigma = torch.full((x.shape[0],), float(scheduler.sigmas[j]))
                for _ in range(correct):
                    x = scheduler.step_correct(target.score(x, sigma).cpu(), x, generator=gens).prev_sample
                step = scheduler.step_pred(target.score(x, sigma).cpu(), t, x, generator=gens)
                x, mean = step.prev_sample, step.prev_sample_mean
                done += 1
                if progress is not None:
                    progress(done, total)
            out.append(target.from_data(mean.clamp(0.0, 1.0)).to("cpu", torch.float32))
    return torch.cat(out)


def generate(
    target: Target,
    n: int,
    steps: int = 50,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """``n`` images from deterministic DDIM (module doc): (n, C, H, W) float32 on the CPU, roughly
    in [-1, 1] (not clipped beyond what the model's config asks), decoded for a latent target. A VE-SDE
    target is sampled with its predictor-corrector instead (module doc), clamped to [-1, 1]."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if _is_score_sde(target):
        return _generate_ve(target, int(n), steps, seed, batch_size, progress)
    scheduler = sampling_scheduler(target, steps)
    ts = [int(t) for t in scheduler.timesteps]
    shape = tuple(target.model_shape)
    pixels = int(np.prod(shape))
    budget = _GPU_BATCH_PIXELS if target.device.type == "cuda" else _CPU_BATCH_PIXELS
    bs = int(batch_size) if batch_size else max(1, budget // pixels)
    x_all = initial_noise(int(n), shape, seed)
    out = []
    n_batches = -(-int(n) // bs)
    total, done = n_batches * len(ts), 0
    with torch.inference_mode():
        for start in range(0, int(n), bs):
            x = x_all[start : start + bs].to(target.device) * float(scheduler.init_noise_sigma)
            for t in ts:
                model_out = target.model_output(x, t)
                x = scheduler.step(model_out, t, x, eta=0.0).prev_sample
                done += 1
                if progress is not None:
                    progress(done, total)
            out.append(target.decode(x).to("cpu", torch.float32))
    return torch.cat(out)


def ddim_sample(
    target: Target,
    n: int,
    steps: int = 50,
    seed: int = 0,
    *,
    batch_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Generate ``n`` images with deterministic DDIM (eta = 0), ``steps`` UNet calls each (a VE-SDE
    target: its predictor-corrector sampler, ``steps`` x :func:`unet_calls_per_step` calls; module doc).

    Parameters
    ----------
    target : Target
    n : number of images, >= 1.
    steps : DDIM steps (diffusers' grid for the model's ``timestep_spacing``).
    seed : the same (target, n, steps, seed) always gives the same images.
    batch_size : samples per forward pass (default: ~2^16 input values on a CPU, 2^22 on a GPU).
    progress : called as ``progress(done, total)`` in UNet batch-steps after each step of each batch.

    Returns
    -------
    uint8 array (n, H, W, C) at the target's (image) resolution and channels.
    """
    return to_uint8(generate(target, n, steps, seed, batch_size=batch_size, progress=progress))


def nearest_neighbours(samples: np.ndarray, reference_images: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` reference images closest to each sample in pixel space (L2 on uint8 values).

    Parameters
    ----------
    samples : (N, H, W, C) uint8 (any numeric dtype is read as pixel values 0..255).
    reference_images : (M, H, W, C), the same H, W, C.
    k : neighbours per sample, 1 <= k <= M.

    Returns
    -------
    indices : (N, k) int64 into ``reference_images``, nearest first (ties: lower index first).
    distances : (N, k) float64, the L2 distances sqrt(sum (a - b)^2) over all pixels and channels.
    An exact copy is at distance 0.0 exactly (float64 sums of integer squares are exact).
    """
    a = np.asarray(samples)
    b = np.asarray(reference_images)
    if a.ndim != 4 or b.ndim != 4:
        raise ValueError(f"samples and reference_images must be (N, H, W, C), got {a.shape} and {b.shape}")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"samples are {a.shape[1:]} but reference images are {b.shape[1:]}; convert them first")
    m = b.shape[0]
    if m == 0:
        raise ValueError("no reference images")
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in 1..{m}, got {k!r}")
    fa = a.reshape(a.shape[0], -1).astype(np.float64)
    flat_b = b.reshape(m, -1)
    d2 = np.empty((fa.shape[0], m), dtype=np.float64)
    # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b: exact in float64 for pixel values (integer sums < 2^53).
    # The references are converted in chunks of ~32 MB so a large training set never doubles in memory.
    chunk = max(1, (2**22) // flat_b.shape[1])
    sq_a = (fa * fa).sum(1)[:, None]
    for lo in range(0, m, chunk):
        fb = flat_b[lo : lo + chunk].astype(np.float64)
        d2[:, lo : lo + chunk] = sq_a + (fb * fb).sum(1)[None, :] - 2.0 * (fa @ fb.T)
    np.maximum(d2, 0.0, out=d2)
    idx = np.argsort(d2, axis=1, kind="stable")[:, :k]
    dist = np.sqrt(np.take_along_axis(d2, idx, axis=1))
    return idx.astype(np.int64), dist


# -- the memorisation view ------------------------------------------------------------------


@dataclass(frozen=True)
class Memorisation:
    """Each sample's nearest member and nearest non-member, and a held-out baseline.

    Attributes
    ----------
    member_index, nonmember_index : (N,) int64 into the member / non-member image arrays.
    member_id, nonmember_id : N ids each.
    member_distance, nonmember_distance : (N,) float64 L2 distances (uint8 pixel units).
    heldout_distance : (M_non,) float64, each non-member's distance to its nearest member: how close
        a real image the model never saw gets to the training set (the baseline for "close").
    """

    member_index: np.ndarray
    nonmember_index: np.ndarray
    member_id: tuple[str, ...]
    nonmember_id: tuple[str, ...]
    member_distance: np.ndarray
    nonmember_distance: np.ndarray
    heldout_distance: np.ndarray

    @property
    def n_closer_to_member(self) -> int:
        """Samples whose nearest member is strictly closer than their nearest non-member."""
        return int((self.member_distance < self.nonmember_distance).sum())

    @property
    def heldout_median(self) -> float:
        return float(np.median(self.heldout_distance))

    def rows(self) -> list[dict[str, object]]:
        """One plain row per sample, for a table or a CSV export."""
        return [
            {
                "sample": i,
                "nearest member": self.member_id[i],
                "distance to member": round(float(self.member_distance[i]), 2),
                "nearest non-member": self.nonmember_id[i],
                "distance to non-member": round(float(self.nonmember_distance[i]), 2),
                "closer to": "member" if self.member_distance[i] < self.nonmember_distance[i] else "non-member",
            }
            for i in range(len(self.member_id))
        ]


def memorisation(
    samples: np.ndarray,
    member_images: np.ndarray,
    nonmember_images: np.ndarray,
    member_ids: Sequence[str],
    nonmember_ids: Sequence[str],
) -> Memorisation:
    """Nearest member and non-member of every sample (uint8 (N, H, W, C) arrays), plus the held-out baseline."""
    if len(member_ids) != len(member_images) or len(nonmember_ids) != len(nonmember_images):
        raise ValueError("need one id per member and per non-member image")
    mi, md = nearest_neighbours(samples, member_images, k=1)
    ni, nd = nearest_neighbours(samples, nonmember_images, k=1)
    _, held = nearest_neighbours(nonmember_images, member_images, k=1)
    return Memorisation(
        member_index=mi[:, 0],
        nonmember_index=ni[:, 0],
        member_id=tuple(str(member_ids[i]) for i in mi[:, 0]),
        nonmember_id=tuple(str(nonmember_ids[i]) for i in ni[:, 0]),
        member_distance=md[:, 0],
        nonmember_distance=nd[:, 0],
        heldout_distance=held[:, 0],
    )
