"""Background jobs the app submits to the worker, beside the attack job
(:func:`mia_core.lab.experiment.submit_attacks`): training a target and scoring uploaded images.

Each ``submit_*`` function takes the server's :class:`~mia_core.lab.runs.Worker`, builds the job
closure, names it with an id derived from the request (the same request joins the same job, from
any browser tab) and returns something a page can poll without touching the job's internals.
What a job produces besides its :class:`~mia_core.lab.runs.JobState` (the live loss curve of a
training, the scores of an upload) is kept in small process-wide tables here, bounded in size.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.attacks import Attack
from mia_core.data import ImageSet, Split
from mia_core.lab.runs import Cancelled, JobState, Worker
from mia_core.lab.train import TrainConfig, read_train_log, train, train_command
from mia_core.paths import runs_dir

#: Finished results kept per table (oldest dropped first).
_KEEP = 16


class _Table:
    """A small thread-safe, insertion-ordered table that forgets its oldest entries beyond ``size``."""

    def __init__(self, size: int = _KEEP) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, key: str) -> Any:
        with self._lock:
            return self._items.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)


def _digest(value: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


# -- training -------------------------------------------------------------------------------------


def targets_dir() -> Path:
    """Where trained targets go: ``$MIA_TARGETS_DIR`` if set, else ``targets/`` in the runs folder
    (:func:`mia_core.paths.runs_dir`)."""
    return Path(os.environ.get("MIA_TARGETS_DIR", runs_dir() / "targets"))


def shown_path(path: str | Path) -> str:
    """``path`` relative to the current folder when it is inside it (what a user types), else absolute."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def live_log_every(steps: int, default: int = TrainConfig.log_every) -> int:
    """The logging interval that gives about 100 points on a live loss curve (never above ``default``).

    Logging does not change the weights, only the curve's resolution.
    """
    return max(1, min(int(default), int(steps) // 100))


def recipe_key(data: str, cfg: TrainConfig) -> dict[str, Any]:
    """What a measured training speed depends on: the recipe and the data, not the steps nor the logging."""
    return asdict(replace(cfg, steps=1, log_every=1)) | {"data": data}


def training_job_id(data: str, out_dir: str | Path, cfg: TrainConfig) -> str:
    """One id per (data spec, output folder, config)."""
    return "train-" + _digest([data, str(out_dir), asdict(cfg)])


@dataclass
class TrainingJob:
    """What a page shows of a training job: where it writes and the live loss curve.

    curve : [[step, mean loss], ...], appended by the worker thread every ``cfg.log_every`` steps
    steps_per_second : the rate so far (None before the first logged step)
    """

    job_id: str
    out_dir: Path
    data: str
    steps: int
    n_members: int
    curve: list[list[float]] = field(default_factory=list)
    steps_per_second: float | None = None


_TRAININGS = _Table()


def training_job(job_id: str) -> TrainingJob | None:
    """The :class:`TrainingJob` submitted under ``job_id`` by this process (None if unknown or forgotten)."""
    return _TRAININGS.get(job_id)


def submit_training(
    worker: Worker,
    members: ImageSet,
    split: Split,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    data: str,
    device: str | None = None,
    name: str | None = None,
) -> TrainingJob:
    """Queue the training of ``cfg`` on ``members`` (exactly ``split``'s members) into ``out_dir``.

    ``data`` is the data spec the split came from (for the job id and the recorded ``mia train``
    command). The same request while it runs joins the running job; a finished, failed or
    cancelled one is started again. Cancelling stops at the next logged step and saves nothing.
    Raises ValueError if ``out_dir`` exists and is not empty.
    """
    out_dir = Path(out_dir)
    job_id = training_job_id(data, out_dir, cfg)
    previous, live = worker.get(job_id), training_job(job_id)
    if previous is not None and previous.active and live is not None:
        return live  # the same request is running (another tab): show it
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f"{shown_path(out_dir)} already exists and is not empty: choose another name")
    if previous is not None:
        worker.forget(job_id)  # a cancelled / failed / finished run of the same request: train again
    live = TrainingJob(job_id, out_dir, data, cfg.steps, split.n_members)
    _TRAININGS.put(job_id, live)
    command = train_command(data, shown_path(out_dir), cfg)

    def run(state: JobState) -> None:
        state.phase, state.total = "train", cfg.steps
        t0 = time.perf_counter()

        def progress(step: int, steps: int, loss: float) -> None:
            if state.cancel_event.is_set():
                raise Cancelled(f"cancelled at step {step:,} of {steps:,}; nothing was saved")
            live.curve.append([step, loss])
            live.steps_per_second = step / max(time.perf_counter() - t0, 1e-9)
            state.done, state.message = step, f"step {step:,} of {steps:,} · loss {loss:.4f}"

        result = train(members, split, cfg, out_dir, device=device, command=command, progress=progress)
        from mia_core.lab.plan import format_duration

        state.message = (
            f"trained {cfg.steps:,} steps on {split.n_members:,} members in {format_duration(result.seconds)}"
        )

    what = name or out_dir.name
    worker.submit(job_id, f"training {what} ({cfg.steps:,} steps on {split.n_members:,} members)", run)
    return live


def trained_targets(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """One row per trained target in ``folder`` (default :func:`targets_dir`), read with
    :func:`~mia_core.lab.train.read_train_log`: name, steps, members, augment, achieved DP epsilon
    (None without DP), seconds, device, folder (as :func:`shown_path`). Unreadable logs are skipped."""
    folder = Path(folder) if folder is not None else targets_dir()
    rows = []
    for model in sorted(p.parent for p in folder.glob("*/train_log.json")):
        try:
            log = read_train_log(model)
        except (OSError, ValueError):
            continue
        cfg = log.get("config") or {}
        dp = log.get("dp") or {}
        rows.append(
            {
                "name": model.name,
                "steps": cfg.get("steps"),
                "members": log.get("n_members"),
                "augment": cfg.get("augment"),
                "DP ε": dp.get("achieved_epsilon"),
                "seconds": log.get("seconds"),
                "device": log.get("device"),
                "folder": shown_path(model),
            }
        )
    return rows


# -- scoring uploaded images ------------------------------------------------------------------------


def upload_job_id(key: str) -> str:
    """The worker job id of the upload scoring under ``key``."""
    return f"upload-{key}"


def upload_score_key(target: Any, images: ImageSet, attacks: Sequence[Attack], seed: int) -> str:
    """One key per (target weights, images, attacks with their parameters, seed)."""
    return _digest([target.fingerprint, images.fingerprint, seed, [[a.name, a.params_dict()] for a in attacks]], 20)


_UPLOAD_SCORES = _Table()


def upload_scores(key: str) -> Mapping[str, np.ndarray] | None:
    """The scores a finished upload job stored under ``key`` (attack name -> (N,) scores), else None."""
    return _UPLOAD_SCORES.get(key)


def score_upload(
    key: str, target: Any, images: ImageSet, attacks: Sequence[Attack], *, seed: int
) -> Mapping[str, np.ndarray]:
    """Score uploaded ``images`` now, in the calling thread (small uploads), and keep the scores
    under ``key`` like :func:`submit_upload_scoring` does; a second call returns them."""
    from mia_core.lab.verdict import score_images

    scores = upload_scores(key)
    if scores is None:
        scores = score_images(target, images, list(attacks), seed=seed)
        _UPLOAD_SCORES.put(key, scores)
    return scores


def submit_upload_scoring(
    worker: Worker, key: str, target: Any, images: ImageSet, attacks: Sequence[Attack], *, seed: int
) -> JobState:
    """Queue the scoring of uploaded ``images`` with ``attacks`` (see
    :func:`mia_core.lab.verdict.score_images`); the scores are then :func:`upload_scores` ``(key)``.

    A job of the same key that is still active is returned as it is; a finished, failed or
    cancelled one is forgotten first, so this starts a fresh run (the caller reads
    :func:`upload_scores` before submitting).
    """
    from mia_core.lab.verdict import score_images

    attacks = list(attacks)
    job_id = upload_job_id(key)
    previous = worker.get(job_id)
    if previous is not None and previous.active:
        return previous
    if previous is not None:
        worker.forget(job_id)

    def run(state: JobState) -> None:
        state.total = images.n * len(attacks)
        offsets = {a.name: i * images.n for i, a in enumerate(attacks)}

        def progress(name: str, done: int, total: int) -> None:
            state.phase, state.done, state.message = name, offsets[name] + done, f"{name}: {done}/{total} images"

        _UPLOAD_SCORES.put(key, score_images(target, images, attacks, seed=seed, progress=progress))

    return worker.submit(job_id, f"scoring {images.n} uploaded images", run)
