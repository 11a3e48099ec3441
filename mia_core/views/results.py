"""Figures and tables of the results pages (Compare, Sample explorer), built from plain arrays.

Plotly only: nothing here imports streamlit, so every figure can be unit-tested, exported as
HTML, or reused by the CLI. Every chart uses the shared colours of :mod:`mia_core.views.style`
(members orange, non-members blue, one colour per attack) and SVG traces (``go.Scatter``,
``go.Bar``), never WebGL, so that it stays crisp when projected.

Conventions (the same as :mod:`mia_core.metrics`):

    N            number of samples; members are the positive class
    scores       (N,) float, higher = more member-like
    is_member    (N,) bool
    ids          (N,) str, a stable id per sample ("digits-0042")
    trace        (N, K) float, an attack's raw per-timestep statistic (lower = member)
    results      {attack name: (scores, is_member)} for the ROC, or
                 {attack name: AttackResult} elsewhere (dict order = legend order)

Points that stand for one sample carry that sample's id in ``customdata``, so a click on them
(``st.plotly_chart(..., on_select="rerun")``) can be mapped back to the sample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mia_core import metrics as M
from mia_core.views.attack_info import short_name
from mia_core.views.images import png_data_uri, to_uint8, upscale_nearest
from mia_core.views.style import (
    MEMBER_COLOR,
    MEMBER_LABEL,
    NONMEMBER_COLOR,
    NONMEMBER_LABEL,
    attack_color,
    log_axis,
    rgba,
)

__all__ = [
    "budget_label",
    "roc_figure",
    "metric_table",
    "score_histogram",
    "display_scores",
    "timestep_metrics",
    "timestep_metric_figure",
    "error_bands",
    "score_timesteps",
    "CurveLine",
    "error_curve_figure",
    "attack_error_curve",
    "sample_scatter",
    "scores_frame",
    "vulnerable_samples",
    "operating_point",
    "Confusion",
    "confusion_at",
    "confusion_frame",
    "score_from_display",
    "score_quote",
    "secmi_panels",
]

#: Points per ROC curve after downsampling.
ROC_POINTS = 300
GRID_COLOR = "#888888"
FONT = dict(size=14)


def budget_label(budget: float) -> str:
    """An FPR budget as a percentage without trailing zeros: 0.01 -> "1%", 0.001 -> "0.1%"."""
    return f"{budget * 100:g}%"


def _as_arrays(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    m = np.asarray(is_member).astype(bool).reshape(-1)
    if s.shape != m.shape:
        raise ValueError(f"scores and is_member differ in length: {s.size} vs {m.size}")
    return s, m


def operating_point(scores, is_member, threshold: float) -> tuple[float, float]:
    """(TPR, FPR) of the rule ``score >= threshold`` (``+inf`` flags nothing)."""
    s, m = _as_arrays(scores, is_member)
    flagged = s >= threshold
    return float(flagged[m].mean()), float(flagged[~m].mean())


@dataclass(frozen=True)
class Confusion:
    """The confusion matrix of the rule ``score >= threshold`` (members = positives), with its rates."""

    threshold: float
    tp: int  # members flagged
    fn: int  # members not flagged
    fp: int  # non-members flagged
    tn: int  # non-members not flagged

    @property
    def tpr(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else math.nan

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else math.nan


def confusion_at(scores, is_member, threshold: float) -> Confusion:
    """Counts of the rule ``score >= threshold`` (:func:`mia_core.metrics.apply_threshold`) on (N,) scores.

    ``+inf`` flags nothing. The achieved TPR / FPR are exact fractions of the split, the same as
    :func:`operating_point`.
    """
    s, m = _as_arrays(scores, is_member)
    flagged = M.apply_threshold(s, float(threshold))
    return Confusion(
        threshold=float(threshold),
        tp=int((flagged & m).sum()),
        fn=int((~flagged & m).sum()),
        fp=int((flagged & ~m).sum()),
        tn=int((~flagged & ~m).sum()),
    )


def confusion_frame(c: Confusion) -> pd.DataFrame:
    """The 2 x 2 table a page shows: rows = the truth, columns = the rule's decision, counts as ints."""
    return pd.DataFrame(
        {"flagged as member": [c.tp, c.fp], "not flagged": [c.fn, c.tn]},
        index=pd.Index([f"truly {MEMBER_LABEL}", f"truly {NONMEMBER_LABEL}"], name=""),
    )


def _base_layout(fig: go.Figure, title: str | None = None, height: int = 480) -> go.Figure:
    fig.update_layout(
        title=title,
        template="plotly_white",
        font=FONT,
        height=height,
        margin=dict(l=70, r=20, t=60 if title else 30, b=60),
        legend=dict(bgcolor="rgba(255,255,255,0.85)", bordercolor="#cccccc", borderwidth=1),
        hoverlabel=dict(namelength=-1),
    )
    return fig


# --------------------------------------------------------------------------- ROC


def _roc_indices(fpr: np.ndarray, n_points: int, x_min: float) -> np.ndarray:
    """Indices of ROC vertices kept when downsampling to about ``n_points``.

    For grid values g on a log-spaced and a linear FPR grid we keep the last vertex with
    FPR <= g (the highest TPR reachable within g), plus the first and the last vertex. Drawn
    with ``line_shape="hv"`` the kept vertices never overstate the TPR at any FPR.
    """
    k = fpr.size
    if k <= n_points:
        return np.arange(k)
    half = max(2, n_points // 2)
    grid = np.concatenate([np.logspace(math.log10(x_min), 0.0, half), np.linspace(0.0, 1.0, half)])
    idx = np.searchsorted(fpr, grid, side="right") - 1
    idx = np.clip(idx, 0, k - 1)
    return np.unique(np.concatenate([[0, k - 1], idx]))


def roc_figure(
    results: Mapping[str, tuple[Any, Any]],
    log: bool = True,
    *,
    budget: float = M.BUDGET_1PCT,
    n_points: int = ROC_POINTS,
    title: str | None = None,
    reference: tuple[str, Any, Any] | None = None,
) -> go.Figure:
    """ROC curves of several attacks on one figure.

    Parameters
    ----------
    results : {attack name: (scores (N,), is_member (N,))}
        Scores higher = member; labels 0/1 or bool.
    log : bool
        True (default): log-log axes from ``min(1e-4, 1/(2 N_nonmembers))`` to 1, FPR = 0
        points dropped, TPR = 0 clipped to the axis minimum, dotted guides at 1 % and 0.1 %
        FPR, the FPR region below 1 / N_nonmembers shaded as not resolvable. False: linear
        axes 0..1.
    budget : float
        FPR budget of the operating point marked on every curve and reported in the legend.
    n_points : int
        Each curve is downsampled to about this many vertices.
    reference : (name, scores (M,), is_member (M,)), optional
        A reference curve drawn in grey dash-dot (``meta {"role": "reference"}``), e.g. the blind
        baseline on the test part of the split; its legend repeats its AUC.

    Returns
    -------
    go.Figure
        One line trace per attack (``meta={"attack": name, "auc": ...}``), one marker trace
        per attack at its operating point, a dashed grey TPR = FPR diagonal (``meta
        {"role": "diagonal"}``). Guides are layout shapes named ``"guide 1%"`` and
        ``"guide 0.1%"``; the shading is the shape named ``"unresolvable"``. ROC traces carry
        ``customdata`` rows ``[threshold, fpr, tpr]`` (a ROC point is not one sample).
    """
    fig = go.Figure()
    n_nm = [int((~_as_arrays(s, m)[1]).sum()) for s, m in results.values()]
    n_max = max(n_nm) if n_nm else 1000
    x_min = min(1e-4, 1.0 / (2 * max(n_max, 1))) if log else 0.0
    grid_min = x_min if log else 1e-4

    for name, (scores, is_member) in results.items():
        s, m = _as_arrays(scores, is_member)
        roc = M.roc_curve(s, m)
        auc = M.auc(s, m)
        tpr_b = M.tpr_at_fpr(s, m, budget)
        color = attack_color(name)
        keep = _roc_indices(np.asarray(roc.fpr), n_points, grid_min)
        fpr, tpr, thr = np.asarray(roc.fpr)[keep], np.asarray(roc.tpr)[keep], np.asarray(roc.thresholds)[keep]
        if log:
            visible = fpr > 0
            fpr, tpr, thr = fpr[visible], tpr[visible], thr[visible]
            y = np.maximum(tpr, x_min)
        else:
            y = tpr
        legend = f"{short_name(name)} — AUC {auc:.3f} · TPR@{budget_label(budget)} {M.format_metric(tpr_b)}"
        custom = np.stack([thr, fpr, tpr], axis=1) if fpr.size else np.zeros((0, 3))
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=y,
                mode="lines",
                name=legend,
                line=dict(color=color, width=2.5, shape="hv"),
                customdata=custom,
                legendgroup=name,
                meta={"attack": name, "auc": auc, "role": "roc"},
                hovertemplate=(
                    f"<b>{short_name(name)}</b><br>FPR %{{customdata[1]:.4f}}"
                    "<br>TPR %{customdata[2]:.4f}<br>threshold %{customdata[0]:.4g}<extra></extra>"
                ),
            )
        )
        thr_b = M.threshold_at_fpr(s, m, budget)
        if thr_b is not None:
            tpr_op, fpr_op = operating_point(s, m, thr_b)
            x_op = max(fpr_op, x_min) if log else fpr_op
            y_op = max(tpr_op, x_min) if log else tpr_op
            fig.add_trace(
                go.Scatter(
                    x=[x_op],
                    y=[y_op],
                    mode="markers",
                    legendgroup=name,
                    showlegend=False,
                    name=f"{short_name(name)} at {budget_label(budget)} FPR",
                    marker=dict(color=color, size=12, symbol="circle", line=dict(color="white", width=1.5)),
                    customdata=[[thr_b, fpr_op, tpr_op]],
                    meta={"attack": name, "role": "operating point"},
                    hovertemplate=(
                        f"<b>{short_name(name)}</b> at the {budget_label(budget)} FPR budget"
                        "<br>FPR %{customdata[1]:.4f}<br>TPR %{customdata[2]:.4f}"
                        "<br>threshold %{customdata[0]:.4g}<extra></extra>"
                    ),
                )
            )

    if reference is not None:
        ref_name, ref_scores, ref_labels = reference
        s, m = _as_arrays(ref_scores, ref_labels)
        roc = M.roc_curve(s, m)
        keep = _roc_indices(np.asarray(roc.fpr), n_points, grid_min)
        fpr, tpr = np.asarray(roc.fpr)[keep], np.asarray(roc.tpr)[keep]
        if log:
            visible = fpr > 0
            fpr, tpr = fpr[visible], np.maximum(tpr[visible], x_min)
        ref_auc = M.auc(s, m)
        fig.add_trace(
            go.Scatter(
                x=fpr,
                y=tpr,
                mode="lines",
                name=f"{ref_name} — AUC {ref_auc:.3f}",
                line=dict(color="#7f7f7f", dash="dashdot", width=2, shape="hv"),
                meta={"role": "reference", "auc": ref_auc},
                hovertemplate="FPR %{x:.4f}<br>TPR %{y:.4f}<extra></extra>",
            )
        )

    lo = x_min if log else 0.0
    fig.add_trace(
        go.Scatter(
            x=[lo, 1.0],
            y=[lo, 1.0],
            mode="lines",
            name="chance (TPR = FPR)",
            line=dict(color=GRID_COLOR, dash="dash", width=1.5),
            hoverinfo="skip",
            meta={"role": "diagonal"},
        )
    )

    if log:
        for b in (M.BUDGET_1PCT, M.BUDGET_01PCT):
            fig.add_shape(
                type="line",
                name=f"guide {budget_label(b)}",
                x0=b,
                x1=b,
                y0=0,
                y1=1,
                xref="x",
                yref="paper",
                line=dict(color=GRID_COLOR, dash="dot", width=1.5),
            )
            fig.add_annotation(
                x=math.log10(b),
                y=1.0,
                yref="paper",
                xref="x",
                text=f"{budget_label(b)} FPR",
                showarrow=False,
                yanchor="bottom",
                font=dict(size=12, color="#555555"),
            )
        resolvable = 1.0 / max(n_max, 1)
        if resolvable > x_min:
            fig.add_shape(
                type="rect",
                name="unresolvable",
                x0=x_min,
                x1=resolvable,
                y0=0,
                y1=1,
                xref="x",
                yref="paper",
                fillcolor="#bbbbbb",
                opacity=0.25,
                line_width=0,
                layer="below",
            )
            fig.add_annotation(
                x=math.log10(math.sqrt(x_min * resolvable)),
                y=0.5,
                xref="x",
                yref="paper",
                textangle=-90,
                text=f"not resolvable with {n_max} non-members",
                showarrow=False,
                font=dict(size=12, color="#555555"),
            )
        axis_range = [math.log10(x_min), 0.0]
        ticks = log_axis(lo=x_min, hi=1.0, fmt=_percent_tick)
        fig.update_xaxes(range=axis_range, title="false-positive rate (non-members flagged, log scale)", **ticks)
        fig.update_yaxes(range=axis_range, title="true-positive rate (members flagged, log scale)", **ticks)
    else:
        fig.update_xaxes(type="linear", range=[0, 1], title="false-positive rate (non-members flagged)")
        fig.update_yaxes(
            type="linear", range=[0, 1], title="true-positive rate (members flagged)", scaleanchor="x", scaleratio=1
        )
    _base_layout(fig, title, height=560)
    fig.update_layout(legend=dict(x=0.99, y=0.02, xanchor="right", yanchor="bottom"))
    return fig


def _percent_tick(value: float) -> str:
    return f"{value * 100:g}%"


# --------------------------------------------------------------------------- metric table


def _ci(interval: M.Interval | None, digits: int = 3) -> str:
    if interval is None:
        return "–"
    return f"[{interval.low:.{digits}f}, {interval.high:.{digits}f}]"


def metric_table(
    metrics: Mapping[str, M.AttackMetrics],
    results: Mapping[str, Any] | None = None,
    published_calls: Mapping[str, int] | None = None,
    transferred: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """One row per attack with every headline number.

    Parameters
    ----------
    metrics : {attack name: AttackMetrics}
    results : {attack name: AttackResult}, optional
        Adds "UNet calls / image (this run)" and "seconds".
    published_calls : {attack name: int}, optional
        The attack's published cost in UNet calls per image (without its trace).
    transferred : {attack name: mia_core.calibration.TransferredRate}, optional
        Adds, right after the oracle ``TPR@<b>FPR`` column of the same budget ``b`` (1 % or 0.1 %; other
        budgets go after the oracle columns): ``transferred TPR@<b>FPR`` (threshold from the calibration
        part, TPR on the test part), its ``95% CI``, ``achieved FPR`` and its ``95% CI`` (text; n/a when
        the calibration part has too few non-members).

    Returns
    -------
    pandas.DataFrame
        Index: attack registry names. Columns: ``attack`` (display name), ``AUC`` (float),
        ``AUC 95% CI``, ``ASR`` (float), ``ASR 95% CI``, ``TPR@1%FPR`` and ``TPR@0.1%FPR``
        (text: a number or "n/a (needs >= M non-members)"), their ``95% CI``, ``members``,
        ``non-members``, then the cost columns when given.
    """
    rows = []
    for name, mt in metrics.items():
        row: dict[str, Any] = {
            "attack": short_name(name),
            "AUC": float(mt.auc),
            "AUC 95% CI": _ci(mt.auc_ci),
            "ASR": float(mt.asr),
            "ASR 95% CI": _ci(mt.asr_ci),
            "TPR@1%FPR": M.format_metric(mt.tpr_at_1pct_fpr, M.BUDGET_1PCT),
            "TPR@1%FPR 95% CI": _ci(mt.tpr_at_1pct_fpr_ci),
            "TPR@0.1%FPR": M.format_metric(mt.tpr_at_01pct_fpr, M.BUDGET_01PCT),
            "TPR@0.1%FPR 95% CI": _ci(mt.tpr_at_01pct_fpr_ci),
            "members": int(mt.n_members),
            "non-members": int(mt.n_nonmembers),
        }
        if transferred is not None and name in transferred:
            row = _with_transferred(row, transferred[name])
        if published_calls is not None and name in published_calls:
            row["UNet calls / image"] = int(published_calls[name])
        if results is not None and name in results:
            row["UNet calls / image (this run, with trace)"] = int(results[name].unet_calls_per_image)
            row["seconds"] = round(float(results[name].seconds), 2)
        rows.append(row)
    frame = pd.DataFrame(rows, index=pd.Index(list(metrics), name="name"))
    return frame


def _with_transferred(row: dict[str, Any], rate: Any) -> dict[str, Any]:
    """``row`` with the transferred columns of ``rate`` inserted after the oracle column of its budget."""
    b = budget_label(rate.budget)
    cells = {
        f"transferred TPR@{b}FPR": M.format_metric(rate.tpr, rate.budget),
        f"transferred TPR@{b}FPR 95% CI": _ci(rate.tpr_ci),
        f"achieved FPR (budget {b})": M.format_metric(rate.fpr, rate.budget),
        f"achieved FPR (budget {b}) 95% CI": _ci(rate.fpr_ci),
    }
    anchor = f"TPR@{b}FPR 95% CI"
    if anchor not in row:
        return {**row, **cells}
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value
        if key == anchor:
            out.update(cells)
    return out


# --------------------------------------------------------------------------- histogram


def display_scores(scores, log_scale: bool | None = None) -> tuple[np.ndarray, bool]:
    """Scores as drawn on a score axis, and whether they were log-transformed.

    Many attacks' scores are negated distances (``-sum |.|^p``) spread over several decades,
    so a linear axis squeezes almost every sample into one bin. With ``log_scale`` True (or
    None = automatic: every score < 0 and ``max(-s) / min(-s) > 100``) the axis shows
    ``-log10(-score)``, which keeps the order (higher = member) and spreads the decades.

    Parameters
    ----------
    scores : (N,) float.

    Returns
    -------
    values : (N,) float, the scores or ``-log10(-scores)``.
    transformed : bool.
    """
    s = np.asarray(scores, dtype=float)
    negative = bool(s.size) and bool(np.all(s < 0))
    if log_scale is None:
        log_scale = negative and float((-s).max() / (-s).min()) > 100.0
    if log_scale and not negative:
        raise ValueError("a log score axis needs every score < 0 (negated distances)")
    return (-np.log10(-s) if log_scale else s), bool(log_scale)


def _display_value(value: float, transformed: bool) -> float:
    if not transformed or not math.isfinite(value):
        return value
    return -math.log10(-value) if value < 0 else math.inf


def score_from_display(value: float, transformed: bool) -> float:
    """Inverse of the score axis: a value read off the axis (e.g. a slider over it) back to a raw score.

    ``transformed`` (the axis shows ``-log10(-score)``): ``-10 ** (-value)``; else the value itself.
    """
    v = float(value)
    return -(10.0 ** (-v)) if transformed else v


def score_quote(value: float, transformed: bool, digits: int = 4) -> str:
    """A score as its axis shows it, for the text beside a chart: ``"−log10(−score) 2.31"`` / ``"score -0.0049"``.

    The text then quotes the very number a reader finds on the axis (issue 19: the axis switched to
    ``-log10(-score)`` while the sentence quoted raw scores).
    """
    v = float(value)
    if not math.isfinite(v):
        return f"score {v}"
    if transformed:
        return f"−log10(−score) {_display_value(v, True):.{digits}g}"
    return f"score {v:.{digits}g}"


def _score_axis_title(score_label: str, transformed: bool) -> str:
    if transformed:
        return "−log10(−score)  (higher = more member-like)"
    return score_label


def score_histogram(
    scores,
    is_member,
    threshold: float | None = None,
    ids: Sequence[str] | None = None,
    highlight_id: str | None = None,
    *,
    bins: int = 40,
    log_y: bool = False,
    log_score: bool | None = None,
    score_label: str = "score (higher = more member-like)",
    title: str | None = None,
    threshold_label: str | None = None,
) -> go.Figure:
    """Member and non-member score histograms over shared bins, and a clickable strip of samples.

    Parameters
    ----------
    scores : (N,) float, higher = member.
    is_member : (N,) bool.
    threshold : float, optional
        Draws a vertical line at ``score >= threshold`` with the annotation
        "at this threshold: TPR a, FPR b" (``+inf``: nothing is flagged; noted, no line).
    ids : (N,) str, optional
        Sample ids, put in the strip points' ``customdata`` (default "0" .. "N-1").
    highlight_id : str, optional
        Marks this sample (a star on the strip and a vertical line in the histogram).
    bins : int
        Number of shared bins (density-normalised, so the two groups compare despite sizes).
    threshold_label : str, optional
        Text in front of the annotation (e.g. "1% FPR budget").
    log_score : bool or None
        Draw ``-log10(-score)`` instead of the score (see :func:`display_scores`; None = auto).
        TPR and FPR in the annotation are always computed on the raw scores.

    Returns
    -------
    go.Figure
        Two rows sharing x: row 1 two ``go.Bar`` traces (density, opacity 0.6, overlaid,
        ``meta.role == "histogram"``); row 2 one ``go.Scatter`` strip per group
        (``meta.role == "strip"``, ``customdata`` = ids, members at y = 1, non-members at
        y = 0, deterministic jitter) and, if any, the highlighted sample
        (``meta.role == "highlight"``).
    """
    raw, m = _as_arrays(scores, is_member)
    s, transformed = display_scores(raw, log_score)
    ids_arr = np.asarray([str(i) for i in ids] if ids is not None else [str(i) for i in range(s.size)])
    if ids_arr.size != s.size:
        raise ValueError(f"got {ids_arr.size} ids for {s.size} scores")
    edges = np.histogram_bin_edges(s, bins=bins)
    centers = 0.5 * (edges[:-1] + edges[1:])
    width = float(edges[1] - edges[0]) if edges.size > 1 else 1.0

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.03)
    for label, mask, color in ((NONMEMBER_LABEL, ~m, NONMEMBER_COLOR), (MEMBER_LABEL, m, MEMBER_COLOR)):
        if not mask.any():
            continue
        density, _ = np.histogram(s[mask], bins=edges, density=True)
        fig.add_trace(
            go.Bar(
                x=centers,
                y=density,
                width=width,
                name=f"{label}s (n={int(mask.sum())})",
                marker_color=color,
                opacity=0.6,
                marker_line_width=0,
                legendgroup=label,
                meta={"role": "histogram", "group": label},
                hovertemplate=f"{label}s<br>{'−log10(−score)' if transformed else 'score'} %{{x:.4g}}"
                "<br>density %{y:.3g}<extra></extra>",
            ),
            row=1,
            col=1,
        )

    rng = np.random.default_rng(0)
    jitter = rng.uniform(-0.28, 0.28, size=s.size)
    for label, mask, color, level in (
        (NONMEMBER_LABEL, ~m, NONMEMBER_COLOR, 0.0),
        (MEMBER_LABEL, m, MEMBER_COLOR, 1.0),
    ):
        if not mask.any():
            continue
        fig.add_trace(
            go.Scatter(
                x=s[mask],
                y=level + jitter[mask],
                mode="markers",
                name=f"{label}s (one dot each)",
                marker=dict(color=color, size=6, opacity=0.7, line=dict(width=0)),
                customdata=ids_arr[mask],
                legendgroup=label,
                showlegend=False,
                meta={"role": "strip", "group": label},
                text=[score_quote(v, transformed) for v in raw[mask]],
                hovertemplate=f"%{{customdata}} ({label})<br>%{{text}}<br>click to open<extra></extra>",
            ),
            row=2,
            col=1,
        )

    if highlight_id is not None and highlight_id in set(ids_arr.tolist()):
        i = int(np.flatnonzero(ids_arr == highlight_id)[0])
        level = 1.0 if m[i] else 0.0
        fig.add_trace(
            go.Scatter(
                x=[s[i]],
                y=[level],
                mode="markers",
                name=f"selected: {highlight_id}",
                marker=dict(symbol="star", size=18, color="#111111", line=dict(color="white", width=1.5)),
                customdata=[highlight_id],
                meta={"role": "highlight"},
                text=[score_quote(raw[i], transformed)],
                hovertemplate="%{customdata}<br>%{text}<extra>selected</extra>",
            ),
            row=2,
            col=1,
        )
        fig.add_vline(x=float(s[i]), line=dict(color="#111111", width=1.5, dash="dot"), row=1, col=1)

    if threshold is not None:
        tpr, fpr = operating_point(raw, m, threshold)
        prefix = f"{threshold_label}: " if threshold_label else ""
        text = f"{prefix}at this threshold: TPR {tpr:.3f}, FPR {fpr:.3f}"
        x_thr = _display_value(float(threshold), transformed)
        if math.isfinite(x_thr):
            fig.add_vline(x=x_thr, line=dict(color="#222222", width=2, dash="dash"))
            fig.add_annotation(
                x=x_thr,
                y=1.0,
                xref="x",
                yref="y domain",
                text=text,
                showarrow=False,
                xanchor="right" if x_thr > np.median(s) else "left",
                yanchor="top",
                bgcolor="rgba(255,255,255,0.85)",
                font=dict(size=13),
            )
        else:
            fig.add_annotation(
                x=0.5,
                y=1.0,
                xref="paper",
                yref="y domain",
                showarrow=False,
                yanchor="top",
                text=f"{prefix}threshold above every score: TPR 0, FPR 0",
                font=dict(size=13),
            )

    fig.update_layout(barmode="overlay", bargap=0)
    densities = [np.asarray(t.y, dtype=float) for t in fig.data if t.type == "bar" and t.y is not None]
    if log_y and any((d > 0).any() for d in densities):
        fig.update_yaxes(title="density", row=1, col=1, **log_axis(np.concatenate(densities)))
    else:
        fig.update_yaxes(title="density", type="linear", row=1, col=1)
    fig.update_yaxes(
        row=2,
        col=1,
        tickvals=[0, 1],
        ticktext=[NONMEMBER_LABEL, MEMBER_LABEL],
        range=[-0.6, 1.6],
        fixedrange=True,
        showgrid=False,
    )
    fig.update_xaxes(title=_score_axis_title(score_label, transformed), row=2, col=1)
    fig.update_layout(meta={"log_score": transformed})
    _base_layout(fig, title, height=520)
    # Title on top, the legend in a row under it, then the plot. No dragmode / clickmode here:
    # Streamlit turns point clicks into selections only when the drag mode is not box / lasso.
    fig.update_layout(
        margin=dict(t=110 if title else 60),
        title=dict(y=0.98, yanchor="top", yref="container") if title else None,
        legend=dict(orientation="h", x=0, y=1.0, xanchor="left", yanchor="bottom"),
    )
    return fig


# --------------------------------------------------------------------------- per timestep


def timestep_metrics(result, is_member, budget: float = M.BUDGET_1PCT) -> pd.DataFrame:
    """AUC and TPR at an FPR budget at every timestep of an attack's trace.

    Parameters
    ----------
    result : AttackResult with a trace: ``trace_scores()`` (N, K), ``trace_timesteps`` (K,).
    is_member : (N,) bool.

    Returns
    -------
    pandas.DataFrame with K rows: ``timestep``, ``auc``, ``tpr`` (NaN when n/a, and both NaN at a
    timestep where some value of the trace is not finite).
    """
    ts = np.asarray(result.trace_scores(), dtype=float)
    steps = np.asarray(result.trace_timesteps)
    rows = []
    for k in range(ts.shape[1]):
        if not np.all(np.isfinite(ts[:, k])):  # a diverged statistic at this t: no number
            rows.append({"timestep": int(steps[k]), "auc": math.nan, "tpr": math.nan})
            continue
        tpr = M.tpr_at_fpr(ts[:, k], is_member, budget)
        rows.append(
            {"timestep": int(steps[k]), "auc": M.auc(ts[:, k], is_member), "tpr": math.nan if tpr is None else tpr}
        )
    return pd.DataFrame(rows, columns=["timestep", "auc", "tpr"])


def timestep_metric_figure(
    results: Mapping[str, Any], is_member, *, budget: float = M.BUDGET_1PCT, title: str | None = None
) -> go.Figure:
    """AUC(t) (top) and TPR@budget(t) (bottom) for every attack that has a trace.

    Parameters
    ----------
    results : {attack name: AttackResult}; attacks without a trace (K = 0) are skipped.
    is_member : (N,) bool.

    Returns
    -------
    go.Figure with two rows sharing x (timestep). Traces: ``meta = {"attack": name,
    "metric": "auc" | "tpr"}``; y values are ``metrics.auc`` / ``metrics.tpr_at_fpr`` of each
    trace column (score convention). A large marker sits at each attack's score timestep.
    """
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("AUC at each timestep", f"TPR at {budget_label(budget)} FPR at each timestep"),
    )
    any_na = False
    for name, result in results.items():
        if result.trace.ndim != 2 or result.trace.shape[1] == 0:
            continue
        frame = timestep_metrics(result, is_member, budget)
        color = attack_color(name)
        any_na |= bool(frame["tpr"].isna().any())
        for row, col, metric in ((1, "auc", "auc"), (2, "tpr", "tpr")):
            fig.add_trace(
                go.Scatter(
                    x=frame["timestep"],
                    y=frame[col],
                    mode="lines+markers",
                    name=short_name(name),
                    line=dict(color=color, width=2),
                    marker=dict(size=6),
                    legendgroup=name,
                    showlegend=row == 1,
                    meta={"attack": name, "metric": metric},
                    hovertemplate=f"{short_name(name)}<br>t = %{{x}}<br>{metric.upper()} %{{y:.3f}}<extra></extra>",
                ),
                row=row,
                col=1,
            )
        for t in score_timesteps(result):
            hit = frame[frame["timestep"] == t]
            if len(hit):
                fig.add_trace(
                    go.Scatter(
                        x=hit["timestep"],
                        y=hit["auc"],
                        mode="markers",
                        legendgroup=name,
                        showlegend=False,
                        marker=dict(color=color, size=14, symbol="diamond", line=dict(color="white", width=1)),
                        meta={"attack": name, "metric": "score timestep"},
                        hovertemplate=f"{short_name(name)} scores at t = %{{x}}<extra></extra>",
                    ),
                    row=1,
                    col=1,
                )
    fig.add_hline(y=0.5, line=dict(color=GRID_COLOR, dash="dash", width=1), row=1, col=1)
    fig.add_annotation(
        x=1,
        y=0.5,
        xref="x domain",
        yref="y",
        text="chance",
        showarrow=False,
        xanchor="right",
        yanchor="bottom",
        font=dict(size=11, color="#555555"),
    )
    fig.add_hline(y=budget, line=dict(color=GRID_COLOR, dash="dash", width=1), row=2, col=1)
    if any_na:
        fig.add_annotation(
            x=0.5,
            y=0.2,
            xref="x domain",
            yref="y2 domain",
            showarrow=False,
            text=f"TPR@{budget_label(budget)} FPR {M.format_metric(None, budget)}",
        )
    fig.update_yaxes(title="AUC", row=1, col=1)
    fig.update_yaxes(title=f"TPR@{budget_label(budget)}", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title="timestep t (0 = clean image)", row=2, col=1)
    _base_layout(fig, title, height=620)
    return fig


# --------------------------------------------------------------------------- error curves


def error_bands(trace, is_member) -> dict[str, np.ndarray]:
    """Median and inter-quartile range of a trace, per group and timestep.

    Parameters
    ----------
    trace : (N, K) float.
    is_member : (N,) bool.

    Returns
    -------
    dict with (K,) arrays ``member_median``, ``member_q25``, ``member_q75`` and the same three
    with the ``nonmember_`` prefix (numpy's linear-interpolation quantiles).
    """
    t = np.asarray(trace, dtype=float)
    m = np.asarray(is_member).astype(bool)
    if t.ndim != 2 or t.shape[0] != m.size:
        raise ValueError(f"trace must be (N, K) with N = {m.size}; got shape {t.shape}")
    out = {}
    for prefix, mask in (("member", m), ("nonmember", ~m)):
        q25, q50, q75 = np.quantile(t[mask], [0.25, 0.5, 0.75], axis=0)
        out[f"{prefix}_median"], out[f"{prefix}_q25"], out[f"{prefix}_q75"] = q50, q25, q75
    return out


def score_timesteps(result) -> list[int]:
    """The timestep(s) an attack's score is read at, from its parameters.

    secmi: ``t_sec - k`` (the official code compares at t_sec - k); loss: every t of
    ``timesteps``; pia, pian, sima and others with a ``timestep`` parameter: that t.
    """
    p = result.params or {}
    if result.attack == "secmi" and "t_sec" in p and "k" in p:
        return [int(p["t_sec"]) - int(p["k"])]
    if "timesteps" in p:
        return [int(t) for t in p["timesteps"]]
    if "timestep" in p:
        return [int(p["timestep"])]
    return []


@dataclass(frozen=True)
class CurveLine:
    """One image's own curve on an error-curve figure: a legend label, (K,) values, a colour, an id."""

    label: str
    values: Any
    color: str = "#111111"
    id: str = ""


def error_curve_figure(
    timesteps,
    trace=None,
    is_member=None,
    *,
    lines: Sequence[CurveLine] = (),
    t_lines: Sequence[tuple[int, str]] = (),
    ylabel: str = "error (lower = member-like)",
    title: str | None = None,
    height: int = 460,
) -> go.Figure:
    """The per-timestep error curve of every page (Sample explorer, Learn, presenter).

    Parameters
    ----------
    timesteps : (K,) int, 0-based.
    trace : (N, K) float, optional
        A raw per-timestep statistic (lower = member). With ``is_member`` it draws, per group,
        the median over images and the inter-quartile band (:func:`error_bands`).
    is_member : (N,) bool, needed with ``trace``.
    lines : one :class:`CurveLine` per image drawn on top (its (K,) values).
    t_lines : (t, text) pairs: a dotted vertical line at t, labelled with the text.
    ylabel : y-axis title. The y axis is logarithmic when every drawn value is > 0.

    Returns
    -------
    go.Figure. Bands are filled ``go.Scatter`` pairs (``meta.role == "band"``, upper q75 then
    lower q25 with ``fill="tonexty"``), medians ``meta.role == "median"``, each line
    ``meta.role == "sample"`` (with its ``id``); each t line is a layout shape named ``"t line"``.
    """
    steps = np.asarray(timesteps)
    fig = go.Figure()
    drawn = []
    if trace is not None:
        t_arr = np.asarray(trace, dtype=float)
        m = np.asarray(is_member).astype(bool)
        bands = error_bands(t_arr, m)
        drawn.append(t_arr)
        for prefix, label, color in (
            ("nonmember", NONMEMBER_LABEL, NONMEMBER_COLOR),
            ("member", MEMBER_LABEL, MEMBER_COLOR),
        ):
            if not (m if prefix == "member" else ~m).any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=bands[f"{prefix}_q75"],
                    mode="lines",
                    line=dict(width=0, color=color),
                    showlegend=False,
                    hoverinfo="skip",
                    legendgroup=label,
                    meta={"role": "band", "group": label, "edge": "q75"},
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=bands[f"{prefix}_q25"],
                    mode="lines",
                    line=dict(width=0, color=color),
                    fill="tonexty",
                    fillcolor=rgba(color, 0.22),
                    name=f"{label}s: middle 50 %",
                    legendgroup=label,
                    hoverinfo="skip",
                    meta={"role": "band", "group": label, "edge": "q25"},
                )
            )
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=bands[f"{prefix}_median"],
                    mode="lines",
                    name=f"{label}s: median",
                    line=dict(color=color, width=3),
                    legendgroup=label,
                    meta={"role": "median", "group": label},
                    hovertemplate=f"{label} median<br>t = %{{x}}<br>%{{y:.4g}}<extra></extra>",
                )
            )
    for line in lines:
        values = np.asarray(line.values, dtype=float)
        if values.shape != steps.shape:
            raise ValueError(f"line {line.label!r} has {values.size} values for {steps.size} timesteps")
        drawn.append(values)
        fig.add_trace(
            go.Scatter(
                x=steps,
                y=values,
                mode="lines+markers",
                name=line.label,
                line=dict(color=line.color, width=2.5),
                marker=dict(size=7),
                meta={"role": "sample", "id": line.id or line.label},
                hovertemplate=f"{line.label}<br>t = %{{x}}<br>%{{y:.4g}}<extra></extra>",
            )
        )
    for t, text in t_lines:
        fig.add_shape(
            type="line",
            name="t line",
            x0=t,
            x1=t,
            y0=0,
            y1=1,
            xref="x",
            yref="paper",
            line=dict(color="#444444", dash="dot", width=1.5),
        )
        fig.add_annotation(
            x=t, y=1.0, yref="paper", text=text, showarrow=False, yanchor="bottom", font=dict(size=12, color="#444444")
        )
    values = np.concatenate([d.reshape(-1) for d in drawn]) if drawn else np.zeros(0)
    values = values[np.isfinite(values)]
    positive = bool(values.size) and bool(np.all(values > 0))
    if positive:
        fig.update_yaxes(title=ylabel, **log_axis(values))
    else:
        fig.update_yaxes(type="linear", title=ylabel)
    fig.update_xaxes(title="timestep t (0 = clean image)")
    _base_layout(fig, title, height=height)
    fig.update_layout(margin=dict(t=70 if title else 45))
    return fig


def attack_error_curve(result, is_member, sample_index: int | None = None, *, title: str | None = None) -> go.Figure:
    """:func:`error_curve_figure` of an attack's stored trace, one sample on top, its score timesteps marked.

    Parameters
    ----------
    result : AttackResult with a trace (N, K) (raw statistic, lower = member); without one the
        figure only says so.
    is_member : (N,) bool.
    sample_index : int, optional, the row of the sample whose own curve is overlaid (black).
    """
    trace = np.asarray(result.trace, dtype=float)
    if trace.ndim != 2 or trace.shape[1] == 0:
        fig = go.Figure()
        fig.add_annotation(
            text=f"{short_name(result.attack)} has no per-timestep trace",
            showarrow=False,
            x=0.5,
            y=0.5,
            xref="paper",
            yref="paper",
        )
        return _base_layout(fig, title, height=420)
    m = np.asarray(is_member).astype(bool)
    lines = []
    if sample_index is not None:
        i = int(sample_index)
        sid = result.ids[i] if i < len(result.ids) else str(i)
        truth = MEMBER_LABEL if m[i] else NONMEMBER_LABEL
        lines.append(CurveLine(f"{sid} (truly a {truth})", trace[i], "#111111", sid))
    t_lines = [(t, f"score read at t = {t}") for t in score_timesteps(result)]
    return error_curve_figure(
        result.trace_timesteps,
        trace,
        m,
        lines=lines,
        t_lines=t_lines,
        ylabel=f"{result.trace_label}<br>(lower = member-like)",
        title=title,
    )


# --------------------------------------------------------------------------- per-sample scatter


def sample_scatter(
    results: Mapping[str, Any],
    is_member,
    ids: Sequence[str],
    x_attack: str,
    y_attack: str,
    *,
    highlight_id: str | None = None,
) -> go.Figure:
    """Two attacks' scores per sample, members and non-members coloured, clickable.

    Parameters
    ----------
    results : {attack name: AttackResult}, each with (N,) scores.
    is_member : (N,) bool; ids : (N,) str (``customdata`` of every point).
    x_attack, y_attack : names in ``results``.

    Returns
    -------
    go.Figure with one ``go.Scatter`` per group (``customdata`` = ids) and the Spearman rank
    correlation of the two scores in the title.
    """
    m = np.asarray(is_member).astype(bool)
    ids_arr = np.asarray([str(i) for i in ids])
    x_raw = np.asarray(results[x_attack].scores, dtype=float)
    y_raw = np.asarray(results[y_attack].scores, dtype=float)
    rho = _spearman(x_raw, y_raw)
    x, x_log = display_scores(x_raw)
    y, y_log = display_scores(y_raw)
    fig = go.Figure()
    for label, mask, color in ((NONMEMBER_LABEL, ~m, NONMEMBER_COLOR), (MEMBER_LABEL, m, MEMBER_COLOR)):
        fig.add_trace(
            go.Scatter(
                x=x[mask],
                y=y[mask],
                mode="markers",
                name=f"{label}s",
                customdata=ids_arr[mask],
                marker=dict(color=color, size=6, opacity=0.65),
                meta={"role": "samples", "group": label},
                text=[
                    f"{short_name(x_attack)} {a:.4g}<br>{short_name(y_attack)} {b:.4g}"
                    for a, b in zip(x_raw[mask], y_raw[mask])
                ],
                hovertemplate="%{customdata}" + f" ({label})" + "<br>%{text}<extra></extra>",
            )
        )
    if highlight_id is not None and highlight_id in set(ids_arr.tolist()):
        i = int(np.flatnonzero(ids_arr == highlight_id)[0])
        fig.add_trace(
            go.Scatter(
                x=[x[i]],
                y=[y[i]],
                mode="markers",
                name=f"selected: {highlight_id}",
                customdata=[highlight_id],
                meta={"role": "highlight"},
                marker=dict(symbol="star", size=18, color="#111111"),
            )
        )
    fig.update_xaxes(title=f"{short_name(x_attack)}: " + _score_axis_title("score (higher = member)", x_log))
    fig.update_yaxes(title=f"{short_name(y_attack)}: " + _score_axis_title("score (higher = member)", y_log))
    _base_layout(
        fig, f"{short_name(x_attack)} vs {short_name(y_attack)}: Spearman rank correlation {rho:.2f}", height=520
    )
    return fig


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    rx = pd.Series(x).rank().to_numpy()
    ry = pd.Series(y).rank().to_numpy()
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------- per-sample tables


def scores_frame(results: Mapping[str, Any], ids: Sequence[str], is_member) -> pd.DataFrame:
    """Per-sample scores for export: ``id``, ``is_member`` (0/1), one column per attack (N rows).

    A result that scored only some of ``ids`` (a learned attack's held-out part) leaves the other
    cells empty (NaN) and adds a ``<attack>_part`` column: "eval", "train" or "" (not used).
    """
    frame = pd.DataFrame({"id": [str(i) for i in ids], "is_member": np.asarray(is_member).astype(int)})
    for name, result in results.items():
        if tuple(result.ids) == tuple(frame["id"]):
            frame[name] = np.asarray(result.scores, dtype=float)
            continue
        by_id = dict(zip(result.ids, np.asarray(result.scores, dtype=float)))
        unknown = set(by_id) - set(frame["id"])
        if unknown:
            raise ValueError(
                f"{name} scored {len(unknown)} id(s) that are not among these, e.g. {sorted(unknown)[0]!r}"
            )
        frame[name] = [by_id.get(i, math.nan) for i in frame["id"]]
        trained = set(getattr(result, "train_ids", ()))
        frame[f"{name}_part"] = ["eval" if i in by_id else "train" if i in trained else "" for i in frame["id"]]
    return frame


def _nonmember_tail(s: np.ndarray, m: np.ndarray, value: float) -> float:
    """Fraction of non-members scoring at least ``value``."""
    nm = s[~m]
    return float((nm >= value).mean()) if nm.size else math.nan


def vulnerable_samples(
    result,
    is_member,
    images: np.ndarray | None = None,
    *,
    k: int = 20,
    budget: float = M.BUDGET_1PCT,
    thumb_size: int = 48,
) -> pd.DataFrame:
    """The k members with the highest scores under one attack ("most vulnerable samples").

    Parameters
    ----------
    result : AttackResult (scores (N,), ids (N,)).
    is_member : (N,) bool.
    images : (N, H, W, C) uint8, optional; adds a ``thumbnail`` column of PNG data URIs
        (nearest-neighbour upscaled to ``thumb_size``).
    budget : the FPR budget of the ``flagged`` column (oracle threshold on this split).

    Returns
    -------
    pandas.DataFrame with at most k rows: ``rank`` (1 = highest member score), ``id``,
    ``score``, ``non-members above`` (fraction of non-members scoring at least as high),
    ``flagged`` ("yes"/"no"/"n/a" at the budget), optionally ``thumbnail``.
    """
    s, m = _as_arrays(result.scores, is_member)
    ids = np.asarray([str(i) for i in result.ids])
    members = np.flatnonzero(m)
    order = members[np.argsort(-s[members], kind="stable")][:k]
    thr = M.threshold_at_fpr(s, m, budget)
    rows = []
    for rank, i in enumerate(order, start=1):
        row = {
            "rank": rank,
            "id": ids[i],
            "score": float(s[i]),
            "non-members above": _nonmember_tail(s, m, s[i]),
            "flagged": "n/a" if thr is None else ("yes" if s[i] >= thr else "no"),
        }
        if images is not None:
            row["thumbnail"] = png_data_uri(upscale_nearest(np.asarray(images[i]), thumb_size))
        rows.append(row)
    columns = ["rank", "id", "score", "non-members above", "flagged"] + (["thumbnail"] if images is not None else [])
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- images


def secmi_panels(round_trip: Mapping[str, Any]) -> dict[str, Any]:
    """The Sample explorer's four SecMI images from :func:`mia_core.lab.teaching.secmi_round_trip`.

    Parameters
    ----------
    round_trip : dict with (C, H, W) float arrays or tensors in [-1, 1] ``x0``, ``x_tilde``,
        ``x_recon`` and the numbers ``t_error`` and ``t``.

    Returns
    -------
    dict with uint8 (H, W, C) images ``x0``, ``x_tilde``, ``x_recon`` (:func:`to_uint8`) and ``diff``
    (|x_tilde - x_recon| scaled so its maximum is white; all black when they are equal), and the
    floats ``diff_max`` (largest absolute difference, in [-1, 1] units), ``t_error`` and ``t``.
    """

    def arr(x) -> np.ndarray:
        return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)

    diff = np.abs(arr(round_trip["x_tilde"]) - arr(round_trip["x_recon"]))
    diff_max = float(diff.max()) if diff.size else 0.0
    scaled = diff / diff_max if diff_max > 0 else diff
    return {
        "x0": to_uint8(arr(round_trip["x0"])),
        "x_tilde": to_uint8(arr(round_trip["x_tilde"])),
        "x_recon": to_uint8(arr(round_trip["x_recon"])),
        "diff": np.clip(np.rint(scaled * 255), 0, 255).astype(np.uint8).transpose(1, 2, 0),
        "t_error": float(round_trip["t_error"]),
        "diff_max": diff_max,
        "t": int(round_trip["t"]),
    }
