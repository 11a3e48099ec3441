"""Membership-inference attacks on diffusion models, one interface (see ``base.py``), one registry."""

from __future__ import annotations

from typing import Any, Mapping

from .base import DEFAULT_SWEEP, Attack, AttackResult, params_from_mapping
from .loss import LossAttack
from .pia import PIA, PIAN
from .secmi import SecMIStat
from .sima import SimA

#: name -> attack class, in the order the CLI and the app list them.
REGISTRY: dict[str, type[Attack]] = {cls.name: cls for cls in (LossAttack, SecMIStat, PIA, PIAN, SimA)}
DEFAULT_ATTACKS: tuple[str, ...] = tuple(REGISTRY)


def get_attack(name: str, params: Mapping[str, Any] | None = None) -> Attack:
    """An attack by registry name, with parameters given as plain values (JSON-like)."""
    try:
        cls = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(REGISTRY)}") from None
    return cls(params_from_mapping(cls.Params, params or {}))


__all__ = ["REGISTRY", "DEFAULT_ATTACKS", "DEFAULT_SWEEP", "Attack", "AttackResult", "get_attack"]
