"""Membership-inference attacks on diffusion models, one interface (see ``base.py``), one registry."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import (
    ACCESS_LEVELS,
    DEFAULT_SWEEP,
    TARGET_KINDS,
    Attack,
    AttackResult,
    LearnedAttack,
    NotApplicable,
    params_from_mapping,
)
from .clid import CLiD
from .conditioning import MODES as CONDITIONING_MODES
from .conditioning import Conditioning
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
    cls.name: cls
    for cls in (
        LossAttack,
        SecMIStat,
        PIA,
        PIAN,
        SimA,
        SecMINN,
        QuantileRegression,
        Likelihood,
        ELBO,
        ReDiffuse,
        GANLeaks,
        MonteCarloSet,
        GSA1,
        GSA2,
        CLiD,
    )
}
#: what runs when nothing is chosen: the cheap threshold attacks (the learned and likelihood
#: attacks train networks or integrate an ODE and are chosen explicitly).
DEFAULT_ATTACKS: tuple[str, ...] = ("loss", "secmi", "pia", "pian", "sima")


def attacks_by_access(names: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Attack names grouped by threat model, weakest access first: {"black": [...], "gray": [...], "white": [...]}.

    ``names`` (default: the whole registry) keeps its order inside each group; unknown names raise ValueError.
    """
    names = list(REGISTRY) if names is None else list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown attack(s) {unknown}; known: {', '.join(REGISTRY)}")
    return {level: [n for n in names if REGISTRY[n].access == level] for level in ACCESS_LEVELS}


def access_label(name: str) -> str:
    """The threat model of an attack in a few words, e.g. "gray box", "white box + shadow models"."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(REGISTRY)}") from None
    return f"{cls.access} box" + "".join(f" + {need}" for need in cls.needs)


def get_attack(name: str, params: Mapping[str, Any] | None = None) -> Attack:
    """An attack by registry name, with parameters given as plain values (JSON-like); a "conditioning"
    entry (a mapping of :class:`Conditioning` fields or a mode name) sets the text conditioning."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(REGISTRY)}") from None
    values = dict(params or {})
    conditioning = values.pop("conditioning", None)
    return cls(params_from_mapping(cls.Params, values), conditioning=conditioning)


def not_applicable(attacks: Sequence[Attack], target: Any) -> dict[str, str]:
    """name -> why it does not apply, for the attacks that cannot run on ``target`` (``Attack.applies_to``)."""
    return {a.name: reason for a in attacks if (reason := a.applies_to(target))}


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


__all__ = [
    "CONDITIONING_MODES",
    "Conditioning",
    "ACCESS_LEVELS",
    "TARGET_KINDS",
    "NotApplicable",
    "not_applicable",
    "REGISTRY",
    "access_label",
    "attacks_by_access",
    "DEFAULT_ATTACKS",
    "DEFAULT_SWEEP",
    "Attack",
    "AttackResult",
    "LearnedAttack",
    "get_attack",
    "scores_only_params",
]
