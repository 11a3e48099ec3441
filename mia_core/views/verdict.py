"""What the "Was my image used?" page says and draws about a verdict: the honest sentence, the placement figure.

The verdicts themselves (calibration, thresholds, flags) are computed by :mod:`mia_core.lab.verdict`;
this module only turns a :class:`~mia_core.lab.verdict.VerdictReport` into words and a plotly figure
(SVG traces only). Nothing here runs a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from mia_core.lab.verdict import budget_text
from mia_core.metrics import min_nonmembers_for
from mia_core.views.attack_info import short_name
from mia_core.views.style import MEMBER_COLOR, MEMBER_LABEL, NONMEMBER_COLOR, NONMEMBER_LABEL, attack_color

if TYPE_CHECKING:
    from mia_core.lab.verdict import Calibration, ImageSummary, VerdictReport

__all__ = [
    "UPLOAD_COLOR",
    "VERDICT_BADGE_COLORS",
    "CORRECT_BADGE_COLORS",
    "badge",
    "verdict_badge",
    "correct_badge",
    "card_summary",
    "headline_verdict",
    "verdict_sentence",
    "placement_figure",
    "perturbation_figure",
    "threshold_source_line",
    "sample_verdict_table",
]

#: Marker colour of uploaded images in the placement figure (neither member nor non-member colour).
UPLOAD_COLOR = "#222222"


def _one_in(budget: float) -> str:
    """``0.01 -> "1 in 100"``; ``0.05 -> "1 in 20"``."""
    return f"1 in {round(1.0 / float(budget)):,}"


# ----------------------------------------------------------------------------- badges and headline

#: Streamlit markdown badge colours (``:orange-badge[...]``) of a verdict: flagged = the member colour family,
#: not flagged = the non-member one, no verdict = grey.
VERDICT_BADGE_COLORS = {True: "orange", False: "blue", None: "gray"}
#: Badge words and CSS colours of "was the verdict right?" (a table's coloured cells, not a pale checkbox).
CORRECT_BADGE_COLORS = {"right": "#2E7D32", "wrong": "#C62828", "no verdict": "#9E9E9E"}


def badge(text: str, color: str) -> str:
    """Markdown for a coloured badge (Streamlit's ``:color-badge[text]``; square brackets in ``text`` escaped)."""
    if color not in ("red", "orange", "yellow", "blue", "green", "violet", "gray", "grey", "primary"):
        raise ValueError(f"not a Streamlit badge colour: {color!r}")
    return f":{color}-badge[{text.replace('[', '(').replace(']', ')')}]"


def verdict_badge(flagged: bool | None, label: str) -> str:
    """A verdict (flagged / not flagged / n/a) as a coloured badge carrying its label."""
    return badge(label, VERDICT_BADGE_COLORS[None if flagged is None else bool(flagged)])


def correct_badge(correct: bool | None) -> str:
    """The word of a "correct?" cell: ``"right"``, ``"wrong"`` or ``"no verdict"`` (keys of CORRECT_BADGE_COLORS)."""
    return "no verdict" if correct is None else ("right" if correct else "wrong")


def card_summary(summary: ImageSummary, budget: float) -> str:
    """An image card's one-line verdict with its badge: "**id**: :orange-badge[...] flagged by k of n attacks ...".

    The caveats (what 'any' does to the FPR, what a flag means) are not repeated here: the page states
    them once (:func:`verdict_sentence`, :func:`headline_verdict`).
    """
    b = budget_text(budget)
    if summary.majority is None:
        return f"**{summary.image_id}**: {verdict_badge(None, 'no verdict')} too few calibration non-members at {b} FPR"
    n, k = summary.n_attacks, summary.n_flagged
    word = "looks like a member" if summary.majority else "does not look like a member"
    text = (
        f"**{summary.image_id}**: {verdict_badge(summary.majority, word)} flagged by {k} of {n} "
        f"attack{'s' if n != 1 else ''} at {b} FPR (majority: {'flagged' if summary.majority else 'not flagged'}; "
        f"any: {'flagged' if summary.any else 'not flagged'})"
    )
    if summary.n_na:
        text += f"; {summary.n_na} attack(s) n/a"
    return text


def headline_verdict(report: VerdictReport) -> str:
    """One sentence for a whole batch: "3 of 5 images look like members at the calibrated 1 % FPR threshold ...".

    An image "looks like a member" when a majority of the attacks that gave a verdict flag it (the
    summary's ``majority``); images without any verdict are counted apart.
    """
    summaries = report.summaries()
    n = len(summaries)
    b = budget_text(report.budget)
    judged = [x for x in summaries if x.majority is not None]
    k = sum(1 for x in judged if x.majority)
    n_attacks = len(report.attacks)
    rule = "flagged by a majority of the attack" + ("s" if n_attacks != 1 else "") if n_attacks > 1 else "flagged"
    noun = "image" if n == 1 else "images"
    verb = "looks" if k == 1 and n == 1 else "look"
    text = f"{k} of {n} {noun} {verb} like {'a member' if n == 1 else 'members'} at the calibrated {b} FPR threshold"
    text += f" ({rule}, {n_attacks} attack{'s' if n_attacks != 1 else ''})" if n_attacks > 1 else ""
    rest = len(judged) - k
    if n > 1:
        text += f"; {rest} {'does' if rest == 1 else 'do'} not"
    missing = n - len(judged)
    if missing:
        text += f"; {missing} without a verdict (too few calibration non-members)"
    return text + "."


# ----------------------------------------------------------------------------- the honest sentence


def verdict_sentence(
    budget: float,
    tpr: float | None | Mapping[str, float | None],
    *,
    flagged: bool | None = None,
    n_members: int | None = None,
    n_nonmembers: int | None = None,
    attack_title: str | None = None,
) -> str:
    """What a verdict at this budget can and cannot mean, with the attack's TPR on known members.

    ``tpr`` is the share of known members the same rule flags (:meth:`Calibration.rule_tpr`), or a
    mapping attack title -> that share when several attacks are summarised; ``None`` means the
    budget is n/a for ``n_nonmembers``. ``flagged`` puts the sentence about the image's own
    outcome first.
    """
    b, one_in = budget_text(budget), _one_in(budget)
    who = f"{attack_title}: " if attack_title else ""
    if isinstance(tpr, Mapping):
        rates = {k: float(v) for k, v in tpr.items() if v is not None}
        if len(rates) == 1:
            ((title, value),) = rates.items()
            return verdict_sentence(
                budget,
                value,
                flagged=flagged,
                n_members=n_members,
                n_nonmembers=n_nonmembers,
                attack_title=attack_title or title,
            )
        tpr_text = ", ".join(f"{v:.2f} ({k})" for k, v in rates.items())
        best = max(rates.values()) if rates else None
    else:
        rates, best = {}, tpr
        tpr_text = None if tpr is None else f"{tpr:.2f}"
    if best is None:
        needed = min_nonmembers_for(budget)
        have = f"only {n_nonmembers}" if n_nonmembers is not None else "too few"
        return (
            f"{who}With {have} calibration non-members no threshold at {b} FPR can be set (it needs >= "
            f"{needed}): the smallest non-zero FPR they can measure is larger than the budget. No verdict is "
            "given; choose a larger budget or calibrate on more non-members."
        )
    cal = f" {n_nonmembers:,} known" if n_nonmembers is not None else " the known"
    flag_part = (
        f"Flagged at {b} FPR means this image scores at least as high as a threshold that at most {b} of"
        f"{cal} non-members (images the model was not trained on) reach; about {one_in} non-members "
        "would be flagged too, so a flag is evidence, not proof."
    )
    if rates:
        miss_part = (
            f"A 'not flagged' image may still have been used: the attacks' TPR at this FPR is only "
            f"{tpr_text} on known members, so even the strongest misses {(1 - best) * 100:.0f} % of the "
            "training images."
        )
    else:
        of_members = f" (it flags {round(best * n_members):,} of {n_members:,})" if n_members else ""
        miss_part = (
            f"A 'not flagged' image may still have been used: the attack's TPR at this FPR is only "
            f"{tpr_text} on known members{of_members}, so {(1 - best) * 100:.0f} % of the training images "
            "are not flagged either."
        )
    if best >= 0.995:
        miss_part = (
            f"On known members the TPR at this FPR is {tpr_text}; even so, a 'not flagged' image is "
            "only unlikely, not proven, to be a training image."
        )
    parts = [miss_part, flag_part] if flagged is False else [flag_part, miss_part]
    return who + " ".join(parts)


# ----------------------------------------------------------------------------- where the thresholds came from


def _pct(x: float) -> str:
    return f"{x * 100:.1f} %"


def threshold_source_line(
    calibrations: Mapping[str, Calibration], budget: float, *, sample_part: str | None = None
) -> str:
    """One caveat line: which part of the split chose the thresholds, how many images, the achieved FPR.

    Parameters
    ----------
    calibrations : attack name -> :class:`~mia_core.lab.verdict.Calibration` (all with the same
        partition, or all without one).
    budget : FPR budget in (0, 1).
    sample_part : "calibration", "test" or None
        For the Sample explorer: which part the shown image lies in.
    """
    cals = list(calibrations.values())
    if not cals:
        raise ValueError("threshold_source_line needs at least one calibration")
    b = budget_text(budget)
    first = cals[0].source(budget)
    if not first.transferred:
        return (
            f"Thresholds at {b} FPR chosen on all {first.n_nonmembers:,} known non-members of the split (oracle: "
            "no held-out images are left to check the false-positive rate they achieve)."
        )
    split = (
        f"**Thresholds: calibrated, not oracle.** Chosen at {b} FPR on the calibration part of the split (a seeded, "
        f"stratified {first.fraction:.0%} of each class, seed {first.seed}: {first.n_members:,} members and "
        f"{first.n_nonmembers:,} non-members) and applied unchanged"
    )
    measured = []
    for cal in cals:
        src = cal.source(budget)
        name = short_name(cal.attack)
        if src.threshold is None:
            measured.append(f"{name} n/a (needs >= {min_nonmembers_for(budget):,} calibration non-members)")
        else:
            measured.append(
                f"{name} {_pct(src.achieved_fpr)} ({src.test_flagged_nonmembers} of {src.test_nonmembers:,})"
            )
    test = (
        f"; on the disjoint test part ({first.test_members:,} members, {first.test_nonmembers:,} non-members) "
        f"they flag this share of non-members (achieved FPR): {', '.join(measured)}."
    )
    where = ""
    if sample_part == "test":
        where = " This image is in the test part: no threshold saw its score."
    elif sample_part == "calibration":
        where = " This image is in the calibration part: its own score helped choose the thresholds."
    elif sample_part is not None:
        raise ValueError(f"sample_part must be 'calibration', 'test' or None; got {sample_part!r}")
    return split + test + where


def sample_verdict_table(report: VerdictReport, image_id: str, truth: bool) -> pd.DataFrame:
    """The Sample explorer's verdict table for one image of the split, from a :class:`VerdictReport`.

    Returns
    -------
    pandas.DataFrame, index = attack names (report order), columns ``attack``, ``score``,
    ``threshold`` (NaN when n/a), ``verdict`` ("member" / "non-member" / "n/a (needs >= M calibration
    non-members)"), ``correct`` (bool or None), ``non-members above`` (fraction of the calibration
    non-members scoring at least as high), ``achieved FPR`` (the threshold's FPR on the test part, NaN
    when n/a or without a partition).
    """
    rows = []
    for v in report.for_image(image_id):
        cal = report.calibrations[v.attack]
        if v.flagged is None:
            verdict, correct = f"n/a (needs >= {min_nonmembers_for(report.budget):,} calibration non-members)", None
        else:
            verdict, correct = (MEMBER_LABEL if v.flagged else NONMEMBER_LABEL), v.flagged == bool(truth)
        fpr = cal.rule_fpr(report.budget) if cal.transferred else None
        rows.append(
            {
                "attack": short_name(v.attack),
                "score": v.score,
                "threshold": math.nan if v.threshold is None else v.threshold,
                "verdict": verdict,
                "correct": correct,
                "non-members above": v.nonmember_tail,
                "achieved FPR": math.nan if fpr is None else fpr,
            }
        )
    return pd.DataFrame(rows, index=pd.Index([v.attack for v in report.for_image(image_id)], name="name"))


# ----------------------------------------------------------------------------- figure


def placement_figure(report: VerdictReport, attack: str, *, bins: int = 40, score_label: str = "") -> go.Figure:
    """Where each new image's score falls among the calibration members and non-members.

    Density histograms (shared bins) of the calibration member and non-member scores, a dashed
    vertical line at the threshold of the FPR budget, and one diamond per new image (hover: id,
    score, percentiles, verdict). SVG traces only.
    """
    cal = report.calibrations[attack]
    verdicts = report.for_attack(attack)
    new_scores = np.array([v.score for v in verdicts if math.isfinite(v.score)], dtype=float)
    pooled = np.concatenate([cal.member_scores, cal.nonmember_scores, new_scores])
    lo, hi = float(pooled.min()), float(pooled.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)
    centres, width = 0.5 * (edges[:-1] + edges[1:]), edges[1] - edges[0]

    fig = go.Figure()
    ymax = 0.0
    for label, values, color in (
        (NONMEMBER_LABEL, cal.nonmember_scores, NONMEMBER_COLOR),
        (MEMBER_LABEL, cal.member_scores, MEMBER_COLOR),
    ):
        density, _ = np.histogram(values, bins=edges, density=True)
        ymax = max(ymax, float(density.max()))
        fig.add_trace(
            go.Bar(
                x=centres,
                y=density,
                width=width,
                name=f"{label}s of the {'calibration part' if cal.transferred else 'split'} (n={values.size:,})",
                marker={"color": color, "line": {"width": 0}},
                opacity=0.6,
                hovertemplate=f"{label}s<br>score %{{x:.4g}}<br>density %{{y:.3g}}<extra></extra>",
            )
        )
    ymax = ymax or 1.0

    thr = cal.threshold(report.budget)
    b = budget_text(report.budget)
    rows = min(len(verdicts), 4)
    top = ymax * (1.12 + 0.1 * rows)
    if thr is not None and math.isfinite(thr):
        fig.add_trace(
            go.Scatter(
                x=[thr, thr],
                y=[0, top],
                mode="lines",
                name=f"threshold at {b} FPR",
                line={"color": "#555555", "dash": "dash", "width": 2},
                hovertemplate=f"threshold at {b} FPR: %{{x:.4g}}<extra></extra>",
            )
        )
        fig.add_annotation(
            x=thr,
            y=top,
            text=f"threshold ({b} FPR) → flagged",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"size": 11, "color": "#555555"},
        )

    if verdicts:
        # a row per image (cycling over 4) above the histograms, so close scores do not overlap
        ys = [ymax * (1.1 + 0.1 * (k % 4)) for k in range(len(verdicts))]
        symbols = [
            "diamond" if v.flagged else ("circle-open" if v.flagged is None else "diamond-open") for v in verdicts
        ]
        show_text = len(verdicts) <= 6
        fig.add_trace(
            go.Scatter(
                x=[v.score for v in verdicts],
                y=ys,
                mode="markers+text" if show_text else "markers",
                name="your image(s)",
                text=[v.image_id for v in verdicts] if show_text else None,
                textposition="middle right",
                textfont={"size": 11},
                customdata=[[v.image_id, v.percentile_nonmember, v.percentile_member, v.label] for v in verdicts],
                marker={
                    "color": attack_color(attack),
                    "size": 14,
                    "symbol": symbols,
                    "line": {"color": UPLOAD_COLOR, "width": 1.5},
                },
                hovertemplate=(
                    "%{customdata[0]}<br>score %{x:.4g}<br>above %{customdata[1]:.1f} % of non-members"
                    "<br>above %{customdata[2]:.1f} % of members<br>%{customdata[3]}<extra></extra>"
                ),
            )
        )

    title = cal.title or attack
    against = "the calibration part" if cal.transferred else "the split"
    fig.update_layout(
        title=f"{title}: your image(s) against {against} ({cal.n_members:,} members, {cal.n_nonmembers:,} non-members)",
        barmode="overlay",
        bargap=0,
        xaxis_title=f"score{f' = {score_label}' if score_label else ''} (higher = more member-like)",
        yaxis_title="density",
        yaxis_range=[0, top * 1.08],
        legend={"orientation": "h", "yanchor": "top", "y": -0.2},
        margin={"t": 60, "b": 10},
        height=420,
    )
    return fig


def perturbation_figure(
    labels: Sequence[str], scores, threshold: float | None, *, image_id: str, attack_title: str, budget: float
) -> go.Figure:
    """How an image's score moves under perturbations, against the threshold at the FPR budget.

    One row per variant (``labels[k]``, the original first, drawn on top), its score on the x axis
    (the same raw score axis as :func:`placement_figure`), a filled diamond when it is at or above the
    threshold (flagged), open when not; the dashed line is the threshold (absent when n/a). SVG only.
    """
    s = np.asarray(scores, dtype=float).reshape(-1)
    if s.size != len(labels) or s.size == 0:
        raise ValueError(f"perturbation_figure needs one score per label: {s.size} scores, {len(labels)} labels")
    flagged = [threshold is not None and math.isfinite(v) and v >= threshold for v in s]
    b = budget_text(budget)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=s,
            y=list(labels),
            mode="markers",
            name=f"{image_id} and its variants",
            marker={
                "size": [18 if k == 0 else 13 for k in range(s.size)],
                "symbol": ["diamond" if f else "diamond-open" for f in flagged],
                "color": [UPLOAD_COLOR if k == 0 else "#9E9E9E" for k in range(s.size)],
                "line": {"color": UPLOAD_COLOR, "width": 1.5},
            },
            customdata=[["flagged" if f else "not flagged"] for f in flagged],
            hovertemplate="%{y}<br>score %{x:.4g}<br>%{customdata[0]}<extra></extra>",
        )
    )
    if threshold is not None and math.isfinite(threshold):
        fig.add_vline(x=float(threshold), line={"color": "#555555", "dash": "dash", "width": 2})
        fig.add_annotation(
            x=float(threshold),
            y=1.0,
            yref="paper",
            text=f"threshold ({b} FPR) → flagged",
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"size": 11, "color": "#555555"},
        )
    fig.update_layout(
        title=f"{attack_title}: how {image_id}'s score moves when the image is changed",
        xaxis_title="score (higher = more member-like)",
        yaxis={"autorange": "reversed", "title": ""},
        height=120 + 34 * s.size,
        margin={"t": 70, "b": 10, "l": 10, "r": 10},
        showlegend=False,
        meta={"flagged": flagged},
    )
    return fig
