"""What the "Factors & defences" page shows of a study: ordering, the headline figure, the findings.

A *study* (``mia study``, format ``mia-study/1``) trains one target per value of a factor
(training steps, number of members, DP-SGD's epsilon, augmentation), runs the same attacks on
each and records their metrics and the models' utility. Nothing here imports streamlit: the
page only wires these functions to widgets, and they are unit-tested on hand-made studies.

Notation (the study.json fields):

    factor        "steps" | "n_members" | "dp_epsilon" | "augment" | "shift" (the mixing experiment: no
                  training; a share of the non-members replaced by shifted images, attack "blind" =
                  the blind baseline, :mod:`mia_core.lab.mixing`)
    value         the factor's value of one model (int, float, str; None = "no DP" for dp_epsilon)
    label         how that value is shown ("6000 steps", "ε = 1", "no DP")
    auc, auc_ci   the attack's ROC-AUC and its 95 % bootstrap interval [lo, hi]
    tpr_at_1pct   TPR at 1 % FPR (None when the non-members are too few to resolve it)
    heldout_loss  utility: the denoising loss E ||eps - eps_theta(x_t, t)||^2 on non-members
                  (lower = better model); member_loss the same on the training images

Order: the x axis reads as the trade-off a practitioner makes, left to right: more training
steps, more members, *stronger* privacy (no DP first, then epsilon decreasing), more
augmentation. So for a defence the attack curves fall and the utility curve rises to the right.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mia_core.views.attack_info import short_name
from mia_core.views.results import GRID_COLOR, _base_layout
from mia_core.views.style import attack_color

__all__ = [
    "FACTORS",
    "CAVEAT",
    "FactorInfo",
    "StudyView",
    "study_view",
    "value_order",
    "is_no_dp",
    "study_table",
    "factor_figure",
    "findings",
    "METRICS",
    "BLIND",
    "SHIFT_CAVEAT",
    "caveat",
]

STUDY_FORMAT = "mia-study/1"
#: The metrics the figure can show: column -> (axis title, chance level).
METRICS = {
    "auc": ("attack AUC", 0.5),
    "tpr_at_1pct": ("attack TPR at 1% FPR", 0.01),
}
AUGMENT_ORDER = ("none", "hflip", "strong")
#: Two values that differ by less than this are "about the same" in the findings.
FLAT_AUC = 0.02

#: The attack name of the blind baseline's rows in a shift study (:mod:`mia_core.lab.mixing`).
BLIND = "blind"
BLIND_LABEL = "blind baseline (images only, no model)"
BLIND_COLOR = "#7f7f7f"  # the grey dash-dot of the blind baseline on Compare's ROC

SHIFT_CAVEAT = (
    "The shipped shift study is small: the embedded default target, 300 members against 300 non-members of the "
    "8×8 digits, the replaced non-members brightened by 40/255 (a shift a person barely notices). It shows the "
    "pitfall, not the size of the effect on real data (CopyMark: PIA 0.66 → 0.74 as COCO replaces LAION "
    "non-members)."
)

CAVEAT = (
    "The shipped studies are small: UNets of about 177,000 parameters (16/32 channels) trained on scikit-learn's 8×8 "
    "digits (898 training images at most), one training run per value, attacked on at most the ~900 "
    "held-out digits. They show the direction and rough size of each effect; the exact numbers do not transfer to "
    "large models on real images."
)


@dataclass(frozen=True)
class FactorInfo:
    """How one factor is named and explained on the page."""

    title: str
    heading: str  # the explanation's lead-in on the page
    why: str


FACTORS: dict[str, FactorInfo] = {
    "steps": FactorInfo(
        "Training steps",
        "Why more training steps leak more",
        "Every step pulls the model's noise prediction closer to the exact training images. Early on it learns "
        "what digits look like in general, which helps members and non-members alike; with more steps it keeps "
        "improving only on the images it sees, so their denoising error drops below that of similar unseen "
        "images. That gap between member and held-out loss is exactly what loss-based attacks (Loss, PIA, SimA, "
        "SecMI) measure, so attack AUC rises with training length, often long after the samples already look good.",
    ),
    "n_members": FactorInfo(
        "Number of training images",
        "Why more training data leaks less",
        "With the same number of steps, a larger training set means each image is seen fewer times and the model "
        "has to fit the distribution rather than the individual images. Each member then leaves a smaller mark "
        "on the weights and its error looks more like a non-member's, so attacks get weaker. Small data sets are "
        "the most exposed, which is why fine-tuning on a handful of images is the riskiest setting.",
    ),
    "dp_epsilon": FactorInfo(
        "Differential privacy (DP-SGD) budget ε",
        "What DP-SGD's ε means",
        "DP-SGD (Abadi et al. 2016) clips every example's gradient to a maximum norm and adds Gaussian noise to "
        "the sum, so that no single image can change the weights by much. The guarantee is (ε, δ)-differential "
        "privacy: any membership test's true-positive rate is at most e^ε times its false-positive rate plus δ. "
        "A small ε (about 1) is a strong promise, ε of 10 or more a weak one on paper; the bound is a worst "
        "case, and in practice even a large ε often removes much of the leak that attacks can measure. The price "
        "is utility: the noise makes the model worse, visible here as a higher held-out loss. 'no DP' is "
        "ordinary training.",
    ),
    "augment": FactorInfo(
        "Data augmentation",
        "Why augmentation helps",
        "Augmentation shows the model a randomly changed copy of each image at every step (hflip: a random "
        "mirror image; strong: also a random shift by up to an eighth of the image). The model can no longer "
        "memorise one exact pixel pattern, so the member/non-member gap narrows and attacks that test the "
        "original image weaken. It is no guarantee: an attacker who also "
        "tests the augmented versions can recover part of the signal, and on digits a mirror image is not a "
        "natural digit, which costs some utility.",
    ),
    "shift": FactorInfo(
        "Distribution shift (the mixing experiment)",
        "Why a shifted split looks like leakage",
        "Nothing is trained here: one fixed model, and a growing share of its non-members replaced by images "
        "from another distribution (CopyMark's mixing experiment). The members do not change, so the model's "
        "memorisation does not either; yet every attack's AUC rises, because the attacks score the shifted "
        "images differently for reasons that have nothing to do with training. The blind baseline, a classifier "
        "that sees only the images and never queries the model, rises with them: when it beats chance, the split "
        "is biased and attack numbers on it overstate memorisation. Published results on Stable Diffusion (LAION "
        "members against COCO non-members) are of this kind.",
    ),
}


def caveat(factor: str) -> str:
    """The caveat shown under a shipped study of ``factor``."""
    return SHIFT_CAVEAT if factor == "shift" else CAVEAT


# --------------------------------------------------------------------------- reading a study


def is_no_dp(value: Any) -> bool:
    """True for the dp_epsilon value meaning ordinary training: None, inf, or a string like "no DP"/"none"."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower().replace("-", " ").replace("_", " ") in ("none", "no dp", "inf", "off", "")
    try:
        return math.isinf(float(value))
    except (TypeError, ValueError):
        return False


def _key(value: Any) -> str:
    """A hashable, JSON-canonical key for a factor value (rows and models are matched on it)."""
    return json.dumps(value, sort_keys=True)


def _number(value: Any) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def value_order(factor: str, values: Sequence[Any]) -> list[Any]:
    """The factor's values in the order the trade-off reads left to right.

    * ``steps``, ``n_members`` and any other numeric factor: ascending.
    * ``dp_epsilon``: "no DP" first, then epsilon *decreasing* (privacy getting stronger).
    * ``augment``: none, hflip, strong, then unknown values in their given order.

    Duplicates are dropped (first occurrence kept). Raises ValueError naming a value that a
    numeric factor cannot order.
    """
    unique: list[Any] = []
    seen: set[str] = set()
    for v in values:
        if _key(v) not in seen:
            seen.add(_key(v))
            unique.append(v)
    if factor == "dp_epsilon":
        no_dp = [v for v in unique if is_no_dp(v)]
        rest = [v for v in unique if not is_no_dp(v)]
        bad = [v for v in rest if _number(v) is None]
        if bad:
            raise ValueError(f"dp_epsilon values must be numbers or None (no DP); got {bad[0]!r}")
        return no_dp + sorted(rest, key=lambda v: -float(v))
    if factor == "augment":
        rank = {name: i for i, name in enumerate(AUGMENT_ORDER)}
        return sorted(unique, key=lambda v: (rank.get(str(v).lower(), len(rank)), unique.index(v)))
    bad = [v for v in unique if _number(v) is None]
    if bad:
        raise ValueError(f"{factor} values must be numbers to be ordered; got {bad[0]!r}")
    return sorted(unique, key=float)


@dataclass
class StudyView:
    """A study as two ordered tables (what the figure, the findings and the table are drawn from).

    rows   : one row per (value, attack): value, label, order, attack, auc, auc_lo, auc_hi,
             tpr_at_1pct, tpr_at_0_1pct, n_members, n_nonmembers (sorted by order, then attack)
    models : one row per value: value, label, order, heldout_loss, member_loss, epsilon,
             train_seconds, steps, n_members, target_dir (sorted by order)
    """

    factor: str
    factor_label: str
    labels: list[str]
    attacks: list[str]
    rows: pd.DataFrame
    models: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        info = FACTORS.get(self.factor)
        return info.title if info else self.factor_label


def _as_mapping(study: Any) -> Mapping[str, Any]:
    """The study.json content of ``study``: a mapping as is, else a Study's ``to_json_dict()``."""
    if isinstance(study, Mapping):
        return study
    for attr in ("to_json_dict", "to_dict"):  # mia_core.lab.study.Study has to_json_dict()
        method = getattr(study, attr, None)
        if callable(method):
            return method()
    if hasattr(study, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(study)
    raise TypeError(f"expected a study.json mapping or a Study, got {type(study).__name__}")


def _f(value: Any) -> float:
    """A float, NaN for None / missing / non-numeric (JSON null means 'not measured')."""
    x = _number(value)
    return float("nan") if x is None else x


def study_view(study: Any) -> StudyView:
    """Order and tabulate a study (the parsed ``study.json`` mapping, or a Study object).

    Raises ValueError when the factor is missing or a value cannot be ordered.
    """
    raw = _as_mapping(study)
    factor = raw.get("factor")
    if not factor:
        raise ValueError("the study names no factor (expected 'steps', 'n_members', 'dp_epsilon' or 'augment')")
    raw_rows = list(raw.get("rows") or [])
    raw_models = list(raw.get("models") or [])
    values = list(raw.get("values") or []) + [r.get("value") for r in raw_rows] + [m.get("value") for m in raw_models]
    ordered = value_order(factor, values)
    position = {_key(v): i for i, v in enumerate(ordered)}
    label_of: dict[str, str] = {}
    for item in raw_models + raw_rows:
        if item.get("label") and _key(item.get("value")) not in label_of:
            label_of[_key(item.get("value"))] = str(item["label"])
    labels = [label_of.get(_key(v)) or _default_label(factor, v) for v in ordered]
    if len(set(labels)) < len(labels):  # the x axis is categorical: equal labels would merge two models
        labels = [f"{lab} ({v})" if labels.count(lab) > 1 else lab for lab, v in zip(labels, ordered)]

    attacks = [str(a) for a in raw.get("attacks") or []]
    for r in raw_rows:
        if r.get("attack") and r["attack"] not in attacks:
            attacks.append(str(r["attack"]))
    rank = {a: i for i, a in enumerate(attacks)}
    rows = pd.DataFrame(
        [
            {
                "value": r.get("value"),
                "label": labels[position[_key(r.get("value"))]],
                "order": position[_key(r.get("value"))],
                "attack": str(r.get("attack")),
                "auc": _f(r.get("auc")),
                "auc_lo": _f((r.get("auc_ci") or [None, None])[0]),
                "auc_hi": _f((r.get("auc_ci") or [None, None])[1]),
                "tpr_at_1pct": _f(r.get("tpr_at_1pct")),
                "tpr_at_0_1pct": _f(r.get("tpr_at_0_1pct")),
                "n_members": r.get("n_members"),
                "n_nonmembers": r.get("n_nonmembers"),
            }
            for r in raw_rows
        ],
        columns=[
            "value",
            "label",
            "order",
            "attack",
            "auc",
            "auc_lo",
            "auc_hi",
            "tpr_at_1pct",
            "tpr_at_0_1pct",
            "n_members",
            "n_nonmembers",
        ],
    )
    rows["value"] = pd.Series([r.get("value") for r in raw_rows], dtype=object)  # keep None (no DP) as None
    if len(rows):
        rows = (
            rows.assign(_rank=rows["attack"].map(rank))
            .sort_values(["order", "_rank"], kind="stable")
            .drop(columns="_rank")
            .reset_index(drop=True)
        )
    models = pd.DataFrame(
        [
            {
                "value": m.get("value"),
                "label": labels[position[_key(m.get("value"))]],
                "order": position[_key(m.get("value"))],
                "heldout_loss": _f(m.get("heldout_loss")),
                "member_loss": _f(m.get("member_loss")),
                "epsilon": _f(m.get("epsilon")),
                "train_seconds": _f(m.get("train_seconds")),
                "steps": m.get("steps"),
                "n_members": m.get("n_members"),
                "target_dir": m.get("target_dir"),
            }
            for m in raw_models
        ],
        columns=[
            "value",
            "label",
            "order",
            "heldout_loss",
            "member_loss",
            "epsilon",
            "train_seconds",
            "steps",
            "n_members",
            "target_dir",
        ],
    )
    models["value"] = pd.Series([m.get("value") for m in raw_models], dtype=object)
    models = models.sort_values("order", kind="stable").reset_index(drop=True)
    meta = {k: raw.get(k) for k in ("format", "data", "command", "device", "seconds", "base_config")}
    return StudyView(
        factor=factor,
        factor_label=str(raw.get("factor_label") or factor),
        labels=labels,
        attacks=attacks,
        rows=rows,
        models=models,
        meta=meta,
    )


def _default_label(factor: str, value: Any) -> str:
    """The label of a value no row or model names yet (a study still running): as mia_core.lab.study labels it."""
    if factor == "dp_epsilon":
        return "no DP" if is_no_dp(value) else f"{float(value):g}"
    return str(value)


# --------------------------------------------------------------------------- table


def study_table(view: StudyView) -> pd.DataFrame:
    """One row per (value, attack) with the model's utility beside the attack's metrics (for display and CSV).

    Columns: <factor label> (the value's label), attack, AUC, AUC 95% low, AUC 95% high, TPR@1%FPR, TPR@0.1%FPR,
    members, non-members, held-out loss, member loss, achieved ε (dp_epsilon studies only), training s.
    """
    models = view.models.drop(columns=["label", "order", "n_members", "steps", "target_dir"])
    models = models.assign(_k=models["value"].map(_key)).drop(columns="value")
    rows = view.rows.assign(_k=view.rows["value"].map(_key))
    merged = rows.merge(models, on="_k", how="left").sort_values(["order"], kind="stable")
    table = pd.DataFrame(
        {
            view.factor_label: merged["label"],
            "attack": merged["attack"].map(short_name),
            "AUC": merged["auc"],
            "AUC 95% low": merged["auc_lo"],
            "AUC 95% high": merged["auc_hi"],
            "TPR@1%FPR": merged["tpr_at_1pct"],
            "TPR@0.1%FPR": merged["tpr_at_0_1pct"],
            "members": merged["n_members"],
            "non-members": merged["n_nonmembers"],
            "held-out loss": merged["heldout_loss"],
            "member loss": merged["member_loss"],
            "achieved ε": merged["epsilon"],
            "training s": merged["train_seconds"],
        }
    )
    if view.factor != "dp_epsilon" and table["achieved ε"].isna().all():
        table = table.drop(columns="achieved ε")
    return table.reset_index(drop=True)


# --------------------------------------------------------------------------- figure


def factor_figure(view: StudyView, metric: str = "auc", *, title: str | None = None) -> go.Figure:
    """Attack strength against the factor (top) and the models' utility (bottom), sharing x.

    Top: one line per attack (its colour everywhere in the app), ``metric`` ("auc" with 95 %
    interval bars, or "tpr_at_1pct"), a dashed chance line. Bottom: held-out loss (solid) and
    member loss (dotted) of each model: their gap is the generalisation gap the attacks read.
    x is categorical, in :func:`value_order` order, labelled with the study's labels.

    Traces carry ``meta = {"role": "attack", "attack": name, "metric": metric}`` or
    ``{"role": "utility", "loss": "heldout" | "member"}``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    axis_title, chance = METRICS[metric]
    has_utility = bool(len(view.models)) and not view.models["heldout_loss"].isna().all()
    rows = 2 if has_utility else 1
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.1,
        row_heights=[0.62, 0.38] if rows == 2 else [1.0],
        subplot_titles=(f"Attack strength: {axis_title}", "Utility: denoising loss of each model (lower = better)")[
            :rows
        ],
    )
    for name in view.attacks:
        part = view.rows[view.rows["attack"] == name]
        if part.empty:
            continue
        y = part[metric].to_numpy(dtype=float)
        error = None
        if metric == "auc" and not part["auc_lo"].isna().all():
            error = dict(
                type="data",
                symmetric=False,
                array=(part["auc_hi"] - part["auc"]).clip(lower=0).to_numpy(),
                arrayminus=(part["auc"] - part["auc_lo"]).clip(lower=0).to_numpy(),
                thickness=1.5,
                width=5,
            )
        custom = np.stack([part["auc_lo"], part["auc_hi"], part["tpr_at_1pct"]], axis=1)
        blind = name == BLIND and view.factor == "shift"
        fig.add_trace(
            go.Scatter(
                x=part["label"],
                y=y,
                mode="lines+markers",
                name=BLIND_LABEL if blind else short_name(name),
                error_y=error,
                line=dict(color=BLIND_COLOR, width=3, dash="dashdot")
                if blind
                else dict(color=attack_color(name), width=2.5),
                marker=dict(size=9, symbol="square") if blind else dict(size=9),
                connectgaps=False,
                customdata=custom,
                meta={"role": "reference" if blind else "attack", "attack": name, "metric": metric},
                hovertemplate=(
                    f"<b>{short_name(name)}</b> · %{{x}}<br>AUC %{{y:.3f}} [%{{customdata[0]:.3f}}, "
                    "%{customdata[1]:.3f}]<extra></extra>"
                )
                if metric == "auc"
                else (f"<b>{short_name(name)}</b> · %{{x}}<br>TPR@1%FPR %{{y:.3f}}<extra></extra>"),
            ),
            row=1,
            col=1,
        )
    fig.add_hline(y=chance, line=dict(color=GRID_COLOR, dash="dash", width=1), row=1, col=1)
    fig.add_annotation(
        x=1,
        y=chance,
        xref="x domain",
        yref="y",
        text="chance",
        showarrow=False,
        xanchor="right",
        yanchor="bottom",
        font=dict(size=11, color="#555555"),
    )
    if rows == 2:
        m = view.models
        fig.add_trace(
            go.Scatter(
                x=m["label"],
                y=m["heldout_loss"],
                mode="lines+markers",
                name="held-out loss (utility)",
                line=dict(color="#333333", width=2.5),
                marker=dict(size=8, symbol="square"),
                meta={"role": "utility", "loss": "heldout"},
                hovertemplate="%{x}<br>held-out loss %{y:.4f}<extra></extra>",
            ),
            row=2,
            col=1,
        )
        if not m["member_loss"].isna().all():
            fig.add_trace(
                go.Scatter(
                    x=m["label"],
                    y=m["member_loss"],
                    mode="lines+markers",
                    name="member (training) loss",
                    line=dict(color="#333333", width=1.5, dash="dot"),
                    marker=dict(size=6, symbol="square-open"),
                    meta={"role": "utility", "loss": "member"},
                    hovertemplate="%{x}<br>member loss %{y:.4f}<extra></extra>",
                ),
                row=2,
                col=1,
            )
        fig.update_yaxes(title="loss", row=2, col=1)
    fig.update_yaxes(title=axis_title, row=1, col=1, range=[0.4, 1.02] if metric == "auc" else [-0.02, 1.02])
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=view.labels)
    fig.update_xaxes(title=view.factor_label, row=rows, col=1)
    _base_layout(fig, title, height=640 if rows == 2 else 460)
    # on the right, beside the attack panel: visible with the chart's top half (a projected slide)
    fig.update_layout(legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top", tracegroupgap=4), margin=dict(r=10))
    if metric == "auc":
        low = float(np.nanmin(view.rows[["auc", "auc_lo"]].to_numpy(dtype=float))) if len(view.rows) else 0.4
        if math.isfinite(low) and low < 0.4:
            fig.update_yaxes(range=[max(0.0, low - 0.03), 1.02], row=1, col=1)
    return fig


# --------------------------------------------------------------------------- findings


def _fmt_metric(metric: str, x: float) -> str:
    return f"{x:.2f}" if metric == "auc" else f"{x:.0%}"


def _fmt_loss(x: float) -> str:
    return f"{x:.3g}"


def _ends(frame: pd.DataFrame, column: str) -> tuple[pd.Series, pd.Series] | None:
    """The first and last rows (in order) where ``column`` is measured; None if fewer than two."""
    ok = frame[frame[column].notna()]
    if len(ok) < 2:
        return None
    return ok.iloc[0], ok.iloc[-1]


def _direction(a: float, b: float, flat: float) -> str:
    if abs(b - a) < flat:
        return "stays about the same"
    return "rises" if b > a else "falls"


def _value_words(view: StudyView, row: pd.Series, unit: bool = True) -> str:
    """A value as it reads in a sentence: "12,000 steps" ("12,000" without unit), "ε = 1", "no DP", "hflip"."""
    value, label = row["value"], str(row["label"])
    if view.factor in ("steps", "n_members") and _number(value) is not None:
        words = f"{float(value):,.0f}"
        return f"{words} {'steps' if view.factor == 'steps' else 'members'}" if unit else words
    if view.factor == "dp_epsilon":
        return "no DP" if is_no_dp(value) else f"ε = {float(value):g}"
    if view.factor == "shift" and _number(value) is not None:
        return f"{float(value):.0%} of the non-members shifted" if unit else f"{float(value):.0%}"
    return label


def _span(view: StudyView, first: pd.Series, last: pd.Series) -> str:
    """ "as training goes from **500** to **12,000** steps" and the like for each factor."""
    a, b = f"**{_value_words(view, first, False)}**", f"**{_value_words(view, last, False)}**"
    if view.factor == "steps":
        return f"as training goes from {a} to {b} steps"
    if view.factor == "n_members":
        return f"as the training set grows from {a} to {b} images"
    if view.factor == "dp_epsilon":
        return f"as the privacy budget goes from {a} to {b}"
    if view.factor == "augment":
        return f"as augmentation goes from {a} to {b}"
    if view.factor == "shift":
        return f"as the share of shifted non-members goes from {a} to {b}"
    return f"as {view.factor_label} goes from {a} to {b}"


def _gap_sentence(view: StudyView, first: pd.Series, last: pd.Series) -> str | None:
    """How the generalisation gap (held-out minus member loss) moves between the two ends, if both are known."""
    if view.models.empty:
        return None
    models = view.models.set_index("order")
    try:
        gaps = [
            float(models.loc[r["order"], "heldout_loss"] - models.loc[r["order"], "member_loss"]) for r in (first, last)
        ]
    except KeyError:
        return None
    if not all(math.isfinite(g) for g in gaps):
        return None
    a, b = gaps
    # The gap is signed: positive = members fit better than held-out images (what loss attacks read).
    scale = float(models["heldout_loss"].abs().mean())
    if max(abs(a), abs(b)) < 0.03 * scale:
        return (
            f"Held-out and training loss stay within 3 % of each other ({a:+.2g} → {b:+.2g}): "
            "no generalisation gap for loss-based attacks to read at this scale."
        )
    verb = "grows" if b > a else "shrinks"
    if abs(b - a) < 0.05 * max(abs(a), abs(b)):
        verb = "stays about the same"
    return (
        f"The generalisation gap (held-out minus training loss, the signal loss-based attacks read) {verb} "
        f"({a:+.2g} → {b:+.2g})."
    )


def findings(view: StudyView, metric: str = "auc") -> list[str]:
    """Plain-words findings computed from the study's table (markdown sentences, most important first).

    1. The strongest attack (highest ``metric`` anywhere): how it moves from the first to the last
       value, with the held-out loss over the same range.
    2. Where it peaks, if not at an end (a non-monotone effect).
    3. Whether the move is beyond the 95 % intervals (AUC only).
    4. The other attacks, in one sentence.
    5. How the generalisation gap (held-out minus member loss) moves.
    6. The strongest attack's TPR at 1 % FPR at both ends (when ``metric`` is AUC).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {sorted(METRICS)}, got {metric!r}")
    rows = view.rows
    if rows.empty or rows[metric].isna().all():
        return ["This study has no attack results to summarise."]
    name_of = {"auc": "AUC", "tpr_at_1pct": "TPR at 1% FPR"}
    flat = FLAT_AUC if metric == "auc" else 0.02
    blind_rows = rows[rows["attack"] == BLIND] if view.factor == "shift" else rows.iloc[:0]
    rows = rows.drop(index=blind_rows.index)
    if rows.empty or rows[metric].isna().all():
        return ["This study has no attack results to summarise."]
    best = rows.loc[rows[metric].idxmax(), "attack"]
    out: list[str] = []
    part = rows[rows["attack"] == best]
    ends = _ends(part, metric)
    if ends is None:
        return [f"Only one value of {view.factor_label} has results: nothing to compare."]
    first, last = ends
    a, b = float(first[metric]), float(last[metric])
    verb = _direction(a, b, flat)
    moved = (
        f"from {_fmt_metric(metric, a)} to {_fmt_metric(metric, b)}"
        if verb != "stays about the same"
        else f"at about {_fmt_metric(metric, (a + b) / 2)} (from {_fmt_metric(metric, a)} to {_fmt_metric(metric, b)})"
    )
    sentence = (
        f"{name_of[metric]} of **{short_name(best)}** (the strongest attack here) {verb} {moved} "
        f"{_span(view, first, last)}"
    )
    models = view.models.set_index("label") if len(view.models) else None
    if models is not None and first["label"] in models.index and last["label"] in models.index:
        la, lb = float(models.loc[first["label"], "heldout_loss"]), float(models.loc[last["label"], "heldout_loss"])
        if math.isfinite(la) and math.isfinite(lb):
            flat_loss = abs(lb - la) <= 0.02 * max(abs(la), 1e-12)
            lverb = "stays at about" if flat_loss else ("rises" if lb > la else "falls")
            loss_words = (
                f"{lverb} {_fmt_loss((la + lb) / 2)}"
                if lverb == "stays at about"
                else f"{lverb} from {_fmt_loss(la)} to {_fmt_loss(lb)}"
            )
            sentence += f", while the held-out loss {loss_words}"
    out.append(sentence + ".")

    peak = part.loc[part[metric].idxmax()]
    if peak["order"] not in (first["order"], last["order"]) and float(peak[metric]) - max(a, b) >= flat:
        out.append(
            f"It is not monotone: {short_name(best)} peaks at {_fmt_metric(metric, float(peak[metric]))} "
            f"with {_value_words(view, peak)}."
        )

    if metric == "auc" and verb != "stays about the same":
        lo_hi = [(float(r["auc_lo"]), float(r["auc_hi"])) for r in (first, last)]
        if all(math.isfinite(x) for pair in lo_hi for x in pair):
            apart = lo_hi[0][1] < lo_hi[1][0] or lo_hi[1][1] < lo_hi[0][0]
            out.append(
                "The change is larger than the 95 % bootstrap intervals: not noise."
                if apart
                else "The 95 % bootstrap intervals at the two ends overlap: the change may be noise."
            )

    blind_ends = _ends(blind_rows, metric)
    if blind_ends is not None:
        ba, bb = float(blind_ends[0][metric]), float(blind_ends[1][metric])
        bverb = _direction(ba, bb, flat)
        risers = []
        for name in view.attacks:
            e = _ends(rows[rows["attack"] == name], metric)
            if e is not None and _direction(float(e[0][metric]), float(e[1][metric]), flat) == "rises":
                risers.append(short_name(name))
        sentence = (
            f"The **blind baseline** (images only, it never queries the model) {bverb} from "
            f"{_fmt_metric(metric, ba)} to {_fmt_metric(metric, bb)} over the same range"
        )
        if bverb == "rises" and risers:
            sentence += (
                f"; {', '.join(risers)} rise{'s' if len(risers) == 1 else ''} with it. The members and the model "
                "are the same throughout, so that gain measures the shift, not memorisation"
            )
        out.insert(0, sentence + ".")  # the point of a shift study: first
    others = []
    for name in view.attacks:
        if name == best or (name == BLIND and view.factor == "shift"):
            continue
        ends_o = _ends(rows[rows["attack"] == name], metric)
        if ends_o is None:
            continue
        oa, ob = float(ends_o[0][metric]), float(ends_o[1][metric])
        others.append(f"{short_name(name)} {_fmt_metric(metric, oa)} → {_fmt_metric(metric, ob)}")
    if others:
        out.append(f"The other attacks over the same range: {'; '.join(others)}.")

    gap = _gap_sentence(view, first, last)
    if gap:
        out.append(gap)

    if metric == "auc":
        ta, tb = float(first["tpr_at_1pct"]), float(last["tpr_at_1pct"])
        if math.isfinite(ta) and math.isfinite(tb):
            out.append(
                f"At a 1 % false-positive rate {short_name(best)} finds {ta:.0%} of the members with "
                f"{_value_words(view, first)} and {tb:.0%} with {_value_words(view, last)}."
            )
    return out
