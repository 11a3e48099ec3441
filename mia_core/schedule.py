"""Noise-schedule math shared by every attack.

Notation (code name -> paper symbol, DDPM/DDIM papers, 0-based indices as in the official
pytorch-ddpm code that SecMI, PIA and SimA attack):

    betas[t]          beta_t, t = 0 .. T-1
    alphas_cumprod[t] abar_t = prod_{s=0..t} (1 - beta_s)     (so abar_0 = 1 - beta_0, not 1)
                      abar_{T-1} = 0 exactly for a zero-terminal-SNR schedule (Lin et al. 2024):
                      then x_{T-1} is pure noise and predict_x0 is undefined at t = T-1.
    x0                x_0, an image in [-1, 1], shape (N, C, H, W)
    eps               epsilon ~ N(0, I), or the UNet's prediction eps_theta(x_t, t)

    q_sample:   x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps                       (DDPM eq. 4)
    predict_x0: x0_hat = (x_t - sqrt(1 - abar_t) eps_theta(x_t, t)) / sqrt(abar_t)   (DDIM eq. 9)
    ddim_step:  x_b = sqrt(abar_b) x0_hat + sqrt(1 - abar_b) eps_theta(x_a, a)       (DDIM eq. 12,
                sigma = 0); the same formula moves "up" (b > a, inversion) or "down" (b < a).

Schedules come from the model's own scheduler config (:meth:`NoiseSchedule.from_scheduler_config`),
honouring every key diffusers honours for the betas:

    trained_betas            betas_t as given (length T), whatever beta_schedule says
    beta_schedule            linear:             betas = linspace(beta_start, beta_end, T)
                             scaled_linear:      betas = linspace(sqrt(beta_start), sqrt(beta_end), T)^2
                             squaredcos_cap_v2:  Nichol & Dhariwal's cosine (see NoiseSchedule.cosine)
                             sigmoid:            betas = sigmoid(linspace(-6, 6, T)) (beta_end - beta_start) + beta_start
                             laplace:            diffusers' betas_for_alpha_bar(T, "laplace") (float32 there)
    rescale_betas_zero_snr   sqrt(abar) shifted and scaled so that sqrt(abar_0) is kept and abar_{T-1} = 0
                             (diffusers' rescale_zero_terminal_snr, applied to the float64 betas)

The schedule is computed in float64 (as SecMI's code does) and abar is cast to the working dtype
where it is used; sqrt(1 - abar) is then formed in that dtype, as the papers' code does (at t = 0
this carries a relative error of about 3e-4 in float32; at the published timesteps it is negligible).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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
    config : dict or None
        The schedule keys of the scheduler config it was read from (:data:`SCHEDULE_KEYS`), or None.
    """

    alphas_cumprod: torch.Tensor
    description: str = ""
    kind: str = ""
    config: dict | None = field(default=None, repr=False, compare=False)
    _device_tables: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        abar = self.alphas_cumprod
        if abar.ndim != 1 or abar.numel() < 2:
            raise ValueError(f"alphas_cumprod must be 1-D with >= 2 entries, got shape {tuple(abar.shape)}")
        if not bool(((abar >= 0) & (abar <= 1)).all()) or not bool((abar[:-1] > 0).all()):
            raise ValueError("alphas_cumprod must lie in (0, 1] (only the last step may be 0: zero terminal SNR)")
        if not bool((abar[1:] <= abar[:-1]).all()):
            raise ValueError("alphas_cumprod must be non-increasing in t")
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(f"kind must be one of {SCHEDULE_KINDS}, got {self.kind!r}")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_betas(cls, betas: torch.Tensor, description: str = "", kind: str = "") -> NoiseSchedule:
        betas = torch.as_tensor(betas, dtype=torch.float64)
        return cls(torch.cumprod(1.0 - betas, dim=0), description, kind)

    @classmethod
    def linear(cls, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> NoiseSchedule:
        """The pytorch-ddpm schedule: betas = linspace(beta_start, beta_end, T)."""
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        return cls.from_betas(betas, f"linear betas {beta_start:g}..{beta_end:g}, T={num_timesteps}", "linear")

    @classmethod
    def cosine(cls, num_timesteps: int = 1000) -> NoiseSchedule:
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
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> NoiseSchedule:
        """Build from a diffusers scheduler config (``scheduler_config.json`` of a DDPM, DDIM, PNDM, ... model).

        Every key that defines the betas is honoured (see the module notation): ``trained_betas``,
        ``rescale_betas_zero_snr`` and every ``beta_schedule`` diffusers knows, in float64.
        Refused by name, never ignored: a scheduler class whose time axis is not DDPM's discrete
        one (e.g. ``EDMEulerScheduler``; ``ScoreSdeVeScheduler`` is a score-SDE target, not a
        NoiseSchedule), ``timestep_type`` other than "discrete", an unknown ``beta_schedule``, and
        ``trained_betas`` whose length is not ``num_train_timesteps``.
        """
        cls_name = str(config.get("_class_name", "DDPMScheduler"))
        if cls_name not in DISCRETE_SCHEDULERS:
            raise ValueError(
                f"scheduler {cls_name!r} does not describe a discrete DDPM-type schedule (betas over T 0-based "
                f"timesteps); schedulers read here: {', '.join(DISCRETE_SCHEDULERS)}"
            )
        timestep_type = config.get("timestep_type", "discrete")
        if timestep_type != "discrete":
            raise ValueError(
                f"timestep_type {timestep_type!r}: the UNet is conditioned on a continuous noise level, "
                "not on DDPM's integer timesteps; only 'discrete' is supported"
            )
        n = int(config.get("num_train_timesteps", 1000))
        start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 0.02))
        name = str(config.get("beta_schedule", "linear"))
        trained = config.get("trained_betas")
        rescale = bool(config.get("rescale_betas_zero_snr", False))
        kept = {
            k: (list(map(float, config[k])) if k == "trained_betas" else config[k])
            for k in SCHEDULE_KEYS
            if config.get(k) is not None
        }
        kind = ""
        if trained is not None:
            betas = torch.tensor([float(b) for b in trained], dtype=torch.float64)
            if betas.ndim != 1 or betas.numel() != n:
                raise ValueError(f"trained_betas has {betas.numel()} values but num_train_timesteps is {n}")
            desc = f"trained betas {float(betas[0]):.3g}..{float(betas[-1]):.3g}, T={n}"
        elif name == "linear":
            # float64, as SecMI's code (diffusers builds float32 betas).
            betas = torch.linspace(start, end, n, dtype=torch.float64)
            desc, kind = f"linear betas {start:g}..{end:g}, T={n}", "linear"
        elif name == "scaled_linear":
            betas = torch.linspace(start**0.5, end**0.5, n, dtype=torch.float64) ** 2
            desc = f"scaled_linear betas {start:g}..{end:g}, T={n}"
        elif name == "squaredcos_cap_v2":
            betas = torch.tensor(_cosine_betas(n), dtype=torch.float64)  # float64, see cosine()
            desc, kind = f"cosine (squaredcos_cap_v2), T={n}", "cosine"
        elif name == "sigmoid":
            betas = torch.sigmoid(torch.linspace(-6, 6, n, dtype=torch.float64)) * (end - start) + start
            desc = f"sigmoid betas {start:g}..{end:g}, T={n}"
        elif name == "laplace":
            from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar

            betas = betas_for_alpha_bar(n, alpha_transform_type="laplace").to(torch.float64)
            desc = f"laplace (betas_for_alpha_bar), T={n}"
        else:
            raise ValueError(f"beta_schedule {name!r} is not one diffusers defines; known: {', '.join(BETA_SCHEDULES)}")
        if rescale:
            from diffusers.schedulers.scheduling_ddpm import rescale_zero_terminal_snr

            betas = rescale_zero_terminal_snr(betas)
            desc, kind = desc + ", rescaled to zero terminal SNR", ""
        if kind == "cosine":
            return cls.from_betas(betas, desc, kind)  # as cosine(): the same schedule bit for bit
        schedule = cls.from_betas(betas, desc, kind)
        return cls(schedule.alphas_cumprod, desc, kind, config=kept)

    def to_scheduler_config(self) -> dict[str, Any]:
        """A diffusers DDPMScheduler config: ``squaredcos_cap_v2`` for a schedule made by
        :meth:`cosine`, the linear schedule of :meth:`linear` (from the first and last beta), the
        config it was read from, or else its betas as ``trained_betas``."""
        common = {"prediction_type": "epsilon", "variance_type": "fixed_large", "clip_sample": True}
        if self.kind == "cosine":
            return {
                "_class_name": "DDPMScheduler",
                "num_train_timesteps": self.num_timesteps,
                "beta_schedule": "squaredcos_cap_v2",
                **common,
            }
        betas = self.betas
        if self.kind == "linear":
            return {
                "_class_name": "DDPMScheduler",
                "num_train_timesteps": self.num_timesteps,
                # betas recovered from abar ratios carry ~1e-15 of rounding: 12 digits give back the
                # exact numbers the schedule was made from, so a saved schedule reloads identically.
                "beta_start": float(f"{float(betas[0]):.12g}"),
                "beta_end": float(f"{float(betas[-1]):.12g}"),
                "beta_schedule": "linear",
                **common,
            }
        if self.config is not None:
            return {"_class_name": "DDPMScheduler", **self.config, **common}
        return {
            "_class_name": "DDPMScheduler",
            "num_train_timesteps": self.num_timesteps,
            "trained_betas": [float(b) for b in betas],
            **common,
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
    def zero_terminal_snr(self) -> bool:
        """abar_{T-1} = 0: the last step is pure noise (``rescale_betas_zero_snr``)."""
        return float(self.alphas_cumprod[-1]) == 0.0

    def check_invertible(self, t: Timesteps) -> None:
        """Refuse t = T-1 on a zero-terminal-SNR schedule, where dividing by sqrt(abar_t) is undefined."""
        if not self.zero_terminal_snr:
            return
        last = self.num_timesteps - 1
        if bool((torch.as_tensor(t) == last).any()):
            raise ValueError(
                f"the schedule has zero terminal SNR (abar = 0 at t={last}): x0_hat = (x_t - sqrt(1 - abar) eps) / "
                f"sqrt(abar) is undefined there; use timesteps <= {last - 1}"
            )

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

    def abar_between(self, t: torch.Tensor) -> torch.Tensor:
        """abar at real-valued timesteps: (N,) float t in [0, T-1] -> (N,) float32 on t's device,
        interpolated linearly between the integer steps (exact at them; a zero last step stays 0)."""
        table = self._table(t.device)
        u = t.to(torch.float64).clamp(0.0, float(self.num_timesteps - 1))
        lo = u.floor().long().clamp(max=self.num_timesteps - 2)
        w = u - lo
        return ((1.0 - w) * table[lo] + w * table[lo + 1]).to(torch.float32)


SCHEDULE_KINDS = ("linear", "cosine", "")
#: diffusers' beta_schedule names (DDPMScheduler, diffusers 0.42).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace")
#: the scheduler-config keys that define the betas (all honoured by from_scheduler_config).
SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "rescale_betas_zero_snr",
)
#: diffusers schedulers whose training schedule is DDPM's discrete betas over 0-based timesteps.
DISCRETE_SCHEDULERS = (
    "DDPMScheduler",
    "DDIMScheduler",
    "DDIMInverseScheduler",
    "PNDMScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "LMSDiscreteScheduler",
    "HeunDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
    "UniPCMultistepScheduler",
    "DEISMultistepScheduler",
)


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
    """x0_hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t) (DDIM eq. 9); refused where abar_t = 0."""
    schedule.check_invertible(t)
    abar = schedule.abar(t, x_t)
    return (x_t - (1.0 - abar).sqrt() * eps) / abar.sqrt()


def ddim_step(
    schedule: NoiseSchedule, x_a: torch.Tensor, a: Timesteps, b: Timesteps, eps: torch.Tensor
) -> torch.Tensor:
    """Deterministic DDIM move D(x_a; a -> b) given eps = eps_theta(x_a, a) (DDIM eq. 12, sigma = 0).

    Works in both directions: b > a inverts (SecMI's phi), b < a denoises (SecMI's psi).
    """
    x0_hat = predict_x0(schedule, x_a, a, eps)
    abar_b = schedule.abar(b, x_a)
    return abar_b.sqrt() * x0_hat + (1.0 - abar_b).sqrt() * eps
