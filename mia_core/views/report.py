"""The audit report as one self-contained HTML page (:func:`report_html`).

Sections, each a ``<section id=...>``: ``summary``, ``target`` (model card), ``data`` (source and
split), ``runs`` (every run's parameters and cost), ``roc`` (log-log ROC with the blind baseline),
``metrics`` (oracle and transferred TPR at low FPR, 95 % intervals), ``vulnerable`` (the most
vulnerable members with their images), ``reproduce`` (the command lines), ``notes``. plotly.js and
the images are inlined: the file opens offline and fetches nothing. Prints to A4 (``@media print``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from mia_core.attacks import REGISTRY, access_label
from mia_core.lab.report import AuditReport, ReportRun
from mia_core.metrics import BUDGET_01PCT, BUDGET_1PCT, format_metric
from mia_core.views import results as F
from mia_core.views.attack_info import short_name
from mia_core.views.html import escape
from mia_core.views.images import png_data_uri, upscale_nearest

__all__ = ["report_html", "SECTIONS"]

#: (id, heading) of every section, in order.
SECTIONS = (
    ("summary", "Summary"),
    ("target", "Target model"),
    ("data", "Data and split"),
    ("runs", "Runs and their parameters"),
    ("roc", "ROC (log-log)"),
    ("metrics", "Metrics with 95 % intervals"),
    ("vulnerable", "Most vulnerable samples"),
    ("reproduce", "How to reproduce"),
    ("notes", "How to read this report"),
)

BLIND_LABEL = "blind baseline (images only, no model)"

_CSS = """
body{font-family:'Source Sans Pro',Helvetica,Arial,sans-serif;color:#222;max-width:1180px;margin:24px auto;
  padding:0 24px;line-height:1.45}
h1{font-size:28px;margin:0 0 4px} h2{font-size:21px;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:28px}
.meta{color:#666;font-size:14px}
table{border-collapse:collapse;font-size:13.5px;margin:6px 0 10px}
th,td{border:1px solid #ddd;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5} td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.card td:first-child{font-weight:600;white-space:nowrap}
.samples{display:flex;flex-wrap:wrap;gap:14px;margin:6px 0 16px}
.samples figure{margin:0;text-align:center;font-size:12.5px;width:120px}
.samples img{width:112px;height:112px;image-rendering:pixelated;border:1px solid #ccc}
pre{background:#f6f6f6;padding:10px;white-space:pre-wrap;word-break:break-all;font-size:13px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12.5px;background:#eee}
.warn{background:#fff4e5;border-left:4px solid #e69f00;padding:6px 10px}
#roc .plot{height:520px}
@media print{body{margin:0;max-width:none} section{break-inside:avoid-page} #roc .plot{height:460px}}
"""


def _ci(ci: Any) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]" if ci else ""


def _value(m: dict[str, Any], key: str, budget: float | None = None) -> str:
    value = m.get(key)
    if budget is not None:
        text = format_metric(value, budget)
    else:
        text = "n/a" if value is None else f"{float(value):.3f}"
    ci = _ci(m.get(key + "_ci"))
    return f"{text} {ci}".strip()


def _transferred_cells(run: ReportRun) -> tuple[str, str]:
    rate = run.transferred.get(repr(float(BUDGET_1PCT))) or run.transferred.get("0.01")
    if not rate:
        return "–", "–"
    tpr = f"{format_metric(rate.get('tpr'), BUDGET_1PCT)} {_ci(rate.get('tpr_ci'))}".strip()
    fpr = f"{format_metric(rate.get('fpr'), BUDGET_1PCT)} {_ci(rate.get('fpr_ci'))}".strip()
    return tpr, fpr


def _table(header: list[str], rows: list[list[str]], cls: str = "", numeric_from: int = 99) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if j >= numeric_from else ''}>{escape(str(c))}</td>" for j, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _card_table(card: dict[str, Any]) -> str:
    rows = []
    for key, value in card.items():
        if isinstance(value, (dict, list, tuple)):
            if not value:
                continue
            value = json.dumps(value, default=str) if not isinstance(value, list) else "; ".join(map(str, value))
        rows.append([key.replace("_", " "), str(value)])
    return _table(["", ""], rows, "card")


def _label(run: ReportRun) -> str:
    return short_name(run.run_id)


def _summary(report: AuditReport) -> str:
    measured = [r for r in report.runs if r.metrics.get("tpr_at_1pct_fpr") is not None]
    if measured:
        best = max(measured, key=lambda r: r.metrics["tpr_at_1pct_fpr"])
        m = best.metrics
        what = (
            f"The most revealing at a 1 % false-positive rate: <b>{escape(_label(best))}</b>, which finds "
            f"{float(m['tpr_at_1pct_fpr']):.1%} of the members {escape(_ci(m.get('tpr_at_1pct_fpr_ci')))} "
            f"(oracle threshold; the transferred one is in the table), with AUC {float(m['auc']):.3f} "
            f"{escape(_ci(m.get('auc_ci')))}."
        )
    else:
        best = max(report.runs, key=lambda r: r.metrics["auc"])
        m = best.metrics
        what = (
            f"Too few non-members to measure a TPR at 1 % FPR "
            f"({escape(format_metric(None, BUDGET_1PCT))}); the highest AUC is <b>{escape(_label(best))}</b>'s: "
            f"{float(m['auc']):.3f} {escape(_ci(m.get('auc_ci')))}."
        )
    text = (
        f"{len(report.runs)} run(s) on {report.data.get('n_members', '?')} members and "
        f"{report.data.get('n_nonmembers', '?')} non-members. {what}"
    )
    if report.blind_metrics:
        b = report.blind_metrics
        text += (
            f" The blind baseline, which never queries the model, reaches AUC {float(b['auc']):.3f} "
            f"{escape(_ci(b.get('auc_ci')))}: an attack means something only where it beats it."
        )
        ci = b.get("auc_ci")
        if ci and ci[0] > 0.5:
            text += (
                " <span class='warn'>The split looks biased: the images alone separate members from non-members.</span>"
            )
    return f"<p>{text}</p>"


def _runs(report: AuditReport) -> str:
    rows = []
    for r in report.runs:
        cls = REGISTRY.get(r.attack)
        params = ", ".join(f"{k}={v}" for k, v in r.params.items()) or "(none)"
        rows.append(
            [
                _label(r),
                cls.title if cls else r.attack,
                access_label(r.attack) if cls else "",
                params,
                "" if r.unet_calls_per_image is None else f"{int(r.unet_calls_per_image):,}",
                "" if r.seconds is None else f"{float(r.seconds):.1f}",
                r.evaluated_on,
            ]
        )
    header = ["run", "attack", "threat model", "parameters (all)", "UNet calls / image", "seconds", "scored on"]
    return _table(header, rows)


def _roc(report: AuditReport) -> str:
    import plotly.graph_objects as go

    curves = {r.run_id: (r.scores, r.is_member) for r in report.runs}
    reference = None
    if report.blind_scores is not None and report.blind_is_member is not None:
        reference = (BLIND_LABEL, report.blind_scores, report.blind_is_member)
    fig = go.Figure(F.roc_figure(curves, log=True, budget=report.budget, reference=reference))
    fig.update_layout(height=None, width=None, autosize=True)
    plot = fig.to_html(
        full_html=False,
        include_plotlyjs=True,
        default_width="100%",
        default_height="100%",
        config={"displaylogo": False, "responsive": True},
    )
    note = (
        "The grey dash-dot curve is the blind baseline on the test half of the split."
        if reference is not None
        else "No blind-baseline curve: its scores need the images, which are not available here."
    )
    return (
        f"<div class='plot'>{plot}</div><p class='meta'>Both axes logarithmic; dashed diagonal = guessing "
        f"(TPR = FPR); dotted guides at 1 % and 0.1 % FPR; the dot on each curve is its operating point at "
        f"{escape(F.budget_label(report.budget))} FPR. {note}</p>"
    )


def _metrics(report: AuditReport) -> str:
    header = [
        "run",
        "AUC [95% CI]",
        "ASR [95% CI]",
        "TPR@1%FPR (oracle) [95% CI]",
        "TPR@0.1%FPR (oracle) [95% CI]",
        "transferred TPR@1%FPR [95% CI]",
        "achieved FPR (budget 1%) [95% CI]",
        "members / non-members",
    ]
    rows = []
    for r in report.runs:
        m = r.metrics
        t_tpr, t_fpr = _transferred_cells(r)
        rows.append(
            [
                _label(r),
                _value(m, "auc"),
                _value(m, "asr"),
                _value(m, "tpr_at_1pct_fpr", BUDGET_1PCT),
                _value(m, "tpr_at_0.1pct_fpr", BUDGET_01PCT),
                t_tpr,
                t_fpr,
                f"{int(m['n_members']):,} / {int(m['n_nonmembers']):,}",
            ]
        )
    if report.blind_metrics:
        b = report.blind_metrics
        rows.append(
            [
                BLIND_LABEL + " (test half)",
                _value(b, "auc"),
                _value(b, "asr"),
                _value(b, "tpr_at_1pct_fpr", BUDGET_1PCT),
                _value(b, "tpr_at_0.1pct_fpr", BUDGET_01PCT),
                "–",
                "–",
                f"{int(b['n_members']):,} / {int(b['n_nonmembers']):,}",
            ]
        )
    return _table(header, rows, numeric_from=1) + (
        "<p class='meta'>Oracle: the threshold is chosen on the very scores it measures (a best case for the "
        "attacker). Transferred: the threshold is chosen on a seeded, stratified half of the split and applied "
        "unchanged to the other half, which reports the TPR and the FPR actually achieved there. TPR at a budget "
        "below 1 / (number of non-members) cannot be measured and shows as n/a. Intervals: 95 % bootstrap.</p>"
    )


def _vulnerable(report: AuditReport, k: int = 8) -> str:
    parts = []
    for r in report.runs:
        have = [i for i in r.ids if i in report.images]
        table = F.vulnerable_samples(r, r.is_member, k=k, budget=report.budget)
        figures = []
        for _, row in table.iterrows():
            image = report.images.get(str(row["id"]))
            img = (
                f"<img alt='{escape(str(row['id']))}' src='{png_data_uri(upscale_nearest(np.asarray(image), 112))}'>"
                if image is not None
                else "<div class='meta'>(no image)</div>"
            )
            figures.append(
                f"<figure>{img}<figcaption>#{int(row['rank'])} {escape(str(row['id']))}<br>score "
                f"{float(row['score']):.4g}<br>non-members above: {float(row['non-members above']):.1%}<br>"
                f"flagged at {escape(F.budget_label(report.budget))}: {escape(str(row['flagged']))}</figcaption></figure>"
            )
        missing = "" if have else " <span class='meta'>(images not available)</span>"
        parts.append(f"<h3>{escape(_label(r))}{missing}</h3><div class='samples'>{''.join(figures)}</div>")
    return (
        "<p>The members each run scores highest: the training images it is most sure about. 'non-members above' "
        "is the fraction of non-members scoring at least as high (0 % = it stands out from every non-member).</p>"
        + "".join(parts)
    )


def _reproduce(report: AuditReport) -> str:
    if not report.commands:
        return "<p>No command was recorded.</p>"
    cmds = "\n".join(report.commands)
    return (
        f"<pre>{escape(cmds)}</pre><p class='meta'>Then <code>mia report OUT_FOLDER</code> writes this report "
        f"again. Seed {report.seed}; target fingerprint {escape(str(report.target.get('fingerprint', '?')))}; "
        f"data fingerprint {escape(str(report.data.get('fingerprint', '?')))}.</p>"
    )


def _notes(report: AuditReport) -> str:
    items = [
        "Members are the positive class; every score is higher = more member-like.",
        "AUC: the probability that a random member outscores a random non-member (0.5 = guessing). "
        "TPR at a low FPR is what matters for privacy: the members an attacker finds while wrongly accusing "
        "at most that share of non-members.",
        *report.notes,
    ]
    return "<ul>" + "".join(f"<li>{escape(t)}</li>" for t in items) + "</ul>"


def report_html(report: AuditReport) -> str:
    """The whole report as one HTML document (UTF-8 text), self-contained and offline."""
    if not report.runs:
        raise ValueError("an audit report needs at least one run")
    bodies = {
        "summary": _summary(report),
        "target": _card_table(report.target),
        "data": _card_table({**report.data, "seed": report.seed}),
        "runs": _runs(report),
        "roc": _roc(report),
        "metrics": _metrics(report),
        "vulnerable": _vulnerable(report),
        "reproduce": _reproduce(report),
        "notes": _notes(report),
    }
    sections = "".join(
        f"<section id='{sid}'><h2>{escape(title)}</h2>{bodies[sid]}</section>" for sid, title in SECTIONS
    )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(report.title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{escape(report.title)}</h1><p class='meta'>Written {escape(report.created)} by the membership-"
        f"inference lab (mia). <span class='badge'>{len(report.runs)} run(s)</span></p>"
        f"{sections}</body></html>"
    )
