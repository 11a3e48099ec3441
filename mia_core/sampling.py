"""Samples from the target and their nearest training images: direct evidence of memorisation.

``ddim_sample`` draws images with deterministic DDIM (eta = 0, Song et al. 2021) from seeded
Gaussian noise, using the target's own schedule (:mod:`mia_core.schedule`):

    timesteps  tau_0 = T-1 > tau_1 > ... > tau_{S-1} = 0   (S evenly spaced 0-based steps)
    x          x_{tau_0} ~ N(0, I), one seeded generator per sample
    step i     eps = eps_theta(x, tau_i); x0_hat = clip((x - sqrt(1 - abar) eps) / sqrt(abar), -1, 1)
               x <- sqrt(abar_{tau_{i+1}}) x0_hat + sqrt(1 - abar_{tau_{i+1}}) eps      (DDIM eq. 12)
    output     x0_hat of the last step (tau = 0), as uint8 (N, H, W, C)

As diffusers' DDIM scheduler with ``clip_sample=True`` does, the direction term keeps the
model's eps (it is not re-derived from the clipped x0_hat).

``nearest_neighbours`` finds, for each sample, the closest reference images by L2 distance in
pixel space (uint8 values as floats), with one matrix product, no loop over pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from .data.images import to_uint8
from .schedule import predict_x0
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
    steps : DDIM steps (evenly spaced timesteps from T-1 to 0).
    seed : the same (target, n, steps, seed) always gives the same images.
    batch_size : samples per forward pass (default: ~2^16 input pixels on a CPU, 2^22 on a GPU).
    progress : called as ``progress(done, total)`` in UNet batch-steps after each step of each batch.

    Returns
    -------
    uint8 array (n, H, W, C) at the target's resolution and channels.
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    schedule = target.schedule
    ts = ddim_timesteps(schedule.num_timesteps, steps)
    shape = (target.channels, target.resolution, target.resolution)
    pixels = int(np.prod(shape))
    budget = _GPU_BATCH_PIXELS if target.device.type == "cuda" else _CPU_BATCH_PIXELS
    bs = int(batch_size) if batch_size else max(1, budget // pixels)
    x_all = initial_noise(int(n), shape, seed)
    out = []
    n_batches = -(-int(n) // bs)
    total, done = n_batches * len(ts), 0
    with torch.inference_mode():
        for start in range(0, int(n), bs):
            x = x_all[start:start + bs].to(target.device)
            x0_hat = x
            for i, t in enumerate(ts):
                eps = target.eps(x, int(t))
                x0_hat = predict_x0(schedule, x, int(t), eps).clamp(-1.0, 1.0)
                if i + 1 < len(ts):
                    abar_next = schedule.abar(int(ts[i + 1]), x)
                    x = abar_next.sqrt() * x0_hat + (1.0 - abar_next).sqrt() * eps
                done += 1
                if progress is not None:
                    progress(done, total)
            out.append(to_uint8(x0_hat))
    return np.concatenate(out)


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
        fb = flat_b[lo:lo + chunk].astype(np.float64)
        d2[:, lo:lo + chunk] = sq_a + (fb * fb).sum(1)[None, :] - 2.0 * (fa @ fb.T)
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
        member_index=mi[:, 0], nonmember_index=ni[:, 0],
        member_id=tuple(str(member_ids[i]) for i in mi[:, 0]),
        nonmember_id=tuple(str(nonmember_ids[i]) for i in ni[:, 0]),
        member_distance=md[:, 0], nonmember_distance=nd[:, 0], heldout_distance=held[:, 0],
    )
