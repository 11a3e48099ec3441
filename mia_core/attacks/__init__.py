"""Membership-inference attacks on diffusion models, one interface (see ``base.py``), one registry."""

from __future__ import annotations

from typing import Any, Mapping

from .base import ACCESS_LEVELS, DEFAULT_SWEEP, Attack, AttackResult, LearnedAttack, params_from_mapping
from .gan_era import GANLeaks, MonteCarloSet
from .gsa import GSA1, GSA2
from .likelihood import ELBO, Likelihood
from .loss import LossAttack
from .pia import PIA, PIAN
from .qr import QuantileRegression
from .rediffuse import ReDiffuse
from .secmi import SecMIStat
from .secmi_nn import SecMINN
from .sima import SimA

#: name -> attack class, in the order the CLI and the app list them.
REGISTRY: dict[str, type[Attack]] = {
    cls.name: cls for cls in (
        LossAttack, SecMIStat, PIA, PIAN, SimA, SecMINN, QuantileRegression, Likelihood, ELBO, ReDiffuse, GANLeaks, MonteCarloSet, GSA1, GSA2,
    )
}
#: what runs when nothing is chosen: the cheap threshold attacks (the learned and likelihood
#: attacks train networks or integrate an ODE and are chosen explicitly).
DEFAULT_ATTACKS: tuple[str, ...] = ("loss", "secmi", "pia", "pian", "sima")


def get_attack(name: str, params: Mapping[str, Any] | None = None) -> Attack:
    """An attack by registry name, with parameters given as plain values (JSON-like)."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(REGISTRY)}") from None
    return cls(params_from_mapping(cls.Params, params or {}))


def scores_only_params(name: str) -> dict[str, Any]:
    """Parameters that switch an attack's per-timestep trace off (scores only, the published cost)."""
    try:
        fields = REGISTRY[name].Params.__dataclass_fields__
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(REGISTRY)}") from None
    if "sweep" in fields:
        return {"sweep": []}
    if "trace" in fields:
        return {"trace": False}
    return {}


__all__ = ["ACCESS_LEVELS", "REGISTRY", "DEFAULT_ATTACKS", "DEFAULT_SWEEP", "Attack", "AttackResult", "LearnedAttack", "get_attack", "scores_only_params"]
