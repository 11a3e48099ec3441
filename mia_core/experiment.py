"""An experiment: one target, one member / non-member split, the images ready for the UNet.

This is the unit the CLI and the app both work on: :func:`load_experiment` resolves a target
spec and a data spec, converts the images to the target's resolution and channels (and says
so), and :meth:`Experiment.attack` runs attacks through the result store.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .attacks import Attack, AttackResult, get_attack
from .data import Conversion, ImageSet, Split, convert_images, resolve_data
from .metrics import AttackMetrics, evaluate
from .runs import JobState, ResultStore, RunKey, Worker, run_attacks
from .target import Target, load_target


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
    def x0(self) -> np.ndarray:
        """(N, C, H, W) float32 in [-1, 1], converted once."""
        return self.images.to_unit_range()

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
        return run_attacks(
            self.target, self.x0, self.ids, self.images.fingerprint, attacks,
            seed=seed, store=store, batch_size=batch_size, progress=progress, cancel=cancel,
        )

    def metrics(self, result: AttackResult, *, n_bootstrap: int = 200, seed: int = 0) -> AttackMetrics:
        if result.ids != self.ids:
            raise ValueError(f"{result.attack} result does not belong to this experiment's images")
        return evaluate(result.scores, self.is_member, n_bootstrap=n_bootstrap, seed=seed)


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
    images, split = resolve_data(data, seed=seed)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        split = split.limit(limit)
    ids, is_member = split.labelled()
    images = images.subset(ids)
    pixels, conversion = convert_images(images.images, resolution=tgt.resolution, channels=tgt.channels)
    converted = ImageSet(pixels, images.ids, images.source)
    return Experiment(tgt, split, converted, conversion, np.asarray(is_member, dtype=bool))


def make_attacks(names: Sequence[str], params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Attack]:
    params = params or {}
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise ValueError(f"parameters given for attack(s) {unknown} that are not selected")
    return [get_attack(name, params.get(name)) for name in names]


def attack_job_id(exp: Experiment, attacks: Sequence[Attack], seed: int) -> str:
    """One id per (target, images, attacks with params, seed): the same request joins the same job."""
    keys = [RunKey.of(exp.target.fingerprint, exp.images.fingerprint, a, seed).digest() for a in attacks]
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
            state.phase = name
            state.done = offsets[name] + done
            state.message = f"{name}: {done}/{total} images"

        exp.attack(attacks, seed=seed, store=store, batch_size=batch_size, progress=progress,
                   cancel=state.cancel_event)
        state.message = f"{len(attacks)} attack(s) finished on {n} images"

    names = ", ".join(a.name for a in attacks)
    return worker.submit(attack_job_id(exp, attacks, seed), f"{names} on {n} images", job)


def stored_results(exp: Experiment, attacks: Sequence[Attack], *, seed: int, store: ResultStore) -> dict[str, AttackResult]:
    """The results the store already holds for these attacks (nothing is computed)."""
    out = {}
    for attack in attacks:
        res = store.get(RunKey.of(exp.target.fingerprint, exp.images.fingerprint, attack, seed))
        if res is not None:
            out[attack.name] = res
    return out
