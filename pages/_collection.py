"""The "Was my collection used?" section of the upload page (set-level inference, CDI-style).

Thin: the sets come from uploads or are drawn from the split; the scores of drawn sets are the
stored ones, uploads are scored through ``mia_core.lab.jobs``; the test is
``mia_core.lab.set_inference.set_test``.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from mia_core.data import load_uploads
from mia_core.lab import set_inference as SI
from mia_core.lab.jobs import score_upload, upload_score_key
from mia_core.lab.uploads import collection_caption_note, collection_prompt_mismatch, condition_uploads
from pages._common import uploaded_captions

MAX_SET = 64  # images per uploaded set (scored in the script thread)
ALPHAS = (0.05, 0.01, 0.001)

s = st.session_state


def _draw_again() -> None:
    s["miu.set.draw"] = s.get("miu.set.draw", 0) + 1


def _uploaded_scores(label: str, key: str, exp, attacks, seed: int, by_caption: bool):
    """One uploaded set: (its scores (n, len(attacks)), its captions (``ImageSet.captions``)); None until it is
    uploaded. ``by_caption``: the target is conditioned on each image's own caption, so the set's captions come
    from a metadata.jsonl uploaded with it; the images it does not name (all of them without one) are scored with
    the empty prompt, and the page says so."""
    files = (
        st.file_uploader(
            label + (" and optionally its metadata.jsonl (captions)" if by_caption else ""),
            type=["png", "jpg", "jpeg"] + (["jsonl"] if by_caption else []),
            accept_multiple_files=True,
            key=key,
        )
        or []
    )
    metadata = [f for f in files if f.name.lower().endswith(".jsonl")]
    files = [f for f in files if not f.name.lower().endswith(".jsonl")]
    if not files:
        return None
    if len(files) > MAX_SET:
        st.error(f"{len(files)} files: at most {MAX_SET} images per set. Remove some and try again.")
        return None
    named = [(f.name, f.getvalue()) for f in files]
    captions = uploaded_captions(metadata, [name for name, _ in named])
    up = load_uploads(
        [(name, data, captions.get(name) or None) for name, data in named],
        resolution=exp.target.resolution,
        channels=exp.target.channels,
    )
    for err in up.errors:
        st.error(f"Skipped: {err}")
    if up.images is None:
        return None
    if by_caption:
        st.caption(collection_caption_note(up.images.captions, up.images.n))
    # keyed with the set's captions: a new metadata.jsonl is a new score
    scored_with, _ = condition_uploads(exp.target, attacks, up.images.n, up.images.captions)
    with st.spinner(f"Scoring {up.images.n} image(s)…"):
        scores = score_upload(
            upload_score_key(exp.target, up.images, scored_with, seed), exp.target, up.images, scored_with, seed=seed
        )
    return np.stack([np.asarray(scores[a.name], dtype=float) for a in attacks], axis=1), up.images.captions


def collection_section(exp, attacks, stored, by_caption: bool = False) -> None:
    """Render the section: choose the sets, run the one-sided test, show the p-value and the verdict.
    ``by_caption``: a text-to-image target conditioned on each image's own caption (uploads take captions)."""
    st.subheader("Was my collection used?")
    st.caption(
        "One image's score is noisy; a collection's is not. Give a **suspect set** (the images you fear were "
        "trained on) and a **held-out set** from the same source that was never published. If the model saw "
        "the suspect set, the attacks score it higher: a one-sided test turns that into a p-value "
        "(dataset inference, CDI; with several attacks their scores are combined by a logistic regression fitted "
        "on a control half of each set)."
    )
    names = [a.name for a in attacks]
    c1, c2, c3 = st.columns(3)
    source = c1.radio("Sets", ["drawn from the split (demo)", "uploaded"], key="miu.set.source")
    alpha = c2.selectbox("Significance level α", ALPHAS, key="miu.set.alpha")
    method = c3.selectbox("Test", list(SI.METHODS), format_func=SI.METHODS.get, key="miu.set.method")
    seed = int(s.get("cfg.seed", 0))
    if source.startswith("drawn"):
        d1, d2, d3 = st.columns([2, 2, 1])
        kind = d1.radio(
            "Suspect set",
            ["members", "nonmembers"],
            key="miu.set.kind",
            horizontal=True,
            format_func={"members": "members (was used)", "nonmembers": "non-members (was not)"}.get,
        )
        size = d2.slider(
            "Images per set",
            4,
            100,
            20,
            key="miu.set.size",
            help="Suspect and held-out sets have this many images each. On the default target, 20 "
            "member images are detected in every trial with PIA (see the README).",
        )
        d3.button("Draw again", on_click=_draw_again, key="miu.set.again")
        missing = [n for n in names if n not in stored]
        if missing:
            st.info(f"No stored scores for {', '.join(missing)} on this split; run them in the Attack lab first.")
            return
        scores = SI.score_matrix(stored, exp.ids, names)
        rng = np.random.default_rng([seed, s.get("miu.set.draw", 0)])
        try:
            s_rows, h_rows = SI.draw_demo_sets(exp.is_member, size, size, suspect=kind, rng=rng)
        except ValueError as exc:
            st.error(str(exc))
            return
        suspect, heldout = scores[s_rows], scores[h_rows]
    else:
        u1, u2 = st.columns(2)
        with u1:
            suspect = _uploaded_scores(
                "Suspect set (your published images)", "miu.set.suspect", exp, attacks, seed, by_caption
            )
        with u2:
            heldout = _uploaded_scores(
                "Held-out set (same source, never published)", "miu.set.heldout", exp, attacks, seed, by_caption
            )
        if suspect is None or heldout is None:
            st.info("Upload both sets (PNG or JPEG, at least 2 images each; 4 with several attacks).")
            return
        (suspect, suspect_captions), (heldout, heldout_captions) = suspect, heldout
        mismatch = by_caption and collection_prompt_mismatch(
            suspect_captions, len(suspect), heldout_captions, len(heldout)
        )
        if mismatch:
            st.warning(mismatch, icon=":material/warning:")
    try:
        result = SI.set_test(suspect, heldout, alpha=alpha, method=method, features=tuple(names), seed=seed)
    except ValueError as exc:
        st.error(str(exc))
        return
    m1, m2, m3 = st.columns(3)
    m1.metric("p-value", f"{result.p_value:.3g}")
    m2.metric(
        "images in the test",
        f"{result.n_suspect} + {result.n_heldout}",
        help="suspect + held-out images compared by the test"
        + (f"; {result.n_control} more fitted the combiner" if result.n_control else ""),
    )
    m3.metric("verdict at α", "used" if result.used else "no evidence")
    (st.success if result.used else st.info)(result.verdict())
    st.caption(
        "Calibration on the default target (`python benchmarks/set_inference.py`): over random non-member suspect "
        "sets the share with p < 0.05 stays near 0.05, so a 'used' verdict is a false alarm about α of the time. "
        "The held-out set must come from the same source as the suspect set; otherwise the test detects the "
        "difference between the sources, not training."
    )
