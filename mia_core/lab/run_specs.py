"""Runs, not attacks, as the unit the result pages show: a run = an attack with its parameters.

A run is named by a *run id*: the attack's registry name, then ``:`` and its non-default
parameters, e.g. ``"loss"`` (the published defaults) or ``"loss:timesteps=100"`` or
``"pia:sweep=,timestep=100"`` (lists of timesteps joined by ``/``; an empty list is empty). Run
ids go in the URL (``?runs=loss|loss:timesteps=100``), so a link reproduces a view, and they key
the result dicts the Compare figures draw, so two runs of one attack sit side by side. The store
keys (:class:`mia_core.lab.runs.RunKey`) are unchanged: a run id is turned back into an attack,
and the attack into its key, exactly as a Run does. No streamlit here.

A run on a text-to-image target also names its conditioning (``Attack.conditioning``) after the
parameters: ``cond=caption|empty|fixed``, then ``prompt=<the fixed prompt, percent-quoted>`` and
``guidance=<scale>`` when guidance is on, e.g. ``"loss:cond=fixed,prompt=a%20cat"`` or
``"pia:timestep=100,cond=empty,guidance=3"``; so the Compare labels (``views.attack_info``, built
from the run id) say which prompts each result was conditioned on. A "caption" run's key also holds
the captions' digest, which a run id does not carry: :func:`attack_of` re-attaches it from the images'
captions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote

from mia_core.attacks import REGISTRY, Attack, Conditioning, get_attack

#: the run-id keys of the conditioning (never attack parameter names).
CONDITIONING_KEYS = ("cond", "prompt", "guidance")

RUN_SEPARATOR = "|"


def _param_text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join(str(int(v)) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def run_id(attack: Attack | str, params: Mapping[str, Any] | None = None) -> str:
    """``run_id(get_attack("loss", {"timesteps": [100]}))`` -> ``"loss:timesteps=100"``.

    With an attack, its parameters that differ from the published defaults; with a name, ``params``
    (only the non-default ones are kept).
    """
    from mia_core.lab.plan import non_default

    if isinstance(attack, str):
        name, values = attack, dict(params or {})
    else:
        name, values = attack.name, attack.params_dict()
    if name not in REGISTRY:
        raise ValueError(f"unknown attack {name!r} (known: {', '.join(REGISTRY)})")
    diff = non_default(name, values)
    parts = [f"{k}={_param_text(v)}" for k, v in sorted(diff.items())]
    cond = Conditioning.from_value(values.get("conditioning"))
    if cond is not None:
        parts.append(f"cond={cond.mode}")
        if cond.mode == "fixed":
            parts.append(f"prompt={quote(cond.prompt, safe=' ')}")
        if cond.guided:
            parts.append(f"guidance={cond.guidance_scale:g}")
    if not parts:
        return name
    return name + ":" + ",".join(parts)


def parse_run_id(text: str) -> tuple[str, dict[str, Any]]:
    """``"loss:timesteps=100/300"`` -> ``("loss", {"timesteps": [100, 300]})``; ValueError naming a bad part."""
    from mia_core.lab.plan import param_fields, values_from_form

    name, _, rest = str(text).strip().partition(":")
    if name not in REGISTRY:
        raise ValueError(f"run {text!r}: unknown attack {name!r} (known: {', '.join(REGISTRY)})")
    fields = {f.name: f for f in param_fields(name)}
    raw: dict[str, Any] = {}
    cond: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if sep and key in CONDITIONING_KEYS:
            if key == "guidance":
                try:
                    cond["guidance_scale"] = float(value)
                except ValueError:
                    raise ValueError(f"run {text!r}: guidance must be a number, got {value!r}") from None
            else:
                cond["mode" if key == "cond" else "prompt"] = unquote(value)
            continue
        if not sep or key not in fields:
            raise ValueError(f"run {text!r}: {part!r} is not one of {name}'s parameters ({', '.join(fields)})")
        kind = fields[key].kind
        if kind == "ints":
            raw[key] = value.replace("/", ",")
        elif kind == "bool":
            if value not in ("true", "false"):
                raise ValueError(f"run {text!r}: {key} must be true or false, got {value!r}")
            raw[key] = value == "true"
        elif kind in ("int", "float"):
            try:
                raw[key] = float(value) if kind == "float" else int(value)
            except ValueError:
                raise ValueError(f"run {text!r}: {key} must be a number, got {value!r}") from None
        else:
            raw[key] = value
    if cond and "mode" not in cond:
        raise ValueError(f"run {text!r}: prompt= and guidance= need cond=caption, empty or fixed")
    try:
        values = values_from_form(name, raw)
        if cond:
            values["conditioning"] = Conditioning.from_value(cond).as_dict()
        get_attack(name, values)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"run {text!r}: {exc}") from None
    return name, {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


def attack_of(text: str, captions: Sequence[str] | None = None) -> Attack:
    """The attack a run id names (validated). ``captions`` (the images', one per image): a "caption" run's
    key holds their digest, re-attached here so the attack finds its stored result."""
    name, params = parse_run_id(text)
    attack = get_attack(name, params)
    if attack.conditioning is not None and captions is not None:
        attack = attack.with_conditioning(attack.conditioning.with_captions(captions))
    return attack


def base_attack(text: str) -> str:
    """``"loss:timesteps=100"`` -> ``"loss"`` (no validation)."""
    return str(text).partition(":")[0]


def parse_runs(text: str | None) -> tuple[list[str], list[str]]:
    """``"loss|loss:timesteps=100"`` -> (canonical run ids in order, without repeats; error messages)."""
    ids, errors = [], []
    for part in filter(None, (p.strip() for p in str(text or "").split(RUN_SEPARATOR))):
        try:
            rid = run_id(attack_of(part))
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if rid not in ids:
            ids.append(rid)
    return ids, errors


def join_runs(run_ids: Sequence[str]) -> str:
    return RUN_SEPARATOR.join(run_ids)


def stored_run_ids(
    entries: Sequence[Mapping[str, Any]], target_fingerprint: str, images_fingerprint: str, seed: int
) -> list[str]:
    """The run ids of every stored run of this experiment and seed (store metadata, ``ResultStore.entries()``)."""
    out = []
    for e in entries:
        key = e.get("key") or {}
        if (key.get("target_fingerprint"), key.get("images_fingerprint"), key.get("seed")) != (
            target_fingerprint,
            images_fingerprint,
            int(seed),
        ):
            continue
        name = key.get("attack")
        if name not in REGISTRY:
            continue
        try:
            params = json.loads(key.get("params") or "{}")
            rid = run_id(get_attack(name, params))
        except (TypeError, ValueError):  # parameters from an older version of the attack
            continue
        if rid not in out:
            out.append(rid)
    return out
