"""What decides a training run: :class:`TrainConfig`, its choices (schedules, augmentations, DP
accountants) and the model-size presets the app offers. See the package doc for the objective."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mia_core.schedule import NoiseSchedule

SCHEDULES = ("linear", "cosine")
AUGMENTS = ("none", "hflip", "strong")
#: What each augmentation is, in words (the app's labels).
AUGMENT_LABELS = {"none": "none", "hflip": "horizontal flips", "strong": "strong (random shifts and flips)"}
DP_ACCOUNTANTS = ("rdp", "prv")

#: Model-size presets: name -> (UNet block_out_channels, layers_per_block, what it is).
PRESETS: dict[str, tuple[tuple[int, ...], int, str]] = {
    "small": ((16, 32, 32), 1, "0.28 M parameters: fast, leaks less"),
    "medium": ((32, 64, 64), 1, "1.1 M parameters: the embedded default's architecture"),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the trained weights (with the data and the seed).

    The first fields and their defaults are those the shipped default target was trained with.

    schedule : "linear" (betas beta_start..beta_end) or "cosine" (Nichol & Dhariwal; ignores the betas)
    augment : "none", "hflip" (random horizontal flip) or "strong" (random shift by up to 1/8 of
        the size with reflection padding, then a random flip); see :func:`augment_batch`
    hflip : the old spelling of ``augment="hflip"``; kept so old configs and logs load. It is set
        to ``augment == "hflip"`` after validation.
    dp_epsilon : target epsilon of DP-SGD; None trains without DP
    dp_delta : delta of the guarantee; None means 1 / N^1.1 for N members (below 1/N, as a
        meaningful delta must be: 5.6e-4 for the 898 digits, 1.8e-4 for 2,500 CIFAR images)
    dp_max_grad_norm : C, the per-sample gradient clipping norm (replaces ``grad_clip`` under DP)
    dp_accountant : "rdp" (Renyi DP, Mironov 2017; Opacus' classic) or "prv" (tighter, slower)
    checkpoint_every : write a resumable checkpoint every that many steps and at the end (0: never)
    """

    steps: int = 6000
    batch_size: int = 128
    lr: float = 2e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    block_out_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = 2
    attention: bool = True
    norm_num_groups: int = 8
    num_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    hflip: bool = False
    seed: int = 0
    log_every: int = 100
    schedule: str = "linear"
    augment: str = "none"
    dp_epsilon: float | None = None
    dp_delta: float | None = None
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    checkpoint_every: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "num_timesteps", "log_every", "layers_per_block", "norm_num_groups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("warmup_steps", "checkpoint_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip!r}")
        channels = tuple(int(c) for c in self.block_out_channels)
        if not channels or min(channels) < 1:
            raise ValueError(f"block_out_channels must be positive integers, got {self.block_out_channels!r}")
        bad = [c for c in channels if c % self.norm_num_groups]
        if bad:
            raise ValueError(f"block_out_channels {bad} are not divisible by norm_num_groups={self.norm_num_groups}")
        object.__setattr__(self, "block_out_channels", channels)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.hflip and self.augment not in ("none", "hflip"):
            raise ValueError(
                f"hflip=True (the old spelling of augment='hflip') conflicts with augment={self.augment!r}"
            )
        object.__setattr__(self, "augment", "hflip" if self.hflip else self.augment)
        object.__setattr__(self, "hflip", self.augment == "hflip")
        if self.dp_epsilon is not None and not (math.isfinite(self.dp_epsilon) and self.dp_epsilon > 0):
            raise ValueError(f"dp_epsilon must be a finite number > 0 or None (no DP), got {self.dp_epsilon!r}")
        if self.dp_delta is not None and not 0 < self.dp_delta < 1:
            raise ValueError(f"dp_delta must be in (0, 1) or None (1 / N^1.1), got {self.dp_delta!r}")
        if not self.dp_max_grad_norm > 0:
            raise ValueError(f"dp_max_grad_norm must be > 0, got {self.dp_max_grad_norm!r}")
        if self.dp_accountant not in DP_ACCOUNTANTS:
            raise ValueError(f"dp_accountant must be one of {DP_ACCOUNTANTS}, got {self.dp_accountant!r}")

    @property
    def uses_dp(self) -> bool:
        return self.dp_epsilon is not None

    def delta_for(self, n_members: int) -> float:
        """The DP delta for ``n_members`` training images: ``dp_delta``, or 1 / N^1.1 when None."""
        return float(self.dp_delta) if self.dp_delta is not None else 1.0 / float(n_members) ** 1.1

    def make_schedule(self) -> NoiseSchedule:
        if self.schedule == "cosine":
            return NoiseSchedule.cosine(self.num_timesteps)
        return NoiseSchedule.linear(self.num_timesteps, self.beta_start, self.beta_end)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (tuples become lists)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; also reads older logs (``hflip`` without ``augment``).

        Unknown keys raise ``ValueError`` naming them.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; known: {sorted(known)}")
        values = dict(d)
        if "block_out_channels" in values:
            values["block_out_channels"] = tuple(values["block_out_channels"])
        return cls(**values)


def preset_config(preset: str, **fields: Any) -> TrainConfig:
    """A TrainConfig with the UNet of a model-size preset (see :data:`PRESETS`) and the other ``fields``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {tuple(PRESETS)}, got {preset!r}")
    channels, layers, _ = PRESETS[preset]
    return TrainConfig(block_out_channels=channels, layers_per_block=layers, **fields)
