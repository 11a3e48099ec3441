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


def sampling_scheduler(target: Target, steps: int) -> Any:
    """diffusers' DDIMScheduler from the model's scheduler config, with ``steps`` timesteps set.

    The target's own ``prediction_type`` is used; a target without a config (built in memory) uses
    its schedule's :meth:`~mia_core.schedule.NoiseSchedule.to_scheduler_config`.
    """
    from .lazy import diffusers_class

    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > target.schedule.num_timesteps:
        raise ValueError(f"steps must be <= the schedule's {target.schedule.num_timesteps} timesteps, got {steps}")
    source = dict(target.scheduler_config) if target.scheduler_config else target.schedule.to_scheduler_config()
    cls_name = source.get("_class_name", "DDPMScheduler")
    config = {k: v for k, v in source.items() if not k.startswith("_")}
    config.setdefault("clip_sample", cls_name in ("DDPMScheduler", "DDIMScheduler"))
    config["prediction_type"] = target.prediction_type
    scheduler = diffusers_class("DDIMScheduler").from_config(config)
    scheduler.set_timesteps(int(steps))
    return scheduler


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
    in [-1, 1] (not clipped beyond what the model's config asks), decoded for a latent target."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
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
    """Generate ``n`` images with deterministic DDIM (eta = 0), ``steps`` UNet calls each.

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
