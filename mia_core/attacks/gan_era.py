"""The GAN-era black-box baselines: distances from each query image to the target's generated samples.

Both attacks see only images the model generated (black box): n samples are drawn once per
(target, seed, n, sampler steps) with the project's DDIM sampler (:func:`mia_core.sampling.ddim_sample`)
and kept in a sample cache beside the result store, so a second run, or the other baseline, costs
no UNet call. The SecMI paper reports these attacks "mostly near random" on DDPMs: a diffusion
model's samples are rarely close copies of its training images, which is why the diffusion-specific
attacks exist.

Notation (flattened pixels in [-1, 1], as GAN-Leaks' ``fbb.py`` uses them):

    x         a query image, (C*H*W,)
    g_i       generated sample i = 1 .. n (uint8 samples mapped to [-1, 1] as pixel / 127.5 - 1)
    d(x, g)   ||x - g||_2, the Euclidean distance over all pixels

* GAN-Leaks full black box (Chen et al., CCS 2020; ``DingfanChen/GAN-Leaks attack_models/fbb.py``,
  ``tools/eval_roc.py``): score = -min_i d(x, g_i). Published default n = 20,000 samples.
* Monte-Carlo set attack (Hilprecht et al., PoPETs 2019): score = f_eps(x) = (1/n) sum_i 1[d(x, g_i) <= eps],
  the fraction of samples in the eps-ball around x. ``eps = 0`` selects the common "median heuristic":
  eps = the median over the scored images of min_i d(x_j, g_i) (label-free, but it depends on the set
  scored, so it is computed over all images before any is scored; the value used is in ``info``).

Cost: 0 UNet calls per query image; the samples cost n x steps UNet calls once (``setup_unet_calls``).

Deliberate differences from GAN-Leaks' code: every query is scored (``find_knn`` drops the last partial
batch); distances are exact (no approximate k-NN index).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..target import Target
from .base import Attack, AttackResult, ProgressFn, check_images

#: bump when the sampler changes what a (target, seed, n, steps) generates: cached samples stop matching.
SAMPLER_VERSION = "ddim1"


# -- the samples -------------------------------------------------------------------------------------


def sample_file_name(fingerprint: str, n: int, steps: int, seed: int) -> str:
    return f"{fingerprint}-{SAMPLER_VERSION}-steps{int(steps)}-seed{int(seed)}-n{int(n)}.npz"


def generated_samples(
    target: Target,
    n: int,
    steps: int,
    seed: int,
    *,
    cache_dirs: Sequence[str | Path] = (),
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, bool]:
    """n DDIM samples of the target, read from a cache when any folder holds them.

    Sample i depends only on (target, steps, seed, i) (:func:`mia_core.sampling.initial_noise`), so a
    cached file with at least n samples of the same target, steps and seed serves the first n.
    New samples are written to ``cache_dirs[0]`` (atomically) when it is given.

    Returns
    -------
    samples : (n, C, H, W) float32 in [-1, 1] (the sampler's uint8 output / 127.5 - 1)
    from_cache : True when no UNet call was spent
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n!r}")
    pattern = re.compile(re.escape(sample_file_name(target.fingerprint, 0, steps, seed)[:-5]) + r"(\d+)\.npz$")
    for folder in cache_dirs:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            match = pattern.match(path.name)
            if match and int(match.group(1)) >= n:
                with np.load(path, allow_pickle=False) as z:
                    pixels = z["samples"][:n]
                if progress is not None:
                    progress(1, 1)
                return _to_unit(pixels), True
    from ..sampling import ddim_sample  # plotly and the sampler only when samples are made

    pixels = ddim_sample(target, n, steps=steps, seed=seed, progress=progress)  # uint8 (n, H, W, C)
    if cache_dirs:
        folder = Path(cache_dirs[0])
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
        os.close(fd)
        np.savez_compressed(tmp, samples=pixels, target=target.fingerprint, steps=steps, seed=seed)
        os.replace(tmp, folder / sample_file_name(target.fingerprint, n, steps, seed))
    return _to_unit(pixels), False


def _to_unit(pixels: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, C) -> float32 (n, C, H, W) in [-1, 1]."""
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2)).astype(np.float32) / 127.5 - 1.0


# -- distances ---------------------------------------------------------------------------------------


def sample_distances(queries: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """d(x_j, g_i) for every query j and sample i: (N, n) float64, exact differences (no |a|^2 + |b|^2 - 2ab).

    queries (N, ...) and samples (n, ...) are flattened; an exact copy is at distance 0.0.
    """
    q = queries.reshape(queries.shape[0], -1).double()
    g = samples.reshape(samples.shape[0], -1).double()
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} values per image, samples {g.shape[1]}")
    return torch.cdist(q, g, compute_mode="donot_use_mm_for_euclid_dist")


def _reduce_rows(queries: torch.Tensor, samples: torch.Tensor, reduce: Any, chunk: int = 256) -> torch.Tensor:
    """reduce(distances of a chunk of queries (b, n)) -> (b,), over all queries: (N,) (bounded memory)."""
    return torch.cat([reduce(sample_distances(queries[i : i + chunk], samples)) for i in range(0, len(queries), chunk)])


def nearest_sample_distance(queries: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """min_i d(x, g_i) per query: (N,) float64."""
    return _reduce_rows(queries, samples, lambda d: d.min(dim=1).values)


def fbb_scores(queries: torch.Tensor, samples: torch.Tensor) -> torch.Tensor:
    """GAN-Leaks full black box: -min_i d(x, g_i), (N,) float64 (higher = member)."""
    return -nearest_sample_distance(queries, samples)


def mc_set_scores(queries: torch.Tensor, samples: torch.Tensor, eps: float) -> torch.Tensor:
    """Monte-Carlo set attack: the fraction of samples with d(x, g_i) <= eps, (N,) float64."""
    return _reduce_rows(queries, samples, lambda d: (d <= eps).double().mean(dim=1))


def median_heuristic(queries: torch.Tensor, samples: torch.Tensor) -> float:
    """eps = the median over the queries of their distance to the nearest sample (torch's lower median)."""
    return float(nearest_sample_distance(queries, samples).median())


# -- the attacks -------------------------------------------------------------------------------------


def _validate_counts(n_samples: int, sample_steps: int) -> None:
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or n_samples < 1:
        raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    if not isinstance(sample_steps, int) or isinstance(sample_steps, bool) or sample_steps < 1:
        raise ValueError(f"sample_steps must be an integer >= 1, got {sample_steps!r}")


@dataclass(frozen=True)
class GANLeaksParams:
    """n_samples: images generated once per target and seed (GAN-Leaks: 20,000); sample_steps: DDIM steps per sample."""

    n_samples: int = 20_000
    sample_steps: int = 50

    def __post_init__(self) -> None:
        _validate_counts(self.n_samples, self.sample_steps)


@dataclass(frozen=True)
class MCSetParams:
    """n_samples: images generated once per target and seed (20,000, as GAN-Leaks); sample_steps: DDIM steps
    per sample; eps: the ball's radius in [-1, 1] pixel units (0 = the median heuristic)."""

    n_samples: int = 20_000
    sample_steps: int = 50
    eps: float = 0.0

    def __post_init__(self) -> None:
        _validate_counts(self.n_samples, self.sample_steps)
        if not (isinstance(self.eps, (int, float)) and np.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0 (0 = median heuristic), got {self.eps!r}")


class GeneratedSamplesAttack(Attack):
    """Shared run(): samples (cached), then a score per query from its distances to them."""

    access = "black"
    generates_samples = True

    def unet_calls(self, trace: bool = True) -> int:
        return 0  # per query image: the samples are made once (setup_unet_calls)

    def setup_unet_calls(self) -> int:
        return self.params.n_samples * self.params.sample_steps

    def scores(self, queries: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def run(
        self,
        target: Target,
        x0: np.ndarray | torch.Tensor,
        *,
        ids: Sequence[str] | None = None,
        seed: int = 0,
        batch_size: int | None = None,
        progress: ProgressFn | None = None,
        keep: Sequence[str] = (),
        sample_dirs: Sequence[str | Path] = (),
    ) -> AttackResult:
        """Score N query images (N, C, H, W) in [-1, 1]; ``sample_dirs``: the sample cache (first = writable).

        Progress counts N units for the samples (or one step when they are cached), then N for the scores.
        """
        start_time = time.perf_counter()
        x0 = check_images(target, x0)
        n = x0.shape[0]
        ids = tuple(str(i) for i in range(n)) if ids is None else tuple(str(i) for i in ids)
        if len(ids) != n:
            raise ValueError(f"got {len(ids)} ids for {n} images")
        if keep:
            raise ValueError(f"{self.name} has no per-image outputs to keep; asked for {sorted(keep)}")

        def sampling_progress(done: int, total: int) -> None:
            if progress is not None:
                progress(round(n * done / max(1, total)), 2 * n)

        samples, cached = generated_samples(
            target,
            self.params.n_samples,
            self.params.sample_steps,
            seed,
            cache_dirs=sample_dirs,
            progress=sampling_progress,
        )
        scores, info = self.scores(x0, torch.from_numpy(samples))
        if progress is not None:
            progress(2 * n, 2 * n)
        info.update(samples_from_cache=cached, sample_unet_calls=0 if cached else self.setup_unet_calls())
        return AttackResult(
            attack=self.name,
            ids=ids,
            scores=scores.numpy().astype(np.float64),
            trace_timesteps=np.zeros(0, dtype=np.int64),
            trace=np.zeros((n, 0)),
            trace_label="",
            unet_calls_per_image=0,
            seconds=time.perf_counter() - start_time,
            params=self.params_dict(),
            info=info,
        )


class GANLeaks(GeneratedSamplesAttack):
    name = "gan_leaks"
    title = "GAN-Leaks (nearest generated sample)"
    paper = "Chen et al., CCS 2020"
    score_label = "-min_i ||x - g_i||_2 over generated samples g_i"
    Params = GANLeaksParams

    def scores(self, queries: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        return fbb_scores(queries, samples), {}


class MonteCarloSet(GeneratedSamplesAttack):
    name = "mc_set"
    title = "Monte-Carlo set (samples in an eps-ball)"
    paper = "Hilprecht et al., PoPETs 2019"
    score_label = "fraction of generated samples within eps of x"
    Params = MCSetParams

    def scores(self, queries: torch.Tensor, samples: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        eps = float(self.params.eps) or median_heuristic(queries, samples)
        return mc_set_scores(queries, samples, eps), {
            "eps": eps,
            "eps_rule": "given" if self.params.eps else "median over the scored images of the nearest-sample distance",
        }
