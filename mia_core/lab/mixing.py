"""The mixing experiment (CopyMark, reference §8.2): a growing share of shifted non-members.

One fixed target and split. For each share v in [0, 1], ``round(v * n_nonmembers)`` of the
non-members are replaced by images from another distribution; every attack's AUC and the blind
baseline's (:mod:`mia_core.lab.blind`) are measured on the mixed split. When both rise together
the attacks are measuring the shift, not memorisation.

Other distribution (``shift``):

    "brightness:D"  the replaced non-members themselves with D/255 added to every pixel (clipped)
    a path          images from an ``.npz`` or image folder, converted to the target's input,
                    taken in order (at least as many as there are non-members)

The replaced non-members are nested: the first ``k`` of one seeded permutation, so a larger
share contains a smaller one (CopyMark's script re-samples instead, reference §8.2). Every
image is scored once: the original split through the result store, the shifted images once
more; a score does not depend on its batch, so each share only selects scores.
The study is written like the other studies (``study.json`` / ``study.csv``, factor ``shift``)
with one more row per share, attack ``blind`` (the blind baseline's AUC on its test part).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SHIFT_FACTOR", "SHIFT_SHARES", "shifted_images", "run_shift_study", "submit_shift_study"]

SHIFT_FACTOR = "shift"
#: The shares of replaced non-members the app runs (CopyMark's 0/25/50/75 % and all of them).
SHIFT_SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)


def shifted_images(images: np.ndarray, shift: str, *, resolution: int, channels: int) -> tuple[np.ndarray, str]:
    """The "other distribution" for ``images`` (uint8, (N, H, W, C)): (N', H, W, C) uint8 and a description."""
    if shift.startswith("brightness:"):
        try:
            delta = int(shift.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"shift {shift!r}: expected brightness:D with an integer D (0..255)") from None
        if not -255 <= delta <= 255:
            raise ValueError(f"shift {shift!r}: D must be in -255..255")
        out = np.clip(images.astype(np.int16) + delta, 0, 255).astype(np.uint8)
        return out, f"the same non-members brightened by {delta}/255"
    from mia_core.data import convert_images, load_source

    other = load_source(shift)
    pixels, conversion = convert_images(other.images, resolution=resolution, channels=channels)
    return pixels, f"images from {shift} ({conversion.report})"


def run_shift_study(
    values: Sequence[float],
    *,
    target: str = "default",
    data: str = "default",
    shift: str = "brightness:40",
    attacks: Sequence[str] = ("loss", "pia", "sima", "secmi"),
    out_dir: str | Path,
    device: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_bootstrap: int = 200,
    store: Any = None,
    command: str = "",
    progress: Callable[[str, int, int], None] | None = None,
) -> Any:
    """Run the mixing experiment and write ``study.json`` / ``study.csv`` to ``out_dir``; return the Study.

    ``values`` are shares in [0, 1] of the non-members replaced by ``shift`` images.
    """
    from mia_core.attacks import scores_only_params
    from mia_core.data import ImageSet
    from mia_core.lab.blind import blind_baseline
    from mia_core.lab.experiment import load_experiment, make_attacks
    from mia_core.lab.runs import run_attacks
    from mia_core.lab.study import Study
    from mia_core.metrics import evaluate

    started = time.perf_counter()
    shares = [float(v) for v in values]
    bad = [v for v in shares if not 0.0 <= v <= 1.0]
    if not shares or bad:
        raise ValueError(f"shift values are shares of replaced non-members in [0, 1]; got {list(values)}")
    attacks = list(attacks)
    params = {n: {**scores_only_params(n), **dict((attack_params or {}).get(n, {}))} for n in attacks}
    attack_objs = make_attacks(attacks, params)
    learned = [a.name for a in attack_objs if a.learns]
    if learned:
        raise ValueError(f"the shift study runs attacks that score every image; {', '.join(learned)} learn(s)")
    exp = load_experiment(target, data, device=device, limit=limit, seed=seed)
    tgt = exp.target

    def report(name: str, k: int, n: int) -> None:
        if progress is not None:
            progress(f"attack {name}", k, n)

    base = run_attacks(
        tgt, exp.x0, exp.ids, exp.images.fingerprint, attack_objs, seed=seed, store=store, progress=report
    )
    nm_rows = np.flatnonzero(~exp.is_member)
    pool, described = shifted_images(
        exp.images.images[nm_rows], shift, resolution=tgt.resolution, channels=tgt.channels
    )
    if len(pool) < nm_rows.size:
        raise ValueError(f"shift source has {len(pool)} images; the split has {nm_rows.size} non-members to replace")
    pool = pool[: nm_rows.size]
    pool_ids = tuple(f"shift-{k:05d}" for k in range(nm_rows.size))
    pool_set = ImageSet(pool, pool_ids, f"shift:{shift}")
    shifted = run_attacks(
        tgt,
        pool_set.to_unit_range(),
        pool_ids,
        pool_set.fingerprint,
        attack_objs,
        seed=seed,
        store=store,
        progress=report,
    )
    order = np.random.default_rng(seed).permutation(nm_rows.size)  # nested replacement sets

    rows: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    for v in shares:
        k = round(v * nm_rows.size)
        replaced = np.zeros(nm_rows.size, dtype=bool)
        replaced[order[:k]] = True
        label = f"{v:.0%} shifted"
        images = exp.images.images.copy()
        images[nm_rows[replaced]] = pool[replaced]
        for name in attacks:
            scores = np.asarray(base[name].scores, dtype=float).copy()
            scores[nm_rows[replaced]] = np.asarray(shifted[name].scores, dtype=float)[replaced]
            m = evaluate(scores, exp.is_member, n_bootstrap=n_bootstrap, seed=seed)
            rows.append(_row(v, label, name, m))
        blind = blind_baseline(images, exp.is_member, seed=seed, n_bootstrap=n_bootstrap)
        rows.append(_row(v, label, "blind", blind.metrics))
        models.append(
            {
                "value": v,
                "label": label,
                "replaced_nonmembers": int(k),
                "heldout_loss": None,
                "member_loss": None,
                "epsilon": None,
                "train_seconds": 0.0,
                "steps": 0,
                "n_members": int(exp.split.n_members),
                "target_dir": str(target),
                "shift": described,
                "blind_biased": bool(blind.biased),
            }
        )
    study = Study(
        factor=SHIFT_FACTOR,
        factor_label=f"share of non-members replaced ({described})",
        values=shares,
        data=data,
        attacks=[*attacks, "blind"],
        base_config={"target": str(target)},
        command=command,
        device=str(tgt.device),
        seconds=time.perf_counter() - started,
        rows=rows,
        models=models,
    )
    study.save(out_dir)
    return study


def _row(value: float, label: str, name: str, m: Any) -> dict[str, Any]:
    return {
        "value": value,
        "label": label,
        "attack": name,
        "auc": round(float(m.auc), 6),
        "auc_ci": [round(x, 6) for x in m.auc_ci.to_list()] if m.auc_ci is not None else None,
        "tpr_at_1pct": None if m.tpr_at_1pct_fpr is None else float(m.tpr_at_1pct_fpr),
        "tpr_at_0_1pct": None if m.tpr_at_01pct_fpr is None else float(m.tpr_at_01pct_fpr),
        "n_members": int(m.n_members),
        "n_nonmembers": int(m.n_nonmembers),
    }


def submit_shift_study(
    worker: Any,
    *,
    target: str,
    data: str,
    attacks: Sequence[str],
    shift: str,
    out_dir: str | Path,
    limit: int | None = None,
    seed: int = 0,
    store: Any = None,
    values: Sequence[float] = SHIFT_SHARES,
) -> Any:
    """Queue :func:`run_shift_study` on the app's worker (:class:`mia_core.lab.runs.Worker`); return its JobState.

    The job id is derived from every argument, so the same request is not run twice while it is
    queued, running or done; the study lands in ``out_dir`` (``study.json``), as ``mia study --factor
    shift`` writes it, with the equivalent command recorded.
    """
    import hashlib
    import json

    request = {
        "target": str(target),
        "data": str(data),
        "attacks": list(attacks),
        "shift": shift,
        "out_dir": str(out_dir),
        "limit": limit,
        "seed": int(seed),
        "values": [float(v) for v in values],
    }
    job_id = "shift-study-" + hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()[:16]
    previous = worker.get(job_id)
    if previous is not None and previous.status in ("failed", "cancelled"):
        worker.forget(job_id)
    command = (
        f"mia study --factor shift --values {','.join(f'{v:g}' for v in values)} --target {target} --data {data} "
        f"--shift {shift} --attacks {','.join(attacks)}" + (f" --limit {limit}" if limit else "") + f" --seed {seed}"
        f" --out {out_dir}"
    )

    def run(state: Any) -> None:
        def progress(phase: str, done: int, total: int) -> None:
            state.phase, state.done, state.total, state.message = phase, done, total, f"{phase}: {done}/{total}"

        run_shift_study(
            values,
            target=target,
            data=data,
            shift=shift,
            attacks=attacks,
            out_dir=out_dir,
            seed=seed,
            limit=limit,
            store=store,
            command=command,
            progress=progress,
        )

    return worker.submit(job_id, f"shift study ({shift}) on {target}", run)
