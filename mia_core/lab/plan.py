"""Planning an attack run for the Attack lab: parameters as form fields, costs, time estimates.

Everything the Attack lab page needs that is not drawing: which parameters each attack has
(from its ``Params`` dataclass, with the published defaults), turning the form's values back
into validated attacks, keeping only the values that differ from the defaults (what the app
stores in ``cfg.params``), the cost in UNet calls, an estimate of the time from runs the store
has already timed, and a compact metric summary. No streamlit here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mia_core.attacks import ACCESS_LEVELS, REGISTRY, Attack, AttackResult, access_label, attacks_by_access, get_attack
from mia_core.metrics import BUDGET_01PCT, BUDGET_1PCT, evaluate, format_metric

#: UNet input pixels x parameters evaluated per second, used when no timed run of the target exists
#: (measured on a 2-core CPU with the embedded 1.1 M-parameter 8x8 target: about 5,000 calls/s).
CPU_PIXEL_PARAMS_PER_S = 3.5e11
GPU_PIXEL_PARAMS_PER_S = 1.0e13


@dataclass(frozen=True)
class ParamField:
    """One parameter of an attack as a form field.

    kind is ``"int"``, ``"float"``, ``"bool"`` or ``"ints"`` (a comma-separated list of timesteps).
    """

    attack: str
    name: str
    kind: str
    default: Any
    help: str = ""


def _field_kind(f: dataclasses.Field) -> str:
    annotation = str(f.type)
    if "tuple" in annotation or isinstance(f.default, tuple):
        return "ints"
    if annotation == "bool" or isinstance(f.default, bool):
        return "bool"
    if annotation == "str" or isinstance(f.default, str):
        return "text"
    if "float" in annotation:
        return "float"
    return "int"


def _field_helps(params_cls: type) -> dict[str, str]:
    """``"t_sec: the attack timestep; k: the DDIM interval"`` -> {"t_sec": "the attack timestep", ...}."""
    out = {}
    for part in (params_cls.__doc__ or "").split(";"):
        name, sep, text = part.partition(":")
        if sep:
            out[name.strip()] = text.strip().rstrip(".")
    return out


def param_fields(attack: str) -> list[ParamField]:
    """The form fields of an attack, in dataclass order, with the published defaults."""
    cls = REGISTRY[attack]
    helps = _field_helps(cls.Params)
    return [
        ParamField(attack, f.name, _field_kind(f), f.default, helps.get(f.name, ""))
        for f in dataclasses.fields(cls.Params)
    ]


def format_ints(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


def parse_ints(text: str, name: str = "value") -> tuple[int, ...]:
    """``"0, 50,100"`` -> (0, 50, 100). Empty text -> (). Raises ValueError with a readable message."""
    out = []
    for part in str(text).replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            value = float(part)
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a number (give whole numbers separated by commas)") from None
        if not value.is_integer():
            raise ValueError(f"{name}: {part!r} is not a whole number")
        out.append(int(value))
    return tuple(out)


def form_value(f: ParamField, params: Mapping[str, Any] | None = None) -> Any:
    """The value to show in the form: the session's value if it set one, else the default."""
    value = (params or {}).get(f.name, f.default)
    if f.kind == "ints":
        return format_ints(value)
    if f.kind == "float":
        return float(value)
    if f.kind == "int":
        return int(value)
    if f.kind == "text":
        return str(value)
    return bool(value)


def values_from_form(attack: str, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Form values (text for lists) -> plain parameter values; raises ValueError on bad text."""
    out = {}
    for f in param_fields(attack):
        if f.name not in raw:
            continue
        value = raw[f.name]
        if f.kind == "ints":
            out[f.name] = parse_ints(value, f.name)
        elif f.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(f"{f.name} must be a whole number, got {value}")
            out[f.name] = int(value)
        elif f.kind == "float":
            out[f.name] = float(value)
        elif f.kind == "text":
            out[f.name] = str(value).strip()
        else:
            out[f.name] = bool(value)
    return out


def non_default(attack: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the values that differ from the published defaults, JSON-like (tuples become lists)."""
    out = {}
    for f in param_fields(attack):
        if f.name not in values:
            continue
        value = values[f.name]
        default = f.default
        same = tuple(value) == tuple(default) if f.kind == "ints" else value == default
        if not same:
            out[f.name] = list(value) if f.kind == "ints" else value
    return out


def build_attack(attack: str, values: Mapping[str, Any], *, num_timesteps: int | None = None) -> Attack:
    """A validated attack from plain values; every problem becomes one ValueError with a clear message."""
    try:
        built = get_attack(attack, values)
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    if num_timesteps is not None:
        too_big = sorted({t for t in _timesteps_used(built) if t >= num_timesteps})
        if too_big:
            raise ValueError(
                f"timestep(s) {format_ints(too_big)} are beyond this target's schedule (t = 0 .. {num_timesteps - 1})"
            )
    return built


def _timesteps_used(attack: Attack) -> list[int]:
    p = attack.params_dict()
    out: list[int] = []
    for key in ("timestep", "t_sec"):
        if key in p:
            out.append(int(p[key]))
    for key in ("timesteps", "sweep"):
        out.extend(int(t) for t in p.get(key, ()))
    return out


# -- costs and time ---------------------------------------------------------------------------------


def calls_per_image(attack: Attack) -> int:
    """UNet calls per image of a run as the app runs it (with the trace, when the params ask for one)."""
    return attack.unet_calls(trace=True)


def throughput(entries: Sequence[Mapping[str, Any]], target_fingerprint: str) -> float | None:
    """UNet calls per second measured on earlier runs of this target (median over runs), or None."""
    rates = []
    for e in entries:
        key = e.get("key") or {}
        if key.get("target_fingerprint") != target_fingerprint:
            continue
        seconds, n, calls = (
            float(e.get("seconds") or 0),
            int(e.get("n_images") or 0),
            int(e.get("unet_calls_per_image") or 0),
        )
        if seconds > 0 and n > 0 and calls > 0:
            rates.append(n * calls / seconds)
    return float(np.median(rates)) if rates else None


def guess_throughput(n_parameters: int, resolution: int, channels: int, device: str) -> float:
    """A rough UNet-calls-per-second guess from model and image size when nothing was timed yet."""
    work = max(1, n_parameters) * max(1, channels * resolution**2)
    per_s = GPU_PIXEL_PARAMS_PER_S if device.startswith("cuda") else CPU_PIXEL_PARAMS_PER_S
    return per_s / work


def vae_passes(attack: Attack, n_images: int) -> int:
    """VAE passes a run of ``attack`` on ``n_images`` spends on a latent target: one encode per image (the
    attack works on the latents of the images, :func:`mia_core.attacks.base.to_model_space`), plus one
    decode per generated sample for the attacks that compare images with the target's samples
    (``generates_samples``: their samples are decoded to pixels once, like their UNet calls)."""
    samples = int(getattr(attack.params, "n_samples", 0)) if attack.generates_samples else 0
    return int(n_images) + samples


def vae_pass_cost(target: Any) -> float:
    """One VAE pass (an encode or a decode) in UNet-call equivalents on ``target``: (VAE parameters x
    image values) / (UNet parameters x latent values), the same work measure as :func:`guess_throughput`;
    0 for a pixel target (no VAE)."""
    if not getattr(target, "latent", False):
        return 0.0
    image_values = target.channels * target.resolution**2
    unet_values = math.prod(target.model_shape)
    return target.n_vae_parameters * image_values / max(1, target.n_parameters * unet_values)


def guess_target_throughput(target: Any) -> float:
    """:func:`guess_throughput` for a target: the UNet's work on what it denoises (a latent target's
    latents, not its images)."""
    c, h, _ = target.model_shape
    return guess_throughput(target.n_parameters, h, c, target.device.type)


def format_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 1:
        return "< 1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass(frozen=True)
class Plan:
    """What a run of some attacks on N images costs.

    On a latent target the VAE's passes are counted too (``vae_*``: encodes of the images, decodes of
    generated samples), and ``seconds`` includes them at ``vae_pass_cost`` UNet-call equivalents each.
    """

    n_images: int
    rows: list[dict[str, Any]]  # one per attack: name, title, calls, vae_passes, stored
    calls_to_compute: int
    calls_total: int
    seconds: float | None
    measured: bool  # the rate comes from timed runs of this target (else a rough guess)
    vae_to_compute: int = 0
    vae_total: int = 0

    @property
    def all_stored(self) -> bool:
        return all(r["stored"] for r in self.rows)


def make_plan(
    attacks: Sequence[Attack],
    stored: Iterable[str],
    n_images: int,
    calls_per_second: float | None,
    measured: bool = True,
    *,
    vae_pass_cost: float = 0.0,
) -> Plan:
    """The cost of running ``attacks`` on ``n_images`` (those in ``stored`` cost nothing now).

    ``vae_pass_cost`` (:func:`vae_pass_cost`, > 0 for a latent target) counts the VAE: each attack's
    :func:`vae_passes`, converted to UNet-call equivalents for the time estimate. A rate measured on
    earlier runs of the same target already includes the VAE's time in its seconds, so a measured
    estimate counts them only through the rate (``measured=True``).
    """
    stored = set(stored)
    rows, to_compute, total, vae_todo, vae_total = [], 0, 0, 0, 0
    latent = vae_pass_cost > 0
    for a in attacks:
        # + what the attack spends once whatever the images (the GAN-era baselines' generated samples, GSA's
        # shadow training; counted in full: the plan cannot see whether the cache already holds them)
        calls = calls_per_image(a) * n_images + a.setup_unet_calls()
        passes = vae_passes(a, n_images) if latent else 0
        total += calls
        vae_total += passes
        if a.name not in stored:
            to_compute += calls
            vae_todo += passes
        rows.append({"name": a.name, "title": a.title, "calls": calls, "vae_passes": passes, "stored": a.name in stored})
    work = to_compute + (0.0 if measured else vae_todo * vae_pass_cost)
    seconds = work / calls_per_second if calls_per_second else None
    return Plan(n_images, rows, to_compute, total, seconds, measured, vae_todo, vae_total)


def attack_table(
    params: Mapping[str, Mapping[str, Any]],
    selected: Sequence[str],
    stored: Iterable[str],
    levels: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """One row per registered attack: title, threat model, paper, cost per image without / with its trace,
    stored? ``levels``: only the attacks of these access levels ("black", "gray", "white"; default all)."""
    stored = set(stored)
    rows = []
    names = filter_by_access(list(REGISTRY), ACCESS_LEVELS if levels is None else levels)
    for name, cls in ((n, REGISTRY[n]) for n in names):
        try:
            attack = get_attack(name, params.get(name))
        except (TypeError, ValueError):
            attack = get_attack(name)
        rows.append(
            {
                "attack": cls.title,
                "access": access_label(name),
                "paper": cls.paper,
                "UNet calls / image": attack.unet_calls(trace=False),
                "with trace": attack.unet_calls(trace=True),
                "selected": name in selected,
                "results": ("stored — opens instantly" if name in stored else "not computed yet")
                if name in selected
                else "",
            }
        )
    return rows


def access_options() -> list[str]:
    """The threat models for a filter, weakest access first ("black", "gray", "white")."""
    return list(ACCESS_LEVELS)


def access_option_label(level: str) -> str:
    """ "black" -> "Black box (3)": the level and how many registered attacks it has."""
    return f"{level.capitalize()} box ({len(attacks_by_access()[level])})"


def filter_by_access(names: Sequence[str], levels: Iterable[str], keep: Iterable[str] = ()) -> list[str]:
    """The names whose attack's access is one of ``levels`` (in the given order), plus those in ``keep``
    (e.g. the attacks already chosen, so a filter never drops a selection)."""
    levels, keep = set(levels), set(keep)
    unknown = levels - set(ACCESS_LEVELS)
    if unknown:
        raise ValueError(f"unknown access level(s) {sorted(unknown)}; known: {', '.join(ACCESS_LEVELS)}")
    return [n for n in names if REGISTRY[n].access in levels or n in keep]


def order_by_access(names: Iterable[str]) -> list[str]:
    """Names grouped by threat model, weakest access first (black, gray, white), keeping their order within a group;
    names that are not registered attacks come last."""
    names = list(names)
    known = [n for n in names if n in REGISTRY]
    return [n for group in attacks_by_access(known).values() for n in group] + [n for n in names if n not in REGISTRY]


def cost_text(name: str, params: Mapping[str, Any] | None = None) -> str:
    """An attack's cost with these parameters, e.g. "11 UNet calls/image (20 with trace)" (defaults if invalid)."""
    try:
        attack = get_attack(name, params)
    except (TypeError, ValueError):
        attack = get_attack(name)
    score, trace = attack.unet_calls(trace=False), attack.unet_calls(trace=True)
    calls = f"{score} UNet call{'s' if score != 1 else ''}/image ({trace} with trace)"
    if attack.setup_unet_calls():
        what = "shadow-model training" if attack.uses_shadow_models else "generated samples"
        calls += f" + {attack.setup_unet_calls():,} once for {what}"
    return calls


# -- results ------------------------------------------------------------------------------------------


def metric_rows(
    results: Mapping[str, AttackResult],
    is_member: np.ndarray,
    *,
    ids: Sequence[str] | None = None,
    n_bootstrap: int = 200,
) -> list[dict[str, Any]]:
    """A compact summary per attack: AUC and TPR at 1 % / 0.1 % FPR with 95 % bootstrap intervals.

    ``is_member`` are the labels of ``ids`` (the experiment's images). A result that scored only
    some of them (a learned attack's held-out part) is evaluated on those, and says so.
    """
    from mia_core.lab.evalsets import labels_for

    rows = []
    is_member = np.asarray(is_member, dtype=bool)
    for name, res in results.items():
        partial = ids is not None and tuple(res.ids) != tuple(ids)
        labels = labels_for(res.ids, ids, is_member) if partial else is_member
        m = evaluate(res.scores, labels, n_bootstrap=n_bootstrap)
        cls = REGISTRY.get(name)
        rows.append(
            {
                "attack": cls.title if cls else name,
                "access": access_label(name) if cls else "",
                "AUC": _with_ci(m.auc, m.auc_ci),
                "TPR @ 1% FPR": _with_ci(m.tpr_at_1pct_fpr, m.tpr_at_1pct_fpr_ci, BUDGET_1PCT),
                "TPR @ 0.1% FPR": _with_ci(m.tpr_at_01pct_fpr, m.tpr_at_01pct_fpr_ci, BUDGET_01PCT),
                "members / non-members": f"{m.n_members:,} / {m.n_nonmembers:,}",
                "scored on": (res.evaluated_on or "held-out part") if partial else "all images",
                "run time": format_duration(res.seconds),
                "_auc": m.auc,
                "_tpr1": m.tpr_at_1pct_fpr,
            }
        )
    return rows


def _with_ci(value: float | None, ci: Any, budget: float | None = None) -> str:
    text = format_metric(value, budget)
    if value is not None and ci is not None:
        text += f" [{ci.low:.3f}, {ci.high:.3f}]"
    return text


# -- the form as it is now ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingSelection:
    """The Attack lab's form as it stands before Run: what a Run would start.

    ``attacks`` are built from the form's current values (an attack whose values are invalid is
    built with the parameters of the last Run instead, and named in ``errors``); ``params`` holds
    only the values that differ from the published defaults, as the app stores them in ``cfg.params``.
    """

    attacks: list[Attack]
    params: dict[str, dict[str, Any]]
    errors: dict[str, str]


def pending_selection(
    names: Sequence[str],
    raw: Mapping[str, Mapping[str, Any]],
    fallback: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    num_timesteps: int | None = None,
) -> PendingSelection:
    """Attacks from the form's current values (``raw``: attack -> field -> form value) for ``names``.

    ``fallback`` (attack -> non-default params, the last Run's) is used for an attack whose form
    values do not parse or validate; its message goes into ``errors`` (attack -> text).
    """
    attacks, params, errors = [], {}, {}
    fallback = fallback or {}
    for name in names:
        if name not in REGISTRY:
            continue
        try:
            values = values_from_form(name, raw.get(name, {}))
            attack = build_attack(name, values, num_timesteps=num_timesteps)
        except ValueError as exc:
            errors[name] = str(exc)
            try:
                attack = get_attack(name, fallback.get(name))
            except (TypeError, ValueError):
                attack = get_attack(name)
            values = attack.params_dict()
        diff = non_default(name, values)
        if diff:
            params[name] = diff
        # built from the non-default values, as a Run stores them (cfg.params), so that the run key (and
        # with it "stored?") is the Run's: a form's 4.0 for a default of 4 must not look like a new run
        attacks.append(get_attack(name, diff or None) if not errors.get(name) else attack)
    return PendingSelection(attacks, params, errors)
