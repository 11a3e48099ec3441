"""ReDiffuse (Li et al., "Towards Black-Box Membership Inference Attack for Diffusion Models", ICML 2025).

Black box: the attacker only needs an image-variation API (submit an image and a strength, get an
image back). The attack calls it n times on the same image and compares the average with the input.

Notation (code -> paper Def. 4.1 / Alg. 1; 0-based timesteps):

    x0        x, the query image in [-1, 1], (B, C, H, W)
    eps_r     fresh N(0, I) noise of repetition r = 0 .. n-1, seeded per image
    x_t^r     sqrt(abar_t) x0 + sqrt(1 - abar_t) eps_r                 (the API noises the image to t)
    V_r       DDIM (sigma = 0) from t down to 0 in steps of k: t -> t-k -> ... -> 0, one UNet call a step
    x_bar     (1/n) sum_r V_r                                         (the average of the n variations)
    D_t       sum_{C,H,W} |x0 - x_bar|^p                               (p = 2: the official code's distance)
    score     -D_t at ``timestep`` (higher = member)

Defaults are the official DDIM/CIFAR-10 code's (``DDIM/attack.py`` main: interval=200, average=10,
k=100): t = 200, n = 10 repetitions, stride 100 (200 -> 100 -> 0), so 2 x 10 = 20 UNet calls per image.
As in that code the last DDIM step lands on timestep 0 (sqrt(abar_0) x0_hat + sqrt(1 - abar_0) eps),
not on x0_hat.

Trace: D_t at every timestep of ``sweep`` (each a multiple of k), with the same n noise draws as the
score (common random numbers: the trace's entry at ``timestep`` equals the score's distance). A sweep
timestep t costs n * t / k more UNet calls per image; all chains advance together, one stacked UNet
call per DDIM level.

Deliberate differences from the official code:
* the paper's headline CIFAR-10 numbers train a ResNet-18 on |x0 - x_bar| with 20 % of the labels
  (SecMI-NN's recipe, +labelled data); this is the label-free threshold statistic (the code's
  ``calculate_distance``, the black-box attack itself). Its distance is summed over C, H, W into one
  number per image (the code's ``flatten(2).sum(-1)`` keeps one number per channel).
* timesteps must be multiples of k (the official loop ``range(t, 0, -k)`` would index abar at a
  negative timestep otherwise), and the DDPM variant (k = 1) with its abar-for-alpha bug is not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedule import ddim_step, q_sample
from ..target import Target
from .base import Attack, sum_power, validate_power, validate_timestep


def _validate_grid(name: str, t: int, k: int) -> None:
    validate_timestep(name, t)
    if t < k or t % k:
        raise ValueError(f"{name} must be a positive multiple of k={k} (DDIM steps t -> t-k -> ... -> 0), got {t}")


@dataclass(frozen=True)
class ReDiffuseParams:
    """timestep: t the image is noised to; k: the DDIM stride of the denoising; n_repeats: variations
    averaged; p: the power of the distance; sweep: trace timesteps (multiples of k)."""

    timestep: int = 200
    k: int = 100
    n_repeats: int = 10
    p: float = 2
    sweep: tuple[int, ...] = (100, 200, 300)

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1:
            raise ValueError(f"k must be an integer >= 1, got {self.k!r}")
        for t in (self.timestep, *self.sweep):
            _validate_grid("ReDiffuse timestep", t, self.k)
        if not isinstance(self.n_repeats, int) or isinstance(self.n_repeats, bool) or self.n_repeats < 1:
            raise ValueError(f"n_repeats must be an integer >= 1, got {self.n_repeats!r}")
        validate_power(self.p)


class ReDiffuse(Attack):
    name = "rediffuse"
    title = "ReDiffuse (averaged variations)"
    paper = "Li et al., ICML 2025"
    score_label = "-sum |x0 - mean of n DDIM variations|^p"
    trace_label = "ReDiffuse distance sum |x0 - x_bar_t|^p"
    Params = ReDiffuseParams
    access = "black"

    @property
    def noise_draws(self) -> int:  # type: ignore[override]
        return self.params.n_repeats

    def _timesteps(self, trace: bool) -> tuple[int, ...]:
        return tuple(sorted({self.params.timestep, *(self.params.sweep if trace else ())}))

    def unet_calls(self, trace: bool = True) -> int:
        return self.params.n_repeats * sum(t // self.params.k for t in self._timesteps(trace))

    def inputs_per_image(self) -> int:
        return self.params.n_repeats * len(self._timesteps(bool(self.params.sweep)))

    def trace_timesteps(self) -> tuple[int, ...]:
        return tuple(self.params.sweep)

    def variations(
        self, target: Target, x0: torch.Tensor, noise: torch.Tensor, timesteps: tuple[int, ...]
    ) -> torch.Tensor:
        """V_r for every (timestep, repetition): (len(timesteps), n, B, C, H, W).

        x0 (B, C, H, W); noise (B, n, C, H, W). Chains that start higher take more steps; at each
        DDIM level the chains still above 0 go through the UNet together.
        """
        k, n, b = self.params.k, self.params.n_repeats, x0.shape[0]
        # Rows ordered (timestep, repetition, image).
        x0_rows = x0.repeat(len(timesteps) * n, 1, 1, 1)
        eps_rows = noise[:, :n].transpose(0, 1).reshape(n * b, *x0.shape[1:]).repeat(len(timesteps), 1, 1, 1)
        t_rows = torch.as_tensor(timesteps, dtype=torch.long, device=x0.device).repeat_interleave(n * b)
        x = q_sample(target.schedule, x0_rows, t_rows, eps_rows)
        for level in range(max(timesteps) // k, 0, -1):
            active = t_rows >= level * k  # a chain started at t passes every level t, t-k, ..., k
            j = torch.full((int(active.sum()),), level * k, dtype=torch.long, device=x0.device)
            xa = x[active]
            x[active] = ddim_step(target.schedule, xa, j, j - k, target.eps(xa, j))
        return x.view(len(timesteps), n, b, *x0.shape[1:])

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """x0 (B, C, H, W); noise (B, n_repeats, C, H, W). Returns score (B,), trace (B, K), x_bar (B, C, H, W)."""
        if noise is None or noise.shape[1] < self.params.n_repeats:
            raise ValueError(f"rediffuse needs noise of shape (B, {self.params.n_repeats}, C, H, W)")
        timesteps = self._timesteps(trace=bool(self.params.sweep))
        x_bar = self.variations(target, x0, noise, timesteps).mean(dim=1)  # (K, B, C, H, W)
        dist = torch.stack([sum_power(x0 - x_bar[i], self.params.p) for i in range(len(timesteps))])  # (K, B)
        row = {t: i for i, t in enumerate(timesteps)}
        out = {"score": -dist[row[self.params.timestep]], "x_bar": x_bar[row[self.params.timestep]]}
        if self.params.sweep:
            out["trace"] = dist[[row[t] for t in self.params.sweep]].T
        return out
