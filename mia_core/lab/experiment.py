"""An experiment: one target, one member / non-member split, the images ready for the UNet.

This is the unit the CLI and the app both work on: :func:`load_experiment` resolves a target
spec and a data spec, converts the images to the target's resolution and channels (and says
so), and :meth:`Experiment.attack` runs attacks through the result store.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mia_core.attacks import Attack, AttackResult, get_attack
from mia_core.data import Conversion, ImageSet, Split, resolve_data
from mia_core.data.images import UnitRangeView
from mia_core.data.sources import MixedImagesError
from mia_core.lab.evalsets import labels_for
from mia_core.lab.runs import JobState, ResultStore, RunKey, Worker, run_attacks
from mia_core.metrics import AttackMetrics, evaluate
from mia_core.target import Target, load_target


@dataclass(eq=False)
class Experiment:
    """A target and a labelled image set in model space.

    Attributes
    ----------
    target : Target
    split : Split (members first, then non-members, in ``ids`` order)
    images : ImageSet, converted to the target's resolution and channels (uint8, (N, H, W, C))
    conversion : Conversion, what was done to the source images
    is_member : (N,) bool
    """

    target: Target
    split: Split
    images: ImageSet
    conversion: Conversion
    is_member: np.ndarray

    @property
    def ids(self) -> tuple[str, ...]:
        return self.images.ids

    @functools.cached_property
    def x0(self) -> UnitRangeView:
        """The images as (N, C, H, W) float32 in [-1, 1], converted as rows are read (:class:`UnitRangeView`):
        ``x0[a:b]`` converts those rows only, so memory holds the uint8 images (or, lazy ones, nothing but
        the batch being read). ``Attack.run`` (``attack``) reads it batch by batch; a learned attack's
        ``fit_score`` and ``np.asarray(x0)`` convert all of it (4 bytes per pixel)."""
        return UnitRangeView(self.images.images)

    def attack(
        self,
        attacks: Sequence[Attack],
        *,
        seed: int = 0,
        store: ResultStore | None = None,
        batch_size: int | None = None,
        progress: Callable[[str, int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> dict[str, AttackResult]:
        """Run (or read from the store) each attack; learned attacks get this split's labels."""
        return run_attacks(
            self.target,
            self.x0,
            self.ids,
            self.images.fingerprint,
            attacks,
            seed=seed,
            store=store,
            batch_size=batch_size,
            progress=progress,
            cancel=cancel,
            is_member=self.is_member,
            captions=self.images.captions,
        )

    def run_key(self, attack: Attack, seed: int) -> RunKey:
        """The store key of ``attack`` on this experiment (with its labels, for a learned attack)."""
        return RunKey.of(
            self.target.fingerprint, self.images.fingerprint, attack, seed, ids=self.ids, is_member=self.is_member
        )

    def labels_for(self, ids: Sequence[str]) -> np.ndarray:
        """Membership labels of ``ids`` (any subset, any order): (len(ids),) bool.

        Raises ValueError naming the first id that is not one of this experiment's images
        (:func:`mia_core.lab.evalsets.labels_for`, the one lookup).
        """
        return labels_for(ids, self.ids, self.is_member)

    def metrics(self, result: AttackResult, *, n_bootstrap: int = 200, seed: int = 0) -> AttackMetrics:
        """Metrics of a result on the images it scored: all of them, or a learned attack's evaluation part."""
        labels = self.is_member if result.ids == self.ids else self.labels_for(result.ids)
        try:
            return evaluate(result.scores, labels, n_bootstrap=n_bootstrap, seed=seed)
        except ValueError as exc:
            raise ValueError(f"{result.attack}: {exc}") from None


def load_experiment(
    target: str | Target = "default",
    data: str = "default",
    *,
    device: str | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> Experiment:
    """Resolve a target and a data spec (see ``mia attack --help``) into an :class:`Experiment`."""
    tgt = target if isinstance(target, Target) else load_target(target, device=device)
    # An image folder of mixed sizes is converted as it is read, to the target's input (one rule
    # for the CLI and the app: centre-crop to a square, then resize; the report below says so).
    mixed = ""
    try:
        images, split = resolve_data(data, seed=seed)
    except MixedImagesError as exc:
        images, split = resolve_data(data, seed=seed, resolution=tgt.resolution, channels=tgt.channels)
        mixed = (
            f"images of mixed sizes or channels ({exc}): each was centre-cropped to a square and resized to "
            f"{tgt.resolution}x{tgt.resolution}, {tgt.channels} channel(s), as it was read"
        )
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        split = split.limit(limit)
    ids, is_member = split.labelled()
    images = images.subset(ids)
    converted, conversion = images.converted(resolution=tgt.resolution, channels=tgt.channels)  # lazy stays lazy
    if mixed:
        conversion = Conversion(True, mixed)
    return Experiment(tgt, split, converted, conversion, np.asarray(is_member, dtype=bool))


def make_attacks(names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Attack]:
    params = params or {}
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"parameters given for attack(s) {unknown} that are not selected")
    return [get_attack(name, params.get(name)) for name in names]


def _timestep_params(params: Mapping[str, Any]) -> dict[str, list[int]]:
    """The parameters that name timesteps (``timestep``, ``timesteps``, ``sweep``, ``t_sec``, ``t_*``):
    name -> their integer values. Counts such as ``n_timesteps`` are not timesteps."""
    out = {}
    for name, value in params.items():
        if name.startswith("n_") or not (name in ("sweep", "t_sec") or "timestep" in name or name.startswith("t_")):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if ints:
            out[name] = ints
    return out


def condition_attacks(exp: Experiment, attacks: Sequence[Attack], conditioning: Any = None) -> list[Attack]:
    """The attacks as a run on ``exp`` conditions them: on a text-to-image target each carries
    ``conditioning`` (a :class:`~mia_core.attacks.Conditioning`, its dict or a mode; None = the images' own
    captions), with the digest of ``exp``'s captions in mode "caption", exactly as ``mia attack`` keys its
    runs, so the app and the CLI find each other's stored results. Other targets: the attacks unchanged.
    Raises ValueError in mode "caption" when the images carry no captions."""
    from mia_core.attacks import Conditioning

    if getattr(exp.target, "kind", "") != "t2i":
        return list(attacks)
    cond = Conditioning.from_value(conditioning) or Conditioning()
    if cond.mode == "caption" and exp.images.captions is None:
        raise ValueError(
            "conditioning on each image's own caption needs captions, and these images have none (data "
            f"{exp.images.source!r}): choose the empty prompt or a fixed prompt, or data with captions"
        )
    cond = cond.with_captions(exp.images.captions)
    return [a.with_conditioning(cond) for a in attacks]


def check_attacks(target: Target, attacks: Sequence[Attack]) -> None:
    """Check every attack's parameters against the target before any UNet call.

    Timesteps must lie in 0..T-1 of the target's schedule (an attack's own ``trace_timesteps``
    too). Raises ValueError naming the attack, the parameter and the bad value.
    """
    check_attack_timesteps(attacks, int(target.schedule.num_timesteps))


def check_attack_timesteps(attacks: Sequence[Attack], num_timesteps: int) -> None:
    """:func:`check_attacks` for a schedule of ``num_timesteps`` steps (a target not trained yet)."""
    last = int(num_timesteps) - 1
    for attack in attacks:
        named = _timestep_params(attack.params_dict())
        try:
            named.setdefault("trace timesteps", [int(t) for t in attack.trace_timesteps()])
        except Exception:  # an attack whose trace needs the target to be known: its parameters above suffice
            pass
        for name, values in named.items():
            bad = [v for v in values if not 0 <= v <= last]
            if bad:
                shown = bad[0] if len(values) == 1 else values
                raise ValueError(
                    f"{attack.name} parameter {name}={json.dumps(shown)} is out of range for this target: "
                    f"its timesteps are 0..{last}"
                )


def attack_job_id(exp: Experiment, attacks: Sequence[Attack], seed: int) -> str:
    """One id per (target, images, attacks with params, seed): the same request joins the same job."""
    keys = [exp.run_key(a, seed).digest() for a in attacks]
    return "attacks-" + "-".join(sorted(keys))[:200]


def submit_attacks(
    worker: Worker,
    exp: Experiment,
    attacks: Sequence[Attack],
    *,
    seed: int,
    store: ResultStore,
    batch_size: int | None = None,
) -> JobState:
    """Queue the attacks on the worker; the job writes each finished attack to ``store``."""
    attacks = list(attacks)
    n = len(exp.ids)

    def job(state: JobState) -> None:
        state.total = n * len(attacks)
        offsets = {a.name: i * n for i, a in enumerate(attacks)}

        def progress(name: str, done: int, total: int) -> None:
            # Each attack fills n units of the bar, whatever it counts (a learned attack counts its
            # images, then its training steps).
            state.phase = name
            state.done = offsets[name] + (done if total == n else round(n * done / max(1, total)))
            what = "images" if total == n else "images + training steps"
            state.message = f"{name}: {done}/{total} {what}"

        exp.attack(attacks, seed=seed, store=store, batch_size=batch_size, progress=progress, cancel=state.cancel_event)
        state.message = f"{len(attacks)} attack(s) finished on {n} images"

    names = ", ".join(a.name for a in attacks)
    return worker.submit(attack_job_id(exp, attacks, seed), f"{names} on {n} images", job)


def stored_results(
    exp: Experiment, attacks: Sequence[Attack], *, seed: int, store: ResultStore
) -> dict[str, AttackResult]:
    """The results the store already holds for these attacks (nothing is computed)."""
    out = {}
    for attack in attacks:
        res = store.get(exp.run_key(attack, seed))
        if res is not None:
            out[attack.name] = res
    return out
