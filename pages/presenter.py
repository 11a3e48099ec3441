"""Presenter mode: the slide deck from precomputed results, stepped with the keyboard in the browser.

The deck (mia_core.views.presenter; its data from mia_core.lab.presenter_data) is built from the
stored results of the default experiment: the embedded target and its split, whose results ship in
assets/demo_store. So a talk never waits on a computation. The page shows the very HTML deck the
export downloads (mia_core.views.html.deck_html) in an iframe: every slide is a 1280x720 canvas
scaled to the screen, and the arrow keys (or a clicker's PageDown / PageUp) step it on the client,
with no server round trip per key. ``?slide=3`` opens a slide (the deck keeps it up to date);
``?embed=true`` shows only the slide.
"""

from __future__ import annotations

import streamlit as st

from mia_core.attacks import DEFAULT_ATTACKS, Conditioning
from mia_core.lab.experiment import make_attacks, stored_results
from mia_core.lab.presenter_data import (
    DEMO_COMMAND,
    deck_data,
    load_defence_study,
    missing_attacks,
    not_applicable_on,
)
from mia_core.views.attack_info import short_name
from mia_core.views.html import SLIDE_HEIGHT, deck_html
from mia_core.views.presenter import build_deck, target_note
from pages._common import (
    default_experiment,
    get_store,
    on_t2i_target,
    results,
    stored_runs,
    try_experiment,
    url_runs,
)

st.set_page_config(page_title="Presenter mode · Diffusion MIA lab", layout="wide", initial_sidebar_state="collapsed")

s = st.session_state
SLIDE_KEY = "present.slide"
embedded = bool(st.context.is_embedded)

st.html(
    "<style>[data-testid='stMainBlockContainer'] { padding-top: 3rem; padding-bottom: 0.5rem; }"
    + (
        "[data-testid='stMainBlockContainer'] { padding: 0 !important; max-width: none; }"
        ".st-key-present_deck iframe { height: 100vh !important; display: block; }"
        "[data-testid='stMain'] { overflow: hidden; } [data-testid='stHeader'] { display: none; }"
        if embedded
        else ""
    )
    + "</style>"
)

# Smooth (bicubic) upscaling of the low-resolution images: on by default here, for talk distance.
smooth = bool(s.get("present.smooth", True))

# The shipped text-to-image target: the deck runs on it, with the runs stored for it (Attack lab), when asked.
T2I_DECK = "Deck on the text-to-image target (its stored runs)"
DEFAULT_DECK = "Deck on the embedded default (precomputed)"
on_t2i = on_t2i_target()
deck_on = DEFAULT_DECK
if on_t2i:
    if not embedded:  # below the app's header (the deck page's top padding is sized for the deck alone)
        st.html("<style>[data-testid='stMainBlockContainer'] { padding-top: 4.5rem; }</style>")
        st.segmented_control(
            "Deck on", [T2I_DECK, DEFAULT_DECK], default=T2I_DECK, key="present.deck_on", label_visibility="collapsed"
        )
    deck_on = s.get("present.deck_on") or T2I_DECK

try:
    run_ids, run_errors = url_runs()
    exp, found, partial = None, {}, []
    if deck_on == T2I_DECK:
        exp = try_experiment()
        if exp is not None:
            seed = int(s["cfg.seed"])
            found, not_stored = stored_runs(exp, run_ids, seed) if run_ids else (results(exp), [])
            partial = [n for n, r in found.items() if tuple(r.ids) != tuple(exp.ids)]  # a learned attack's part
            found = {n: r for n, r in found.items() if n not in partial}  # the deck's slides need every image
        if not found:
            st.info(
                "No runs stored for the text-to-image target on every image yet: run attacks on it in the "
                "**Attack lab** (they are stored), then come back. Meanwhile the deck shows the embedded default.",
                icon=":material/info:",
            )
            deck_on = DEFAULT_DECK
    if deck_on == DEFAULT_DECK:
        # the same cached experiment the other pages use when cfg.* are at their defaults
        exp = default_experiment()
        # ?runs=loss|loss:timesteps=100 (as Compare writes it): these runs side by side; else the default attacks
        if run_ids:
            found, not_stored = stored_runs(exp, run_ids, 0)
        else:
            attacks = make_attacks(list(DEFAULT_ATTACKS))
            found, not_stored = stored_results(exp, attacks, seed=0, store=get_store()), []
    elif not embedded:
        st.info(
            f"The deck runs on the text-to-image target ({', '.join(short_name(n) for n in found)}"
            + ("" if run_ids else f"; conditioned on {Conditioning.from_value(s['cfg.conditioning']).describe()}")
            + "). The slide on differential privacy shows the embedded default's factor study: there "
            "is no such study for this target."
            + (
                f" Left out: {', '.join(short_name(n) for n in partial)} (scored on a held-out part only)."
                if partial
                else ""
            ),
            icon=":material/info:",
        )
    slides = build_deck(deck_data(exp, found), load_defence_study(), smooth_images=smooth)
except Exception as exc:  # the page must not fall over in front of an audience
    st.error(f"Could not load the default target and its results: {type(exc).__name__}: {exc}")
    st.stop()

n = len(slides)
requested = st.query_params.get("slide")
current = int(s.get(SLIDE_KEY, 1))
if requested is not None:
    try:
        current = int(requested)
    except ValueError:
        st.toast(f"?slide={requested} is not a slide number; showing slide {current}.")
current = min(max(1, current), n)
s[SLIDE_KEY] = current
st.query_params["slide"] = str(current)

not_applicable = not_applicable_on(s.get("cfg.target", "default"))  # a VE-SDE session target: one line why
if not_applicable and not embedded:
    st.info(target_note(s["cfg.target"], not_applicable, DEFAULT_ATTACKS), icon=":material/info:")

if run_ids and not embedded:
    for error in run_errors:
        st.warning(f"Ignored from the link: {error}")
    if not_stored:
        st.warning("Not stored for this experiment, so left out: " + ", ".join(short_name(r) for r in not_stored))
missing = [] if run_ids or deck_on == T2I_DECK else missing_attacks(found)
if missing and not embedded:
    st.warning(
        f"Precomputed results are missing for {', '.join(missing)}; their slides are left out. "
        f"Make them (about a minute on a CPU) with:\n\n`{DEMO_COMMAND}`"
    )

deck = deck_html(slides, start=current)
with st.container(key="present_deck"):
    st.iframe(deck, height=SLIDE_HEIGHT)

if not embedded:
    st.caption(
        f"{n} slides. Keys: → / ← (or a clicker's PageDown / PageUp), Home / End; click the slide first if the "
        "keys do nothing. The slide number is kept in the link (`?slide=N`). To project, open "
        "`/presenter?embed=true&slide=1`: only the slide is shown. "
        + (
            "Results: the runs stored for the text-to-image target."
            if deck_on == T2I_DECK
            else "Results: the precomputed default experiment."
        )
    )
    st.toggle(
        "Smooth upscaling of the images (bicubic, display only)",
        value=True,
        key="present.smooth",
        help="8x8 or 16x16 images read better at talk distance when enlarged smoothly; off = square, sharp pixels "
        "(no invented in-between values).",
    )
    st.download_button(
        "The whole deck (one HTML file, works offline, steps with the arrow keys)",
        deck.encode(),
        file_name="mia_slides.html",
        mime="text/html",
        on_click="ignore",
        key="present_dl_deck",
        icon=":material/download:",
    )
