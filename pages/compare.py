"""Compare: every attack's results on the session's experiment, side by side.

Thin page: reads the stored results (nothing is computed here but metrics from stored scores),
builds figures with ``mia_core.views.results`` and draws them. Clicking a sample (histogram strip,
attack-vs-attack scatter, most-vulnerable table) opens it in the Sample explorer.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from mia_core import metrics as M
from mia_core.attacks import REGISTRY, access_label, get_attack
from mia_core.calibration import calibration_partition, oracle_tpr_at_fpr, transferred_tpr_at_fpr
from mia_core.lab import evalsets as ES
from mia_core.lab import run_specs as RS
from mia_core.lab.blind import BLIND_NAME, blind_baseline
from mia_core.lab.plan import order_by_access
from mia_core.views import results as F
from mia_core.views.attack_info import short_name
from mia_core.views.html import figure_html
from mia_core.views.transfer import oracle_transferred_table
from pages._common import (
    budget_control,
    get_store,
    selected_attacks,
    show_sharded_runs,
    show_store_notices,
    try_experiment,
)

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "scale": 1}}


@st.cache_data(show_spinner=False, max_entries=64)
def _evaluate(scores: np.ndarray, is_member: np.ndarray) -> M.AttackMetrics:
    return M.evaluate(scores, is_member)


@st.cache_data(show_spinner=False, max_entries=64)
def _transferred(scores: np.ndarray, is_member: np.ndarray, budget: float):
    """Threshold at the budget on a seeded half of each class, TPR and achieved FPR on the other half."""
    partition = calibration_partition(is_member, fraction=0.5, seed=0)
    return transferred_tpr_at_fpr(scores, is_member, partition, budget), partition


@st.cache_data(show_spinner=False, max_entries=64)
def _oracle(scores: np.ndarray, is_member: np.ndarray, budget: float):
    """TPR at the budget with the threshold chosen on these scores (the best case), with its interval."""
    return oracle_tpr_at_fpr(scores, is_member, budget)


@st.cache_data(show_spinner=False, max_entries=8)
def _blind(images: np.ndarray, is_member: np.ndarray):
    return blind_baseline(images, is_member, fraction=0.5, seed=0)


def _published_calls(name: str, params: dict) -> int | None:
    try:
        known = {k: v for k, v in params.items() if k != "sweep"}
        return get_attack(name, known).unet_calls(trace=False)
    except Exception:  # parameters from an older run: the cost column is simply left out
        return None


def _selected_id(event, valid: set[str]) -> str | None:
    """The sample id of the first selected point carrying one (customdata), if any."""
    try:
        points = event.selection.points
    except AttributeError:
        return None
    for point in points or []:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, (list, tuple)):
            data = data[0] if data else None
        if isinstance(data, str) and data in valid:
            return data
    return None


def _drop_stale(key: str, options: list[str]) -> None:
    """Forget a remembered choice that is no longer offered (e.g. an attack was deselected)."""
    if key in st.session_state and st.session_state[key] not in options:
        del st.session_state[key]


def open_sample(sample_id: str, attack: str) -> None:
    st.session_state["sel.sample"] = sample_id
    # the runs go along, so the Sample explorer shows the same runs (?runs=, as here)
    params = {"id": sample_id, "attack": attack, "runs": RS.join_runs(st.session_state.get("compare.runs", []))}
    st.switch_page("pages/sample.py", query_params=params)


def html_download(fig, name: str, key: str) -> None:
    st.download_button(
        "Download figure (HTML)",
        lambda: figure_html(fig),
        file_name=f"{name}.html",
        mime="text/html",
        key=key,
        on_click="ignore",
        icon=":material/download:",
        help="An interactive, standalone HTML file (plotly.js included, works offline).",
    )


@st.fragment
def threshold_panel(r, labels_of_run, run: str, threshold, budget: float, log_y: bool) -> None:
    """What-if: a draggable threshold over the run's score axis, its histogram, live confusion matrix and rates.

    A fragment: dragging reruns only this panel. The slider starts at the threshold of the FPR budget
    (a new run or budget starts it there again) and moves along the histogram's own axis
    (-log10(-score) when that axis is transformed).
    """
    shown, transformed = F.display_scores(r.scores)
    lo, hi = float(shown.min()), float(shown.max())
    start = hi
    if threshold is not None and np.isfinite(threshold):
        start = float(F.display_scores([threshold], transformed)[0][0])
    start = min(max(start, lo), hi)
    axis = "−log10(−score)" if transformed else "score"
    value = st.slider(
        f"Threshold: drag it ({axis}, flagged = at or above)",
        min_value=lo,
        max_value=max(hi, lo + 1e-9),
        value=start,
        step=max((hi - lo) / 400, 1e-9),
        format="%.4g",
        key=f"compare.thr.{run}.{budget}",
        help=f"Starts at the threshold of the {F.budget_label(budget)} FPR budget. The table below counts what "
        "this threshold does on the split.",
    )
    moved = not np.isclose(value, start)
    chosen = F.score_from_display(value, transformed) if moved or threshold is None else threshold
    base = RS.base_attack(run)
    hist = F.score_histogram(
        r.scores,
        labels_of_run,
        threshold=chosen,
        ids=list(r.ids),
        highlight_id=st.session_state.get("sel.sample"),
        log_y=log_y,
        log_score=transformed,
        threshold_label="your threshold" if moved else f"{F.budget_label(budget)} FPR budget",
        title=f"{short_name(run)}: {REGISTRY[base].score_label if base in REGISTRY else 'score'}",
    )
    conf = F.confusion_at(r.scores, labels_of_run, chosen)
    c_table, c_rates = st.columns([3, 2], vertical_alignment="center")
    with c_table, st.container(key="compare_confusion"):
        st.markdown(f"**Confusion matrix at {F.score_quote(chosen, transformed)}**")
        st.table(F.confusion_frame(conf))
    with c_rates, st.container(key="compare_rates"):
        st.metric("achieved FPR", f"{conf.fpr:.2%}", help=f"{conf.fp} of {conf.fp + conf.tn} non-members flagged")
        st.metric("achieved TPR", f"{conf.tpr:.2%}", help=f"{conf.tp} of {conf.tp + conf.fn} members flagged")
        st.caption(
            f"{conf.fp} of {conf.fp + conf.tn} non-members and {conf.tp} of {conf.tp + conf.fn} members flagged."
        )
    event = st.plotly_chart(
        hist, key="hist_chart", theme=None, config=PLOTLY_CONFIG, on_select="rerun", selection_mode="points"
    )
    picked = _selected_id(event, set(r.ids))
    if picked is not None:
        open_sample(picked, base)
    html_download(hist, f"histogram_{run}", "dl_hist")


# --------------------------------------------------------------------------- page

st.title("📈 Compare attacks")
st.caption(
    "Every attack gives each image a score (higher = more likely a member of the training set). "
    "Here the scores of the selected attacks are compared on the same members and non-members: "
    "how well they separate the two groups overall (AUC), and, what matters for privacy, how many "
    "members they catch while wrongly accusing only a few non-members (TPR at a low FPR)."
)

exp = try_experiment()
if exp is None:
    st.stop()

all_ids = list(exp.ids)
known_ids = set(all_ids)

# -- which runs: a run = an attack with its parameters, so two runs of one attack sit side by side.
# The choice lives in the URL (?runs=loss|loss:timesteps=100, with ?fpr=): a link reproduces the view.
seed = int(st.session_state["cfg.seed"])
store = get_store()
try:
    lab_runs = [RS.run_id(a) for a in selected_attacks(exp)]  # the Attack lab's selection: the default view
except ValueError as exc:  # e.g. "own caption" on images without captions
    st.warning(f"{exc}.")
    lab_runs = []
url_runs, url_errors = RS.parse_runs(st.query_params.get("runs"))
offered = list(
    dict.fromkeys(
        lab_runs + url_runs + RS.stored_run_ids(store.entries(), exp.target.fingerprint, exp.images.fingerprint, seed)
    )
)
if "compare.runs" not in st.session_state:
    st.session_state["compare.runs"] = url_runs if "runs" in st.query_params and url_runs else lab_runs
chosen_runs = st.multiselect(
    "Runs",
    offered,
    key="compare.runs",
    format_func=short_name,
    help="Every stored run of this target, data and seed: an attack with its parameters. The labels name the "
    "parameters that differ from the published defaults. The choice is kept in the page's URL.",
)
st.query_params["runs"] = RS.join_runs(chosen_runs)
for error in url_errors:
    st.warning(f"Ignored from the link: {error}")
res, not_stored = {}, []
for rid in chosen_runs:
    stored = store.get(exp.run_key(RS.attack_of(rid, exp.images.captions), seed))
    if stored is None:
        not_stored.append(rid)
    elif set(stored.ids) <= known_ids:
        res[rid] = stored
show_store_notices(store)
show_sharded_runs(store, exp.target.fingerprint)
if not_stored:
    st.info(
        "Not stored on this experiment (run them in the Attack lab): "
        + ", ".join(short_name(r) for r in not_stored)
        + "."
    )
# grouped by threat model (black, gray, white box), runs of one attack together
order = order_by_access(dict.fromkeys(RS.base_attack(r) for r in res))
res = dict(sorted(res.items(), key=lambda kv: order.index(RS.base_attack(kv[0]))))
if not res:
    st.warning(
        "No stored results yet for the selected attacks on this target and data. "
        "Run them in the Attack lab first; they are saved and show up here."
    )
    st.page_link("pages/attack_lab.py", label="Go to the Attack lab", icon="⚔️")
    st.stop()

# Learned attacks (SecMI-NN, quantile regression) score only their held-out part. By default every
# attack is compared on the images all of them scored; "own" evaluates each on everything it scored.
partial = [name for name, r in res.items() if ES.is_partial(r, all_ids)]
evalset = ES.COMMON
if partial:
    evalset = (
        st.segmented_control(
            "Compare on",
            [ES.COMMON, ES.OWN],
            key="compare.evalset",
            required=True,
            default=ES.COMMON,
            format_func=lambda v: {"common": "images every attack scored", "own": "each attack's own images"}[v],
            help="Learned attacks train on part of the labelled images and score only the rest. Comparing every "
            "attack on the same held-out images is the fair comparison.",
        )
        or ES.COMMON
    )
    parts = "; ".join(f"**{short_name(n)}**: {ES.describe(res[n], all_ids, exp.is_member)}" for n in partial)
    st.caption(f"Learned attacks never score the images they trained on. {parts}.")
if evalset == ES.COMMON:
    ids = list(ES.common_ids(res, all_ids))
    if not ids:
        st.warning("The selected attacks have no scored image in common; showing each on its own images.")
        evalset = ES.OWN
    else:
        res = {name: ES.restrict(r, ids) for name, r in res.items()}
if evalset == ES.OWN:
    ids = all_ids
labels = {name: ES.labels_for(r.ids, all_ids, exp.is_member) for name, r in res.items()}
is_member = ES.labels_for(ids, all_ids, exp.is_member)
valid_ids = set(ids)
names = list(res)
n_m, n_nm = int(is_member.sum()), int((~is_member).sum())

top = st.columns([2, 3])
with top[0]:
    budget = budget_control()
with top[1]:
    st.markdown(
        f"**{len(names)} run(s)** on **{n_m} members** and **{n_nm} non-members**"
        f"{' (each attack on the images it scored)' if evalset == ES.OWN and partial else ''}. "
        f"With {n_nm} non-members the smallest non-zero FPR is 1/{n_nm} ≈ {1 / n_nm:.2%}: "
        "budgets below that cannot be measured and are shown as n/a."
    )

metrics = {name: _evaluate(r.scores, labels[name]) for name, r in res.items()}
roc_input = {name: (r.scores, labels[name]) for name, r in res.items()}
# Evaluation you can trust: transferred thresholds (calibration -> test) and the model-free blind baseline.
transferred = {name: _transferred(r.scores, labels[name], budget) for name, r in res.items()}
blind = _blind(exp.images.images, exp.is_member)
blind_curve = (BLIND_NAME, blind.scores, blind.is_member)
if blind.biased:
    st.warning(blind.warning(), icon=":material/warning:")


def _audit_report(args: dict) -> str:
    """The whole view as one self-contained HTML audit report (mia_core.lab.report + views.report). Runs on
    click, outside the script run: it reads only its arguments, never st.*."""
    from mia_core.lab.report import report_from_results
    from mia_core.views.report import report_html

    return report_html(report_from_results(**args))


_report_args = {
    "exp": exp,
    "results": dict(res),
    "seed": seed,
    "budget": budget,
    "blind": blind,
    "target_spec": st.session_state["cfg.target"],
    "data_spec": st.session_state["cfg.data"],
    "limit": st.session_state.get("cfg.limit"),
}
st.download_button(
    "Export audit report (HTML)",
    lambda args=_report_args: _audit_report(args),
    file_name="audit_report.html",
    mime="text/html",
    key="compare.report",
    on_click="ignore",
    icon=":material/summarize:",
    help="One self-contained file (opens offline): target card, data and split, every run's parameters, the "
    "log-log ROC with the blind baseline, the metrics with intervals, the most vulnerable samples and the "
    "commands that reproduce it. `mia report RUN_DIR` writes the same for a `mia attack` folder, with a PDF.",
)

tab_names = ["ROC (log-log)", "ROC (linear)", "Metric table", "Score histograms", "Per timestep", "Attack vs attack"]
tabs = st.tabs(tab_names, key="tab", bind="query-params")

with tabs[0]:
    fig_log = F.roc_figure(roc_input, log=True, budget=budget, reference=blind_curve)
    st.plotly_chart(fig_log, key="roc_log", theme=None, config=PLOTLY_CONFIG)
    with st.expander("What am I looking at?"):
        st.markdown(
            "Each curve sweeps a threshold over an attack's scores: at every threshold, the fraction of "
            "members flagged (true-positive rate, TPR) against the fraction of non-members wrongly flagged "
            "(false-positive rate, FPR). Both axes are **logarithmic**, which magnifies the bottom-left corner: "
            "the regime that matters for privacy, where an attacker must be confident (Carlini et al., 2022).\n\n"
            "- The dashed grey diagonal is guessing (TPR = FPR). A curve far above it at low FPR means the "
            "attack can single out members with few false accusations.\n"
            f"- Dotted lines mark 1 % and 0.1 % FPR; the dot on each curve is its operating point at the "
            f"chosen budget ({F.budget_label(budget)}): the best TPR with FPR at most the budget.\n"
            f"- The grey band left of 1/{n_nm} cannot be measured with {n_nm} non-members: no threshold can "
            "flag a fraction of a non-member.\n"
            "- The legend repeats AUC (area under the curve; 0.5 = chance, 1 = perfect) and the TPR at the budget.\n"
            "- The grey dash-dot curve is the **blind baseline**: a classifier that never queries the model and "
            "sees only the images (fit on half of the split, drawn on the other half). Near the diagonal means the "
            "split is unbiased; an attack means something only where it beats this curve."
        )
    html_download(fig_log, "roc_loglog", "dl_roc_log")

with tabs[1]:
    fig_lin = F.roc_figure(roc_input, log=False, budget=budget, reference=blind_curve)
    st.plotly_chart(fig_lin, key="roc_lin", theme=None, config=PLOTLY_CONFIG)
    st.caption(
        "The classic ROC on linear axes. The area under it is the AUC; note how the low-FPR region that the "
        "log-log view magnifies is squeezed into the left edge here, so two attacks with similar AUC can differ "
        "a lot where it matters."
    )
    html_download(fig_lin, "roc_linear", "dl_roc_lin")

with tabs[2]:
    calls = {}
    for n in names:
        cost = _published_calls(RS.base_attack(n), res[n].params)
        if cost is not None:
            calls[n] = cost
    table = F.metric_table(metrics, res, calls)
    table.insert(
        1,
        "threat model",
        [access_label(RS.base_attack(n)) if RS.base_attack(n) in REGISTRY else "" for n in table.index],
    )
    st.dataframe(
        table,
        hide_index=True,
        key="metric_table",
        column_config={
            "AUC": st.column_config.NumberColumn(format="%.3f"),
            "ASR": st.column_config.NumberColumn(format="%.3f", help="best balanced accuracy over all thresholds"),
            "seconds": st.column_config.NumberColumn(format="%.1f", help="wall-clock time of the stored run"),
        },
    )
    st.caption(
        "Rows are grouped by threat model (black box: images only; gray box: noise predictions; white box: "
        "gradients). AUC: probability that a random member outscores a random non-member. ASR: the best balanced accuracy "
        "over all thresholds. TPR@1%FPR / TPR@0.1%FPR: members caught when at most 1 % / 0.1 % of non-members "
        "are wrongly flagged (the largest threshold within the budget, never rounded up). Intervals: 95 % "
        "bootstrap, members and non-members resampled separately (200 resamples). A TPR at a budget below "
        "1/(number of non-members) cannot be measured and is shown as n/a. UNet calls / image is the attack's "
        "published cost; the run's own count also includes its per-timestep trace."
    )
    st.markdown(f"**Oracle vs transferred at {F.budget_label(budget)} FPR**, and the blind baseline")
    trust = oracle_transferred_table(
        budget,
        metrics,
        {name: _oracle(r.scores, labels[name], budget) for name, r in res.items()},
        {name: rate for name, (rate, _) in transferred.items()},
        blind=blind,
        blind_oracle=_oracle(blind.scores, blind.is_member, budget),
        partitions={name: part for name, (_, part) in transferred.items()},
    )
    st.dataframe(
        trust,
        hide_index=True,
        key="trust_table",
        column_config={"AUC": st.column_config.NumberColumn(format="%.3f")},
    )
    st.caption(
        f"**Oracle vs transferred.** The oracle TPR@{F.budget_label(budget)}FPR picks its threshold on the very "
        "scores it measures (a best case). The *transferred* columns follow CopyMark's protocol: the threshold is "
        "chosen on a seeded, stratified half of the split (the calibration part) and applied unchanged to the "
        "other half (the test part), which reports both the TPR and the **achieved** FPR (it may exceed the "
        "budget); the verdict pages use these thresholds. Intervals: 95 % bootstrap (transferred: both halves "
        "resampled). The blind baseline never queries the model: fit on the calibration part, its AUC and TPR "
        "are measured on the test part; an attack means something only where it beats that row. "
        "The FPR budget above switches every rate here."
    )
    cols = st.columns(2)
    with cols[0]:
        st.download_button(
            "Download metric table (CSV)",
            lambda: table.to_csv(),
            file_name="metrics.csv",
            mime="text/csv",
            key="dl_metrics",
            on_click="ignore",
            icon=":material/download:",
        )
    with cols[1]:
        st.download_button(
            "Download per-sample scores (CSV)",
            lambda: F.scores_frame(res, ids, is_member).to_csv(index=False),
            file_name="scores.csv",
            mime="text/csv",
            key="dl_scores",
            on_click="ignore",
            icon=":material/download:",
            help="One row per image: id, is_member (1 = member), one score column per attack.",
        )

with tabs[3]:
    c1, c2 = st.columns([2, 1])
    with c1:
        _drop_stale("compare.hist_attack", names)
        hist_attack = st.selectbox(
            "Attack", names, key="compare.hist_attack", format_func=short_name, persist_state="session"
        )
    with c2:
        log_y = st.toggle(
            "log-scale density",
            key="compare.hist_logy",
            persist_state="session",
            help="Shows the tails, where the low-FPR decisions are made.",
        )
    r = res[hist_attack]
    threshold = M.threshold_at_fpr(r.scores, labels[hist_attack], budget)
    threshold_panel(r, labels[hist_attack], hist_attack, threshold, budget, log_y)
    if threshold is None:
        st.info(f"No threshold at a {F.budget_label(budget)} FPR budget: {M.format_metric(None, budget)}.")
    st.caption(
        "Top: how the attack's scores are distributed for members (orange) and non-members (blue), each "
        "normalised to area 1 so the shapes compare. The dashed line is the threshold at the FPR budget "
        "(chosen on this very split, so it is the best case for the attacker); everything right of it is "
        "flagged as a member. Bottom: one dot per image. **Click a dot to open that image in the Sample "
        "explorer.** When an attack's scores span several orders of magnitude the axis shows −log10(−score), "
        "which keeps the order."
    )

    st.subheader("Most vulnerable samples")
    st.caption(
        f"The members with the highest {short_name(hist_attack)} scores: the training images this attack is "
        "most sure about. 'non-members above' is the fraction of non-members scoring at least as high (0 % = "
        "it stands out from every non-member). **Select a row to open the image.**"
    )
    rows_of = {i: k for k, i in enumerate(all_ids)}
    vuln = F.vulnerable_samples(
        r, labels[hist_attack], exp.images.images[[rows_of[i] for i in r.ids]], k=20, budget=budget
    )
    hist_log = F.display_scores(r.scores)[1]  # quote the scores on the histogram's own axis
    if hist_log and len(vuln):
        vuln = vuln.assign(score=F.display_scores(vuln["score"].to_numpy(dtype=float), True)[0])
    table_event = st.dataframe(
        vuln,
        hide_index=True,
        key="vuln_table",
        on_select="rerun",
        selection_mode="single-row",
        row_height=52,
        column_order=["rank", "thumbnail", "id", "score", "non-members above", "flagged"],
        column_config={
            "thumbnail": st.column_config.ImageColumn("image", width="small"),
            "score": st.column_config.NumberColumn("−log10(−score)" if hist_log else "score", format="%.4g"),
            "non-members above": st.column_config.NumberColumn(format="percent"),
            "flagged": st.column_config.TextColumn(f"flagged at {F.budget_label(budget)} FPR"),
        },
    )
    rows = getattr(getattr(table_event, "selection", None), "rows", None) or []
    if rows and 0 <= rows[0] < len(vuln):
        open_sample(str(vuln.iloc[rows[0]]["id"]), RS.base_attack(hist_attack))

with tabs[4]:
    traced = {n: r for n, r in res.items() if r.trace.ndim == 2 and r.trace.shape[1] > 0 and list(r.ids) == ids}
    if not traced:
        st.info("None of these results has a per-timestep trace.")
    else:
        fig_t = F.timestep_metric_figure(traced, is_member, budget=budget)
        st.plotly_chart(fig_t, key="timestep_chart", theme=None, config=PLOTLY_CONFIG)
        st.caption(
            "Each attack's statistic can be read at many noise levels t (0 = the clean image, larger t = more "
            "noise added). Top: AUC if the attack used only timestep t; bottom: TPR at the FPR budget. Diamonds "
            "mark the timestep each attack's score actually uses. Where a curve peaks, the model treats members "
            "and non-members most differently; at large t the image is mostly noise for both, so every attack "
            "drifts toward chance (AUC 0.5). SecMI's point at t is a round trip from t to t + k and back."
        )
        cols = st.columns(2)
        with cols[0]:
            html_download(fig_t, "auc_per_timestep", "dl_timestep")
        with cols[1]:

            def _timestep_csv() -> str:
                frames = [F.timestep_metrics(r, is_member, budget).assign(attack=n) for n, r in traced.items()]
                return pd.concat(frames, ignore_index=True).to_csv(index=False)

            st.download_button(
                "Download per-timestep metrics (CSV)",
                _timestep_csv,
                file_name="timestep_metrics.csv",
                mime="text/csv",
                key="dl_timestep_csv",
                on_click="ignore",
                icon=":material/download:",
            )

with tabs[5]:
    if len(names) < 2:
        st.info("Select at least two attacks to compare them sample by sample.")
    else:
        c1, c2 = st.columns(2)
        with c1:
            _drop_stale("compare.x_attack", names)
            x_attack = st.selectbox(
                "x axis", names, index=0, key="compare.x_attack", format_func=short_name, persist_state="session"
            )
        with c2:
            _drop_stale("compare.y_attack", names)
            y_attack = st.selectbox(
                "y axis",
                names,
                index=min(1, len(names) - 1),
                key="compare.y_attack",
                format_func=short_name,
                persist_state="session",
            )
        pair_ids = list(ES.common_ids({x_attack: res[x_attack], y_attack: res[y_attack]}, ids))
        pair = {n: ES.restrict(res[n], pair_ids) for n in {x_attack, y_attack}}
        scatter = F.sample_scatter(
            pair,
            ES.labels_for(pair_ids, all_ids, exp.is_member),
            pair_ids,
            x_attack,
            y_attack,
            highlight_id=st.session_state.get("sel.sample"),
        )
        scatter_event = st.plotly_chart(
            scatter, key="scatter_chart", theme=None, config=PLOTLY_CONFIG, on_select="rerun", selection_mode="points"
        )
        chosen = _selected_id(scatter_event, valid_ids)
        if chosen is not None:
            open_sample(chosen, RS.base_attack(x_attack))
        st.caption(
            "One dot per image: its score under two attacks. Dots on a diagonal mean the attacks agree on which "
            "images look like members; the rank correlation in the title sums it up. Members far from the "
            "non-member cloud are the ones both attacks catch. **Click a dot to open that image.**"
        )
        html_download(scatter, f"scatter_{x_attack}_{y_attack}", "dl_scatter")
