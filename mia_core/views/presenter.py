"""Presenter mode as data: a short slide deck built from stored attack results.

The deck tells the story of membership inference on one experiment (by default the embedded
target and its split, whose results ship precomputed in ``assets/demo_store``, so a talk never
waits on a computation):

 1. what membership inference is (text)
 2. members and non-members look alike (image pairs)
 3. the model denoises its training images better (per-timestep error, member vs non-member)
 4. one score per image separates them (score histogram of the best attack)
 5. log-log ROC of every attack
 6. TPR at 1 % FPR per attack
 7. leakage depends on the noise level (AUC per timestep)
 8. what this does and does not mean (text)

Slides whose results are missing are left out; :func:`missing_attacks` says which are missing
and :data:`DEMO_COMMAND` how to make them. Figures are built lazily (``Slide.figure()``), with
projector-sized fonts (20 px and up) and thick lines, in the colours of :mod:`mia_core.views.style`.
No streamlit here: the page only draws what this module returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mia_core.attacks import DEFAULT_ATTACKS, AttackResult
from mia_core.views.attack_info import attack_info, short_name
from mia_core.views.results import error_bands
from mia_core.metrics import auc, roc_curve, threshold_at_fpr, tpr_at_fpr
from mia_core.paths import STUDIES_DIR
from mia_core.views.style import MEMBER_COLOR, MEMBER_LABEL, NONMEMBER_COLOR, NONMEMBER_LABEL, attack_color, rgba

if TYPE_CHECKING:  # only for annotations: importing experiment pulls in torch and diffusers
    from mia_core.lab.experiment import Experiment
    from mia_core.lab.runs import ResultStore

#: The command that (re)makes the precomputed results the deck reads on the default target.
DEMO_COMMAND = (
    "mia attack --target default --data default --attacks loss,secmi,pia,pian,sima "
    "--seed 0 --out runs/demo --store assets/demo_store"
)
#: The FPR budget the deck talks about (1 %).
BUDGET = 0.01

FONT_SIZE = 20
TITLE_FONT_SIZE = 24
LINE_WIDTH = 5
FIG_HEIGHT = 520
FONT_FAMILY = "Source Sans Pro, Helvetica, Arial, sans-serif"


# ------------------------------------------------------------------------------------ the deck


@dataclass(frozen=True)
class Slide:
    """One slide: a title, a one-sentence takeaway, and either text or one chart.

    Attributes
    ----------
    key : str, a stable identifier (``"roc"``, ``"histogram"``, ...).
    title : str
    takeaway : str, one sentence: what the audience should remember.
    chart : str or None, which chart the slide draws (``None`` for a text slide).
    body : str, Markdown for text slides (bullets), or a short note under a chart.
    """

    key: str
    title: str
    takeaway: str
    chart: str | None = None
    body: str = ""
    build: Callable[[], go.Figure] | None = field(default=None, repr=False, compare=False)

    @property
    def is_text(self) -> bool:
        return self.build is None

    def figure(self) -> go.Figure | None:
        """A fresh figure for this slide (None for a text slide)."""
        return None if self.build is None else self.build()


@dataclass(frozen=True)
class DeckData:
    """Everything the deck is built from (plain arrays; no model needed).

    Attributes
    ----------
    ids : N sample ids
    images : (N, H, W, C) uint8
    is_member : (N,) bool
    results : attack name -> AttackResult on exactly these ids (may be empty)
    description : str, one line about the experiment (target and data)
    """

    ids: tuple[str, ...]
    images: np.ndarray
    is_member: np.ndarray
    results: Mapping[str, AttackResult]
    description: str = ""

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.images.shape[0] != n or np.shape(self.is_member) != (n,):
            raise ValueError(f"ids ({n}), images {self.images.shape} and is_member {np.shape(self.is_member)} disagree")
        for name, res in self.results.items():
            if tuple(res.ids) != tuple(self.ids):
                raise ValueError(f"the {name} result was computed on other images than the deck's")

    @property
    def n_members(self) -> int:
        return int(np.sum(self.is_member))

    @property
    def n_nonmembers(self) -> int:
        return int(len(self.ids) - np.sum(self.is_member))


@dataclass(frozen=True)
class AttackSummary:
    name: str
    title: str
    auc: float
    tpr: float | None  # TPR at BUDGET; None = n/a


def summarise(data: DeckData) -> list[AttackSummary]:
    """AUC and TPR at 1 % FPR of every attack, best first (by TPR@1 %, then AUC)."""
    out = []
    for name, res in data.results.items():
        out.append(AttackSummary(name, short_name(name), auc(res.scores, data.is_member),
                                 tpr_at_fpr(res.scores, data.is_member, BUDGET)))
    return sorted(out, key=lambda s: (-(s.tpr if s.tpr is not None else -1.0), -s.auc, s.name))


def missing_attacks(results: Mapping[str, AttackResult], wanted: Sequence[str] = DEFAULT_ATTACKS) -> list[str]:
    return [name for name in wanted if name not in results]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def build_deck(data: DeckData) -> list[Slide]:
    """The slides for these results; figure slides without the results they need are left out."""
    summary = summarise(data)
    best = summary[0] if summary else None
    n_m, n_n = data.n_members, data.n_nonmembers
    slides: list[Slide] = []

    slides.append(Slide(
        key="what",
        title="What is membership inference?",
        takeaway="Given a trained model and one image, can an attacker tell whether that image was in the training set?",
        body=(
            "- **Members**: the images the model was trained on. **Non-members**: images from the same "
            "source that it never saw.\n"
            "- An attack gives every image a **score**: higher = more member-like. A threshold turns it into a yes / no.\n"
            "- Why it matters: medical scans, faces, artworks — *was my image used?* is a privacy and a copyright question.\n"
            f"- Our example: {data.description or 'a diffusion model'}; "
            f"{n_m:,} members, {n_n:,} non-members."
        ),
    ))

    verdict_note = f" Flagged = above {short_name(best.name)}'s threshold at 1 % FPR." if best else ""
    slides.append(Slide(
        key="pairs",
        title="Members and non-members look alike",
        takeaway="Each member is shown above its closest-looking non-member: the eye cannot tell which one the model was trained on.",
        chart="image_pairs",
        body="Top row: training images (members). Bottom row: the most similar held-out image (non-member)." + verdict_note,
        build=lambda: image_pairs_figure(data, best.name if best else None),
    ))

    curve_attack = _error_curve_attack(data, summary)
    if curve_attack is not None:
        res = data.results[curve_attack]
        t_best, gap = _largest_gap(res, data.is_member)
        slides.append(Slide(
            key="error_curve",
            title="The model fits its training images more closely",
            takeaway=(f"At t = {t_best} the typical (median) {short_name(curve_attack)} error of members is "
                      f"{abs(gap):.0f} % {'lower' if gap < 0 else 'higher'} than that of non-members."),
            chart="error_curve",
            body=("Lines: median over images; bands: middle 50 % (25th to 75th percentile). "
                  "t is the noise level: 0 = the clean image, larger = noisier. Lower = more member-like."),
            build=lambda: error_curve_figure(data, curve_attack),
        ))

    if best is not None:
        thr = threshold_at_fpr(data.results[best.name].scores, data.is_member, BUDGET)
        takeaway = (f"{best.title} gives members higher scores: at a threshold that flags only 1 % of non-members "
                    f"it catches {_pct(best.tpr)} of members.") if thr is not None else (
                    f"{best.title} gives members higher scores (AUC {best.auc:.2f}).")
        slides.append(Slide(
            key="histogram",
            title="One score per image separates them",
            takeaway=takeaway,
            chart="histogram",
            body=f"Score histograms of the best attack, {attack_info(best.name).title}, each normalised to the same area.",
            build=lambda: histogram_figure(data, best.name),
        ))

        worst = summary[-1]
        slides.append(Slide(
            key="roc",
            title="Every attack, at every threshold",
            takeaway=(f"At 1 % false positives (dotted line), {best.title} finds {_pct(best.tpr)} of members, "
                      f"{worst.title} only {_pct(worst.tpr)}: the left of this chart is what matters."),
            chart="roc",
            body=("Log-log ROC (Carlini et al. 2022): what matters is the low-FPR corner, where an attacker is confident. "
                  f"The dashed diagonal is guessing. With {n_n:,} non-members the smallest measurable FPR is 1/{n_n:,}."),
            build=lambda: roc_figure(data),
        ))

        slides.append(Slide(
            key="tpr_bars",
            title="How many members can be found confidently?",
            takeaway=f"True-positive rate at 1 % false-positive rate: from {_pct(worst.tpr)} ({worst.title}) to {_pct(best.tpr)} ({best.title}).",
            chart="tpr_bars",
            body="A guessing attacker gets 1 % (the dashed line). AUC, shown under each bar, averages over all thresholds and hides this.",
            build=lambda: tpr_bar_figure(data),
        ))

    auc_t = timestep_aucs(data)
    if auc_t:
        name, t_peak, auc_peak = max(((n, t, a) for n, (ts, aucs) in auc_t.items() for t, a in zip(ts, aucs)),
                                     key=lambda x: x[2])
        slides.append(Slide(
            key="timestep_auc",
            title="Leakage depends on the noise level",
            takeaway=(f"{short_name(name)} leaks most at t = {t_peak} (AUC {auc_peak:.2f}): "
                      "the noise level at which an attack looks matters as much as the attack."),
            chart="timestep_auc",
            body="AUC of each attack's per-timestep statistic; 0.5 = guessing. SecMI's curve follows its DDIM inversion (t = 0 to t_sec - k).",
            build=lambda: timestep_auc_figure(data),
        ))

    slides.append(Slide(
        key="meaning",
        title="What this does and does not mean",
        takeaway="A tiny model trained for long on few images leaks a lot; how much a large model leaks must be measured, not assumed.",
        body=(
            "**It does mean**\n"
            "- This model memorised its training images measurably: an attacker with the model can pick out many of them "
            "while wrongly flagging only 1 % of unseen images.\n"
            "- Low false-positive rates are what matter: an average metric such as AUC hides whether *any* image can be "
            "identified confidently.\n\n"
            "**It does not mean**\n"
            "- That one flagged image is proof: at 1 % FPR, 1 in 100 non-members is flagged too.\n"
            "- That large pretrained models (e.g. Stable Diffusion) leak as much: they see each image far fewer times, and "
            "attacks on them are much weaker (fine-tuned models leak more).\n"
            "- That a number transfers: it depends on the attacker's access (here: the full model), the threshold's calibration "
            f"and the sample size ({n_n:,} non-members cannot measure 0.1 % FPR).\n"
            "- Members and non-members here come from the same source, split at random: a distribution shift between them "
            "would inflate every attack."
        ),
    ))
    return slides


#: The shipped study the defence slide shows: DP-SGD on the digits with 225 members (a clear no-DP leak).
DEFENCE_STUDY = STUDIES_DIR / "digits225_dp_epsilon" / "study.json"


def defence_slide(path: Path = DEFENCE_STUDY) -> Slide | None:
    """A slide with a shipped study's privacy-utility chart (None when the study is not there)."""
    if not Path(path).is_file():
        return None
    from mia_core.views.factors import findings, study_view
    from mia_core.lab.study import load_study

    view = study_view(load_study(path))
    lines = findings(view)
    takeaway = lines[0].replace("**", "") if lines else "Differentially private training lowers the leak."
    return Slide(
        key="defence",
        title="A defence: training with differential privacy",
        takeaway=takeaway,
        chart="defence",
        body=("DP-SGD clips each training image's gradient and adds noise, so no single image can move the "
              "model much; epsilon is the privacy budget (smaller = more private). Top: attack AUC for models "
              "trained without DP and with DP at decreasing epsilon; bottom: their denoising loss on held-out "
              "images (the price). Small models on 225 digits; shipped study, made by `mia study`."),
        build=lambda: _slide_factor_figure(view),
    )


def _slide_factor_figure(view: Any) -> go.Figure:
    """A study's chart for a slide: big fonts and lines at least 3 px wide (readable from the back)."""
    from mia_core.views.factors import factor_figure

    fig = _big_layout(factor_figure(view, "auc", title=""), height=FIG_HEIGHT,
                      legend=dict(x=1.01, y=1.0, xanchor="left"))
    for trace in fig.data:
        if getattr(trace, "line", None) is not None and trace.line.width is not None:
            trace.line.width = max(3.0, float(trace.line.width))
    return fig


def deck_from_experiment(exp: "Experiment", results: Mapping[str, AttackResult]) -> list[Slide]:
    """The deck of an experiment's stored results (any target, any split)."""
    card = exp.target.card() if hasattr(exp.target, "card") else {}
    params = card.get("parameters") or card.get("n_parameters") or getattr(exp.target, "n_parameters", None)
    size = f"{exp.target.resolution}x{exp.target.resolution}"
    what = f"a {params / 1e6:.1f} M-parameter diffusion model" if isinstance(params, (int, float)) else "a diffusion model"
    description = f"{what} trained on {size} images of {exp.split.source or 'the data'}"
    data = DeckData(tuple(exp.ids), exp.images.images, np.asarray(exp.is_member, dtype=bool),
                    {n: r for n, r in results.items() if tuple(r.ids) == tuple(exp.ids)}, description)
    slides = build_deck(data)
    defence = defence_slide()
    if defence is not None:  # before the closing "what this means" slide
        slides.insert(len(slides) - 1, defence)
    return slides


def load_default_deck(store: "ResultStore | None" = None) -> tuple[list[Slide], list[str]]:
    """The deck of the default experiment from the store (the demo store is always read).

    Returns the slides and the names of default attacks whose results are missing.
    """
    from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

    store = store or ResultStore(extra_readonly=[DEMO_STORE_DIR])
    exp = load_experiment("default", "default")
    results = stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=store)
    return deck_from_experiment(exp, results), missing_attacks(results)


# ------------------------------------------------------------------------------------ statistics


def timestep_aucs(data: DeckData) -> dict[str, tuple[list[int], list[float]]]:
    """attack -> (timesteps, AUC at each) of its per-timestep trace (lower trace = member)."""
    out = {}
    for name, res in data.results.items():
        if res.trace.shape[1] == 0:
            continue
        scores = res.trace_scores()
        ts = [int(t) for t in res.trace_timesteps]
        aucs = [auc(scores[:, k], data.is_member) if np.all(np.isfinite(scores[:, k])) else float("nan")
                for k in range(len(ts))]
        out[name] = (ts, aucs)
    return out


def _error_curve_attack(data: DeckData, summary: Sequence[AttackSummary]) -> str | None:
    """The loss attack's trace if there is one (the most intuitive), else the best attack with a trace."""
    with_trace = [s.name for s in summary if data.results[s.name].trace.shape[1] > 1]
    if "loss" in with_trace:
        return "loss"
    return with_trace[0] if with_trace else None


def _largest_gap(res: AttackResult, is_member: np.ndarray) -> tuple[int, float]:
    """The timestep where the member median differs most from the non-member median (relative, in %)."""
    med_m = np.median(res.trace[is_member], axis=0)
    med_n = np.median(res.trace[~is_member], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(med_n != 0, 100.0 * (med_m - med_n) / np.abs(med_n), 0.0)
    k = int(np.nanargmax(np.abs(rel)))
    return int(res.trace_timesteps[k]), float(rel[k])


def nearest_pairs(images: np.ndarray, is_member: np.ndarray, n_pairs: int = 4) -> list[tuple[int, int]]:
    """``n_pairs`` (member index, closest non-member index) pairs, members evenly spread, by pixel distance."""
    members = np.flatnonzero(is_member)
    nonmembers = np.flatnonzero(~np.asarray(is_member, dtype=bool))
    if members.size == 0 or nonmembers.size == 0:
        return []
    n_pairs = min(n_pairs, members.size)
    picks = members[np.linspace(0, members.size - 1, n_pairs + 2).round().astype(int)[1:-1]] if n_pairs else members[:0]
    flat = images.reshape(images.shape[0], -1).astype(np.float32)
    nn = flat[nonmembers]
    nn_sq = (nn**2).sum(1)
    pairs = []
    used: set[int] = set()
    for m in picks:
        d = nn_sq - 2 * nn @ flat[m] + (flat[m] ** 2).sum()
        for j in np.argsort(d):
            if int(nonmembers[j]) not in used:
                used.add(int(nonmembers[j]))
                pairs.append((int(m), int(nonmembers[j])))
                break
    return pairs


# ------------------------------------------------------------------------------------ figures


def _big_layout(fig: go.Figure, *, height: int = FIG_HEIGHT, legend: dict[str, Any] | None = None) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        font=dict(size=FONT_SIZE, family=FONT_FAMILY, color="#222"),
        margin=dict(l=90, r=30, t=40, b=80),
        legend=dict(font=dict(size=FONT_SIZE), bgcolor="rgba(255,255,255,0.85)", **(legend or {})),
        hoverlabel=dict(font_size=FONT_SIZE),
    )
    fig.update_xaxes(title_font=dict(size=TITLE_FONT_SIZE), tickfont=dict(size=FONT_SIZE), linewidth=2,
                     linecolor="#444", gridcolor="#e5e5e5")
    fig.update_yaxes(title_font=dict(size=TITLE_FONT_SIZE), tickfont=dict(size=FONT_SIZE), linewidth=2,
                     linecolor="#444", gridcolor="#e5e5e5")
    return fig


def image_pairs_figure(data: DeckData, verdict_attack: str | None = None, n_pairs: int = 4) -> go.Figure:
    """Members (top row) above their closest-looking non-members (bottom row), pixels kept square and sharp."""
    pairs = nearest_pairs(data.images, data.is_member, n_pairs)
    cols = max(1, len(pairs))
    flagged: dict[int, bool] = {}
    if verdict_attack is not None and verdict_attack in data.results:
        scores = data.results[verdict_attack].scores
        thr = threshold_at_fpr(scores, data.is_member, BUDGET)
        if thr is not None:
            flagged = {i: bool(scores[i] >= thr) for pair in pairs for i in pair}

    def label(i: int, member: bool) -> str:
        who = MEMBER_LABEL if member else NONMEMBER_LABEL
        colour = MEMBER_COLOR if member else NONMEMBER_COLOR
        text = f"<b style='color:{colour}'>{who}</b>"
        if i in flagged:
            text += " · flagged" if flagged[i] else " · not flagged"
        return text

    titles = [label(m, True) for m, _ in pairs] + [label(n, False) for _, n in pairs]
    fig = make_subplots(rows=2, cols=cols, subplot_titles=titles or None, vertical_spacing=0.1, horizontal_spacing=0.04)
    gray = data.images.shape[-1] == 1
    for c, (m, n) in enumerate(pairs, start=1):
        for r, idx in ((1, m), (2, n)):
            img = data.images[idx]
            if gray:
                trace = go.Heatmap(z=img[..., 0], colorscale=[[0, "white"], [1, "black"]], zmin=0, zmax=255,
                                   showscale=False, hovertemplate=f"{data.ids[idx]}<br>pixel %{{z}}<extra></extra>")
            else:
                trace = go.Image(z=img[..., :3], hovertemplate=f"{data.ids[idx]}<extra></extra>")
            fig.add_trace(trace, row=r, col=c)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, 2 * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_annotations(font_size=TITLE_FONT_SIZE)
    _big_layout(fig, height=560)
    fig.update_layout(margin=dict(l=20, r=20, t=50, b=20))
    return fig


def error_curve_figure(data: DeckData, attack: str) -> go.Figure:
    """Median and interquartile band of an attack's per-timestep statistic, members vs non-members (log y)."""
    res = data.results[attack]
    ts = [int(t) for t in res.trace_timesteps]
    fig = go.Figure()
    bands = error_bands(res.trace, data.is_member)
    for prefix, colour, name in (("member", MEMBER_COLOR, MEMBER_LABEL), ("nonmember", NONMEMBER_COLOR, NONMEMBER_LABEL)):
        q25, q50, q75 = bands[f"{prefix}_q25"], bands[f"{prefix}_median"], bands[f"{prefix}_q75"]
        fill = rgba(colour, 0.22)
        fig.add_trace(go.Scatter(x=ts + ts[::-1], y=list(q75) + list(q25[::-1]), fill="toself", fillcolor=fill,
                                 line=dict(width=0), hoverinfo="skip", showlegend=False, name=f"{name} IQR"))
        fig.add_trace(go.Scatter(x=ts, y=q50, mode="lines+markers", name=f"{name}s (median)",
                                 line=dict(color=colour, width=LINE_WIDTH), marker=dict(size=10),
                                 hovertemplate="t = %{x}<br>median %{y:.4g}<extra>" + name + "</extra>"))
    positive = bool(np.all(res.trace[np.isfinite(res.trace)] > 0))
    fig.update_xaxes(title_text="timestep t (0 = clean image, larger = noisier)")
    fig.update_yaxes(title_text=f"{short_name(attack)} error (lower = member)", type="log" if positive else "linear")
    return _big_layout(fig, legend=dict(x=0.02, y=0.98, xanchor="left", yanchor="top"))


def _log_magnitude(scores: np.ndarray) -> bool:
    """Show -score on a log scale? Yes for negated errors / norms (all < 0) with a long tail."""
    if scores.size == 0 or not np.all(scores < 0):
        return False
    lo, hi = np.percentile(-scores, [1, 99])
    return bool(lo > 0 and hi / lo > 20)


def histogram_figure(data: DeckData, attack: str, bins: int = 50) -> go.Figure:
    """Member and non-member score histograms (shared bins, density) with the 1 % FPR threshold.

    Scores that are negated errors with a long tail (SimA's norms span decades) are shown as
    log10(-score) on a reversed axis, so more member-like stays on the right.
    """
    scores = np.asarray(data.results[attack].scores, dtype=float)
    log_mag = _log_magnitude(scores)
    x_all = np.log10(-scores) if log_mag else scores
    lo, hi = np.percentile(x_all, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x_all.min()) - 0.5, float(x_all.max()) + 0.5
    size = (hi - lo) / bins
    fig = go.Figure()
    for mask, colour, name in ((~data.is_member, NONMEMBER_COLOR, NONMEMBER_LABEL),
                               (data.is_member, MEMBER_COLOR, MEMBER_LABEL)):
        fig.add_trace(go.Histogram(x=np.clip(x_all[mask], lo, hi), name=f"{name}s ({int(mask.sum()):,})",
                                   xbins=dict(start=lo, end=hi + size, size=size), histnorm="probability density",
                                   marker=dict(color=colour, line=dict(width=0)), opacity=0.6,
                                   hovertemplate="%{y:.3g}<extra>" + name + "s</extra>"))
    fig.update_layout(barmode="overlay")
    thr = threshold_at_fpr(scores, data.is_member, BUDGET)
    if thr is not None and math.isfinite(thr) and (thr < 0 or not log_mag):
        tpr = float(np.mean(scores[data.is_member] >= thr))
        fpr = float(np.mean(scores[~data.is_member] >= thr))
        x_thr = min(max(math.log10(-thr) if log_mag else thr, lo), hi)
        fig.add_vline(x=x_thr, line=dict(color="#222", width=4, dash="dash"))
        fig.add_annotation(x=x_thr, y=1, yref="paper", xanchor="left" if log_mag else "right", yanchor="top",
                           showarrow=False, xshift=8 if log_mag else -8, align="left" if log_mag else "right",
                           text=f"threshold at 1 % FPR<br>flags {100 * tpr:.0f} % of members,<br>{100 * fpr:.1f} % of non-members",
                           font=dict(size=FONT_SIZE), bgcolor="rgba(255,255,255,0.8)")
    short = short_name(attack)
    if log_mag:
        decades = np.arange(math.floor(lo), math.ceil(hi) + 1)
        fig.update_xaxes(title_text=f"{short}: −score, log scale (right = smaller = more member-like)",
                         autorange="reversed", tickvals=decades, ticktext=[_power_of_ten(int(d)) for d in decades])
        legend = dict(x=0.01, y=0.98, xanchor="left", yanchor="top")
    else:
        fig.update_xaxes(title_text=f"{short} score (higher = more member-like)")
        legend = dict(x=0.01, y=0.98, xanchor="left", yanchor="top")
    fig.update_yaxes(title_text="density")
    return _big_layout(fig, legend=legend)


def _power_of_ten(k: int) -> str:
    return {0: "1", 1: "10", 2: "100", -1: "0.1", -2: "0.01"}.get(k, f"10<sup>{k}</sup>")


def _log_ticks(low: float) -> tuple[list[float], list[str]]:
    """Decade ticks from ``low`` to 1 as percentages: 0.1 %, 1 %, 10 %, 100 %."""
    vals = [10.0**k for k in range(math.floor(math.log10(low)), 1) if 10.0**k >= low * 0.999]
    return vals, [f"{100 * v:g} %" for v in vals]


def _roc_points(scores: np.ndarray, is_member: np.ndarray, n_points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """The exact ROC resampled on a log-spaced FPR grid: TPR at the largest FPR <= each grid value."""
    roc = roc_curve(scores, is_member)
    n_n = int((~is_member).sum())
    grid = np.unique(np.concatenate([np.logspace(math.log10(1.0 / n_n), 0, n_points), roc.fpr[roc.fpr > 0]]))
    if grid.size > n_points * 2:
        grid = np.unique(np.concatenate([np.logspace(math.log10(1.0 / n_n), 0, n_points), [BUDGET]]))
    idx = np.searchsorted(roc.fpr, grid, side="right") - 1
    return grid, roc.tpr[idx]


def roc_figure(data: DeckData) -> go.Figure:
    """Log-log ROC of every attack, the TPR = FPR diagonal and the 1 % FPR guide."""
    n_m, n_n = data.n_members, data.n_nonmembers
    floor = 1.0 / max(n_m, 1)
    x_min = 1.0 / max(n_n, 1)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[x_min, 1], y=[x_min, 1], mode="lines", name="guessing (TPR = FPR)",
                             line=dict(color="#888", width=3, dash="dash"), hoverinfo="skip"))
    for s in summarise(data):
        fpr, tpr = _roc_points(data.results[s.name].scores, data.is_member)
        colour = attack_color(s.name)
        fig.add_trace(go.Scatter(
            x=fpr, y=np.maximum(tpr, floor), mode="lines", line=dict(color=colour, width=LINE_WIDTH), line_shape="hv",
            name=f"{s.title} — AUC {s.auc:.2f} · TPR@1% {_pct(s.tpr)}",
            hovertemplate="FPR %{x:.4f}<br>TPR %{y:.3f}<extra>" + s.title + "</extra>",
        ))
        if s.tpr is not None:
            fig.add_trace(go.Scatter(x=[BUDGET], y=[max(s.tpr, floor)], mode="markers", showlegend=False,
                                     marker=dict(color=colour, size=16, line=dict(color="white", width=2)),
                                     hovertemplate=f"{s.title}: TPR {s.tpr:.3f} at 1 % FPR<extra></extra>"))
    if BUDGET >= x_min:
        fig.add_vline(x=BUDGET, line=dict(color="#444", width=3, dash="dot"))
        fig.add_annotation(x=math.log10(BUDGET), y=1, yref="paper", text="1 % FPR", showarrow=False,
                           xanchor="left", yanchor="bottom", font=dict(size=FONT_SIZE), xshift=6)
    xt, xl = _log_ticks(x_min)
    yt, yl = _log_ticks(floor)
    fig.update_xaxes(type="log", range=[math.log10(x_min), 0], title_text="false-positive rate (non-members flagged)",
                     tickvals=xt, ticktext=xl)
    fig.update_yaxes(type="log", range=[math.log10(floor), 0.02], title_text="true-positive rate (members found)",
                     tickvals=yt, ticktext=yl)
    return _big_layout(fig, legend=dict(x=0.99, y=0.02, xanchor="right", yanchor="bottom"))


def tpr_bar_figure(data: DeckData) -> go.Figure:
    """TPR at 1 % FPR per attack (best first), with the guessing level and each AUC under its bar."""
    summary = summarise(data)
    names = [s.title for s in summary]
    values = [s.tpr if s.tpr is not None else 0.0 for s in summary]
    fig = go.Figure(go.Bar(
        x=names, y=values, marker=dict(color=[attack_color(s.name) for s in summary], line=dict(width=0)),
        text=[_pct(s.tpr) for s in summary], textposition="outside", textfont=dict(size=TITLE_FONT_SIZE),
        customdata=[s.auc for s in summary], hovertemplate="%{x}: TPR %{y:.3f} at 1 % FPR, AUC %{customdata:.3f}<extra></extra>",
    ))
    fig.add_hline(y=BUDGET, line=dict(color="#444", width=3, dash="dash"))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name="guessing: 1 %",  # legend entry of the line
                             line=dict(color="#444", width=3, dash="dash"), hoverinfo="skip"))
    fig.update_layout(showlegend=True, legend=dict(x=0.99, y=0.98, xanchor="right", yanchor="top"))
    fig.data[0].showlegend = False
    fig.update_xaxes(tickvals=names, ticktext=[f"{s.title}<br><span style='font-size:20px'>AUC {s.auc:.2f}</span>" for s in summary])
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%", title_text="TPR at 1 % FPR")
    return _big_layout(fig)


def timestep_auc_figure(data: DeckData) -> go.Figure:
    """AUC of each attack's per-timestep statistic against the timestep."""
    fig = go.Figure()
    for name, (ts, aucs) in timestep_aucs(data).items():
        fig.add_trace(go.Scatter(x=ts, y=aucs, mode="lines+markers", name=short_name(name),
                                 line=dict(color=attack_color(name), width=LINE_WIDTH), marker=dict(size=11),
                                 hovertemplate="t = %{x}<br>AUC %{y:.3f}<extra>" + short_name(name) + "</extra>"))
    fig.add_hline(y=0.5, line=dict(color="#888", width=3, dash="dash"))
    fig.add_annotation(x=0, xref="paper", y=0.5, text="guessing", showarrow=False, xanchor="left", yanchor="top",
                       font=dict(size=FONT_SIZE), xshift=6)
    fig.update_xaxes(title_text="timestep t (0 = clean image, larger = noisier)")
    fig.update_yaxes(title_text="AUC at this timestep", range=[0, 1.02])
    # bottom left stays empty: every attack starts above guessing at small t
    return _big_layout(fig, legend=dict(x=0.01, y=0.02, xanchor="left", yanchor="bottom", orientation="h"))


def deck_html(slides: Sequence[Slide]) -> str:
    """The whole deck as one self-contained HTML page (plotly.js embedded once; works offline)."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Membership inference — slides</title>",
             "<style>body{font-family:Helvetica,Arial,sans-serif;max-width:1300px;margin:auto;padding:24px}"
             "section{min-height:90vh;border-bottom:1px solid #ddd;padding:24px 0}h1{font-size:40px}"
             "p.takeaway{font-size:26px}li{font-size:22px}</style></head><body>"]
    first = True
    for i, slide in enumerate(slides, start=1):
        parts.append(f"<section><h1>{i}. {_escape(slide.title)}</h1><p class='takeaway'>{_escape(slide.takeaway)}</p>")
        fig = slide.figure()
        if fig is not None:
            parts.append(fig.to_html(full_html=False, include_plotlyjs=True if first else False))
            first = False
        if slide.body:
            parts.append(_markdown_to_html(slide.body))
        parts.append("</section>")
    parts.append("</body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ helpers




def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _markdown_to_html(md: str) -> str:
    """Enough Markdown for the slide bodies: paragraphs, '- ' bullets, **bold**, *italic*."""
    import re

    def inline(s: str) -> str:
        s = _escape(s)
        s = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", s)
        return re.sub(r"\*(.+?)\*", r"<i>\1</i>", s)

    out, in_list = [], False
    for line in md.splitlines():
        if line.startswith("- "):
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{inline(line[2:])}</li>")
            continue
        if in_list:
            out.append("</ul>")
            in_list = False
        if line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)
