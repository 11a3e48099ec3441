"""Was my image used? Upload images, score them with the session's attacks, place them against the split."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import streamlit as st

from mia_core.attacks import REGISTRY
from mia_core.calibration import calibration_partition
from mia_core.data import load_uploads, upload_limits_text
from mia_core.lab import perturb as P
from mia_core.lab.jobs import score_upload, submit_upload_scoring, upload_job_id, upload_score_key, upload_scores
from mia_core.lab.uploads import NO_CAPTION_TEXT, condition_uploads, encode_png, ood_reference
from mia_core.lab.verdict import budget_text, calibrations_from_results, judge_scores
from mia_core.views.attack_info import attack_info, short_name
from mia_core.views.images import upscale_nearest
from mia_core.views.verdict import (
    card_summary,
    headline_verdict,
    perturbation_figure,
    placement_figure,
    threshold_source_line,
    verdict_badge,
    verdict_sentence,
)
from pages._collection import collection_section
from pages._common import (
    FPR_BUDGETS,
    get_worker,
    poll_job,
    results,
    selected_attacks,
    try_experiment,
    uploaded_captions,
)

MAX_FILES = 64  # refused above this
MAX_INLINE = 32  # scored in the script thread up to this; above, on the worker
CARDS_PER_PAGE = 8
THUMB = 160

s = st.session_state


def _title(name: str) -> str:
    return attack_info(name).title


def _pick_example(role: str) -> None:
    s["miu.demo_n"] = s.get("miu.demo_n", 0) + 1
    s["miu.demo"] = (role, s["miu.demo_n"])


def _clear_example() -> None:
    s.pop("miu.demo", None)


def _set_fpr() -> None:
    s["cfg.fpr"] = float(s["miu.fpr"])


@st.cache_data(max_entries=4, show_spinner="Measuring how far apart the split's images are…")
def _ood_reference(images_fp: str, _images: np.ndarray):
    """The split's images as the out-of-distribution reference (one per image set)."""
    return ood_reference(_images)


def _scores_inline(key, target, images, attacks, seed):
    """The scores of a small upload, computed here (once per key: mia_core.lab.jobs keeps them)."""
    if upload_scores(key) is None:
        with st.spinner(f"Scoring {images.n} image(s) with {', '.join(a.name for a in attacks)}…"):
            return score_upload(key, target, images, attacks, seed=seed)
    return upload_scores(key)


def _scores_on_worker(key, target, images, attacks, seed):
    """The scores of a bigger upload, computed on the worker (mia_core.lab.jobs); None while it runs."""
    scores = upload_scores(key)
    if scores is not None:
        return scores
    worker = get_worker()
    previous = worker.get(upload_job_id(key))
    if previous is not None and previous.status == "failed":
        st.error(f"Scoring failed: {previous.error}")
        worker.forget(previous.job_id)  # the next run of the page tries again
        return None
    job = submit_upload_scoring(worker, key, target, images, attacks, seed=seed)
    poll_job(
        worker,
        job.job_id,
        "miu.polling",
        running=lambda js: st.progress(
            js.fraction, text=f"Scoring {images.n} images in the background… {js.message or js.status}"
        ),
    )
    return None


# ----------------------------------------------------------------------------- page

st.title("Was my image used?")
st.caption(
    "Upload an image and ask each attack whether the target model was trained on it. The verdict comes "
    "from comparing its score with the scores of images whose answer we know (the split's members and "
    "non-members), at a false-positive budget you choose."
)

exp = try_experiment()
if exp is None:
    st.stop()
target = exp.target

# a text-to-image target conditioned on each image's own caption: an upload takes a caption too
by_caption = getattr(target, "kind", "") == "t2i" and s["cfg.conditioning"].get("mode", "caption") == "caption"
chosen_all = selected_attacks(exp)  # on a text-to-image target: with the session's conditioning
# Learned attacks score only their held-out part and keep no fitted network to score a new image.
learned = [a for a in chosen_all if a.learns]
chosen_all = [a for a in chosen_all if not a.learns]
stored = results(exp)
available = [a for a in chosen_all if a.name in stored]
missing = [a.name for a in chosen_all if a.name not in stored]
if learned:
    st.caption(
        f"Not offered here: {', '.join(_title(a.name) for a in learned)}. A learned attack trains its network "
        "inside a run and scores only that run's held-out images; it keeps no network to score an upload."
    )
if not available:
    st.warning(
        "No stored attack results for this target and split yet. A verdict needs the scores of known "
        "members and non-members to calibrate against, so run the selected attacks first."
    )
    st.page_link("pages/attack_lab.py", label="Open the Attack lab", icon="⚔️")
    st.stop()

c_att, c_fpr = st.columns([3, 1])
names = [a.name for a in available]
picked = c_att.multiselect(
    "Attacks",
    names,
    default=names,
    format_func=_title,
    key=f"miu.attacks.{'-'.join(names)}",
    help="The session's selected attacks that have stored results on this split, with the same parameters and seed.",
)
budgets = sorted(set(FPR_BUDGETS) | {float(s["cfg.fpr"])}, reverse=True)
if "miu.fpr" not in s or s["miu.fpr"] not in budgets:
    s["miu.fpr"] = float(s["cfg.fpr"])
c_fpr.selectbox(
    "FPR budget",
    budgets,
    format_func=budget_text,
    key="miu.fpr",
    on_change=_set_fpr,
    help="The share of known non-members that may be flagged: the threshold is set so that at most "
    "this fraction of them score above it.",
)
budget = float(s["miu.fpr"])
if missing:
    st.caption(
        f"Not available here (no stored results on this split with the session's parameters): "
        f"{', '.join(_title(m) for m in missing)}. Run them in the Attack lab to use them."
    )
attacks = [a for a in available if a.name in picked]
if not attacks:
    st.info("Pick at least one attack.")
    st.stop()

# -- was my collection used? (set-level test; its own section, pages/_collection.py)
with st.expander("📚 Was my collection used? A set-level test with a p-value", expanded=bool(s.get("miu.set.open"))):
    collection_section(exp, attacks, stored, by_caption)

uploads = (
    st.file_uploader(
        "Your images (PNG or JPEG)" + (", and optionally a metadata.jsonl with their captions" if by_caption else ""),
        type=["png", "jpg", "jpeg"] + (["jsonl"] if by_caption else []),
        accept_multiple_files=True,
        key="miu.files",
    )
    or []
)
st.caption(upload_limits_text(MAX_FILES) + " Files seen before are not decoded again.")
metadata = [f for f in uploads if f.name.lower().endswith(".jsonl")]
uploads = [f for f in uploads if not f.name.lower().endswith(".jsonl")]
b1, b2, b3 = st.columns(3)
b1.button(
    "Try it with a member from the split",
    on_click=_pick_example,
    args=("member",),
    key="miu.try_member",
    width="stretch",
)
b2.button(
    "Try it with a non-member from the split",
    on_click=_pick_example,
    args=("non-member",),
    key="miu.try_nonmember",
    width="stretch",
)
b3.button(
    "Remove the example",
    on_click=_clear_example,
    key="miu.clear_example",
    width="stretch",
    disabled="miu.demo" not in s,
)

files = [(f.name, f.getvalue()) for f in uploads]
known: dict[str, tuple[str, str]] = {}  # file name -> ("member" / "non-member", split id) for the split's own images
if "miu.demo" in s:
    role, n = s["miu.demo"]
    pool = exp.split.member_ids if role == "member" else exp.split.nonmember_ids
    sid = pool[int(np.random.default_rng(n).integers(len(pool)))]
    name = f"{sid}.png"
    files.append((name, encode_png(exp.images.images[exp.images.index_of()[sid]])))
    known[name] = (role, sid)

if by_caption and files:
    # one caption per image: typed here, prefilled from an uploaded metadata.jsonl or, for an example from the
    # split, from its own caption; an image left without one is scored with the empty prompt
    given = uploaded_captions(metadata, [name for name, _ in files])
    for name, (_, sid) in known.items():
        given.setdefault(name, exp.images.caption_of(sid) or "")
    with st.expander("Captions of your images", expanded=True, icon=":material/short_text:"):
        st.caption(
            "The target is conditioned on each image's own caption, so your images are too: type the prompt each "
            "was published with (or upload a metadata.jsonl: one line per image, "
            '`{"file_name": "a.png", "text": "a handwritten seven"}`).'
        )
        typed = []
        for k, (name, _) in enumerate(files):
            default = given.get(name, "")
            typed.append(
                st.text_input(
                    f"Caption of {name}",
                    value=default,
                    key=f"miu.caption.{k}.{name}.{hashlib.sha256(default.encode()).hexdigest()[:8]}",
                    placeholder='none: the empty prompt ""',
                ).strip()
            )
    files = [(name, data, caption or None) for (name, data), caption in zip(files, typed)]

if not files:
    st.info(
        "Upload one or more images, or try an example from the split. Images are converted to the target's "
        f"input ({target.resolution}x{target.resolution}, {target.channels} channel(s)) and the conversion is "
        "shown. Nothing is stored."
    )
    st.stop()
if len(files) > MAX_FILES:
    st.error(f"{len(files)} files: at most {MAX_FILES} images can be scored at once. Remove some and try again.")
    st.stop()

up = load_uploads(files, resolution=target.resolution, channels=target.channels)
for err in up.errors:
    st.error(f"Skipped: {err}")
if up.images is None:
    st.stop()
images = up.images
st.info(f"**Conversion to the target's input:** {up.conversion.report}", icon="🔧")

seed = int(s["cfg.seed"])
# keyed with the uploads' captions (own-caption conditioning; "" = the empty prompt), so a new caption is a new score
scored_with, _ = condition_uploads(target, attacks, images.n, images.captions)
key = upload_score_key(target, images, scored_with, seed)
try:
    if images.n <= MAX_INLINE:
        scores = _scores_inline(key, target, images, scored_with, seed)
    else:
        scores = _scores_on_worker(key, target, images, scored_with, seed)
except Exception as exc:  # a model error must not take the page down
    st.error(f"Scoring failed: {type(exc).__name__}: {exc}")
    st.stop()
if scores is None:
    st.stop()

titles = {a.name: _title(a.name) for a in attacks}
# Thresholds from the calibration half of the split, measured on the other half: the same cut as Compare's
# transferred columns (mia_core.calibration.calibration_partition with its defaults).
try:
    partition = calibration_partition(exp.is_member)
except ValueError:  # fewer than 2 members or non-members: every known non-member sets it (the caveat says so)
    partition = None
calibrations = calibrations_from_results(
    {a.name: stored[a.name] for a in attacks}, exp.ids, exp.is_member, titles, partition=partition
)
report = judge_scores(calibrations, {a.name: scores[a.name] for a in attacks}, images.ids, budget)
n_non = next(iter(calibrations.values())).n_nonmembers
tprs = {short_name(a): calibrations[a].rule_tpr(budget) for a in report.attacks}

# -- out of distribution: each image's distance to the nearest split image (mia_core.lab.uploads)
ood = {}
if exp.images.images.shape[1:] == images.images.shape[1:]:
    ref = _ood_reference(exp.images.fingerprint, exp.images.images)
    ood = dict(zip(images.ids, ref.check(images.images)))
n_unlike = sum(1 for c in ood.values() if c.unlike)

st.subheader(f"Verdicts at {budget_text(budget)} FPR")
headline = headline_verdict(report)
if n_unlike:
    headline += f" {n_unlike} of them {'is' if n_unlike == 1 else 'are'} unlike the split's images (see the card)."
st.markdown(f"#### {headline}")
# the caveat, once for the page (not on every card): where the thresholds came from, what a verdict means
st.caption(
    threshold_source_line(calibrations, budget)
    + f" Split source: `{exp.split.source}`. "
    + verdict_sentence(budget, tprs, n_nonmembers=n_non)
    + (
        f" 'Any' (at least one attack flags) flags more non-members than each attack alone: up to "
        f"{budget_text(min(1.0, len(report.attacks) * budget))} with {len(report.attacks)} attacks."
        if len(report.attacks) > 1
        else ""
    )
)

ids = list(images.ids)
pages = max(1, math.ceil(len(ids) / CARDS_PER_PAGE))
page = st.pagination(pages, key=f"miu.page.{images.fingerprint}") if pages > 1 else 1
index = images.index_of()
for image_id in ids[(page - 1) * CARDS_PER_PAGE : page * CARDS_PER_PAGE]:
    summary = report.summary(image_id)
    with st.container(border=True):
        c_img, c_txt = st.columns([1, 4], gap="medium")
        c_img.image(upscale_nearest(images.images[index[image_id]], THUMB), caption=image_id, width=THUMB)
        with c_txt:
            st.markdown(card_summary(summary, budget) + ".")
            if by_caption:
                caption = images.caption_of(image_id)
                if caption:
                    st.markdown(f"Caption: “{caption}”")
                else:
                    st.caption(NO_CAPTION_TEXT)
            check = ood.get(image_id)
            if check is not None and check.unlike:
                st.warning(check.sentence(), icon="⚠️")
            lines = []
            for v in report.for_image(image_id):
                if math.isfinite(v.score):
                    where = (
                        f"score {v.score:.4g} · above {v.percentile_nonmember:.1f} % of non-members and "
                        f"{v.percentile_member:.1f} % of members"
                    )
                else:
                    where = "no score"
                lines.append(f"- **{titles[v.attack]}**: {where} · {verdict_badge(v.flagged, v.label)}")
            st.markdown("\n".join(lines))
            if image_id in known:
                role, sid = known[image_id]
                part = "calibration" if partition is None or partition.calibration[exp.ids.index(sid)] else "test"
                st.caption(
                    f"This is a known {role} of the split, fed through the same path as an "
                    f"upload. It lies in the split's {part} part"
                    + (
                        ", so its own score helped choose the thresholds: this shows how the pipeline works, "
                        "not an independent test."
                        if part == "calibration"
                        else ": no threshold saw its score."
                    )
                )

table = pd.DataFrame(report.records())
st.download_button(
    "Download the verdicts (CSV)",
    table.to_csv(index=False),
    file_name="verdicts.csv",
    mime="text/csv",
    key="miu.csv",
    on_click="ignore",
)

st.subheader("Where your images fall")
st.caption(
    "For each attack: the scores of the calibration part's members (orange) and non-members (blue), the "
    "threshold chosen on them at the FPR budget (dashed), and one diamond per image (filled = flagged, open = "
    "not flagged). Right of the line = flagged as member."
)
tabs = st.tabs([titles[a] for a in report.attacks])
for tab, name in zip(tabs, report.attacks):
    with tab:
        cal = calibrations[name]
        fig = placement_figure(report, name, score_label=REGISTRY[name].score_label if name in REGISTRY else "")
        st.plotly_chart(fig, key=f"miu.fig.{name}", config={"displaylogo": False})
        rule_tpr = cal.rule_tpr(budget)  # on the test part's members: images the threshold was not chosen on
        n_test = (cal.test_member_scores if cal.transferred else cal.member_scores).size
        st.caption(  # the numbers only: the page's caveat is said once, above the cards
            f"{titles[name]}: the threshold flags at most {budget_text(budget)} of the {cal.n_nonmembers:,} "
            f"calibration non-members and {round(rule_tpr * n_test):,} of the {n_test:,} {'test-part' if cal.transferred else 'known'} members "
            f"(TPR {rule_tpr:.2f})."
            if rule_tpr is not None
            else f"{titles[name]}: no threshold at {budget_text(budget)} FPR with {cal.n_nonmembers:,} non-members."
        )
        st.download_button(
            "Download this chart (HTML)",
            fig.to_html(include_plotlyjs=True),
            mime="text/html",
            file_name=f"placement-{name}.html",
            key=f"miu.html.{name}",
            on_click="ignore",
        )

# -- what if the image were changed? (mia_core.lab.perturb; the figure in mia_core.views.verdict)
st.subheader("What if the image were changed?")
st.caption(
    "A copy found in the wild is often blurred, recompressed, cropped or mirrored. Score such copies of one "
    "image with one attack (the same noise draws as the original, so only the image differs) and see whether "
    "the verdict survives."
)
w_img, w_att, w_go = st.columns([2, 2, 1], vertical_alignment="bottom")
what_id = w_img.selectbox("Image", ids, key="miu.whatif.image")
what_attack = w_att.selectbox("Attack", list(report.attacks), format_func=lambda n: titles[n], key="miu.whatif.attack")
what_key = (key, what_id, what_attack)
if w_go.button("Score the variants", key="miu.whatif.run", width="stretch"):
    raw_of = {f[0]: f[1] for f in files}
    raw = raw_of[what_id] if what_id in raw_of else encode_png(images.images[index[what_id]])
    variants = P.variants(P.decode_image(raw))
    attack_obj = next(a for a in attacks if a.name == what_attack)
    with st.spinner(f"Scoring {len(variants)} variants with {titles[what_attack]}…"):
        try:
            s["miu.whatif"] = (
                what_key,
                [v.label for v in variants],
                P.score_variants(target, attack_obj, what_id, variants, seed=seed, caption=images.caption_of(what_id)),
            )
        except Exception as exc:  # a model error must not take the page down
            st.error(f"Scoring the variants failed: {type(exc).__name__}: {exc}")
if s.get("miu.whatif") and s["miu.whatif"][0] == what_key:
    _, labels, variant_scores = s["miu.whatif"]
    thr = calibrations[what_attack].threshold(budget)
    fig = perturbation_figure(
        labels, variant_scores, thr, image_id=what_id, attack_title=titles[what_attack], budget=budget
    )
    st.plotly_chart(fig, key="miu.whatif.fig", config={"displaylogo": False})
    kept = sum(1 for f in fig.layout.meta["flagged"][1:] if f == fig.layout.meta["flagged"][0])
    st.caption(
        f"{kept} of {len(labels) - 1} variants get the same verdict as the original at {budget_text(budget)} FPR. "
        "Blur σ is in pixels of the uploaded file; crops keep the central part and are resized back."
    )

with st.expander("What does this verdict mean, and what can't it say?"):
    st.markdown(
        f"- **The threshold** is the score that at most {budget_text(budget)} of the calibration part's known "
        "non-members reach (chosen there, then checked on the disjoint test part: its achieved FPR is quoted "
        "above the cards). An image at or above it is *flagged as member*. About "
        f"{budget_text(budget)} of images the model never saw would be flagged too: a flag is evidence, not proof.\n"
        "- **Not flagged is not 'not used'.** The attacks flag only a fraction of the real training images at a "
        "low FPR (their TPR on known members is quoted above).\n"
        "- **Same distribution assumed.** The calibration images come from the split's source. An image unlike "
        "them (a photo instead of a digit, another style, a different size before conversion) can score "
        "unusually low or high for reasons that have nothing to do with training.\n"
        "- **Several attacks.** 'Majority' needs more than half of the attacks to flag; 'any' flags if one does, "
        "which raises the false-positive rate (up to the budget times the number of attacks).\n"
        "- **Same attacks, same settings.** Your images are scored with the same parameters and seed as the "
        "stored calibration results; the loss attack's noise is drawn per image name, so the same file under "
        "another name can score slightly differently."
    )
