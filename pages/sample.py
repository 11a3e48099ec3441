"""Sample explorer: one image, its scores, verdicts and error curve, SecMI's reconstructions.

The image is chosen by the URL (``?id=digits-0042&attack=secmi``), by the session's selection
(``sel.sample``, set by clicks on the Compare page) or by the selectbox; the URL follows the
selectbox so a view can be shared. Thin page: figures and tables come from ``mia_core.views.results``.
"""

from __future__ import annotations

import json

import numpy as np
import streamlit as st

from mia_core.calibration import calibration_partition
from mia_core.lab import teaching
from mia_core.lab.evalsets import learned_sample_lines
from mia_core.lab.run_specs import base_attack
from mia_core.lab.verdict import calibrations_from_results, judge_scores
from mia_core.views import results as F
from mia_core.views.attack_info import short_name
from mia_core.views.images import upscale_nearest
from mia_core.views.style import MEMBER_LABEL, NONMEMBER_LABEL
from mia_core.views.verdict import (
    CORRECT_BADGE_COLORS,
    VERDICT_BADGE_COLORS,
    correct_badge,
    sample_verdict_table,
    threshold_source_line,
)
from pages._common import budget_control, results, stored_runs, try_experiment, url_runs

PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "svg", "scale": 1}}
_BADGE_CSS = {"orange": "#E69F00", "blue": "#0072B2", "gray": "#9E9E9E"}  # the verdict badges' cell colours
IMAGE_PX = 160


@st.cache_data(show_spinner="Re-running SecMI on this image (11 UNet calls)…", max_entries=256)
def _secmi_images(_target, target_fingerprint: str, sample_id: str, x0: np.ndarray, params_json: str) -> dict:
    return F.secmi_panels(teaching.secmi_round_trip(_target, x0, json.loads(params_json)))


def _pick_random(group: str, ids: list[str], is_member: np.ndarray) -> None:
    pool = [i for i, m in zip(ids, is_member) if bool(m) == (group == "member")]
    if pool:
        st.session_state["sample.id"] = pool[np.random.default_rng().integers(len(pool))]


# --------------------------------------------------------------------------- page

st.title("🔬 Sample explorer")
st.caption(
    "One image under the microscope: is it truly in the target's training set, what does each attack say "
    "about it at the chosen false-positive budget, and why. Open an image from the Compare page (click a dot "
    "or a row) or pick one here; the address bar always holds a link to this exact view."
)

exp = try_experiment()
if exp is None:
    st.stop()

ids = list(exp.ids)
index_of = {sid: i for i, sid in enumerate(ids)}
is_member = np.asarray(exp.is_member, dtype=bool)
# The runs (attack + parameters) in the URL (?runs=loss|loss:timesteps=100, as Compare writes them), else the
# Attack lab's selection: a shared link shows the same runs in a fresh session.
run_ids, run_errors = url_runs()
for error in run_errors:
    st.warning(f"Ignored from the link: {error}")
if run_ids:
    stored, not_stored = stored_runs(exp, run_ids, int(st.session_state["cfg.seed"]))
    if not_stored:
        st.info(f"Not stored on this experiment: {', '.join(short_name(r) for r in not_stored)}.")
else:
    stored = results(exp)
res = {name: r for name, r in stored.items() if tuple(r.ids) == tuple(exp.ids)}
# Learned attacks score only their held-out part: shown in their own table below the verdicts.
learned = {name: r for name, r in stored.items() if name not in res and set(r.ids) <= set(exp.ids)}
s = st.session_state

# -- which image: URL, then the session's selection, then the first image -------------------------
url_id = st.query_params.get("id")
if url_id is not None and url_id not in index_of:
    st.error(
        f"There is no image with id **{url_id}** in this experiment ({len(ids)} images, e.g. {' and '.join(sorted(ids)[:2])}, …). "
        "The link may come from another target or data set. Pick an image below."
    )
if url_id in index_of and url_id != s.get("sample._url_id"):
    s["sample.id"] = url_id  # a new id in the URL (a link, or a click on the Compare page) wins
s["sample._url_id"] = url_id
if s.get("sample.id") not in index_of:
    fallback = s.get("sel.sample")
    s["sample.id"] = fallback if fallback in index_of else ids[0]

url_attack = st.query_params.get("attack")
if url_attack is not None and url_attack not in res:  # ?attack=loss with runs keyed "loss:timesteps=100"
    url_attack = next((r for r in res if base_attack(r) == url_attack), url_attack)
if res:
    if url_attack in res and url_attack != s.get("sample._url_attack"):
        s["sample.attack"] = url_attack
    s["sample._url_attack"] = url_attack
    if s.get("sample.attack") not in res:
        s["sample.attack"] = "secmi" if "secmi" in res else next(iter(res))

controls = st.columns([2.6, 1.5, 1.9, 2.8], vertical_alignment="bottom")
with controls[0]:
    sample_id = st.selectbox(
        "Image",
        sorted(ids),
        key="sample.id",
        format_func=lambda i: f"{i} ({MEMBER_LABEL if is_member[index_of[i]] else NONMEMBER_LABEL})",
        help="Type to search. The address bar follows, so the view can be shared.",
    )
with controls[1]:
    st.button(
        "Random member",
        on_click=_pick_random,
        args=("member", ids, is_member),
        width="stretch",
        help="Pick a random member (an image the target was trained on)",
    )
with controls[2]:
    st.button(
        "Random non-member",
        on_click=_pick_random,
        args=("non-member", ids, is_member),
        width="stretch",
        help="Pick a random non-member (an image the target never saw)",
    )
with controls[3]:
    budget = budget_control()

i = index_of[sample_id]
truth = bool(is_member[i])
# Thresholds from the calibration half of the split, measured on the other half (the cut of Compare's
# transferred columns): never the oracle threshold of the scores being judged.
try:
    partition = calibration_partition(is_member)
except ValueError:  # fewer than 2 members or non-members: every known non-member sets it (the caveat says so)
    partition = None
calibrations = calibrations_from_results(res, ids, is_member, partition=partition) if res else {}
s["sel.sample"] = sample_id
st.query_params["id"] = sample_id
s["sample._url_id"] = sample_id

# -- the image and its verdicts ------------------------------------------------------------------
left, right = st.columns([1, 3])
with left:
    st.image(
        upscale_nearest(exp.images.images[i], IMAGE_PX),
        caption=f"{sample_id} (enlarged, pixels kept sharp)",
        width=IMAGE_PX,
        clamp=True,
    )
    if exp.images.captions is not None:  # a text-to-image data set: the prompt this image was trained with
        st.markdown(f"Caption: **“{exp.images.captions[i]}”**")
    if truth:
        st.success("Truly a **member**: the target was trained on this image.")
    else:
        st.info("Truly a **non-member**: the target never saw this image in training.")

with right:
    st.subheader(f"Verdicts at {F.budget_label(budget)} FPR")
    if not res:
        st.warning("No stored attack results for this target and data yet, so there are no scores to show.")
        st.page_link("pages/attack_lab.py", label="Run attacks in the Attack lab", icon="⚔️")
    else:
        attack = st.selectbox("Attack for the curves below", list(res), key="sample.attack", format_func=short_name)
        st.query_params["attack"] = attack
        s["sample._url_attack"] = attack
        report = judge_scores(calibrations, {n: [r.scores[i]] for n, r in res.items()}, [sample_id], budget)
        verdicts = sample_verdict_table(report, sample_id, truth)
        # scores quoted as the score axis below shows them (-log10(-score) where that axis is transformed)
        log_axes = {n: F.display_scores(res[n].scores)[1] for n in verdicts.index}
        shown = verdicts.assign(
            score=[F.score_quote(v, log_axes[n]) for n, v in verdicts["score"].items()],
            threshold=[
                "n/a" if not np.isfinite(v) else F.score_quote(v, log_axes[n]) for n, v in verdicts["threshold"].items()
            ],
            # coloured badges, not a pale checkbox
            verdict=[[v] for v in verdicts["verdict"]],
            correct=[[correct_badge(c)] for c in verdicts["correct"]],
        )
        verdict_options = list(dict.fromkeys(verdicts["verdict"]))
        st.dataframe(
            shown,
            hide_index=True,
            key="sample.verdicts",
            column_order=["attack", "score", "threshold", "verdict", "correct", "non-members above", "achieved FPR"],
            column_config={
                "score": st.column_config.TextColumn(
                    "score", help="as on the attack's score axis: −log10(−score) where the axis shows that"
                ),
                "threshold": st.column_config.TextColumn(
                    "threshold*", help="calibrated on the calibration part of the split (see below), on the same scale"
                ),
                "verdict": st.column_config.MultiselectColumn(
                    "verdict",
                    options=verdict_options,
                    color=[
                        _BADGE_CSS[VERDICT_BADGE_COLORS[{MEMBER_LABEL: True, NONMEMBER_LABEL: False}.get(v)]]
                        for v in verdict_options
                    ],
                ),
                "correct": st.column_config.MultiselectColumn(
                    "correct?", options=list(CORRECT_BADGE_COLORS), color=list(CORRECT_BADGE_COLORS.values())
                ),
                "non-members above": st.column_config.NumberColumn(
                    "non-members ≥ score",
                    format="percent",
                    help="fraction of the calibration part's non-members scoring at least as high as this image",
                ),
                "achieved FPR": st.column_config.NumberColumn(
                    "achieved FPR",
                    format="percent",
                    help="share of the test part's non-members this threshold flags (the budget may be exceeded)",
                ),
            },
        )
        row = verdicts.loc[attack]
        if row["correct"] is None:
            st.markdown(f"**{short_name(attack)}** gives no verdict: {row['verdict']}.")
        else:
            flagged = row["verdict"] == MEMBER_LABEL
            on_axis = log_axes[attack]
            st.markdown(
                f"**{short_name(attack)}** {'flags' if flagged else 'does not flag'} **{sample_id}** as a member "
                f"at {F.budget_label(budget)} FPR ({F.score_quote(row['score'], on_axis)} {'≥' if flagged else '<'} "
                f"threshold {F.score_quote(row['threshold'], on_axis).split(' ')[-1]}"
                f"{', as on the histogram below' if on_axis else ''}) — "
                f"{':green-badge[right]' if row['correct'] else ':red-badge[wrong]'}: it is truly a "
                f"{MEMBER_LABEL if truth else NONMEMBER_LABEL}. "
                f"{row['non-members above']:.1%} of the calibration non-members score at least as high."
            )
        st.caption(
            "\\* "
            + threshold_source_line(
                calibrations,
                budget,
                sample_part=None if partition is None else ("calibration" if partition.calibration[i] else "test"),
            )
        )

if learned:
    with right:
        st.markdown("**Learned attacks** (each trained on part of the labelled images, scored on the rest)")
        for name, r in learned.items():
            lines = learned_sample_lines(name, r, sample_id, exp.labels_for(r.ids), budget)
            st.markdown(f"- **{short_name(name)}**: " + " ".join(lines))

# -- the error curve and where the score falls ---------------------------------------------------
if res:
    r = res[attack]
    st.subheader(f"{short_name(attack)}: this image's error at every timestep")
    if r.trace.ndim == 2 and r.trace.shape[1] > 0:
        curve = F.attack_error_curve(r, is_member, i)
        st.plotly_chart(curve, key="sample.curve", theme=None, config=PLOTLY_CONFIG)
        st.caption(
            f"The attack's raw statistic at each timestep t ({r.trace_label}; t = 0 is the clean image, larger t "
            "means more noise); lower = the model treats the image more like one it was trained on"
            f"{' (log scale)' if curve.layout.yaxis.type == 'log' else ''}. "
            "Bands: the middle 50 % of members "
            "(orange) and non-members (blue), lines their medians. The black line is this image. Where the bands "
            "separate, the attack can tell members apart; the dotted line marks the timestep its score uses."
        )
    else:
        st.info(f"{short_name(attack)} stored no per-timestep trace for this run.")

    thr = calibrations[attack].threshold(budget)
    hist = F.score_histogram(
        r.scores,
        is_member,
        threshold=thr,
        ids=ids,
        highlight_id=sample_id,
        threshold_label=f"calibrated, {F.budget_label(budget)} FPR budget",
        title=f"Where {sample_id} falls among all {short_name(attack)} scores",
    )
    st.plotly_chart(hist, key="sample.hist", theme=None, config=PLOTLY_CONFIG)
    st.caption(
        "The star is this image; the dashed line is the threshold at the FPR budget, chosen on the calibration "
        "part of the split (the histogram shows every image of the split)."
    )

    # -- noise stability of this verdict (mia_core.lab.stability) -- a separate section
    if thr is not None and st.button(
        "Rescore with 5 noise seeds",
        key="sample.stability",
        help="Score this image again with other noise draws: is the verdict stable?",
    ):
        from mia_core.attacks import get_attack, scores_only_params
        from mia_core.lab.stability import rescore_seeds, stability

        seeds = [int(s.get("cfg.seed", 0)) + k for k in range(5)]
        with st.spinner("Rescoring…"):
            per_seed = rescore_seeds(
                exp.target,
                exp.x0[i],
                sample_id,
                get_attack(base_attack(attack), {**dict(r.params), **scores_only_params(base_attack(attack))}),
                seeds,
            )
        st.markdown(stability(per_seed, thr, seeds).sentence())

# -- SecMI's reconstructions ---------------------------------------------------------------------
st.subheader("SecMI's round trip for this image")
secmi_params = dict(res["secmi"].params) if "secmi" in res else dict(s.get("cfg.params", {}).get("secmi", {}))
secmi_params = {k: v for k, v in secmi_params.items() if k in ("t_sec", "k")}
try:
    pics = _secmi_images(
        exp.target, exp.target.fingerprint, sample_id, exp.x0[i], json.dumps(secmi_params, sort_keys=True)
    )
except Exception as exc:  # a model that cannot run here must not take the page down
    st.error(f"Could not recompute SecMI for this image: {exc}")
else:
    t = pics["t"]
    cols = st.columns(4)
    shown = [
        ("x0", "x₀: the image"),
        ("x_tilde", f"x̃ at t = {t}: deterministically noised"),
        ("x_recon", f"x'' at t = {t}: one step up, one back down"),
        ("diff", f"|x̃ − x''| (brightest = {pics['diff_max']:.2g})"),
    ]
    for col, (key, caption) in zip(cols, shown):
        with col:
            st.image(upscale_nearest(pics[key], IMAGE_PX), caption=caption, width=IMAGE_PX, clamp=True)
    st.caption(
        f"SecMI (Duan et al., 2023) runs the model's deterministic DDIM process *backwards*, from the clean image "
        f"to a noisy version x̃ at t = {t} (9 UNet calls), then takes one step further up and one step back "
        f"down (2 calls) and measures how far it lands from where it started: the t-error "
        f"Σ(x̃ − x'')² = {pics['t_error']:.3g} for this image. A model that memorised an image retraces its steps "
        "more exactly, so members tend to have a smaller t-error. The first three images use the pixel scale "
        "[-1, 1] → black…white; the difference is stretched so its largest value is white."
    )
