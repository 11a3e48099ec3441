"""Presenter mode: one big chart per slide from precomputed results, stepped with the keyboard.

The deck (mia_core.views.presenter; its data from mia_core.lab.presenter_data) is built from the
stored results of the default experiment: the embedded target and its split, whose results ship in
assets/demo_store. So a talk never waits on a computation. The current slide lives in the URL (``?slide=3``) and in session state.
"""

from __future__ import annotations

import streamlit as st

from mia_core.attacks import DEFAULT_ATTACKS
from mia_core.lab.experiment import make_attacks, stored_results
from mia_core.lab.presenter_data import DEMO_COMMAND, deck_data, load_defence_study, missing_attacks
from mia_core.views.html import deck_html, figure_html
from mia_core.views.presenter import build_deck
from pages._common import default_experiment, get_store

st.set_page_config(page_title="Presenter mode · Diffusion MIA lab", layout="wide", initial_sidebar_state="collapsed")

s = st.session_state
SLIDE_KEY = "present.slide"

st.html(
    """<style>
    [data-testid="stMainBlockContainer"] { padding-top: 3.6rem; padding-bottom: 1rem; }
    .st-key-present_title h1 { font-size: 2.6rem; padding: 0; }
    .st-key-present_number p { font-size: 1.6rem; text-align: right; color: #666; margin: 0.6rem 0 0 0; }
    .st-key-present_takeaway p { font-size: 1.7rem; line-height: 1.35; }
    .st-key-present_body li, .st-key-present_body p { font-size: 1.55rem; line-height: 1.45; }
    .st-key-present_pgdn, .st-key-present_pgup { display: none; }
    </style>"""
)


try:
    # the same cached experiment the other pages use when cfg.* are at their defaults
    exp = default_experiment()
    results = stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=get_store())
    slides = build_deck(deck_data(exp, results), load_defence_study())
except Exception as exc:  # the page must not fall over in front of an audience
    st.error(f"Could not load the default target and its results: {type(exc).__name__}: {exc}")
    st.stop()

n = len(slides)


def _clamp(i: int) -> int:
    return min(max(1, int(i)), n)


def _go(delta: int) -> None:
    s[SLIDE_KEY] = _clamp(s.get(SLIDE_KEY, 1) + delta)
    st.query_params["slide"] = str(s[SLIDE_KEY])


requested = st.query_params.get("slide")
if requested is not None:
    try:
        s[SLIDE_KEY] = _clamp(int(requested))
    except ValueError:
        st.toast(f"?slide={requested} is not a slide number; showing slide {s.get(SLIDE_KEY, 1)}.")
current = _clamp(s.get(SLIDE_KEY, 1))
s[SLIDE_KEY] = current
st.query_params["slide"] = str(current)
slide = slides[current - 1]

missing = missing_attacks(results)
if missing:
    st.warning(
        f"Precomputed results are missing for {', '.join(missing)}; their slides are left out. "
        f"Make them (about a minute on a CPU) with:\n\n`{DEMO_COMMAND}`"
    )

head, number = st.columns([8, 1], vertical_alignment="top")
with head.container(key="present_title"):
    st.markdown(f"# {slide.title}")
with number.container(key="present_number"):
    st.markdown(f"{current} / {n}")
with st.container(key="present_takeaway"):
    st.markdown(slide.takeaway)

fig = slide.figure()
if fig is None:
    with st.container(key="present_body"):
        st.markdown(slide.body)
else:
    st.plotly_chart(
        fig, key=f"present_chart_{slide.key}", theme=None,
        config={"displaylogo": False, "toImageButtonOptions": {"format": "svg", "filename": f"slide_{current}_{slide.key}"}},
    )
    if slide.body:
        st.caption(slide.body)

back, middle, forward = st.columns([1, 6, 1], vertical_alignment="center")
back.button("◀ Back", key="present_back", shortcut="Left", on_click=_go, args=(-1,), disabled=current == 1,
            width="stretch", help="Previous slide (← or PageUp)")
forward.button("Next ▶", key="present_next", shortcut="Right", on_click=_go, args=(1,), disabled=current == n,
               width="stretch", type="primary", help="Next slide (→ or PageDown)")
# presentation clickers send PageDown / PageUp: two more shortcuts, on buttons hidden by the CSS above
st.button("Next slide", key="present_pgdn", shortcut="PageDown", on_click=_go, args=(1,))
st.button("Previous slide", key="present_pgup", shortcut="PageUp", on_click=_go, args=(-1,))
with middle:
    st.caption(
        f"Keys: → / ← (or a clicker's PageDown / PageUp). This slide's link: `?slide={current}`. "
        "To project, open `/presenter?embed=true&slide=1`: Streamlit then hides the sidebar, the header and the "
        "toolbar (the keys still work). Results: the precomputed default experiment."
    )

with st.expander("Export"):
    c1, c2 = st.columns(2)
    if fig is not None:
        c1.download_button(
            "This chart (HTML)", figure_html(fig).encode(), file_name=f"slide_{current}_{slide.key}.html",
            mime="text/html", on_click="ignore", key="present_dl_chart",
        )
    c2.download_button(
        "The whole deck (one HTML file, works offline)", lambda: deck_html(slides).encode(), file_name="mia_slides.html",
        mime="text/html", on_click="ignore", key="present_dl_deck",
    )
