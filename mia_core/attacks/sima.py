"""SimA (Rao, Qu, Moyer, "Score-based Membership Inference on Diffusion Models", arXiv 2509.25003 v1).

Notation (code -> paper, eq. 11):

    A(x0, t) = sum_{C,H,W} |eps_theta(x0, t)|^p     the predicted noise on the *clean* image, p = 4

A model that memorised x0 sees no noise in it: its score (the noise estimate) is small.
Score = -A(x0, t) at t = 100 (the paper finds t in [10, 300] works and reports the best t chosen
on the evaluation data; we fix t = 100 in advance instead of selecting it on the data we score).
Trace = A(x0, t) at each sweep t, all in one forward pass (1 UNet call per t).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..target import Target
from .base import DEFAULT_SWEEP, Attack, stack_timesteps, sum_power, sweep_with, validate_power, validate_timestep


@dataclass(frozen=True)
class SimAParams:
    """timestep: t of the score; p: the power of the norm; sweep: trace timesteps."""

    timestep: int = 100
    p: float = 4
    sweep: tuple[int, ...] = DEFAULT_SWEEP

    def __post_init__(self) -> None:
        for t in (self.timestep, *self.sweep):
            validate_timestep("SimA timestep", t)
        validate_power(self.p)


class SimA(Attack):
    name = "sima"
    title = "SimA (score norm)"
    paper = "Rao, Qu, Moyer 2025 (arXiv v1)"
    score_label = "-sum |eps_theta(x0, t)|^p"
    trace_label = "SimA norm sum |eps_theta(x0, t)|^p"
    Params = SimAParams
    target_kinds = ("ddpm", "t2i")

    def _timesteps(self, trace: bool) -> tuple[int, ...]:
        return sweep_with(self.params.timestep, self.params.sweep if trace else ())

    def unet_calls(self, trace: bool = True) -> int:
        return len(self._timesteps(trace))

    def trace_timesteps(self) -> tuple[int, ...]:
        return tuple(self.params.sweep)

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b = x0.shape[0]
        timesteps = self._timesteps(trace=bool(self.params.sweep))
        x0_k, t_all = stack_timesteps(x0, timesteps)
        norm = sum_power(target.eps(x0_k, t_all), self.params.p).view(len(timesteps), b)
        row = {t: i for i, t in enumerate(timesteps)}
        out = {"score": -norm[row[self.params.timestep]]}
        if self.params.sweep:
            out["trace"] = norm[[row[t] for t in self.params.sweep]].T
        return out
