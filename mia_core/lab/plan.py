"""Planning an attack run for the Attack lab: parameters as form fields, costs, time estimates.

Everything the Attack lab page needs that is not drawing: which parameters each attack has
(from its ``Params`` dataclass, with the published defaults), turning the form's values back
into validated attacks, keeping only the values that differ from the defaults (what the app
stores in ``cfg.params``), the cost in UNet calls, an estimate of the time measured on this
machine now (:class:`SpeedBook`: a quick probe of the UNet, corrected from a run's progress), and
a compact metric summary. No streamlit here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mia_core.attacks import ACCESS_LEVELS, REGISTRY, Attack, AttackResult, access_label, attacks_by_access, get_attack
from mia_core.metrics import BUDGET_01PCT, BUDGET_1PCT, evaluate, format_metric

#: UNet input pixels x parameters evaluated per second: only a last resort, for a target that cannot be
#: probed (the estimates come from :func:`probe_speed`, a measurement on this machine now).
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


# -- this machine's speed, measured now ------------------------------------------------------------------


@dataclass(frozen=True)
class Speed:
    """How fast this machine runs one target's UNet now: a forward pass of B inputs takes
    ``overhead_s + B / inputs_per_s`` seconds.

    The overhead matters on a CPU: a forward pass of one 8x8 image costs nearly as much as one of
    sixty, so a sequential attack (SecMI's ten DDIM steps) on a few images is slower per UNet call
    than a stacked sweep. ``source`` is "probe" (timed forward passes on random inputs) or "run"
    (a probe corrected by a run's measured progress); ``measured_at`` is a ``time.time()``.
    """

    overhead_s: float
    inputs_per_s: float
    source: str = "probe"
    measured_at: float = 0.0

    def pass_seconds(self, inputs: int) -> float:
        return self.overhead_s + inputs / self.inputs_per_s

    def calls_per_s(self, batch: int) -> float:
        """UNet calls (inputs) per second in forward passes of ``batch`` inputs."""
        return batch / self.pass_seconds(batch)

    def scaled(self, factor: float, source: str = "run") -> Speed:
        """The same machine ``factor`` times slower (> 1) or faster (< 1), measured now."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"speed factor must be a positive number, got {factor}")
        return Speed(self.overhead_s * factor, self.inputs_per_s / factor, source, time.time())


def probe_speed(target: Any, *, large: int | None = None, repeats: int = 1) -> Speed:
    """Time the target's UNet on random inputs here, now: passes of 1 and of ``large`` inputs.

    ``large`` defaults to the batch the attacks fill (``max_unet_batch``), capped at 64 inputs on a
    CPU (the time per input is flat beyond that there) and 1,024 on a GPU, so the probe stays short
    (a fraction of a second on an idle 2-core CPU for the embedded target). Each size is run once
    to warm up, then ``repeats`` times; the fastest time counts.
    """
    import torch

    from mia_core.attacks.base import max_unet_batch, model_shape

    cap = 1024 if str(getattr(target, "device", "cpu")).startswith("cuda") else 64
    large = int(large or min(cap, max_unet_batch(target)))
    if large < 2:
        raise ValueError(f"the probe's large batch must hold >= 2 inputs, got {large}")
    shape = model_shape(target)
    gen = torch.Generator().manual_seed(0)
    n_steps = int(target.schedule.num_timesteps)

    def best(batch: int) -> float:
        x = torch.randn(batch, *shape, generator=gen)
        t = torch.randint(0, n_steps, (batch,), generator=gen)
        times = []
        for i in range(repeats + 1):
            start = time.perf_counter()
            target.eps(x, t).sum().item()  # .item(): waits for a GPU
            if i:  # the first pass warms up (allocations, kernels)
                times.append(time.perf_counter() - start)
        return min(times)

    one, many = best(1), best(large)
    per_input = max(many - one, 0.0) / (large - 1)
    if per_input <= 0:  # noise: the large pass was no slower; count it all as per-input work
        per_input = many / large
    return Speed(max(one - per_input, 0.0), 1.0 / per_input, "probe", time.time())


class _CountingUNet:
    """Stands in for a UNet: records the inputs of each forward pass and answers zeros (cheap)."""

    def __init__(self, unet: Any, passes: list[int]) -> None:
        self._unet, self._passes = unet, passes

    def __getattr__(self, name: str) -> Any:
        return getattr(self._unet, name)

    def __call__(self, x: Any, t: Any, *args: Any, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        self._passes.append(int(x.shape[0]))
        out_channels = int(getattr(self._unet.config, "out_channels", x.shape[1]) or x.shape[1])
        zeros = (x * 0.0).float()  # keeps autograd's graph for attacks that differentiate
        reps = max(1, out_channels // x.shape[1])
        return SimpleNamespace(sample=zeros.repeat(1, reps, 1, 1)[:, :out_channels])


_PASSES: dict[tuple[str, str], tuple[int, ...]] = {}
_PASSES_LOCK = threading.Lock()


def forward_passes(attack: Attack, target: Any) -> tuple[int, ...] | None:
    """The forward passes an attack makes to score ONE image: UNet inputs per pass, in order.

    Counted by running the attack on one blank image with a stand-in UNet that answers zeros (no
    model evaluation, milliseconds). For a batch of b images each pass holds b times as many
    inputs. None when the attack cannot be counted this way (learned attacks, generated samples,
    targets of another kind): the estimate then treats every call as its own pass.
    Cached per (target fingerprint, attack and parameters).
    """
    import torch

    if attack.learns or attack.generates_samples or not hasattr(target, "_forward"):
        return None
    key = (str(target.fingerprint), f"{attack.name}:{sorted(attack.params_dict().items())}")
    with _PASSES_LOCK:
        if key in _PASSES:
            return _PASSES[key]
    passes: list[int] = []
    stand_in = copy.copy(target)
    stand_in._forward = stand_in.unet = _CountingUNet(target.unet, passes)
    x0 = torch.zeros(1, target.channels, target.resolution, target.resolution)
    try:
        attack.run(stand_in, x0, ids=("probe",), seed=0, batch_size=1)
    except Exception:  # an attack whose math needs real predictions: no count
        return None
    counted = tuple(passes)
    with _PASSES_LOCK:
        _PASSES[key] = counted
    return counted


def attack_seconds(attack: Attack, n_images: int, speed: Speed, target: Any) -> float:
    """Predicted seconds for ``attack`` on ``n_images`` images of ``target`` at ``speed``.

    n images go in batches of the size :meth:`Attack.run` picks; each batch makes the attack's
    forward passes (counted by :func:`forward_passes`), each costing the overhead plus its inputs;
    the inputs total the attack's UNet calls per image (as in the table) times n. Setup calls
    (generated samples, shadow models) are added as passes of the large batch.
    """
    from mia_core.attacks.base import floor_power_of_two, max_unet_batch

    n_images = int(n_images)
    if n_images < 1:
        return 0.0
    calls = calls_per_image(attack)
    batch = max(1, floor_power_of_two(max_unet_batch(target) // max(1, attack.inputs_per_image())))
    batches = math.ceil(n_images / batch)
    passes = forward_passes(attack, target)
    n_passes = len(passes) if passes else calls
    seconds = batches * n_passes * speed.overhead_s + n_images * calls / speed.inputs_per_s
    setup = attack.setup_unet_calls()
    if setup:
        large = max_unet_batch(target)
        seconds += math.ceil(setup / large) * speed.overhead_s + setup / speed.inputs_per_s
    return seconds


class SpeedBook:
    """This process's measured UNet speeds, one per (target fingerprint, device).

    :meth:`speed` probes a target the first time and again once the measurement is older than
    ``max_age_s`` (the machine's load changes); :meth:`correct` replaces it with what a run
    actually achieved. Thread-safe: the pages and the worker share one book.
    """

    def __init__(self, max_age_s: float = 600.0) -> None:
        self.max_age_s = float(max_age_s)
        self._speeds: dict[tuple[str, str], Speed] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(target: Any) -> tuple[str, str]:
        return str(target.fingerprint), str(getattr(target, "device", "cpu"))

    def get(self, target: Any) -> Speed | None:
        """The cached speed if it is fresh, else None (nothing is measured)."""
        with self._lock:
            found = self._speeds.get(self.key(target))
        if found is None or time.time() - found.measured_at > self.max_age_s:
            return None
        return found

    def speed(self, target: Any) -> Speed:
        """The fresh cached speed, or a new probe (a second or so on a CPU)."""
        found = self.get(target)
        if found is None:
            found = probe_speed(target)
            with self._lock:
                self._speeds[self.key(target)] = found
        return found

    def correct(self, target_key: tuple[str, str], base: Speed, factor: float) -> Speed:
        """Record that a run went ``factor`` times slower than ``base`` predicted; returns the new speed."""
        new = base.scaled(factor)
        with self._lock:
            self._speeds[target_key] = new
        return new

    def forget(self) -> None:
        with self._lock:
            self._speeds.clear()


#: The process's book (the Attack lab's estimates and its running jobs share it).
SPEEDS = SpeedBook()


@dataclass(frozen=True)
class Plan:
    """What a run of some attacks on N images costs.

    On a latent target the VAE's passes are counted too (``vae_*``: encodes of the images, decodes of
    generated samples), and ``seconds`` includes them at ``vae_pass_cost`` UNet-call equivalents each.
    """

    n_images: int
    rows: list[dict[str, Any]]  # one per attack: name, title, calls, vae_passes, stored, seconds
    calls_to_compute: int
    calls_total: int
    seconds: float | None
    measured: bool  # the time comes from a measurement on this machine (else a rough guess)
    vae_to_compute: int = 0
    vae_total: int = 0

    @property
    def all_stored(self) -> bool:
        return all(r["stored"] for r in self.rows)

    def predicted(self) -> dict[str, float]:
        """attack name -> predicted seconds of what a Run would compute (0 for a stored result)."""
        return {r["name"]: (0.0 if r["stored"] else float(r.get("seconds") or 0.0)) for r in self.rows}


def make_plan(
    attacks: Sequence[Attack],
    stored: Iterable[str],
    n_images: int,
    calls_per_second: float | None = None,
    measured: bool = True,
    *,
    speed: Speed | None = None,
    target: Any = None,
    vae_pass_cost: float = 0.0,
) -> Plan:
    """The cost of running ``attacks`` on ``n_images`` images; those in ``stored`` cost nothing now.

    Time: with a ``speed`` (and the ``target``), :func:`attack_seconds` per attack; else, with a
    flat ``calls_per_second``, calls / rate; else unknown (None). ``vae_pass_cost``
    (:func:`vae_pass_cost`, > 0 for a latent target) counts the VAE: each attack's :func:`vae_passes`,
    converted to UNet-call equivalents for the time (a probe times the UNet alone, so they are added
    to its estimate; a flat rate measured on earlier runs of the target, ``measured=True``, already
    includes them).
    """
    stored = set(stored)
    rows, to_compute, total, seconds, vae_todo, vae_total = [], 0, 0, 0.0, 0, 0
    latent = vae_pass_cost > 0
    for a in attacks:
        # + what the attack spends once whatever the images (the GAN-era baselines' generated samples, GSA's
        # shadow training; counted in full: the plan cannot see whether the cache already holds them)
        calls = calls_per_image(a) * n_images + a.setup_unet_calls()
        passes = vae_passes(a, n_images) if latent else 0
        total += calls
        vae_total += passes
        secs = None
        if speed is not None and target is not None:
            secs = attack_seconds(a, n_images, speed, target) + passes * vae_pass_cost / speed.inputs_per_s
        elif calls_per_second:
            secs = (calls + (0.0 if measured else passes * vae_pass_cost)) / calls_per_second
        if a.name not in stored:
            to_compute += calls
            vae_todo += passes
            seconds += secs or 0.0
        rows.append(
            {
                "name": a.name,
                "title": a.title,
                "calls": calls,
                "vae_passes": passes,
                "stored": a.name in stored,
                "seconds": secs,
            }
        )
    known = (speed is not None and target is not None) or bool(calls_per_second)
    return Plan(n_images, rows, to_compute, total, seconds if known else None, measured, vae_todo, vae_total)


def eta_from_progress(
    predicted: Mapping[str, float], order: Sequence[str], phase: str, fraction_of_phase: float, elapsed_s: float
) -> tuple[float, float] | None:
    """Recalibrate a running job's estimate from its measured progress.

    ``predicted``: attack -> predicted seconds (0 for a stored one), ``order``: the attacks in the
    job's order; the job is ``fraction_of_phase`` (0..1) through attack ``phase`` after
    ``elapsed_s`` seconds. Returns (seconds left, factor), factor = measured / predicted time so far
    (> 1: this machine is slower than the estimate said), or None while too little has run to tell
    (under 1 s, or under 5 % of the predicted work).
    """
    if phase not in order:
        return None
    i = order.index(phase)
    done = sum(predicted.get(n, 0.0) for n in order[:i]) + predicted.get(phase, 0.0) * min(
        1.0, max(0.0, fraction_of_phase)
    )
    total = sum(predicted.get(n, 0.0) for n in order)
    if elapsed_s < 1.0 or done <= 0 or done < 0.05 * total:
        return None
    factor = elapsed_s / done
    return max(0.0, (total - done) * factor), factor


def attack_table(
    params: Mapping[str, Mapping[str, Any]],
    selected: Sequence[str],
    stored: Iterable[str],
    levels: Iterable[str] | None = None,
    conditioning: Any = None,
) -> list[dict[str, Any]]:
    """One row per registered attack: title, threat model, paper, cost per image without / with its trace,
    stored? ``levels``: only the attacks of these access levels ("black", "gray", "white"; default all).
    ``conditioning`` (a text-to-image run's :class:`~mia_core.attacks.Conditioning` or its dict): the costs
    count its guidance (two forward passes per UNet call when it is on)."""
    stored = set(stored)
    rows = []
    names = filter_by_access(list(REGISTRY), ACCESS_LEVELS if levels is None else levels)
    for name, cls in ((n, REGISTRY[n]) for n in names):
        try:
            attack = get_attack(name, params.get(name))
        except (TypeError, ValueError):
            attack = get_attack(name)
        if conditioning:
            attack = attack.with_conditioning(conditioning)
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
