"""The persistent result store and the one background worker that runs attacks.

A *run* is one attack on one set of images with one target:

    key = (target fingerprint, images fingerprint, attack name, attack params, seed, code version)

plus, for attacks that learn (SecMI-NN, quantile regression), a digest of the membership labels
they were given (:func:`labels_digest`): new labels mean a new training set. Other attacks' keys
leave it out, so their digests are what they were before learned attacks existed.

Its per-sample scores and per-timestep traces are written to ``<root>/<digest>/`` (``result.npz``
+ ``meta.json``) as soon as that attack finishes, by an atomic rename, so a killed job keeps
every attack it had finished and a half-written run is never read. Reading checks the
read-only stores too (the precomputed demo results shipped in ``assets/demo_store``), so a talk
on the default target never waits on a computation.

:class:`Worker` owns one thread: jobs queue behind each other, which serialises use of the GPU,
and they survive reruns and page changes of the app. A job reports progress through its
:class:`JobState`, which pages read; it never calls into the UI.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.attacks import Attack, AttackResult
from mia_core.paths import runs_dir

#: Bump when attack math changes in a way that changes scores: old stored runs stop matching.
CODE_VERSION = "2"


def default_store_dir() -> Path:
    """``$MIA_STORE`` if set, else ``store/`` in the runs folder (:func:`mia_core.paths.runs_dir`)."""
    return Path(os.environ.get("MIA_STORE", runs_dir() / "store"))


@dataclass(frozen=True)
class RunKey:
    target_fingerprint: str
    images_fingerprint: str
    attack: str
    params: str  # canonical JSON of the attack's parameters
    seed: int
    code_version: str = CODE_VERSION
    labels: str = ""  # labels_digest(ids, is_member) for learned attacks, "" for the others

    @classmethod
    def of(
        cls,
        target_fingerprint: str,
        images_fingerprint: str,
        attack: Attack,
        seed: int,
        *,
        ids: Sequence[str] | None = None,
        is_member: np.ndarray | None = None,
    ) -> RunKey:
        """The key of one run; a learned attack's key also needs the ``ids`` and their labels."""
        params = json.dumps(attack.params_dict(), sort_keys=True)
        labels = ""
        if attack.learns:
            if ids is None or is_member is None:
                raise ValueError(f"{attack.name} learns from membership labels: its run key needs ids and is_member")
            labels = labels_digest(ids, is_member)
        return cls(target_fingerprint, images_fingerprint, attack.name, params, int(seed), labels=labels)

    def digest(self) -> str:
        fields = dict(self.__dict__)
        if not fields["labels"]:
            del fields["labels"]  # keys without labels hash exactly as they did before the field existed
        text = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def labels_digest(ids: Sequence[str], is_member: np.ndarray) -> str:
    """sha256 of the (id, label) pairs in order: changes when any label (or the id list) changes."""
    labels = np.asarray(is_member, dtype=bool)
    ids = [str(i) for i in ids]
    if labels.shape != (len(ids),):
        raise ValueError(f"is_member must have one entry per id: {labels.shape} labels for {len(ids)} ids")
    text = "\n".join(f"{i}\t{int(m)}" for i, m in zip(ids, labels))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


#: prefix of the per-sample extras' names inside result.npz.
_EXTRA = "extra_"


#: the sub-folder of a writable store where damaged entries are moved (never deleted).
QUARANTINE_DIR = "quarantine"
#: keys every meta.json must hold (older entries may lack the optional ones).
_META_REQUIRED = ("attack", "params", "trace_label", "unet_calls_per_image", "seconds")


class DamagedEntry(Exception):
    """A stored run that cannot be read back as it was written (the message says why)."""


def _append_strings(archive: io.BytesIO, name: str, strings: Sequence[str], chunk: int = 65536) -> None:
    """Add ``strings`` to the ``.npz`` in ``archive`` as the array ``name`` (what ``np.asarray(strings, dtype=str)``
    would store: unicode of their longest length), compressed, ``chunk`` strings at a time: a million ids
    never exist as one 44 MiB array next to the Python strings."""
    import zipfile

    width = max((len(s) for s in strings), default=1) or 1
    dtype = np.dtype(f"U{width}")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (len(strings),)}
    with zipfile.ZipFile(archive, "a", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            for start in range(0, len(strings), chunk):
                f.write(np.asarray(strings[start : start + chunk], dtype=dtype).tobytes())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ResultStore:
    """Attack results on disk, one folder per run key; ``extra_readonly`` stores are read too.

    Every read verifies what it reads: ``meta.json`` must parse to an object with the expected
    keys, and ``result.npz`` must match the sha256 recorded in its meta (entries written before
    checksums existed are loaded in full instead). A damaged entry is reported once through
    ``on_problem`` (a one-line message naming the folder; default: a logged warning), moved
    aside into ``<root>/quarantine/`` (never deleted; entries of a read-only layer are left
    alone) and treated as missing, so the next run recomputes it.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        extra_readonly: Sequence[str | Path] = (),
        on_problem: Callable[[str], None] | None = None,
    ) -> None:
        self.root = Path(root) if root is not None else default_store_dir()
        self.readonly = [Path(p) for p in extra_readonly]
        self.on_problem = on_problem
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self._pending: list[str] = []
        self._verified: dict[str, tuple[int, int, int, int]] = {}  # folder -> (mtime, size) of both files

    # -- problems ---------------------------------------------------------------------------

    def _report(self, folder: Path, reason: str) -> None:
        """Quarantine a damaged entry (when it is in the writable store) and report it once."""
        with self._lock:
            if str(folder) in self._reported:
                return
            self._reported.add(str(folder))
            self._verified.pop(str(folder), None)
        where = "left in place (read-only store)"
        if folder.parent == self.root:
            dest = self.root / QUARANTINE_DIR / f"{folder.name}-{time.strftime('%Y%m%dT%H%M%S')}"
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(folder, dest)
                where = f"moved to {dest}"
            except OSError as exc:
                where = f"could not be moved aside ({exc.strerror or exc})"
        message = f"damaged stored result {folder}: {reason}; {where}; it will be recomputed on the next run"
        with self._lock:
            self._pending.append(message)
        if self.on_problem is not None:
            self.on_problem(message)
        else:
            logging.getLogger(__name__).warning(message)

    def take_notices(self) -> list[str]:
        """The problem messages not yet taken (each is returned once, to one caller)."""
        with self._lock:
            out, self._pending = self._pending, []
        return out

    def write_problem(self) -> str | None:
        """None when new results can be saved in ``root``, else a one-line reason (checked by writing)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=self.root)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return (
                f"new results cannot be saved: the result store {self.root} is not writable "
                f"({exc.strerror or type(exc).__name__}); stored results are still read"
            )
        return None

    def sample_dirs(self) -> list[Path]:
        """The generated-sample cache of the black-box baselines: ``<root>/samples`` (written) and each
        read-only store's ``samples`` folder (see ``mia_core.attacks.gan_era.generated_samples``)."""
        return [base / "samples" for base in (self.root, *self.readonly)]

    def shadow_dir(self) -> Path:
        """Where GSA's shadow models are cached: ``<root>/shadows`` (see ``mia_core.lab.shadow``)."""
        return self.root / "shadows"

    # -- reading ----------------------------------------------------------------------------

    @staticmethod
    def _stamp(folder: Path) -> tuple[int, int, int, int]:
        m, r = (folder / "meta.json").stat(), (folder / "result.npz").stat()
        return m.st_mtime_ns, m.st_size, r.st_mtime_ns, r.st_size

    def _read(self, folder: Path) -> tuple[dict[str, Any], bytes]:
        """meta and the npz bytes of one entry, verified; raises DamagedEntry saying what is wrong."""
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DamagedEntry(f"meta.json is not valid JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise DamagedEntry(f"meta.json holds a {type(meta).__name__}, not an object")
        missing = [k for k in _META_REQUIRED if k not in meta]
        if missing:
            raise DamagedEntry(f"meta.json lacks {', '.join(missing)}")
        data = (folder / "result.npz").read_bytes()
        expected = meta.get("result_sha256")
        if expected is not None and _sha256(data) != expected:
            raise DamagedEntry(f"result.npz ({len(data)} bytes) does not match the checksum written with it")
        return meta, data

    def _parse(self, meta: dict[str, Any], data: bytes) -> AttackResult:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            # train_ids, extras, evaluated_on and info came later: older folders lack them.
            return AttackResult(
                attack=meta["attack"],
                ids=tuple(str(i) for i in z["ids"]),
                scores=z["scores"].astype(np.float64),
                trace_timesteps=z["trace_timesteps"].astype(np.int64),
                trace=z["trace"].astype(np.float64),
                trace_label=meta["trace_label"],
                unet_calls_per_image=int(meta["unet_calls_per_image"]),
                seconds=float(meta["seconds"]),
                params=meta["params"],
                train_ids=tuple(str(i) for i in z["train_ids"]) if "train_ids" in z.files else (),
                evaluated_on=meta.get("evaluated_on", ""),
                extras={name[len(_EXTRA) :]: z[name] for name in z.files if name.startswith(_EXTRA)},
                info=meta.get("info", {}),
            )

    def _load(self, folder: Path) -> AttackResult | None:
        """The verified result in ``folder``, or None after reporting (and quarantining) a damaged one."""
        try:
            stamp = self._stamp(folder)
            meta, data = self._read(folder)
            result = self._parse(meta, data)
            if result.scores.shape != (len(result.ids),):
                raise DamagedEntry(f"{result.scores.shape} scores for {len(result.ids)} ids")
        except FileNotFoundError:
            return None  # replaced or moved by another process meanwhile: simply not there
        except DamagedEntry as exc:
            self._report(folder, str(exc))
            return None
        except Exception as exc:  # any other failure to read it back (bad zip, bad array): damaged
            self._report(folder, f"result.npz cannot be read ({type(exc).__name__}: {exc})")
            return None
        with self._lock:
            self._verified[str(folder)] = stamp
        return result

    def _candidates(self, key: RunKey) -> Iterator[Path]:
        digest = key.digest()
        for base in (self.root, *self.readonly):
            folder = base / digest
            if (folder / "meta.json").exists() and (folder / "result.npz").exists():
                yield folder

    def has(self, key: RunKey) -> bool:
        """True when a sound entry exists (verified once per version of its files)."""
        for folder in self._candidates(key):
            try:
                if self._verified.get(str(folder)) == self._stamp(folder):
                    return True
            except FileNotFoundError:
                continue
            if self._load(folder) is not None:
                return True
        return False

    def get(self, key: RunKey) -> AttackResult | None:
        for folder in self._candidates(key):
            result = self._load(folder)
            if result is not None:
                return result
        return None

    # -- writing ----------------------------------------------------------------------------

    def put(self, key: RunKey, result: AttackResult) -> Path:
        """Write atomically: a temporary folder renamed into place. On failure (read-only store, full
        disk) nothing is left behind and the OSError propagates."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key.digest()
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        try:
            buffer = io.BytesIO()
            np.savez_compressed(
                buffer,
                scores=result.scores,
                trace_timesteps=result.trace_timesteps,
                trace=result.trace.astype(np.float32),
                **({"train_ids": np.asarray(result.train_ids, dtype=str)} if result.train_ids else {}),
                **{f"{_EXTRA}{name}": np.asarray(value) for name, value in result.extras.items()},
            )
            _append_strings(buffer, "ids", result.ids)
            data = buffer.getvalue()
            meta = {
                "key": key.__dict__,
                "attack": result.attack,
                "params": result.params,
                "trace_label": result.trace_label,
                "unet_calls_per_image": result.unet_calls_per_image,
                "seconds": result.seconds,
                "n_images": len(result.ids),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "result_sha256": _sha256(data),
            }
            if result.train_ids or result.evaluated_on or result.info:
                meta.update(n_train_images=len(result.train_ids), evaluated_on=result.evaluated_on, info=result.info)
            with open(tmp / "result.npz", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        with self._lock:
            self._reported.discard(str(final))
        return final

    def save(self, key: RunKey, result: AttackResult) -> Path | None:
        """:meth:`put`, but a failed write (read-only store, full disk) is reported through
        ``on_problem`` and the result is kept by the caller: None is returned."""
        try:
            return self.put(key, result)
        except OSError as exc:
            message = (
                f"result of {result.attack} not saved to the store {self.root} "
                f"({exc.strerror or exc}); it is used for this run only"
            )
            with self._lock:
                self._pending.append(message)
            if self.on_problem is not None:
                self.on_problem(message)
            else:
                logging.getLogger(__name__).warning(message)
            return None

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every sound stored run (writable store first); damaged ones are reported and skipped."""
        out = []
        for base in (self.root, *self.readonly):
            if not base.is_dir():
                continue
            for meta_path in sorted(base.glob("*/meta.json")):
                folder = meta_path.parent
                if folder.name.startswith(".") or not (folder / "result.npz").exists():
                    continue  # a temporary folder of a killed write, or not a run
                try:
                    meta = json.loads(meta_path.read_text())
                    if not isinstance(meta, dict) or any(k not in meta for k in _META_REQUIRED):
                        raise DamagedEntry("meta.json is not a run's metadata")
                except FileNotFoundError:
                    continue
                except (UnicodeDecodeError, json.JSONDecodeError, DamagedEntry) as exc:
                    self._report(folder, f"meta.json is unreadable ({exc})")
                    continue
                out.append({**meta, "folder": str(folder)})
        return out


class Cancelled(Exception):
    """Raised inside a job when its cancel event is set."""


class RunFailed(RuntimeError):
    """An attack failed part-way through :func:`run_attacks`; ``results`` holds the attacks that
    finished before it (already in the store), ``attack`` names the one that failed."""

    def __init__(self, attack: str, cause: BaseException, results: dict[str, AttackResult]) -> None:
        super().__init__(f"{attack} failed: {type(cause).__name__}: {cause}")
        self.attack, self.cause, self.results = attack, cause, dict(results)


def _run_one(
    attack: Attack,
    target: Any,
    x0: np.ndarray,
    ids: Sequence[str],
    is_member: np.ndarray | None,
    seed: int,
    batch_size: int | None,
    step: Callable[[int, int], None],
    store: ResultStore | None = None,
    captions: Sequence[str] | None = None,
) -> AttackResult:
    # A text-to-image target's conditioning reads the images' captions (Attack.run); others take none.
    text = {"captions": captions} if getattr(target, "kind", "") == "t2i" else {}
    if attack.learns:
        extra: dict[str, Any] = {}
        if attack.uses_shadow_models:  # GSA: shadow models trained (once, cached beside the store) here in lab
            from mia_core.lab.shadow import shadow_targets

            extra["shadows"] = shadow_targets(
                attack,
                target,
                x0,
                ids,
                np.asarray(is_member, dtype=bool),
                seed=seed,
                cache_dir=store.shadow_dir() if store is not None else None,
                progress=step,
            )
        return attack.fit_score(
            target,
            x0,
            ids,
            np.asarray(is_member, dtype=bool),
            seed=seed,
            batch_size=batch_size,
            progress=step,
            **text,
            **extra,
        )
    if attack.generates_samples:  # samples made once per target and seed, cached beside the store
        return attack.run(
            target,
            x0,
            ids=ids,
            seed=seed,
            batch_size=batch_size,
            progress=step,
            sample_dirs=store.sample_dirs() if store is not None else (),
        )
    return attack.run(target, x0, ids=ids, seed=seed, batch_size=batch_size, progress=step, **text)


def run_attacks(
    target: Any,
    x0: np.ndarray,
    ids: Sequence[str],
    images_fingerprint: str,
    attacks: Iterable[Attack],
    *,
    seed: int = 0,
    store: ResultStore | None = None,
    batch_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: threading.Event | None = None,
    is_member: np.ndarray | None = None,
    captions: Sequence[str] | None = None,
) -> dict[str, AttackResult]:
    """Run each attack unless the store already has it; store each one as soon as it finishes.

    ``progress(attack_name, done, total)`` is called after every batch (and once with
    done == total for a stored result); a learned attack counts its images, then its training
    steps, in one ``total``. Setting ``cancel`` stops between batches and training steps; attacks
    that finished stay in the store. ``is_member`` ((N,) bool, aligned with ``ids``) is required
    by learned attacks (``attack.learns``), which score only their evaluation part. ``captions`` (N, aligned
    with ``ids``) condition a text-to-image target in mode "caption" (each attack's ``conditioning``).
    """
    attacks = list(attacks)
    learned = [a.name for a in attacks if a.learns]
    if learned and is_member is None:
        raise ValueError(f"{', '.join(learned)} learn(s) from membership labels: pass is_member to run them")
    results: dict[str, AttackResult] = {}
    for attack in attacks:
        key = RunKey.of(target.fingerprint, images_fingerprint, attack, seed, ids=ids, is_member=is_member)
        cached = store.get(key) if store is not None else None
        if cached is not None:
            results[attack.name] = cached
            if progress is not None:
                progress(attack.name, len(ids), len(ids))
            continue

        def step(done: int, total: int, name: str = attack.name) -> None:
            if cancel is not None and cancel.is_set():
                raise Cancelled(f"cancelled during {name}")
            if progress is not None:
                progress(name, done, total)

        try:
            result = _run_one(attack, target, x0, ids, is_member, seed, batch_size, step, store, captions)
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:
            raise RunFailed(attack.name, exc, results) from exc
        if store is not None:
            store.save(key, result)
        results[attack.name] = result
    return results


# -- the background worker ----------------------------------------------------------------------


@dataclass
class JobState:
    """What a page needs to show a job: written by the worker thread, read by the UI."""

    job_id: str
    description: str
    status: str = "queued"  # queued | running | done | failed | cancelled
    phase: str = ""
    done: int = 0
    total: int = 0
    message: str = ""
    error: str = ""
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def eta_seconds(self) -> float | None:
        if self.status != "running" or not self.started or not self.done or not self.total:
            return None
        elapsed = time.time() - self.started
        return elapsed * (self.total - self.done) / self.done


JobFn = Callable[[JobState], Any]


class Worker:
    """One worker thread per process; jobs with the same id are deduplicated.

    The thread is a daemon: stopping the server does not wait for a running job (whatever it
    had finished is already in the store).
    """

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[JobState, JobFn]] = queue.Queue()
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, name="mia-worker", daemon=True).start()

    def _serve(self) -> None:
        while True:
            state, fn = self._queue.get()
            self._run(state, fn)

    def submit(self, job_id: str, description: str, fn: JobFn) -> JobState:
        """Queue ``fn(state)`` unless a job with this id is queued, running or done."""
        with self._lock:
            existing = self._jobs.get(job_id)
            if existing is not None and existing.status in ("queued", "running", "done"):
                return existing
            state = JobState(job_id, description)
            self._jobs[job_id] = state
        self._queue.put((state, fn))
        return state

    def _run(self, state: JobState, fn: JobFn) -> None:
        if state.cancel_event.is_set():
            state.status, state.finished = "cancelled", time.time()
            return
        state.status, state.started = "running", time.time()
        try:
            fn(state)
        except Cancelled as exc:
            state.status, state.message = "cancelled", str(exc)
        except Exception as exc:  # shown on the page; the worker keeps serving other jobs
            state.status = "failed"
            state.error = f"{type(exc).__name__}: {exc}"
            state.message = traceback.format_exc(limit=6)
        else:
            state.status = "done"
        finally:
            state.finished = time.time()

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[JobState]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda s: s.submitted)

    def cancel(self, job_id: str) -> None:
        state = self.get(job_id)
        if state is not None:
            state.cancel_event.set()

    def forget(self, job_id: str) -> None:
        """Drop a finished job so the same id can be submitted again."""
        with self._lock:
            state = self._jobs.get(job_id)
            if state is not None and not state.active:
                del self._jobs[job_id]
