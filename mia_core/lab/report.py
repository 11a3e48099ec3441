"""The audit report: one self-contained file with everything a privacy reviewer files about an audit.

What goes in (one :class:`AuditReport`): the target's model card, the data and its member /
non-member split, every run (an attack with its parameters), each run's scores (for the ROC and
the most vulnerable samples), its metrics with 95 % intervals (oracle and transferred threshold),
the blind baseline where there is one, the images of the most vulnerable samples, and the
command(s) that reproduce it. Two sources build it:

- :func:`report_from_run_dir`: the output folder of ``mia attack`` (run.json, metrics.json,
  scores.csv), for ``mia report RUN_DIR``; the numbers are the ones ``mia attack`` wrote.
- :func:`report_from_results`: an experiment and stored results, for the app's Compare page.

:mod:`mia_core.views.report` turns it into HTML; :func:`write_pdf` prints that HTML to PDF with a
headless Chromium when one is installed (offline). No streamlit here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.metrics import BUDGET_1PCT

#: Where Debian / Ubuntu put Chromium; ``$MIA_CHROMIUM`` or ``chromium`` on the PATH win.
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium")


@dataclass
class ReportRun:
    """One run in the report: an attack with its parameters, its scores and its metrics.

    ids : (N,) str, the images it scored; scores : (N,) float, higher = member; is_member : (N,) bool.
    metrics : :meth:`mia_core.metrics.AttackMetrics.to_json_dict` (oracle thresholds, 95 % intervals).
    transferred : {budget repr: TransferredRate.to_json_dict()} (threshold from the calibration part,
        TPR and achieved FPR on the test part), or {} when not computed.
    """

    run_id: str
    attack: str
    params: dict[str, Any]
    ids: tuple[str, ...]
    scores: np.ndarray
    is_member: np.ndarray
    metrics: dict[str, Any]
    transferred: dict[str, Any] = field(default_factory=dict)
    seconds: float | None = None
    unet_calls_per_image: int | None = None
    evaluated_on: str = ""


@dataclass
class AuditReport:
    """Everything the report shows (see the module docstring).

    images : id -> (H, W, C) uint8 image, for the most vulnerable samples (may be empty: the
        report then says why in ``notes``). blind_metrics : the blind baseline's metrics
        (``AttackMetrics.to_json_dict()``) or None; blind_scores / blind_is_member: its scores on
        the test part, for the ROC (None when only its metrics are known).
    """

    title: str
    created: str
    target: dict[str, Any]
    data: dict[str, Any]
    seed: int
    runs: list[ReportRun]
    commands: list[str]
    images: dict[str, np.ndarray] = field(default_factory=dict)
    blind_metrics: dict[str, Any] | None = None
    blind_scores: np.ndarray | None = None
    blind_is_member: np.ndarray | None = None
    budget: float = BUDGET_1PCT
    notes: list[str] = field(default_factory=list)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} not found: is {path.parent} an output folder of `mia attack`?") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from None


def _option(argv: Sequence[str], flag: str, default: str | None = None) -> str | None:
    """The value of ``--flag X`` or ``--flag=X`` in a command line (the last one wins)."""
    value = default
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1 :]
    return value


def _load_images(data_spec: str, seed: int, ids: Sequence[str]) -> tuple[dict[str, np.ndarray], str | None]:
    """The split's images by id, as the data source holds them; ({}, why) when they cannot be read."""
    from mia_core.data import resolve_data

    try:
        images, _ = resolve_data(data_spec, seed=seed)
        subset = images.subset([i for i in ids if i in set(images.ids)])
    except Exception as exc:  # a moved folder, data from another machine: the report goes on without images
        return {}, f"the images of --data {data_spec!r} could not be read here ({type(exc).__name__}: {exc})"
    return dict(zip(subset.ids, subset.images)), None


def report_from_run_dir(run_dir: str | Path, *, with_images: bool = True) -> AuditReport:
    """An :class:`AuditReport` of an output folder of ``mia attack`` (run.json, metrics.json, scores.csv).

    The metrics are those ``mia attack`` wrote; the scores (scores.csv) draw the ROC and rank the
    most vulnerable members; the images are read again from the run's ``--data`` (when that is
    not possible here, the report says so). The blind baseline's curve is refit on those images
    with the recorded calibration cut (its metrics are the recorded ones).
    """
    import pandas as pd

    from mia_core.attacks import REGISTRY
    from mia_core.lab.run_specs import run_id

    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder (give the --out folder of `mia attack`)")
    info = _read_json(folder / "run.json")
    metrics = _read_json(folder / "metrics.json")
    if not isinstance(info, dict) or not isinstance(metrics, dict):
        raise ValueError(f"{folder}: run.json and metrics.json must hold JSON objects")
    try:
        frame = pd.read_csv(folder / "scores.csv", dtype={"id": str})
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{folder / 'scores.csv'} not found: is {folder} an output folder of `mia attack`?"
        ) from None
    if "id" not in frame or "is_member" not in frame:
        raise ValueError(f"{folder / 'scores.csv'} has no id / is_member columns")
    all_ids = tuple(frame["id"].astype(str))
    labels = frame["is_member"].to_numpy().astype(bool)
    seed = int(info.get("seed", 0))
    runs = []
    for name, m in metrics.items():
        if not isinstance(m, dict) or "auc" not in m or name not in frame:
            continue  # "not applicable" entries, or an attack without scores
        column = frame[name].to_numpy(dtype=float)
        scored = np.isfinite(column)
        params = dict((info.get("attacks") or {}).get(name) or {})
        try:
            rid = run_id(name, params) if name in REGISTRY else name
        except ValueError:
            rid = name
        runs.append(
            ReportRun(
                run_id=rid,
                attack=name,
                params=params,
                ids=tuple(np.asarray(all_ids)[scored]),
                scores=column[scored],
                is_member=labels[scored],
                metrics=m,
                transferred=dict((m.get("transferred") or {}).get("at_fpr") or {}),
                seconds=m.get("seconds"),
                unet_calls_per_image=m.get("unet_calls_per_image"),
                evaluated_on=str(m.get("evaluated_on") or ""),
            )
        )
    if not runs:
        raise ValueError(f"{folder / 'metrics.json'} holds no attack results to report")
    command = str(info.get("command") or "")
    notes = []
    if info.get("failed"):
        f = info["failed"]
        notes.append(
            f"The run stopped early: {f.get('attack')} failed ({f.get('error')}); not run: {f.get('not_run')}."
        )
    for name, reason in (info.get("not_applicable") or {}).items():
        notes.append(f"{name} was not run: {reason}.")
    images: dict[str, np.ndarray] = {}
    data_spec = _option(shlex.split(command)[1:], "--data", "default") if command else None
    if with_images and data_spec:
        images, why = _load_images(data_spec, seed, all_ids)
        if why:
            notes.append(f"No sample images: {why}.")
    elif with_images:
        notes.append("No sample images: run.json records no command to find the data again.")
    blind = info.get("blind_baseline") or None
    blind_scores = blind_labels = None
    if blind and images and all(i in images for i in all_ids):
        from mia_core.lab.blind import blind_baseline

        part = blind.get("partition") or {}
        refit = blind_baseline(
            np.stack([images[i] for i in all_ids]),
            labels,
            fraction=float(part.get("fraction", 0.5)),
            seed=int(part.get("seed", seed)),
            n_bootstrap=0,
        )
        blind_scores, blind_labels = refit.scores, refit.is_member
    data = dict(info.get("data") or {})
    data.setdefault("n_members", int(labels.sum()))
    data.setdefault("n_nonmembers", int((~labels).sum()))
    return AuditReport(
        title=f"Membership-inference audit of {info.get('target', {}).get('source', 'a target')}",
        created=_now(),
        target=dict(info.get("target") or {}),
        data=data,
        seed=seed,
        runs=runs,
        commands=[command] if command else [],
        images=images,
        blind_metrics={k: v for k, v in blind.items() if k != "partition"} if blind else None,
        blind_scores=blind_scores,
        blind_is_member=blind_labels,
        notes=notes,
    )


def reproduce_commands(
    target: str,
    data: str,
    runs: Mapping[str, Mapping[str, Any]],
    *,
    seed: int,
    limit: int | None = None,
    out: str = "runs/audit",
) -> list[str]:
    """``mia attack`` command lines that recompute ``runs`` (run id -> non-default params).

    One command holds each attack once, so two runs of one attack (Loss t=100 and t=200) need two
    commands; each writes to its own folder (``out``, ``out-2``, ...).
    """
    from mia_core.lab.run_specs import base_attack

    groups: list[dict[str, Mapping[str, Any]]] = []
    for rid, params in runs.items():
        name = base_attack(rid)
        for group in groups:
            if name not in group:
                group[name] = params
                break
        else:
            groups.append({name: params})
    commands = []
    for k, group in enumerate(groups, start=1):
        argv = ["mia", "attack", "--target", target, "--data", data, "--attacks", ",".join(group)]
        params = {n: dict(p) for n, p in group.items() if p}
        if params:
            argv += ["--params", json.dumps(params, sort_keys=True, separators=(",", ":"))]
        argv += ["--seed", str(seed)]
        if limit:
            argv += ["--limit", str(limit)]
        argv += ["--out", out if k == 1 else f"{out}-{k}"]
        commands.append(shlex.join(argv))
    return commands


def report_from_results(
    exp: Any,
    results: Mapping[str, Any],
    *,
    target_spec: str,
    data_spec: str,
    seed: int,
    limit: int | None = None,
    budget: float = BUDGET_1PCT,
    n_bootstrap: int = 200,
    blind: Any = None,
) -> AuditReport:
    """An :class:`AuditReport` of stored results on an experiment (the app's Compare page).

    ``results``: run id -> AttackResult (two runs of one attack side by side). Metrics are computed
    here as ``mia attack`` computes them (bootstrap intervals; transferred thresholds on a seeded
    half of each class); ``blind``: a :class:`mia_core.lab.blind.BlindBaseline` of the split, or None.
    """
    from mia_core.calibration import TRANSFER_BUDGETS, calibration_partition, transferred_metrics
    from mia_core.lab.run_specs import base_attack, parse_run_id

    runs = []
    for rid, res in results.items():
        labels = exp.labels_for(res.ids)
        m = exp.metrics(res, n_bootstrap=n_bootstrap, seed=seed).to_json_dict()
        partition = calibration_partition(labels, fraction=0.5, seed=seed)
        tr = transferred_metrics(res.scores, labels, partition, budgets=TRANSFER_BUDGETS, n_bootstrap=n_bootstrap)
        try:
            _, params = parse_run_id(rid)
        except ValueError:
            params = dict(res.params)
        runs.append(
            ReportRun(
                run_id=rid,
                attack=base_attack(rid),
                params=params,
                ids=tuple(res.ids),
                scores=np.asarray(res.scores, dtype=float),
                is_member=labels,
                metrics=m,
                transferred=tr["at_fpr"],
                seconds=float(res.seconds),
                unet_calls_per_image=int(res.unet_calls_per_image),
                evaluated_on=res.evaluated_on or f"all {len(exp.ids)} images",
            )
        )
    from mia_core.lab.plan import non_default

    split = exp.split
    return AuditReport(
        title=f"Membership-inference audit of {exp.target.source}",
        created=_now(),
        target=exp.target.card(),
        data={
            "source": split.source,
            "fingerprint": split.data_fingerprint,
            "conversion": exp.conversion.report,
            "n_members": int(exp.is_member.sum()),
            "n_nonmembers": int((~exp.is_member).sum()),
        },
        seed=int(seed),
        runs=runs,
        commands=reproduce_commands(
            target_spec,
            data_spec,
            {r.run_id: non_default(r.attack, r.params) for r in runs},
            seed=seed,
            limit=limit,
        ),
        images=dict(zip(exp.ids, exp.images.images)),
        blind_metrics=blind.metrics.to_json_dict() if blind is not None else None,
        blind_scores=None if blind is None else np.asarray(blind.scores),
        blind_is_member=None if blind is None else np.asarray(blind.is_member),
        budget=float(budget),
    )


# -- files --------------------------------------------------------------------------------------------


def find_chromium() -> str | None:
    """A Chromium / Chrome executable ($MIA_CHROMIUM first), or None."""
    for name in (os.environ.get("MIA_CHROMIUM"), *CHROMIUM_CANDIDATES):
        if name:
            found = shutil.which(name) or (name if os.path.isfile(name) and os.access(name, os.X_OK) else None)
            if found:
                return found
    return None


def write_pdf(html_path: str | Path, pdf_path: str | Path, *, timeout_s: float = 180.0) -> str | None:
    """Print the report's HTML to PDF with headless Chromium, offline. None on success, else why not.

    The charts are drawn by the report's own (inlined) plotly.js, so Chromium gets a few seconds of
    virtual time to run it before printing. Nothing is fetched: the file has no external resource.
    """
    chromium = find_chromium()
    if chromium is None:
        return "PDF not available: no Chromium found (install chromium or set $MIA_CHROMIUM); the HTML is complete"
    html_path, pdf_path = Path(html_path).resolve(), Path(pdf_path).resolve()
    with tempfile.TemporaryDirectory(prefix="mia-pdf-") as profile:
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--virtual-time-budget=10000",
            f"--print-to-pdf={pdf_path}",
            html_path.as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return f"PDF not written: Chromium took longer than {timeout_s:.0f} s"
        except OSError as exc:
            return f"PDF not written: could not start {chromium} ({exc})"
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return f"PDF not written: Chromium exited with {done.returncode} ({tail[0][:200]})"
    return None
