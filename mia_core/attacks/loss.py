"""Loss attack (Matsumoto et al. 2023; Hu & Pang 2023; PIA's "naive attack").

Notation (code -> paper):

    x0        x_0 in [-1, 1], (B, C, H, W)
    noise     eps ~ N(0, I), one draw per (image, d), d = 0 .. n_draws-1, seeded per image
    x_t       sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps                  (DDPM eq. 4)
    loss      L_t(x0) = sum_{C,H,W} (eps - eps_theta(x_t, t))^2         (the DDPM training loss, summed)

Score = -mean over the chosen timesteps and draws of L_t (higher = member). The default is the
published single-t attack (t = 200 for a linear schedule, one draw; 1 UNet call); averaging over
several t and draws (Carlini et al.'s "strong" loss) lowers the variance of one draw.
Trace = L_t with draw 0 at every timestep of the sweep, all in one forward pass.

On a score-based VE-SDE target (:class:`mia_core.score_sde.ScoreTarget`; Hu & Pang's VESDE attack,
MIDM ``loss_attack.py``) the same statistic is denoising score matching at sigma(t):

    x         (x0 + 1) / 2, the model's data space [0, 1]
    t         the step's continuous time t_i = eps + (1 - eps) i / (N - 1) (see score_sde.py)
    x_t       x + sigma(t) z                                              (VE forward process)
    loss      L_t(x0) = sum_{C,H,W} (sigma(t) s_theta(x_t, sigma(t)) + z)^2   (DSM, weight sigma^2)

which is the DDPM loss under eps_theta = -sigma s_theta (so the same code path scores both kinds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..schedule import q_sample
from ..target import Target
from .base import DEFAULT_SWEEP, Attack, sum_power, target_kind, validate_timestep


@dataclass(frozen=True)
class LossParams:
    """timesteps: the t's averaged in the score; n_draws: noise draws per t; sweep: trace timesteps."""

    timesteps: tuple[int, ...] = (200,)
    n_draws: int = 1
    sweep: tuple[int, ...] = DEFAULT_SWEEP

    def __post_init__(self) -> None:
        if not self.timesteps:
            raise ValueError("loss needs at least one timestep")
        for t in (*self.timesteps, *self.sweep):
            validate_timestep("loss timestep", t)
        if not isinstance(self.n_draws, int) or self.n_draws < 1:
            raise ValueError(f"n_draws must be an integer >= 1, got {self.n_draws!r}")


class LossAttack(Attack):
    name = "loss"
    title = "Loss (denoising error)"
    paper = "Matsumoto et al. 2023; Hu & Pang 2023"
    score_label = "-sum (eps - eps_theta(x_t, t))^2"
    trace_label = "denoising loss sum (eps - eps_theta)^2"
    Params = LossParams
    target_kinds = ("ddpm", "ve-sde", "t2i")

    @property
    def noise_draws(self) -> int:  # type: ignore[override]
        return self.params.n_draws

    def _pairs(self, trace: bool) -> list[tuple[int, int]]:
        """Unique (t, draw) evaluations: the score's, plus draw 0 at each sweep t."""
        pairs = {(t, d) for t in self.params.timesteps for d in range(self.params.n_draws)}
        if trace:
            pairs |= {(t, 0) for t in self.params.sweep}
        return sorted(pairs)

    def unet_calls(self, trace: bool = True) -> int:
        return len(self._pairs(trace))

    def trace_timesteps(self) -> tuple[int, ...]:
        return tuple(self.params.sweep)

    def compute(self, target: Target, x0: torch.Tensor, noise: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """x0 (B, C, H, W); noise (B, n_draws, C, H, W). Returns score (B,) and trace (B, K)."""
        if noise is None or noise.shape[1] < self.params.n_draws:
            raise ValueError(f"loss needs noise of shape (B, {self.params.n_draws}, C, H, W)")
        trace = bool(self.params.sweep)
        pairs = self._pairs(trace)
        b = x0.shape[0]
        if target_kind(target) == "ve-sde":
            loss = self._ve_losses(target, x0, noise, pairs)
            return self._reduce(loss, pairs, trace)
        # 1. Noise every image at every (t, draw) and run the UNet once on the stacked batch.
        x_t = torch.cat([q_sample(target.schedule, x0, t, noise[:, d]) for t, d in pairs])
        t_all = torch.as_tensor([t for t, _ in pairs], device=x0.device).repeat_interleave(b)
        eps_pred = target.eps(x_t, t_all)
        eps_true = torch.cat([noise[:, d] for _, d in pairs])
        # 2. Sum of squares per (pair, image), float32.
        loss = sum_power(eps_true - eps_pred, 2).view(len(pairs), b)
        return self._reduce(loss, pairs, trace)

    @staticmethod
    def _ve_losses(target: Target, x0: torch.Tensor, noise: torch.Tensor, pairs: list[tuple[int, int]]) -> torch.Tensor:
        """DSM losses (len(pairs), B) on a VE-SDE target (see the module docstring)."""
        schedule, b = target.schedule, x0.shape[0]
        steps = torch.as_tensor([t for t, _ in pairs])
        sigma = schedule.sigma(schedule.time_of_step(steps)).to(x0.device, torch.float32).repeat_interleave(b)
        z = torch.cat([noise[:, d] for _, d in pairs])
        x_t = target.to_data(x0).repeat(len(pairs), 1, 1, 1) + sigma.view(-1, 1, 1, 1) * z
        score = target.score(x_t, sigma)
        return sum_power(sigma.view(-1, 1, 1, 1) * score + z, 2).view(len(pairs), b)

    def _reduce(self, loss: torch.Tensor, pairs: list[tuple[int, int]], trace: bool) -> dict[str, torch.Tensor]:
        """Score (B,) = -mean of the score pairs' losses; trace (B, K) = draw 0 at each sweep t."""
        row = {pair: i for i, pair in enumerate(pairs)}
        score_rows = [row[(t, d)] for t in self.params.timesteps for d in range(self.params.n_draws)]
        out = {"score": -loss[score_rows].mean(0)}
        if trace:
            out["trace"] = loss[[row[(t, 0)] for t in self.params.sweep]].T
        return out
