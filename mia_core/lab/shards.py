"""Sharded scoring: one run's images split across processes (Hugging Face Accelerate), resumable by batch.

    accelerate launch --multi_gpu --num_processes N -m mia_core.cli attack ...   (or: mia attack --processes N)

The images are cut into the batches a single-process run uses (``Attack.default_batch_size`` or
``--batch-size``), so every image is scored in exactly the batch it is scored in alone, and the
merged scores equal a single-process run's score for score (each image's noise depends only on the
seed and its id, :mod:`mia_core.noise`). The main process lists the batches not yet on disk and
broadcasts that list; ``PartialState.split_between_processes`` gives each process its part; each
process writes every batch it finishes to its own file, atomically, under the result store::

    <store>/shards/<run digest>/manifest.json                what the run is, its attempts, when merged
    <store>/shards/<run digest>/batch-000042-p1of2.npz       one scored batch (ids, scores, trace, kept
                                                             outputs, seconds); p1of2 = process 1 of 2

so processes never write the same file, and a killed process loses only the batch it was scoring:
rerunning the same command scores only the batches that are missing. After a barrier the main process
merges the batches in order, writes the result under the run's ordinary key (a later single-process
run, the app and Compare read it like any other), records what each process did in the manifest and
deletes the batch files.

Learned attacks (SecMI-NN, quantile regression) shard their base statistic (SecMI-stat with x~ and x''
kept) and fit once, on the main process. Attacks that make generated samples or shadow models (the
GAN-era baselines, GSA) and other learned attacks run whole on the main process.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.attacks import Attack, AttackResult, get_attack
from mia_core.data.images import release_pages, to_unit_range
from mia_core.lab.runs import ResultStore, RunKey, run_attacks

#: sub-folder of a store's root holding the batches of sharded runs (one folder per run digest).
SHARDS_DIR = "shards"
#: test hook: "RANK:K" makes process RANK exit (code :data:`FAIL_EXIT_CODE`) right after writing its K-th
#: batch, as a process killed mid-run would stop (its next batch is lost, the written ones stay).
FAIL_AFTER_ENV = "MIA_SHARD_FAIL_AFTER"
FAIL_EXIT_CODE = 17
#: learned attacks whose base statistic is SecMI-stat's pass (t-error, x~, x''): sharded, then fitted once.
SECMI_BASED = ("secmi_nn", "qr")

_BATCH_RE = re.compile(r"^batch-(\d{6,})-p(\d+)of(\d+)\.npz$")


class ShardsIncomplete(RuntimeError):
    """Batches of a sharded run are missing after every process finished (a process was killed):
    rerunning the same command scores only those."""


# -- processes -------------------------------------------------------------------------------------


class Processes:
    """The processes of a run: Accelerate's :class:`~accelerate.PartialState`, or one process without it.

    ``index`` / ``count``: this process and how many; ``main``: index 0, the one that merges and evaluates.
    """

    def __init__(self, state: Any = None) -> None:
        self.state = state
        self.index = int(state.process_index) if state is not None else 0
        self.count = int(state.num_processes) if state is not None else 1
        self.main = self.index == 0

    @classmethod
    def from_accelerate(cls, cpu: bool) -> Processes:
        """The processes ``accelerate launch`` started (one when run plainly); ``cpu`` forces CPU processes
        (the gloo backend) even where CUDA is available."""
        from accelerate import PartialState

        return cls(PartialState(cpu=cpu))

    @property
    def device(self) -> str | None:
        """This process's device under Accelerate (``cuda:<local rank>`` on GPUs), else None."""
        return str(self.state.device) if self.state is not None and self.count > 1 else None

    def broadcast(self, obj: Any) -> Any:
        """The main process's ``obj`` on every process."""
        if self.count == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def barrier(self) -> None:
        if self.count > 1:
            self.state.wait_for_everyone()

    def split(self, items: list[int]) -> list[int]:
        """This process's contiguous part of ``items`` (``PartialState.split_between_processes``)."""
        if self.count == 1:
            return list(items)
        with self.state.split_between_processes(items) as mine:
            return list(mine)

    def tag(self) -> str:
        return f"p{self.index}of{self.count}"


# -- one run's batches -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShardPlan:
    """How a run's N images are cut: batch b holds rows [b * batch_size, min(N, (b + 1) * batch_size))."""

    n_images: int
    batch_size: int

    @property
    def n_batches(self) -> int:
        return -(-self.n_images // self.batch_size)

    def rows(self, batch: int) -> slice:
        return slice(batch * self.batch_size, min(self.n_images, (batch + 1) * self.batch_size))


def shard_dir(store: ResultStore, key: RunKey) -> Path:
    """``<store>/shards/<run digest>``: where a sharded run's batches and manifest live."""
    return store.root / SHARDS_DIR / key.digest()


def batch_files(folder: Path) -> dict[int, Path]:
    """batch index -> its file (the first by name when two attempts wrote the same batch)."""
    out: dict[int, Path] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            m = _BATCH_RE.match(path.name)
            if m:
                out.setdefault(int(m.group(1)), path)
    return out


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.replace(tmp, path)


def _write_batch(folder: Path, batch: int, procs: Processes, result: AttackResult, keep: Sequence[str]) -> Path:
    """One scored batch, written to a temporary file and renamed into place (a killed write leaves no batch)."""
    final = folder / f"batch-{batch:06d}-{procs.tag()}.npz"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-batch-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                ids=np.asarray(result.ids, dtype=str),
                scores=result.scores,
                trace=result.trace.astype(np.float32),
                seconds=np.float64(result.seconds),
                **{f"keep_{k}": result.extras[k] for k in keep},
            )
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _fail_after() -> tuple[int, int] | None:
    text = os.environ.get(FAIL_AFTER_ENV, "")
    if not text:
        return None
    rank, _, k = text.partition(":")
    return int(rank), int(k)


def score_batches(
    attack: Attack,
    target: Any,
    images: np.ndarray,
    ids: Sequence[str],
    *,
    seed: int,
    plan: ShardPlan,
    batches: Sequence[int],
    folder: Path,
    procs: Processes,
    keep: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
) -> None:
    """Score ``batches`` of ``images`` (uint8 (N, H, W, C), read batch by batch: a memory-mapped array stays
    on disk) and write each to ``folder`` as soon as it is done. ``progress(images_done)`` after each."""
    fail = _fail_after()
    done = 0
    for written, b in enumerate(batches, start=1):
        rows = plan.rows(b)
        batch = images[rows]
        x = to_unit_range(batch)
        release_pages(batch)  # a memory-mapped file's pages are let go once read (resident memory stays flat)
        del batch
        result = attack.run(target, x, ids=ids[rows], seed=seed, batch_size=plan.batch_size, keep=keep)
        _write_batch(folder, b, procs, result, keep)
        done += rows.stop - rows.start
        if progress is not None:
            progress(done)
        if fail is not None and fail == (procs.index, written):
            os._exit(FAIL_EXIT_CODE)  # as if killed: no cleanup, the next batch is never started


def merge_batches(folder: Path, plan: ShardPlan, ids: Sequence[str], keep: Sequence[str] = ()) -> dict[str, Any]:
    """The batches of a run, in order: ``scores`` (N,) float64, ``trace`` (N, K) float64, ``seconds`` (the
    sum over batches: compute time, not wall time), ``keep_<name>`` arrays and ``by_process`` (tag -> batches).

    Raises :class:`ShardsIncomplete` naming the missing batches; a batch whose ids differ from the plan's
    rows (another run's file) is an error too."""
    files = batch_files(folder)
    missing = [b for b in range(plan.n_batches) if b not in files]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ShardsIncomplete(
            f"{len(missing)} of {plan.n_batches} batches of {folder} are missing (batch {shown}): a process "
            "stopped before scoring them; rerun the same command to score only those"
        )
    scores = np.empty(plan.n_images, dtype=np.float64)
    trace: np.ndarray | None = None
    kept: dict[str, np.ndarray] = {}
    seconds = 0.0
    by_process: dict[str, int] = {}
    for b in range(plan.n_batches):
        rows = plan.rows(b)
        with np.load(files[b], allow_pickle=False) as z:
            if tuple(str(i) for i in z["ids"]) != tuple(ids[rows]):
                raise ValueError(f"{files[b]} holds other images than batch {b} of this run")
            scores[rows] = z["scores"]
            t = z["trace"]
            if trace is None:
                trace = np.empty((plan.n_images, t.shape[1]), dtype=np.float64)
            trace[rows] = t
            for k in keep:
                v = z[f"keep_{k}"]
                if k not in kept:
                    kept[k] = np.empty((plan.n_images, *v.shape[1:]), dtype=v.dtype)
                kept[k][rows] = v
            seconds += float(z["seconds"])
        tag = _BATCH_RE.match(files[b].name).group(2, 3)  # type: ignore[union-attr]
        name = f"process {tag[0]} of {tag[1]}"
        by_process[name] = by_process.get(name, 0) + 1
    return {"scores": scores, "trace": trace, "seconds": seconds, "by_process": by_process, **kept}


# -- a sharded run ---------------------------------------------------------------------------------


def base_statistic(attack: Attack) -> Attack | None:
    """The sharded part of a learned attack: SecMI-stat without its trace (x~ and x'' kept) for SecMI-NN
    and quantile regression; None for attacks that run whole on the main process."""
    if attack.name in SECMI_BASED:
        p = attack.params
        return get_attack("secmi", {"t_sec": p.t_sec, "k": p.k, "trace": False})
    return None


def shardable(attack: Attack) -> bool:
    """True when the attack's images can be scored by several processes (plain attacks, and the learned
    attacks with a :func:`base_statistic`)."""
    if attack.learns:
        return base_statistic(attack) is not None
    return not attack.generates_samples


def _shard_one(
    attack: Attack,
    key: RunKey,
    folder: Path,
    exp: Any,
    *,
    seed: int,
    store: ResultStore,
    batch_size: int | None,
    procs: Processes,
    keep: Sequence[str],
    progress: Callable[[str, int, int], None] | None,
    label: str,
) -> dict[str, Any] | None:
    """Score one attack's batches into ``folder`` over every process; on the main process, the merged arrays."""
    n = len(exp.ids)
    plan_info = None
    if procs.main:
        folder.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(folder) or {}
        bs = int(manifest.get("batch_size") or batch_size or attack.default_batch_size(exp.target))
        plan = ShardPlan(n, bs)
        present = batch_files(folder)
        todo = [b for b in range(plan.n_batches) if b not in present]
        attempts = list(manifest.get("attempts", []))
        attempts.append(
            {
                "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "processes": procs.count,
                "batches_present": len(present),
                "batches_to_score": len(todo),
            }
        )
        manifest = {
            "attack": label,
            "params": attack.params_dict(),
            "key": key.__dict__,
            "n_images": n,
            "batch_size": bs,
            "n_batches": plan.n_batches,
            "seed": seed,
            "merged": False,
            **{k: v for k, v in manifest.items() if k in ("created",)},
            "created": manifest.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "attempts": attempts,
        }
        _write_json_atomic(folder / "manifest.json", manifest)
        plan_info = (bs, todo, len(present))
    bs, todo, n_present = procs.broadcast(plan_info)
    started = time.perf_counter()
    plan = ShardPlan(n, bs)
    mine = procs.split(todo)
    before = min(n, n_present * bs)

    def step(done: int) -> None:
        if progress is not None and procs.main:  # the main process's own share, on top of what was on disk
            progress(label, min(n, before + done * procs.count), n)

    score_batches(
        attack,
        exp.target,
        exp.images.images,
        exp.ids,
        seed=seed,
        plan=plan,
        batches=mine,
        folder=folder,
        procs=procs,
        keep=keep,
        progress=step,
    )
    procs.barrier()
    if not procs.main:
        return None
    merged = merge_batches(folder, plan, exp.ids, keep)
    merged["wall_seconds"] = time.perf_counter() - started  # this attempt: split, score, wait for all, merge
    if progress is not None:
        progress(label, n, n)
    return merged


def _finish(folder: Path, merged: dict[str, Any]) -> None:
    """Record the merge in the manifest and delete the batch files (the result is in the store now)."""
    manifest = read_manifest(folder) or {}
    manifest.update(merged=True, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), by_process=merged["by_process"])
    if manifest.get("attempts"):
        manifest["attempts"][-1]["wall_seconds"] = round(merged["wall_seconds"], 3)
    _write_json_atomic(folder / "manifest.json", manifest)
    for path in batch_files(folder).values():
        path.unlink(missing_ok=True)


def run_sharded(
    exp: Any,
    attacks: Sequence[Attack],
    *,
    seed: int,
    store: ResultStore,
    procs: Processes | None = None,
    batch_size: int | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, AttackResult] | None:
    """Run ``attacks`` on an :class:`~mia_core.lab.experiment.Experiment` over ``procs`` (default: this one
    process), resumably. Every process calls this with the same arguments; the main process returns the
    results (read from the store when the same run was done before), the others None.
    """
    from mia_core.attacks.learned import remember_intermediates

    procs = procs or Processes()
    # The main process decides what is computed (a damaged entry is quarantined on one process only).
    cached = procs.broadcast([a.name for a in attacks if store.has(exp.run_key(a, seed))] if procs.main else None)
    results: dict[str, AttackResult] = {}
    for attack in attacks:
        key = exp.run_key(attack, seed)
        if attack.name in cached:
            if procs.main:
                res = store.get(key)
                if res is None:  # vanished since: compute it here
                    res = run_attacks(
                        exp.target,
                        exp.x0,
                        exp.ids,
                        exp.images.fingerprint,
                        [attack],
                        seed=seed,
                        store=store,
                        batch_size=batch_size,
                        is_member=exp.is_member,
                    )[attack.name]
                results[attack.name] = res
                if progress is not None:
                    progress(attack.name, len(exp.ids), len(exp.ids))
            continue
        if not shardable(attack):
            procs.barrier()
            if procs.main:
                results.update(exp.attack([attack], seed=seed, store=store, batch_size=batch_size, progress=progress))
            continue
        if attack.learns:
            base = base_statistic(attack)
            assert base is not None
            base_key = exp.run_key(base, seed)
            keep = ("x_tilde", "x_recon")
            # Its own folder: a plain SecMI-stat run without trace has the same key but keeps no x~ / x''.
            base_folder = shard_dir(store, base_key).with_name(base_key.digest() + "-kept")
            merged = _shard_one(
                base,
                base_key,
                base_folder,
                exp,
                seed=seed,
                store=store,
                batch_size=batch_size,
                procs=procs,
                keep=keep,
                progress=progress,
                label=attack.name,
            )
            if procs.main:
                assert merged is not None
                p = attack.params
                remember_intermediates(
                    exp.target,
                    exp.x0,
                    exp.ids,
                    t_sec=p.t_sec,
                    k=p.k,
                    result=(-merged["scores"], merged["x_tilde"], merged["x_recon"]),
                )
                results.update(exp.attack([attack], seed=seed, store=store, batch_size=batch_size, progress=progress))
                _finish(base_folder, merged)
            continue
        merged = _shard_one(
            attack,
            key,
            shard_dir(store, key),
            exp,
            seed=seed,
            store=store,
            batch_size=batch_size,
            procs=procs,
            keep=(),
            progress=progress,
            label=attack.name,
        )
        if procs.main:
            assert merged is not None
            result = AttackResult(
                attack=attack.name,
                ids=tuple(exp.ids),
                scores=merged["scores"],
                trace_timesteps=np.asarray(attack.trace_timesteps(), dtype=np.int64),
                trace=merged["trace"],
                trace_label=attack.trace_label,
                unet_calls_per_image=attack.unet_calls(trace=True),
                seconds=merged["seconds"],
                params=attack.params_dict(),
                info={"sharded": {"processes": procs.count, "by_process": merged["by_process"]}},
            )
            store.put(key, result)
            _finish(shard_dir(store, key), merged)
            results[attack.name] = result
    return results if procs.main else None


def sharded_runs(store: ResultStore) -> list[dict[str, Any]]:
    """Every sharded run under ``store`` (its own root and the read-only layers), for the app: the manifest
    plus ``batches_done`` (on disk now, or all once merged), ``fraction`` and ``folder``; newest first."""
    out = []
    for base in (store.root, *store.readonly):
        root = base / SHARDS_DIR
        if not root.is_dir():
            continue
        for folder in root.iterdir():
            manifest = read_manifest(folder)
            if manifest is None or "n_batches" not in manifest:
                continue
            total = int(manifest["n_batches"])
            done = total if manifest.get("merged") else len(batch_files(folder))
            by_process = manifest.get("by_process") or {}
            if not manifest.get("merged"):
                for path in batch_files(folder).values():
                    m = _BATCH_RE.match(path.name)
                    name = f"process {m.group(2)} of {m.group(3)}"  # type: ignore[union-attr]
                    by_process[name] = by_process.get(name, 0) + 1
            out.append(
                {
                    **manifest,
                    "folder": str(folder),
                    "batches_done": done,
                    "fraction": done / total if total else 1.0,
                    "by_process": by_process,
                }
            )
    return sorted(out, key=lambda m: m.get("created", ""), reverse=True)


# -- launching -------------------------------------------------------------------------------------


def launched() -> bool:
    """True inside a process that ``accelerate launch`` (torchrun) started as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def uses_gpus(device: str, n: int | None = None) -> bool:
    """True when the processes run on GPUs: CUDA is available (``n`` GPUs at least, when given) and
    ``--device`` does not ask for the CPU."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return False
    return n is None or torch.cuda.device_count() >= n


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _without(argv: Sequence[str], flags: Sequence[str] = ("--processes",)) -> list[str]:
    """``argv`` without the given options (``--flag value`` and ``--flag=value``)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in flags:
            skip = True
            continue
        if any(a.startswith(f + "=") for f in flags):
            continue
        out.append(a)
    return out


def launch_command(argv: Sequence[str], n: int, device: str = "auto") -> tuple[list[str], dict[str, str]]:
    """``accelerate launch`` running ``mia <argv>`` (without ``--processes``) on ``n`` processes: one per GPU
    when there are ``n`` GPUs, else ``n`` CPU processes (``--device cpu``, the gloo backend, the CPU's
    threads shared out). Returns (command, environment)."""
    import sys

    rest = _without(argv)
    env = dict(os.environ)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(n)]
    cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--main_process_port", str(_free_port())]
    if not uses_gpus(device, n):
        threads = max(1, (os.cpu_count() or 1) // n)
        cmd += ["--num_cpu_threads_per_process", str(threads)]
        rest += ["--device", "cpu"]
    return cmd + ["-m", "mia_core.cli", *rest], env


def launch(argv: Sequence[str], n: int, device: str = "auto") -> int:
    """Run ``mia <argv>`` on ``n`` processes (:func:`launch_command`) and return its exit code."""
    import subprocess

    cmd, env = launch_command(argv, n, device)
    print(f"mia: starting {n} processes: accelerate launch ... -m mia_core.cli {' '.join(_without(argv))}")
    return subprocess.run(cmd, env=env).returncode


def gpu_hint(argv: Sequence[str]) -> str:
    """How to run the same ``mia`` command on N GPUs (printed after a run)."""
    import shlex

    rest = shlex.join(_without(argv, ("--processes", "--device")))
    return (
        f"same run on N GPUs: accelerate launch --multi_gpu --num_processes N -m mia_core.cli {rest} "
        f"(or: mia {rest} --processes N); a rerun scores only the batches not yet in the store"
    )
