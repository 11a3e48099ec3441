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

Slides whose results are missing are left out (:mod:`mia_core.lab.presenter_data` loads the
deck's data, says which results are missing and how to make them). Figures are built lazily
(``Slide.figure()``). The charts the other pages also show (the per-timestep error curve, the
ROC) are *those* figures (:mod:`mia_core.views.results`) restyled for a projector by
:func:`mia_core.views.style.talk_style` (fonts of 20 px and up, thick lines); only the charts that
exist nowhere else are drawn here. HTML export: :mod:`mia_core.views.html`. No streamlit here:
the page only draws what this module returns.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mia_core.attacks import AttackResult
from mia_core.metrics import auc, threshold_at_fpr, tpr_at_fpr
from mia_core.views.attack_info import attack_info, short_name
from mia_core.views.images import upscale, upscale_caption
from mia_core.views.results import attack_error_curve, display_scores, timestep_metrics
from mia_core.views.results import roc_figure as results_roc_figure
from mia_core.views.style import (
    MEMBER_COLOR,
    MEMBER_LABEL,
    NONMEMBER_COLOR,
    NONMEMBER_LABEL,
    TALK_FONT_SIZE,
    TALK_HEIGHT,
    TALK_LINE_WIDTH,
    TALK_TITLE_FONT_SIZE,
    attack_color,
    talk_style,
)

if TYPE_CHECKING:  # only for annotations: the deck's data is loaded by the lab
    from mia_core.lab.presenter_data import DeckData

#: The FPR budget the deck talks about (1 %).
BUDGET = 0.01
#: Side of an image on the image slide when smooth upscaling is on (pixels, before the slide's own scaling).
SMOOTH_SIZE = 96

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
class AttackSummary:
    name: str
    title: str
    auc: float
    tpr: float | None  # TPR at BUDGET; None = n/a


def summarise(data: DeckData) -> list[AttackSummary]:
    """AUC and TPR at 1 % FPR of every attack, best first (by TPR@1 %, then AUC)."""
    out = []
    for name, res in data.results.items():
        out.append(
            AttackSummary(
                name, short_name(name), auc(res.scores, data.is_member), tpr_at_fpr(res.scores, data.is_member, BUDGET)
            )
        )
    return sorted(out, key=lambda s: (-(s.tpr if s.tpr is not None else -1.0), -s.auc, s.name))


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f} %"


def build_deck(data: DeckData, study: Any = None, *, smooth_images: bool = True) -> list[Slide]:
    """The slides for these results; figure slides without the results they need are left out.

    ``study`` (a :class:`mia_core.lab.study.Study`, e.g. the shipped DP-SGD study) adds the defence
    slide before the closing one. ``smooth_images`` draws the image slide with smooth (bicubic)
    upscaling, readable at talk distance (:func:`mia_core.views.images.upscale`); False keeps square pixels.
    """
    summary = summarise(data)
    best = summary[0] if summary else None
    n_m, n_n = data.n_members, data.n_nonmembers
    slides: list[Slide] = []

    slides.append(
        Slide(
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
        )
    )

    verdict_note = f" Flagged = above {short_name(best.name)}'s threshold at 1 % FPR." if best else ""
    slides.append(
        Slide(
            key="pairs",
            title="Members and non-members look alike",
            takeaway="Each member is shown above its closest-looking non-member: the eye cannot tell which one the model was trained on.",
            chart="image_pairs",
            body="Top row: training images (members). Bottom row: the most similar held-out image (non-member)."
            + verdict_note,
            build=lambda: image_pairs_figure(data, best.name if best else None, smooth=smooth_images),
        )
    )

    curve_attack = _error_curve_attack(data, summary)
    if curve_attack is not None:
        res = data.results[curve_attack]
        t_best, gap = _largest_gap(res, data.is_member)
        slides.append(
            Slide(
                key="error_curve",
                title="The model fits its training images more closely",
                takeaway=(
                    f"At t = {t_best} the typical (median) {short_name(curve_attack)} error of members is "
                    f"{abs(gap):.0f} % {'lower' if gap < 0 else 'higher'} than that of non-members."
                ),
                chart="error_curve",
                body=(
                    "Lines: median over images; bands: middle 50 % (25th to 75th percentile). "
                    "t is the noise level: 0 = the clean image, larger = noisier. Lower = more member-like."
                ),
                build=lambda: error_curve_figure(data, curve_attack),
            )
        )

    if best is not None:
        thr = threshold_at_fpr(data.results[best.name].scores, data.is_member, BUDGET)
        takeaway = (
            (
                f"{best.title} gives members higher scores: at a threshold that flags only 1 % of non-members "
                f"it catches {_pct(best.tpr)} of members."
            )
            if thr is not None
            else (f"{best.title} gives members higher scores (AUC {best.auc:.2f}).")
        )
        slides.append(
            Slide(
                key="histogram",
                title="One score per image separates them",
                takeaway=takeaway,
                chart="histogram",
                body=f"Score histograms of the best attack, {attack_info(best.name).title}, each normalised to the same area.",
                build=lambda: histogram_figure(data, best.name),
            )
        )

        worst = summary[-1]
        slides.append(
            Slide(
                key="roc",
                title="Every attack, at every threshold",
                takeaway=(
                    f"At 1 % false positives (dotted line), {best.title} finds {_pct(best.tpr)} of members, "
                    f"{worst.title} only {_pct(worst.tpr)}: the left of this chart is what matters."
                ),
                chart="roc",
                body=(
                    "Log-log ROC (Carlini et al. 2022): what matters is the low-FPR corner, where an attacker is confident. "
                    f"The dashed diagonal is guessing. With {n_n:,} non-members the smallest measurable FPR is 1/{n_n:,}."
                ),
                build=lambda: roc_figure(data),
            )
        )

        slides.append(
            Slide(
                key="tpr_bars",
                title="How many members can be found confidently?",
                takeaway=f"True-positive rate at 1 % false-positive rate: from {_pct(worst.tpr)} ({worst.title}) to {_pct(best.tpr)} ({best.title}).",
                chart="tpr_bars",
                body="A guessing attacker gets 1 % (the dashed line). AUC, shown under each bar, averages over all thresholds and hides this.",
                build=lambda: tpr_bar_figure(data),
            )
        )

    auc_t = timestep_aucs(data)
    if auc_t:
        name, t_peak, auc_peak = max(
            ((n, t, a) for n, (ts, aucs) in auc_t.items() for t, a in zip(ts, aucs)), key=lambda x: x[2]
        )
        slides.append(
            Slide(
                key="timestep_auc",
                title="Leakage depends on the noise level",
                takeaway=(
                    f"{short_name(name)} leaks most at t = {t_peak} (AUC {auc_peak:.2f}): "
                    "the noise level at which an attack looks matters as much as the attack."
                ),
                chart="timestep_auc",
                body="AUC of each attack's per-timestep statistic; 0.5 = guessing. SecMI's curve follows its DDIM inversion (t = 0 to t_sec - k).",
                build=lambda: timestep_auc_figure(data),
            )
        )

    slides.append(
        Slide(
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
        )
    )
    if study is not None:  # before the closing "what this means" slide
        slides.insert(len(slides) - 1, defence_slide(study))
    return slides


def defence_slide(study: Any) -> Slide:
    """A slide with a study's privacy-utility chart (the shipped DP-SGD study; loaded by the lab)."""
    from mia_core.views.factors import findings, study_view

    view = study_view(study)
    lines = findings(view)
    takeaway = lines[0].replace("**", "") if lines else "Differentially private training lowers the leak."
    return Slide(
        key="defence",
        title="A defence: training with differential privacy",
        takeaway=takeaway,
        chart="defence",
        body=(
            "DP-SGD clips each training image's gradient and adds noise, so no single image can move the "
            "model much; epsilon is the privacy budget (smaller = more private). Top: attack AUC for models "
            "trained without DP and with DP at decreasing epsilon; bottom: their denoising loss on held-out "
            "images (the price). Small models on 225 digits; shipped study, made by `mia study`."
        ),
        build=lambda: _slide_factor_figure(view),
    )


def _slide_factor_figure(view: Any) -> go.Figure:
    """The Factors page's study chart, restyled for a slide."""
    from mia_core.views.factors import factor_figure

    return talk_style(factor_figure(view, "auc", title=""), legend=dict(x=1.01, y=1.0, xanchor="left"))


def target_note(source: str, not_applicable: dict[str, str], deck_attacks: Sequence[str]) -> str:
    """One line for a session whose target is a score-based (VE-SDE) model: the deck shows the embedded
    default's precomputed results, and which of its attacks' slides do not apply to that target, and why
    (``not_applicable``: name -> reason, from :func:`mia_core.lab.presenter_data.not_applicable_on`)."""
    applies = [short_name(n) for n in deck_attacks if n not in not_applicable]
    reasons = sorted(set(not_applicable.values()))
    return (
        f"This deck shows the embedded default DDPM's precomputed results, not your target {source} (a score-based "
        f"VE-SDE model): on it only {', '.join(applies) or 'no attack of this deck'} applies; the slides of "
        f"{', '.join(short_name(n) for n in not_applicable)} do not ({'; '.join(reasons)})."
    )


# ------------------------------------------------------------------------------------ statistics


def timestep_aucs(data: DeckData) -> dict[str, tuple[list[int], list[float]]]:
    """attack -> (timesteps, AUC at each) of its per-timestep trace: the Compare page's
    :func:`mia_core.views.results.timestep_metrics` (NaN where the trace is not finite)."""
    out = {}
    for name, res in data.results.items():
        if res.trace.ndim != 2 or res.trace.shape[1] == 0:
            continue
        frame = timestep_metrics(res, data.is_member, BUDGET)
        out[name] = ([int(t) for t in frame["timestep"]], [float(a) for a in frame["auc"]])
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


def image_pairs_figure(
    data: DeckData, verdict_attack: str | None = None, n_pairs: int = 4, *, smooth: bool = False
) -> go.Figure:
    """Members (top row) above their closest-looking non-members (bottom row).

    ``smooth=False``: pixels kept square and sharp; ``smooth=True``: each image enlarged to about
    :data:`SMOOTH_SIZE` px with bicubic resampling (:func:`mia_core.views.images.upscale`), labelled in the title.
    """
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
            img = upscale(data.images[idx], SMOOTH_SIZE, smooth=True) if smooth else data.images[idx]
            if img.ndim == 2:
                img = img[..., None]
            if gray:
                trace = go.Heatmap(
                    z=img[..., 0],
                    colorscale=[[0, "white"], [1, "black"]],
                    zmin=0,
                    zmax=255,
                    showscale=False,
                    hovertemplate=f"{data.ids[idx]}<br>pixel %{{z}}<extra></extra>",
                )
            else:
                trace = go.Image(z=img[..., :3], hovertemplate=f"{data.ids[idx]}<extra></extra>")
            fig.add_trace(trace, row=r, col=c)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", constrain="domain")
    for i in range(1, 2 * cols + 1):
        suffix = "" if i == 1 else str(i)
        fig.layout[f"yaxis{suffix}"].scaleanchor = f"x{suffix}"
    fig.update_annotations(font_size=TALK_TITLE_FONT_SIZE)
    talk_style(fig, height=560)
    fig.update_layout(margin=dict(l=20, r=20, t=50, b=45 if smooth else 20), meta={"smooth": bool(smooth)})
    if smooth:
        fig.add_annotation(
            text=f"Images {upscale_caption(True)}",
            xref="paper",
            yref="paper",
            x=1,
            y=-0.02,
            xanchor="right",
            yanchor="top",
            showarrow=False,
            font=dict(size=12, color="#666666"),
        )
    return fig


def error_curve_figure(data: DeckData, attack: str) -> go.Figure:
    """The Sample explorer's per-timestep error curve of an attack (no sample on top), restyled for a slide."""
    fig = attack_error_curve(data.results[attack], data.is_member)
    # the legend beside the plot, not on it: the bands fill the top left, where it used to cover the curves
    return talk_style(fig, legend=dict(x=1.01, y=1.0, xanchor="left", yanchor="top"))


def histogram_figure(data: DeckData, attack: str, bins: int = 50) -> go.Figure:
    """Member and non-member score histograms (shared bins, density) with the 1 % FPR threshold.

    The score axis follows the Compare page's rule (:func:`mia_core.views.results.display_scores`):
    negated errors spread over decades (SimA's norms) are drawn as ``-log10(-score)``, ticks labelled
    with the value of ``-score``, so more member-like stays on the right.
    """
    scores = np.asarray(data.results[attack].scores, dtype=float)
    x_all, log_mag = display_scores(scores)
    lo, hi = np.percentile(x_all, [0.5, 99.5])
    if not hi > lo:
        lo, hi = float(x_all.min()) - 0.5, float(x_all.max()) + 0.5
    size = (hi - lo) / bins
    fig = go.Figure()
    for mask, colour, name in (
        (~data.is_member, NONMEMBER_COLOR, NONMEMBER_LABEL),
        (data.is_member, MEMBER_COLOR, MEMBER_LABEL),
    ):
        fig.add_trace(
            go.Histogram(
                x=np.clip(x_all[mask], lo, hi),
                name=f"{name}s ({int(mask.sum()):,})",
                xbins=dict(start=lo, end=hi + size, size=size),
                histnorm="probability density",
                marker=dict(color=colour, line=dict(width=0)),
                opacity=0.6,
                hovertemplate="%{y:.3g}<extra>" + name + "s</extra>",
            )
        )
    fig.update_layout(barmode="overlay")
    thr = threshold_at_fpr(scores, data.is_member, BUDGET)
    if thr is not None and math.isfinite(thr) and (thr < 0 or not log_mag):
        tpr = float(np.mean(scores[data.is_member] >= thr))
        fpr = float(np.mean(scores[~data.is_member] >= thr))
        x_thr = min(max(float(display_scores([thr], log_mag)[0][0]), lo), hi)
        fig.add_vline(x=x_thr, line=dict(color="#222", width=4, dash="dash"))
        fig.add_annotation(
            x=x_thr,
            y=1,
            yref="paper",
            xanchor="left" if log_mag else "right",
            yanchor="top",
            showarrow=False,
            xshift=8 if log_mag else -8,
            align="left" if log_mag else "right",
            text=f"threshold at 1 % FPR<br>flags {100 * tpr:.0f} % of members,<br>{100 * fpr:.1f} % of non-members",
            font=dict(size=TALK_FONT_SIZE),
            bgcolor="rgba(255,255,255,0.8)",
        )
    short = short_name(attack)
    if log_mag:
        decades = np.arange(math.floor(lo), math.ceil(hi) + 1)
        fig.update_xaxes(
            title_text=f"{short}: −score, log scale (right = smaller = more member-like)",
            tickvals=decades,
            ticktext=[_power_of_ten(-int(d)) for d in decades],
        )
    else:
        fig.update_xaxes(title_text=f"{short} score (higher = more member-like)")
    fig.update_yaxes(title_text="density")
    return talk_style(fig, legend=dict(x=0.01, y=0.98, xanchor="left", yanchor="top"))


def _power_of_ten(k: int) -> str:
    return {0: "1", 1: "10", 2: "100", -1: "0.1", -2: "0.01"}.get(k, f"10<sup>{k}</sup>")


def roc_figure(data: DeckData) -> go.Figure:
    """The Compare page's log-log ROC of every attack (best first, at the 1 % budget), restyled for a slide."""
    fig = results_roc_figure(
        {s.name: (data.results[s.name].scores, data.is_member) for s in summarise(data)}, log=True, budget=BUDGET
    )
    return talk_style(fig, height=TALK_HEIGHT + 40, legend=dict(x=0.99, y=0.02, xanchor="right", yanchor="bottom"))


def tpr_bar_figure(data: DeckData) -> go.Figure:
    """TPR at 1 % FPR per attack (best first), with the guessing level and each AUC under its bar."""
    summary = summarise(data)
    names = [s.title for s in summary]
    values = [s.tpr if s.tpr is not None else 0.0 for s in summary]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            marker=dict(color=[attack_color(s.name) for s in summary], line=dict(width=0)),
            text=[_pct(s.tpr) for s in summary],
            textposition="outside",
            textfont=dict(size=TALK_TITLE_FONT_SIZE),
            customdata=[s.auc for s in summary],
            hovertemplate="%{x}: TPR %{y:.3f} at 1 % FPR, AUC %{customdata:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=BUDGET, line=dict(color="#444", width=3, dash="dash"))
    fig.add_trace(
        go.Scatter(
            x=[None],
            y=[None],
            mode="lines",
            name="guessing: 1 %",  # legend entry of the line
            line=dict(color="#444", width=3, dash="dash"),
            hoverinfo="skip",
        )
    )
    fig.update_layout(showlegend=True, legend=dict(x=0.99, y=0.98, xanchor="right", yanchor="top"))
    fig.data[0].showlegend = False
    fig.update_xaxes(
        tickvals=names, ticktext=[f"{s.title}<br><span style='font-size:20px'>AUC {s.auc:.2f}</span>" for s in summary]
    )
    fig.update_yaxes(range=[0, 1.12], tickformat=".0%", title_text="TPR at 1 % FPR")
    return talk_style(fig)


def timestep_auc_figure(data: DeckData) -> go.Figure:
    """AUC of each attack's per-timestep statistic against the timestep."""
    fig = go.Figure()
    for name, (ts, aucs) in timestep_aucs(data).items():
        fig.add_trace(
            go.Scatter(
                x=ts,
                y=aucs,
                mode="lines+markers",
                name=short_name(name),
                line=dict(color=attack_color(name), width=TALK_LINE_WIDTH),
                marker=dict(size=11),
                hovertemplate="t = %{x}<br>AUC %{y:.3f}<extra>" + short_name(name) + "</extra>",
            )
        )
    fig.add_hline(y=0.5, line=dict(color="#888", width=3, dash="dash"))
    fig.add_annotation(
        x=0,
        xref="paper",
        y=0.5,
        text="guessing",
        showarrow=False,
        xanchor="left",
        yanchor="top",
        font=dict(size=TALK_FONT_SIZE),
        xshift=6,
    )
    fig.update_xaxes(title_text="timestep t (0 = clean image, larger = noisier)")
    fig.update_yaxes(title_text="AUC at this timestep", range=[0, 1.02])
    # bottom left stays empty: every attack starts above guessing at small t
    return talk_style(fig, legend=dict(x=0.01, y=0.02, xanchor="left", yanchor="bottom", orientation="h"))
