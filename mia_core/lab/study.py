"""Studies: a family of targets that differ in one factor, attacked alike, in one table.

A study answers questions such as "does leakage grow with training steps?" with our own
measurements: it trains one target per value of a factor (everything else as in a base
:class:`~mia_core.lab.train.TrainConfig`), runs the same attacks on each, and writes one table of
attack AUC and TPR at low FPR next to a utility figure for each model.

Factors
-------
steps       training steps. ONE run to the largest value, with EMA snapshots at the others
            (the learning rate is constant after warm-up, so a snapshot at step s is the model
            an s-step run gives; see mia_core.lab.train).
n_members   training-set size: a seeded random subset of the split's members of that size.
            Evaluation: those members against ALL the split's non-members (the same
            non-members for every value, so TPR at 1 % FPR stays defined and comparable). The
            split's members left out of training are used nowhere.
dp_epsilon  DP-SGD target epsilon; None (written "inf", labelled "no DP") trains without DP.
augment     "none", "hflip", "strong" (see mia_core.lab.train.augment_batch).

Utility
-------
heldout_loss  mean L_simple (mia_core.lab.train.denoising_loss: per-pixel mean of (eps - eps_theta)^2,
              ``utility_draws`` seeded (t, eps) draws per image) of the EMA model on the
              evaluation non-members: how well the model denoises images it never saw.
member_loss   the same on the evaluation members; heldout_loss - member_loss is the
              generalisation gap that the loss attack exploits.

Files
-----
``out_dir/study.json`` (format ``mia-study/1``, see :class:`Study`) and ``out_dir/study.csv``
(:meth:`Study.table`), rewritten after every finished value: rerunning the same study skips
the values already done (and a model already trained is not retrained; a model cut off
mid-training resumes from its checkpoint). Model folders go to ``models_dir`` (default
``out_dir/models``) with a ``study_settings.json`` that guards against mixing two studies.

Seeds: ``base.seed`` seeds training; ``seed`` seeds the data's random split (for sources without
one), the n_members subsets, the attacks' noise, the bootstrap and the utility draws.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mia_core.data import Split, resolve_data
from mia_core.lab.train import AUGMENTS, TrainConfig, denoising_loss, read_train_log, train
from mia_core.paths import STUDIES_DIR

STUDY_FORMAT = "mia-study/1"
FACTORS = ("steps", "n_members", "dp_epsilon", "augment")
FACTOR_LABELS = {
    "steps": "training steps",
    "n_members": "training-set size",
    "dp_epsilon": "DP target epsilon",
    "augment": "augmentation",
}
_SETTINGS_FILE = "study_settings.json"

Value = int | float | str | None


@dataclass
class Study:
    """A study as stored in ``study.json`` (all fields but ``path``).

    rows : one dict per (value, attack): ``value, label, attack, auc, auc_ci [lo, hi],
        tpr_at_1pct, tpr_at_0_1pct`` (None = n/a: too few non-members), ``n_members,
        n_nonmembers`` (the evaluation counts).
    models : one dict per value: ``value, label, heldout_loss, member_loss, epsilon`` (achieved
        DP epsilon, None without DP), ``train_seconds, steps, n_members`` (training-set size),
        ``target_dir`` (the model folder, relative to the study's folder).
    seconds : wall time of the whole study (training, attacks, utility), summed over reruns.
    """

    factor: str
    factor_label: str
    values: list[Value]
    data: str
    attacks: list[str]
    base_config: dict[str, Any]
    command: str
    device: str
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    format: str = STUDY_FORMAT
    path: Path | None = field(default=None, compare=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "factor": self.factor,
            "factor_label": self.factor_label,
            "values": list(self.values),
            "data": self.data,
            "attacks": list(self.attacks),
            "base_config": self.base_config,
            "command": self.command,
            "device": self.device,
            "seconds": round(float(self.seconds), 1),
            "rows": self.rows,
            "models": self.models,
        }

    def table(self) -> Any:
        """A pandas DataFrame: one row per (value, attack), the model's columns joined.

        Columns: value, label, attack, auc, auc_ci_low, auc_ci_high, tpr_at_1pct, tpr_at_0_1pct,
        n_members, n_nonmembers (evaluation counts), heldout_loss, member_loss, loss_gap
        (heldout - member), epsilon, steps, train_members, train_seconds, target_dir.
        """
        import pandas as pd

        models = {m["label"]: m for m in self.models}
        records = []
        for row in self.rows:
            model = models.get(row["label"], {})
            ci = row.get("auc_ci") or [None, None]
            heldout, member = model.get("heldout_loss"), model.get("member_loss")
            records.append(
                {
                    "value": row["value"],
                    "label": row["label"],
                    "attack": row["attack"],
                    "auc": row["auc"],
                    "auc_ci_low": ci[0],
                    "auc_ci_high": ci[1],
                    "tpr_at_1pct": row["tpr_at_1pct"],
                    "tpr_at_0_1pct": row["tpr_at_0_1pct"],
                    "n_members": row["n_members"],
                    "n_nonmembers": row["n_nonmembers"],
                    "heldout_loss": heldout,
                    "member_loss": member,
                    "loss_gap": None if heldout is None or member is None else heldout - member,
                    "epsilon": model.get("epsilon"),
                    "steps": model.get("steps"),
                    "train_members": model.get("n_members"),
                    "train_seconds": model.get("train_seconds"),
                    "target_dir": model.get("target_dir"),
                }
            )
        columns = [
            "value",
            "label",
            "attack",
            "auc",
            "auc_ci_low",
            "auc_ci_high",
            "tpr_at_1pct",
            "tpr_at_0_1pct",
            "n_members",
            "n_nonmembers",
            "heldout_loss",
            "member_loss",
            "loss_gap",
            "epsilon",
            "steps",
            "train_members",
            "train_seconds",
            "target_dir",
        ]
        return pd.DataFrame.from_records(records, columns=columns)

    def save(self, out_dir: str | Path) -> None:
        """Write ``study.json`` and ``study.csv`` (each to a temporary name, then renamed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "study.json", json.dumps(self.to_json_dict(), indent=1) + "\n")
        _write_atomic(out / "study.csv", self.table().to_csv(index=False, float_format="%.6g"))
        self.path = out / "study.json"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def load_study(path: str | Path) -> Study:
    """Read a ``study.json`` (or the folder holding one); ``ValueError`` naming the file on any problem."""
    path = Path(path)
    if path.is_dir():
        path = path / "study.json"
    if not path.is_file():
        raise ValueError(f"study file {path} does not exist")
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"study file {path} is not valid JSON: {err}") from err
    if not isinstance(d, dict) or d.get("format") != STUDY_FORMAT:
        raise ValueError(
            f"{path}: not a study (format {d.get('format') if isinstance(d, dict) else None!r}, "
            f"expected {STUDY_FORMAT!r})"
        )
    names = [f.name for f in dataclasses.fields(Study) if f.name != "path"]
    missing = [n for n in names if n not in d]
    if missing:
        raise ValueError(f"{path}: study lacks {', '.join(missing)}")
    return Study(**{n: d[n] for n in names}, path=path)


def list_studies(*dirs: str | Path) -> list[Study]:
    """The studies in ``dirs`` (default: the precomputed ones in ``assets/studies``), sorted by path.

    Each dir is a study folder itself or holds study folders one level down. Unreadable
    studies are skipped with a warning.
    """
    found: list[Path] = []
    for d in dirs or (STUDIES_DIR,):
        d = Path(d)
        if (d / "study.json").is_file():
            found.append(d / "study.json")
        elif d.is_dir():
            found.extend(sorted(p / "study.json" for p in d.iterdir() if (p / "study.json").is_file()))
    studies = []
    for path in sorted(set(found)):
        try:
            studies.append(load_study(path))
        except ValueError as err:
            warnings.warn(f"skipping {path}: {err}", stacklevel=2)
    return studies


# -- values ----------------------------------------------------------------------------------


def check_values(factor: str, values: Sequence[Value]) -> list[Value]:
    """Validate a factor's values; returns them as plain Python values (ints, floats, str, None)."""
    if factor not in FACTORS:
        raise ValueError(f"factor must be one of {FACTORS}, got {factor!r}")
    values = list(values)
    if not values:
        raise ValueError("a study needs at least one value")
    out: list[Value] = []
    for v in values:
        if factor in ("steps", "n_members"):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{factor} values must be integers >= 1, got {v!r}")
            out.append(int(v))
        elif factor == "dp_epsilon":
            if v is None:
                out.append(None)
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"dp_epsilon values must be numbers > 0, or None (no DP), got {v!r}")
            else:
                out.append(float(v))
        else:
            if v not in AUGMENTS:
                raise ValueError(f"augment values must be among {AUGMENTS}, got {v!r}")
            out.append(str(v))
    labels = [value_label(factor, v) for v in out]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{factor} values must be distinct, got {values!r}")
    return out


def parse_values(factor: str, text: str) -> list[Value]:
    """Values from the CLI's comma-separated ``--values`` (dp_epsilon: ``inf`` or ``none`` = no DP)."""
    items = [s.strip() for s in str(text).split(",") if s.strip()]
    parsed: list[Any] = []
    for item in items:
        if factor in ("steps", "n_members"):
            try:
                parsed.append(int(item))
            except ValueError:
                raise ValueError(f"{factor} values must be integers, got {item!r}") from None
        elif factor == "dp_epsilon":
            if item.lower() in ("inf", "none", "no", "nodp", "no-dp"):
                parsed.append(None)
            else:
                try:
                    parsed.append(float(item))
                except ValueError:
                    raise ValueError(f"dp_epsilon values must be numbers or 'inf' (no DP), got {item!r}") from None
        else:
            parsed.append(item)
    return check_values(factor, parsed)


def value_label(factor: str, value: Value) -> str:
    """How a value is shown: ``"2000"``, ``"1"``, ``"no DP"``, ``"hflip"``."""
    if factor == "dp_epsilon":
        return "no DP" if value is None else f"{value:g}"
    return str(value)


def _slug(factor: str, value: Value) -> str:
    text = "inf" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
    return f"{factor}-{text}"


# -- running ---------------------------------------------------------------------------------


Progress = Callable[[str, int, int], None]


def run_study(
    factor: str,
    values: Sequence[Value],
    *,
    data: str = "default",
    base: TrainConfig = TrainConfig(),
    attacks: Sequence[str] = ("loss", "pia", "sima", "secmi"),
    out_dir: str | Path,
    models_dir: str | Path | None = None,
    device: str | None = None,
    seed: int = 0,
    limit: int | None = None,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    n_bootstrap: int = 200,
    utility_draws: int = 4,
    command: str = "",
    progress: Progress | None = None,
) -> Study:
    """Train one target per value of ``factor``, attack each, and write the study (see module doc).

    Parameters
    ----------
    factor : one of :data:`FACTORS`
    values : the factor's values (see :func:`check_values`); for ``steps`` ``base.steps`` is ignored
    data : a ``--data`` spec (see :func:`mia_core.data.resolve_data`); training uses its members
    base : everything else of the training config
    attacks : attack registry names, run with their defaults (traces off) and ``attack_params``
    out_dir : where ``study.json`` and ``study.csv`` go
    models_dir : where the model folders go (default ``out_dir/models``)
    limit : evaluate on at most ``limit`` members and ``limit`` non-members of each model
    progress : called as ``progress(phase, done, total)``, phase e.g. ``"train 2000"``,
        ``"attack 2000: pia"``, ``"utility 2000"``
    """
    started = time.perf_counter()
    values = check_values(factor, values)
    if factor == "steps":  # the one run's length; base.steps is not used
        base = dataclasses.replace(base, steps=max(values))  # type: ignore[type-var]
    attacks = list(attacks)
    if not attacks:
        raise ValueError("a study needs at least one attack")
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be an integer >= 1 (the table has AUC intervals), got {n_bootstrap!r}")
    from mia_core.attacks import scores_only_params

    params = {name: {**scores_only_params(name), **dict((attack_params or {}).get(name, {}))} for name in attacks}
    unknown = sorted(set(attack_params or {}) - set(attacks))
    if unknown:
        raise ValueError(f"parameters given for attack(s) {unknown} that are not in the study")
    out = Path(out_dir)
    models_root = Path(models_dir) if models_dir is not None else out / "models"
    from mia_core.target import pick_device

    dev = str(pick_device(device))
    images, split = resolve_data(data, seed=seed)
    if factor == "n_members" and max(values) > split.n_members:  # type: ignore[type-var]
        raise ValueError(f"n_members value {max(values)} exceeds the {split.n_members} members of {data!r}")

    settings = {
        "factor": factor,
        "data": data,
        "attacks": attacks,
        "attack_params": params,
        "base_config": base.to_dict(),
        "seed": seed,
        "limit": limit,
        "n_bootstrap": n_bootstrap,
        "utility_draws": utility_draws,
        "data_fingerprint": split.data_fingerprint,
    }
    _check_settings(models_root, settings)
    study = _load_or_new(out, factor, data, attacks, base, command, dev)
    done = {m["label"] for m in study.models}
    seconds_before = float(study.seconds)

    def report(phase: str, k: int, n: int) -> None:
        if progress is not None:
            progress(phase, k, n)

    # 1. Train (skipped for models already there). The steps factor trains once, with snapshots.
    todo = [v for v in values if value_label(factor, v) not in done]
    folders = {value_label(factor, v): models_root / _slug(factor, v) for v in values}
    if factor == "steps" and todo:
        _train_steps_run(values, base, images, split, folders, command, dev, report)
    # 2. For each value not done: train (other factors), attack, measure utility, save.
    for v in todo:
        label = value_label(factor, v)
        folder = folders[label]
        if factor != "steps":
            cfg, subset = _config_for(factor, v, base, split, seed)
            _train_one(cfg, images, subset, folder, command, dev, lambda k, n, _loss: report(f"train {label}", k, n))  # noqa: B023 (called at once, inside the loop)
        rows, model = _evaluate(folder, label, v, attacks, params, dev, seed, limit, n_bootstrap, utility_draws, report)
        model["target_dir"] = os.path.relpath(folder, out)
        study.rows = [r for r in study.rows if r["label"] != label] + rows
        study.models = [m for m in study.models if m["label"] != label] + [model]
        _finish(study, values, factor, command, dev, seconds_before + time.perf_counter() - started)
        study.save(out)
    _finish(study, values, factor, command, dev, seconds_before + time.perf_counter() - started)
    study.save(out)
    return study


def _check_settings(models_root: Path, settings: dict[str, Any]) -> None:
    path = models_root / _SETTINGS_FILE
    text = json.dumps(settings, indent=1, sort_keys=True)
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved != json.loads(text):
            differ = sorted(k for k in set(saved) | set(settings) if saved.get(k) != json.loads(text).get(k))
            raise ValueError(
                f"{models_root} holds models of another study (settings differ in: {', '.join(differ)}); "
                "use another --out / --models-dir, or delete it"
            )
    models_root.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def _load_or_new(
    out: Path, factor: str, data: str, attacks: list[str], base: TrainConfig, command: str, device: str
) -> Study:
    if (out / "study.json").is_file():
        old = load_study(out)
        same = (old.factor, old.data, list(old.attacks), old.base_config) == (factor, data, attacks, base.to_dict())
        if not same:
            raise ValueError(
                f"{out / 'study.json'} is another study (factor, data, attacks or base config differ); "
                "use another --out"
            )
        return old
    return Study(
        factor=factor,
        factor_label=FACTOR_LABELS[factor],
        values=[],
        data=data,
        attacks=attacks,
        base_config=base.to_dict(),
        command=command,
        device=device,
        seconds=0.0,
    )


def _finish(study: Study, values: list[Value], factor: str, command: str, device: str, seconds: float) -> None:
    """Values in the order asked (earlier values not asked again are kept, after them); timing."""
    labels = [value_label(factor, v) for v in values]
    extra = [m["value"] for m in study.models if m["label"] not in labels]
    study.values = list(values) + extra
    order = {value_label(factor, v): i for i, v in enumerate(study.values)}
    study.models.sort(key=lambda m: order[m["label"]])
    study.rows.sort(key=lambda r: (order[r["label"]], study.attacks.index(r["attack"])))
    if command:
        study.command = command
    study.device = device
    study.seconds = seconds


def _config_for(factor: str, value: Value, base: TrainConfig, split: Split, seed: int) -> tuple[TrainConfig, Split]:
    if factor == "n_members":
        rng = np.random.default_rng(seed)
        keep = rng.permutation(split.n_members)[: int(value)]  # type: ignore[arg-type]
        subset = Split(
            member_ids=tuple(split.member_ids[k] for k in keep),
            nonmember_ids=split.nonmember_ids,
            seed=split.seed,
            data_fingerprint=split.data_fingerprint,
            source=split.source,
            description=f"{value} random members (seed {seed}) of: {split.description or split.source}",
        )
        return base, subset
    if factor == "dp_epsilon":
        return dataclasses.replace(base, dp_epsilon=value), split
    if factor == "augment":
        return dataclasses.replace(base, augment=value, hflip=False), split
    raise ValueError(f"factor {factor!r} has no per-value config")  # steps: one run, see _train_steps_run


def _with_checkpoints(cfg: TrainConfig) -> TrainConfig:
    """A study checkpoints its runs so that a study cut off mid-training resumes."""
    return cfg if cfg.checkpoint_every else dataclasses.replace(cfg, checkpoint_every=max(100, cfg.steps // 5))


def _trained(folder: Path, cfg: TrainConfig) -> bool:
    """Whether ``folder`` already holds a model trained with ``cfg`` (``ValueError`` if another)."""
    log = read_train_log(folder)
    if log is None or not (folder / "unet").is_dir():
        return False
    saved = TrainConfig.from_dict(log["config"])
    if dataclasses.replace(saved, checkpoint_every=0) != dataclasses.replace(cfg, checkpoint_every=0):
        raise ValueError(f"{folder} holds a model trained with another config; delete it or use another models folder")
    return True


def _train_one(
    cfg: TrainConfig,
    images: Any,
    split: Split,
    folder: Path,
    command: str,
    device: str,
    progress: Callable[[int, int, float], None],
) -> None:
    cfg = _with_checkpoints(cfg)
    if _trained(folder, cfg):
        return
    resume = folder if (folder / "checkpoint").is_dir() else None
    train(
        images.subset(split.member_ids),
        split,
        cfg,
        folder,
        device=device,
        progress=progress,
        resume_from=resume,
        command=command,
    )


def _train_steps_run(
    values: list[Value],
    base: TrainConfig,
    images: Any,
    split: Split,
    folders: dict[str, Path],
    command: str,
    device: str,
    report: Progress,
) -> None:
    steps = sorted(int(v) for v in values)  # type: ignore[arg-type]
    cfg = _with_checkpoints(dataclasses.replace(base, steps=steps[-1]))
    final = folders[str(steps[-1])]
    if _trained(final, cfg) and all(_trained(folders[str(s)], dataclasses.replace(cfg, steps=s)) for s in steps):
        return
    resume = final if (final / "checkpoint").is_dir() else None
    train(
        images.subset(split.member_ids),
        split,
        cfg,
        final,
        device=device,
        command=command,
        progress=lambda k, n, _loss: report(f"train {steps[-1]}", k, n),
        resume_from=resume,
        snapshot_steps=steps[:-1],
        snapshot_dir=lambda s: folders[str(s)],
    )


def _evaluate(
    folder: Path,
    label: str,
    value: Value,
    attacks: list[str],
    params: dict[str, dict[str, Any]],
    device: str,
    seed: int,
    limit: int | None,
    n_bootstrap: int,
    utility_draws: int,
    report: Progress,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from mia_core.lab.experiment import load_experiment, make_attacks

    exp = load_experiment(str(folder), str(folder / "split.json"), device=device, limit=limit, seed=seed)
    results = exp.attack(
        make_attacks(attacks, params), seed=seed, progress=lambda name, k, n: report(f"attack {label}: {name}", k, n)
    )
    rows = []
    for name in attacks:
        m = exp.metrics(results[name], n_bootstrap=n_bootstrap, seed=seed)
        rows.append(
            {
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
        )
    report(f"utility {label}", 0, 1)
    losses = denoising_loss(exp.target, exp.x0, n_draws=utility_draws, seed=seed)
    log = read_train_log(folder) or {}
    dp = log.get("dp") or None
    model = {
        "value": value,
        "label": label,
        "heldout_loss": float(losses[~exp.is_member].mean()),
        "member_loss": float(losses[exp.is_member].mean()),
        "epsilon": None if dp is None else float(dp["achieved_epsilon"]),
        "train_seconds": float(log.get("seconds", 0.0)),
        "steps": int(log.get("config", {}).get("steps", 0)),
        "n_members": int(log.get("n_members", exp.split.n_members)),
        "target_dir": "",
    }
    report(f"utility {label}", 1, 1)
    return rows, model
