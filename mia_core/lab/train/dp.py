"""DP-SGD for training (Abadi et al. 2016, Algorithm 1) through Opacus: the wrapped model and
optimizer, the noise multiplier from the accountant, and the accountant's state for checkpoints.

Notation (see the package doc): q = batch_size / N the Poisson sample rate, C = dp_max_grad_norm,
sigma the noise multiplier, (eps, delta) the guarantee after the steps taken.

The accountant's state is read and restored only through its public ``state_dict()`` /
``load_state_dict()`` (a list of (sigma, q, steps) records), never by assigning its attributes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mia_core.lab.train.config import TrainConfig


@dataclass
class DPState:
    """The DP-SGD state of one run besides the wrapped model and optimizer: q, delta, sigma, accountant, noise RNG."""

    sample_rate: float
    delta: float
    noise_multiplier: float
    accountant: Any
    noise_generator: torch.Generator

    def history(self) -> list[tuple[float, float, int]]:
        """The accountant's record: [(noise multiplier, sample rate, number of steps), ...]."""
        return [tuple(h) for h in self.accountant.state_dict()["history"]]

    def restore_history(self, history: list) -> None:
        """Load a record written by :meth:`history` (a checkpoint) into the accountant."""
        self.accountant.load_state_dict(
            {"history": [tuple(h) for h in history], "mechanism": self.accountant.mechanism()}
        )

    def record(self, cfg: TrainConfig) -> dict[str, Any]:
        """The guarantee so far, as written to ``train_log.json["dp"]``."""
        history = self.history()
        eps = float(self.accountant.get_epsilon(delta=self.delta)) if history else 0.0
        return {
            "target_epsilon": cfg.dp_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": cfg.dp_max_grad_norm,
            "achieved_epsilon": eps,
            "accountant": cfg.dp_accountant,
            "sample_rate": self.sample_rate,
            "steps": sum(int(n) for _, _, n in history),
            "sampling": "Poisson",
            "grad_sample_mode": "functorch",
        }


def make_accountant(name: str) -> Any:
    """Opacus' accountant called ``name`` ("rdp" or "prv", see :data:`~mia_core.lab.train.config.DP_ACCOUNTANTS`)."""
    from opacus.accountants import PRVAccountant, RDPAccountant

    return RDPAccountant() if name == "rdp" else PRVAccountant()


def make_grad_sample_module(unet: Any) -> Any:
    """Opacus' per-sample-gradient wrapper as DP training uses it (functorch mode; see the module doc).

    After ``loss.backward()`` on a batch mean, each parameter's ``grad_sample`` (N, *shape) holds
    the gradient of each sample's own loss.
    """
    from opacus import GradSampleModule

    return GradSampleModule(unet, batch_first=True, loss_reduction="mean", strict=True, force_functorch=True)


def setup_dp(cfg: TrainConfig, n_members: int, unet: Any, opt: torch.optim.Optimizer, device: torch.device):
    """Wrap the UNet and the optimizer for DP-SGD; the noise multiplier comes from Opacus' accountant.

    Returns (the wrapped model, the DP optimizer around ``opt``, the :class:`DPState`).
    """
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.optimizers import DPOptimizer

    sample_rate = cfg.batch_size / n_members
    if sample_rate >= 1:
        raise ValueError(
            f"DP-SGD needs batch_size < the number of members (sample rate q = batch_size / N); "
            f"got batch_size {cfg.batch_size} for {n_members} members"
        )
    delta = cfg.delta_for(n_members)
    sigma = float(
        get_noise_multiplier(
            target_epsilon=cfg.dp_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=cfg.steps,
            accountant=cfg.dp_accountant,
        )
    )
    model = make_grad_sample_module(unet)
    noise_generator = torch.Generator(device=device).manual_seed(cfg.seed + 1)
    dp_opt = DPOptimizer(
        opt,
        noise_multiplier=sigma,
        max_grad_norm=cfg.dp_max_grad_norm,
        expected_batch_size=cfg.batch_size,
        loss_reduction="mean",
        generator=noise_generator,
    )
    dp = DPState(sample_rate, delta, sigma, make_accountant(cfg.dp_accountant), noise_generator)
    return model, dp_opt, dp
