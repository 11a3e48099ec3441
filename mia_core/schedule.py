"""Noise-schedule math shared by every attack.

Notation (code name -> paper symbol, DDPM/DDIM papers, 0-based indices as in the official
pytorch-ddpm code that SecMI, PIA and SimA attack):

    betas[t]          beta_t, t = 0 .. T-1
    alphas_cumprod[t] abar_t = prod_{s=0..t} (1 - beta_s)     (so abar_0 = 1 - beta_0, not 1)
    x0                x_0, an image in [-1, 1], shape (N, C, H, W)
    eps               epsilon ~ N(0, I), or the UNet's prediction eps_theta(x_t, t)

    q_sample:   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps                       (DDPM eq. 4)
    predict_x0: x0_hat = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)   (DDIM eq. 9)
    ddim_step:  x_b = sqrt(abar_b) x0_hat + sqrt(1 - abar_b) eps_theta(x_a, a)       (DDIM eq. 12,
                sigma = 0); the same formula moves "up" (b > a, inversion) or "down" (b < a).

The schedule is computed in float64 (as SecMI's code does) and abar is cast to the working dtype
where it is used; sqrt(1 - abar) is then formed in that dtype, as the papers' code does (at t = 0
this carries a relative error of about 3e-4 in float32; at the published timesteps it is negligible).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

Timesteps = int | torch.Tensor


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A discrete DDPM noise schedule.

    Attributes
    ----------
    alphas_cumprod : torch.Tensor
        (T,) float64 on the CPU: abar_t for t = 0 .. T-1.
    description : str
        How it was made, e.g. ``"linear betas 1e-4..0.02, T=1000"``.
    kind : str
        ``"linear"`` (:meth:`linear`), ``"cosine"`` (:meth:`cosine`) or ``""`` (any other): what
        :meth:`to_scheduler_config` writes as diffusers' ``beta_schedule``.
    """

    alphas_cumprod: torch.Tensor
    description: str = ""
    kind: str = ""
    _device_tables: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        abar = self.alphas_cumprod
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with >= 2 entries, got shape {tuple(abar.shape)}")
        if not bool(((abar > 0) & (abar <= 1)).all()):
            raise ValueError("alphas_cumprod must lie in (0, 1]")
        if not bool((abar[1:] <= abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be non-increasing in t")
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_betas(cls, betas: torch.Tensor, description: str = "", kind: str = "") -> "NoiseSchedule":
        betas = torch.as_tensor(betas, dtype=torch.float64)
        return cls(torch.cumprod(1.0 - betas, dim=0), description, kind)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "NoiseSchedule":
        """The pytorch-ddpm schedule: betas = linspace(beta_start, beta_end, T)."""
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        return cls.from_betas(betas, f"linear betas {beta_start:g}..{beta_end:g}, T={num_timesteps}", "linear")

    @classmethod
    def cosine(cls, num_timesteps: int = 1000) -> "NoiseSchedule":
        """The cosine schedule (Nichol & Dhariwal 2021, eq. 17; diffusers' ``"squaredcos_cap_v2"``).

        f(u) = cos^2((u + s) / (1 + s) * pi / 2) with s = 0.008, u = t / T in [0, 1];
        beta_t = min(1 - f((t + 1) / T) / f(t / T), 0.999) for t = 0 .. T-1.
        Computed in Python floats exactly as diffusers' ``betas_for_alpha_bar`` does, but kept in
        float64 (diffusers rounds the betas to float32), so a saved and reloaded cosine schedule
        is the same schedule bit for bit.
        """
        if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, int) or num_timesteps < 2:
            raise ValueError(f"num_timesteps must be an integer >= 2, got {num_timesteps!r}")
        betas = torch.tensor(_cosine_betas(num_timesteps), dtype=torch.float64)
        return cls.from_betas(betas, f"cosine (squaredcos_cap_v2), T={num_timesteps}", "cosine")

    @classmethod
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> "NoiseSchedule":
        """Build from a diffusers scheduler config (DDPM/DDIM ``scheduler_config.json``).

        diffusers' own scheduler computes the betas, so every ``beta_schedule`` it knows
        (linear, scaled_linear, squaredcos_cap_v2) gives the same abar as the model was trained with.
        """
        from .lazy import diffusers_class

        DDPMScheduler = diffusers_class("DDPMScheduler")

        # from_config ignores keys DDPMScheduler does not know (a DDIM config has a few).
        scheduler = DDPMScheduler.from_config(dict(config))
        betas = scheduler.betas.to(torch.float64)
        desc = (f"{scheduler.config.beta_schedule} betas {scheduler.config.beta_start:g}.."
                f"{scheduler.config.beta_end:g}, T={scheduler.config.num_train_timesteps}")
        kind = ""
        if scheduler.config.beta_schedule == "linear":
            # Recompute in float64: diffusers builds float32 betas, SecMI's code uses float64.
            betas = torch.linspace(scheduler.config.beta_start, scheduler.config.beta_end,
                                   scheduler.config.num_train_timesteps, dtype=torch.float64)
            kind = "linear"
        elif scheduler.config.beta_schedule == "squaredcos_cap_v2":
            return cls.cosine(int(scheduler.config.num_train_timesteps))  # float64, see cosine()
        return cls.from_betas(betas, desc, kind)

    def to_scheduler_config(self) -> dict[str, Any]:
        """A diffusers DDPMScheduler config: ``squaredcos_cap_v2`` for a schedule made by
        :meth:`cosine`, else the linear schedule of :meth:`linear` (from the first and last beta)."""
        if self.kind == "cosine":
            return {
                "_class_name": "DDPMScheduler",
                "num_train_timesteps": self.num_timesteps,
                "beta_schedule": "squaredcos_cap_v2",
                "prediction_type": "epsilon",
                "variance_type": "fixed_large",
                "clip_sample": True,
            }
        betas = self.betas
        return {
            "_class_name": "DDPMScheduler",
            "num_train_timesteps": self.num_timesteps,
            # betas recovered from abar ratios carry ~1e-15 of rounding: 12 digits give back the
            # exact numbers the schedule was made from, so a saved schedule reloads identically.
            "beta_start": float(f"{float(betas[0]):.12g}"),
            "beta_end": float(f"{float(betas[-1]):.12g}"),
            "beta_schedule": "linear",
            "prediction_type": "epsilon",
            "variance_type": "fixed_large",
            "clip_sample": True,
        }

    def _table(self, device: torch.device) -> torch.Tensor:
        """abar on ``device``, copied there once (not on every call: a copy can stall the GPU)."""
        key = str(device)
        if key not in self._device_tables:
            self._device_tables[key] = self.alphas_cumprod.to(device)
        return self._device_tables[key]

    # -- accessors ---------------------------------------------------------------------------

    @property
    def num_timesteps(self) -> int:
        return int(self.alphas_cumprod.numel())

    @property
    def betas(self) -> torch.Tensor:
        abar = self.alphas_cumprod
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        return 1.0 - abar / prev

    def check_timesteps(self, t: Timesteps) -> None:
        values = torch.as_tensor(t)
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.num_timesteps):
            raise ValueError(
                f"timestep out of range: got {values.tolist() if values.numel() < 8 else 'values'} "
                f"(min {int(values.min())}, max {int(values.max())}); valid is 0..{self.num_timesteps - 1}"
            )

    def abar(self, t: Timesteps, like: torch.Tensor) -> torch.Tensor:
        """abar_t broadcastable against ``like`` (N, C, H, W): shape () for an int t, (N, 1, 1, 1) for a tensor."""
        self.check_timesteps(t)
        table = self._table(like.device)
        if isinstance(t, int):
            return table[t].to(like.dtype)
        t = t.to(device=like.device, dtype=torch.long)
        return table[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))


SCHEDULE_KINDS = ("linear", "cosine", "")


def _cosine_betas(num_timesteps: int, max_beta: float = 0.999) -> list[float]:
    """Nichol & Dhariwal's betas in Python floats, as diffusers' ``betas_for_alpha_bar`` computes them."""

    def f(u: float) -> float:
        return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2

    return [min(1 - f((i + 1) / num_timesteps) / f(i / num_timesteps), max_beta) for i in range(num_timesteps)]


# -- the three formulas of the notation block ----------------------------------------------------


def q_sample(schedule: NoiseSchedule, x0: torch.Tensor, t: Timesteps, eps: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (DDPM eq. 4). Shapes (N, C, H, W)."""
    abar = schedule.abar(t, x0)
    return abar.sqrt() * x0 + (1.0 - abar).sqrt() * eps


def predict_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t: Timesteps, eps: torch.Tensor) -> torch.Tensor:
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (DDIM eq. 9)."""
    abar = schedule.abar(t, x_t)
    return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()


def ddim_step(schedule: NoiseSchedule, x_a: torch.Tensor, a: Timesteps, b: Timesteps, eps: torch.Tensor) -> torch.Tensor:
    """Deterministic DDIM move D(x_a; a -> b) given eps = eps_theta(x_a, a) (DDIM eq. 12, sigma = 0).

    Works in both directions: b > a inverts (SecMI's phi), b < a denoises (SecMI's psi).
    """
    x0_hat = predict_x0(schedule, x_a, a, eps)
    abar_b = schedule.abar(b, x_a)
    return abar_b.sqrt() * x0_hat + (1.0 - abar_b).sqrt() * eps
