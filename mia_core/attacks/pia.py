"""PIA and PIAN (Kong et al., "An Efficient Membership Inference Attack for the Diffusion Model by
Proximal Initialization", ICLR 2024).

Notation (code -> paper, eq. 9):

    eps0     eps_theta(x_0, 0): the model's noise estimate on the clean image ("proximal initialisation")
    x_t      sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps0    (eps0 replaces random noise)
    eps_t    eps_theta(x_t, t)
    R_{t,p}  sum_{C,H,W} |eps0 - eps_t|^p                (p = 4, no p-th root, as the official code)

PIAN rescales eps0 per image so that its mean absolute value is that of N(0, I):
eps0 <- eps0 * sqrt(2 / pi) / mean_{C,H,W} |eps0|. This is what the official code does; the
paper's eq. 10 is printed with sqrt(pi / 2) / mean, a factor pi / 2 larger, which we do not copy.

1. eps0 = eps_theta(x0, 0)                           1 UNet call
2. eps_t = eps_theta(x_t, t) for the score's t and every sweep t, stacked into one batch
3. score = -R_{t,p} at t (default 200); trace = R_{t,p} at each sweep t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..schedule import q_sample
from ..target import Target
from .base import DEFAULT_SWEEP, Attack, stack_timesteps, sum_power, sweep_with, validate_power, validate_timestep


@dataclass(frozen=True)
class PIAParams:
    """timestep: t of the score; p: the power of the distance; sweep: trace timesteps."""

    timestep: int = 200
    p: float = 4
    sweep: tuple[int, ...] = DEFAULT_SWEEP

    def __post_init__(self) -> None:
        for t in (self.timestep, *self.sweep):
            validate_timestep("PIA timestep", t)
        validate_power(self.p)


class PIA(Attack):
    name = "pia"
    title = "PIA (proximal initialisation)"
    paper = "Kong et al., ICLR 2024"
    score_label = "-sum |eps0 - eps_theta(x_t, t)|^p"
    trace_label = "PIA distance sum |eps0 - eps_t|^p"
    Params = PIAParams
    target_kinds = ("ddpm", "t2i")
    normalize: bool = False

    def _timesteps(self, trace: bool) -> tuple[int, ...]:
        return sweep_with(self.params.timestep, self.params.sweep if trace else ())

    def unet_calls(self, trace: bool = True) -> int:
        return 1 + len(self._timesteps(trace))

    def trace_timesteps(self) -> tuple[int, ...]:
        return tuple(self.params.sweep)

    def proximal_eps(self, target: Target, x0: torch.Tensor) -> torch.Tensor:
        """eps0 = eps_theta(x0, 0), rescaled for PIAN."""
        eps0 = target.eps(x0, 0)
        if self.normalize:
            mean_abs = eps0.abs().flatten(1).mean(1).view(-1, 1, 1, 1)
            eps0 = eps0 * math.sqrt(2 / math.pi) / mean_abs
        return eps0

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x0 (B, C, H, W) -> score (B,), trace (B, K)."""
        b = x0.shape[0]
        # 1. The proximal noise estimate.
        eps0 = self.proximal_eps(target, x0)
        # 2. One stacked forward pass over every timestep needed.
        timesteps = self._timesteps(trace=bool(self.params.sweep))
        x0_k, t_all = stack_timesteps(x0, timesteps)
        eps0_k = eps0.repeat(len(timesteps), 1, 1, 1)
        eps_t = target.eps(q_sample(target.schedule, x0_k, t_all, eps0_k), t_all)
        # 3. Sum of |.|^p per (t, image).
        dist = sum_power(eps0_k - eps_t, self.params.p).view(len(timesteps), b)
        row = {t: i for i, t in enumerate(timesteps)}
        out = {"score": -dist[row[self.params.timestep]]}
        if self.params.sweep:
            out["trace"] = dist[[row[t] for t in self.params.sweep]].T
        return out


class PIAN(PIA):
    name = "pian"
    title = "PIAN (normalised PIA)"
    score_label = "-sum |eps0_n - eps_theta(x_t, t)|^p"
    trace_label = "PIAN distance sum |eps0_n - eps_t|^p"
    normalize = True
