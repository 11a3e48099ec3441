"""Score-based targets: VE-SDE / SMLD models (Song et al. 2021; attacked by Hu & Pang 2023).

A diffusers folder whose scheduler is ``ScoreSdeVeScheduler`` (``unet/`` + ``scheduler/``) loads as
a :class:`ScoreTarget`. Notation (``../shared/reference/attacks-next.md`` section 9):

    x        data in the model's space, [0, 1] (VE models from score_sde / MIDM / diffusers do not
             centre the data; ``center_input_sample=True`` in the UNet config computes 2x - 1 inside).
             Attacks hand images in [-1, 1]: ``to_data(x0) = (x0 + 1) / 2``.
    t        continuous time in [eps, 1], eps = ``sampling_eps`` (1e-5)
    sigma(t) sigma_min (sigma_max / sigma_min)^t, geometric (diffusers' ``ScoreSdeVeScheduler``)
    x_t      x + sigma(t) z,  z ~ N(0, I)                       (the VE forward process, no scaling)
    s(x, s)  the model's score grad_x log p_sigma(x): ``unet(x, sigma).sample``; the UNet is conditioned
             on sigma itself (passed as a float tensor: diffusers casts a Python float to long, which
             turns 0.5 into 0), and an NCSN++ UNet (``time_embedding_type="fourier"``) divides its
             output by sigma inside
    step i   the attacks' integer timesteps i = 0 .. N-1 (N = ``num_train_timesteps``) are the grid
             t_i = eps + (1 - eps) i / (N - 1): i = 0 is the smallest noise, as for a DDPM (MIDM's
             SMLD labels run the other way; its VE-SDE "step i" is the i-th smallest random t)

This is not a DDPM: there is no eps_theta(x_t, t) on a discrete abar schedule, so ``eps`` and
``eps_float_t`` raise; attacks say whether they apply (``Attack.applies_to``). The loss attack and the
likelihood have continuous-time forms for it (denoising score matching at sigma(t), and the
probability-flow ODE in bits/dim).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from .target import Target

SCHEDULER_CLASS = "ScoreSdeVeScheduler"


class NotADDPMError(TypeError):
    """An operation that needs a DDPM parameterisation was asked of a score-based target."""


@dataclass(frozen=True, eq=False)
class VESchedule:
    """The VE-SDE noise levels: sigma(t) = sigma_min (sigma_max / sigma_min)^t on t in [eps, 1].

    ``num_timesteps`` (N) fixes the integer grid the attacks' timesteps index (see the module doc).
    """

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    num_timesteps: int = 1000
    sampling_eps: float = 1e-5
    kind: ClassVar[str] = "ve"

    def __post_init__(self) -> None:
        if not (0 < self.sigma_min < self.sigma_max and math.isfinite(self.sigma_max)):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {self.sigma_min!r}, {self.sigma_max!r}")
        if isinstance(self.num_timesteps, bool) or not isinstance(self.num_timesteps, int) or self.num_timesteps < 2:
            raise ValueError(f"num_timesteps must be an integer >= 2, got {self.num_timesteps!r}")
        if not 0 < self.sampling_eps < 1:
            raise ValueError(f"sampling_eps must lie in (0, 1), got {self.sampling_eps!r}")

    @classmethod
    def from_scheduler_config(cls, config: Mapping[str, Any]) -> VESchedule:
        """From a ``ScoreSdeVeScheduler`` config; missing keys take diffusers' defaults (sigma_max 1348,
        N = 2000: the FFHQ-1024 values, so a real model's config should say its own)."""
        from .lazy import diffusers_class

        sched = diffusers_class(SCHEDULER_CLASS).from_config(dict(config))
        c = sched.config
        return cls(float(c.sigma_min), float(c.sigma_max), int(c.num_train_timesteps), float(c.sampling_eps))

    def to_scheduler_config(self) -> dict[str, Any]:
        return {
            "_class_name": SCHEDULER_CLASS,
            "num_train_timesteps": self.num_timesteps,
            "sigma_min": self.sigma_min,
            "sigma_max": self.sigma_max,
            "sampling_eps": self.sampling_eps,
            "snr": 0.15,
            "correct_steps": 1,
        }

    @property
    def description(self) -> str:
        return (
            f"VE-SDE: sigma(t) = {self.sigma_min:g} ({self.sigma_max:g}/{self.sigma_min:g})^t, t in "
            f"[{self.sampling_eps:g}, 1]; steps 0..{self.num_timesteps - 1} on that grid"
        )

    def check_timesteps(self, t: int | torch.Tensor) -> None:
        values = torch.as_tensor(t)
        if values.numel() and (int(values.min()) < 0 or int(values.max()) >= self.num_timesteps):
            raise ValueError(
                f"timestep out of range: min {int(values.min())}, max {int(values.max())}; "
                f"valid is 0..{self.num_timesteps - 1}"
            )

    def time_of_step(self, step: int | torch.Tensor) -> torch.Tensor:
        """t_i = eps + (1 - eps) i / (N - 1), float64, the shape of ``step``."""
        self.check_timesteps(step)
        i = torch.as_tensor(step, dtype=torch.float64)
        return self.sampling_eps + (1.0 - self.sampling_eps) * i / (self.num_timesteps - 1)

    def sigma_of_step(self, step: int | torch.Tensor) -> torch.Tensor:
        """sigma(t_i) of integer steps i (float64 tensor of the steps' shape; module doc)."""
        return self.sigma(self.time_of_step(step))

    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        """sigma(t) for continuous t (float64 tensor of t's shape)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def log_ratio(self) -> float:
        """log(sigma_max / sigma_min): g(t)^2 = d sigma^2 / dt = 2 sigma(t)^2 log_ratio."""
        return math.log(self.sigma_max / self.sigma_min)


@dataclass(eq=False)
class ScoreTarget(Target):
    """A VE-SDE score model: ``unet(x, sigma).sample`` = s_theta(x, sigma), data in [0, 1].

    ``schedule`` is a :class:`VESchedule`. Everything else as :class:`mia_core.target.Target`
    (device, precision, fingerprint of config + weights + schedule).
    """

    schedule: Any = field(default_factory=VESchedule)
    kind: ClassVar[str] = "ve-sde"

    def __post_init__(self) -> None:
        if not isinstance(self.schedule, VESchedule):
            raise TypeError(f"a ScoreTarget needs a VESchedule, got {type(self.schedule).__name__}")
        if not self.fingerprint:
            self.fingerprint = fingerprint_score_model(self.unet, self.schedule)
        super().__post_init__()

    @classmethod
    def from_scheduler_config(cls, unet: Any, config: Mapping[str, Any], **kwargs: Any) -> ScoreTarget:
        return cls(unet, VESchedule.from_scheduler_config(config), **kwargs)

    # -- the model -------------------------------------------------------------------------------

    @staticmethod
    def to_data(x0: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] -> the model's data space [0, 1]."""
        return (x0 + 1.0) * 0.5

    def score(self, x: torch.Tensor, sigma: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        """s_theta(x, sigma): (N, C, H, W) data-space x (moved to the device), sigma (N,) -> (N, C, H, W) float32.

        ``grad=True`` builds the autograd graph (call outside ``torch.inference_mode``). Runs in
        float32 without autocast (the likelihood's ODE needs it; the loss is one call per image).
        """
        n = x.shape[0]
        sigma = torch.as_tensor(sigma)
        if sigma.ndim != 1 or sigma.shape[0] != n:
            raise ValueError(f"sigma must have shape ({n},), got {tuple(sigma.shape)}")
        sigma = sigma.to(self.device, torch.float32)  # a float tensor: never a Python float (cast to long)
        x = x.to(self.device, torch.bfloat16 if self.precision == "bf16" else torch.float32)
        with torch.enable_grad() if grad else torch.inference_mode(), torch.autocast(self.device.type, enabled=False):
            out = self.unet(x, sigma).sample
        return out.float()

    def denoise(self, x_t: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step denoising of data-space ``x_t`` = x + sigma z at noise ``sigma`` (N,), by Tweedie's formula.

        Returns ``(z_pred, x_hat)``, both (N, C, H, W) float32 on the target's device:

            z_pred  = -sigma s_theta(x_t, sigma)      the model's guess of the noise z (its DSM target)
            x_hat   = x_t - sigma z_pred = x_t + sigma^2 s_theta(x_t, sigma)     E[x | x_t], data units

        so that mean (z_pred - z)^2 is the denoising-score-matching error (sigma s_theta + z)^2 the loss
        attack and training use, and mean (x_hat - x)^2 = sigma^2 times it.
        """
        sigma = torch.as_tensor(sigma).to(self.device, torch.float32)
        x_t = x_t.to(self.device, torch.float32)
        z_pred = -sigma.view(-1, 1, 1, 1) * self.score(x_t, sigma)
        return z_pred, x_t - sigma.view(-1, 1, 1, 1) * z_pred

    @staticmethod
    def from_data(x: torch.Tensor) -> torch.Tensor:
        """The model's data space [0, 1] -> images in [-1, 1] (for display; not clipped)."""
        return x * 2.0 - 1.0

    def eps(self, x_t: torch.Tensor, t: int | torch.Tensor) -> torch.Tensor:
        raise NotADDPMError(
            f"{self.source} is a VE-SDE score model: it has no DDPM noise prediction eps_theta(x_t, t) on a "
            "discrete abar schedule; only attacks with a score-based form (loss, likelihood) apply"
        )

    def eps_float_t(self, x_t: torch.Tensor, t: torch.Tensor, *, grad: bool = False) -> torch.Tensor:
        return self.eps(x_t, 0)

    def card(self) -> dict[str, Any]:
        """The model card (:meth:`Target.card`'s keys; ``sigma_at_t`` instead of ``abar_at_t``)."""
        sched = self.schedule
        last = sched.num_timesteps - 1
        steps = sorted({0, min(100, last), min(200, last), sched.num_timesteps // 2, last})
        cfg = self.scheduler_config or sched.to_scheduler_config()
        return {
            **self.card_basics(),
            "kind": "score-based (VE-SDE / SMLD): s_theta(x, sigma), data in [0, 1]",
            "precision": "float32 (score calls run without autocast)",
            "parameterisation": "score: the UNet's output is s_theta(x, sigma) = grad_x log p_sigma(x)",
            "variance_type": "none (a VE-SDE has no DDPM variance)",
            "sigma_at_t": {str(i): float(f"{float(sched.sigma_of_step(i)):.6g}") for i in steps},
            "zero_terminal_snr": False,
            "space": "pixel, data in [0, 1]",
            "vae_scaling_factor": None,
            "converted": [
                "images in [-1, 1] -> the model's data space (x + 1) / 2",
                f"step i -> t_i = {sched.sampling_eps:g} + (1 - {sched.sampling_eps:g}) i / {last}, "
                "sigma(t_i) passed to the UNet as a float tensor",
                "noise prediction z_pred = -sigma s_theta (Tweedie: x_hat = x_t + sigma^2 s_theta)",
            ],
            "scheduler_config": f"{cfg.get('_class_name', SCHEDULER_CLASS)}"
            + "".join(f", {k}={cfg[k]}" for k in ("snr", "correct_steps", "sigma_min", "sigma_max") if k in cfg),
        }


def fingerprint_score_model(unet: Any, schedule: VESchedule) -> str:
    """sha256 over the UNet config, every weight tensor and the VE schedule; 16 hex digits."""
    h = hashlib.sha256()
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_")}
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(unet.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    h.update(json.dumps(schedule.to_scheduler_config(), sort_keys=True).encode())
    return h.hexdigest()[:16]


def is_ve_scheduler_config(config: Mapping[str, Any]) -> bool:
    return config.get("_class_name") == SCHEDULER_CLASS


def is_ve_folder(spec: str | Path) -> bool:
    """True when ``spec`` is a local diffusers folder whose scheduler config is a ``ScoreSdeVeScheduler``
    (what :func:`mia_core.target.load_target` loads as a :class:`ScoreTarget`); reads one small JSON
    file, loads no model. False for anything else (the default, a Hub id, a missing or odd folder)."""
    folder = Path(str(spec)).expanduser()
    for path in (folder / "scheduler" / "scheduler_config.json", folder / "scheduler_config.json"):
        try:
            config = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        return isinstance(config, dict) and is_ve_scheduler_config(config)
    return False
