"""The membership-inference lab for diffusion models: Streamlit entry point.

Run with ``streamlit run app.py``. This file is the router: page config, shared state, the
navigation over ``pages/``. Each page is thin; the work is done by ``mia_core``.
"""

from __future__ import annotations

import streamlit as st

from pages._common import init_state

st.set_page_config(page_title="Diffusion MIA lab", page_icon="🔍", layout="wide")
init_state()

# Each url_path is its file's stem: the URL Streamlit's legacy pages/ mode gives the same file, so
# a first visit that lands in that mode reaches the same page (see pages/_common.py).
PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Start", icon="🏠", default=True, url_path="home"),
        st.Page("pages/learn.py", title="Learn", icon="🎓", url_path="learn"),
    ],
    "Set up": [
        st.Page("pages/target.py", title="Target", icon="🧠", url_path="target"),
        st.Page("pages/data.py", title="Data", icon="🗂️", url_path="data"),
        st.Page("pages/train.py", title="Train", icon="🏋️", url_path="train"),
    ],
    "Attack": [
        st.Page("pages/attack_lab.py", title="Attack lab", icon="⚔️", url_path="attack_lab"),
        st.Page("pages/compare.py", title="Compare", icon="📈", url_path="compare"),
        st.Page("pages/sample.py", title="Sample explorer", icon="🔬", url_path="sample"),
        st.Page("pages/was_my_image_used.py", title="Was my image used?", icon="❓", url_path="was_my_image_used"),
    ],
    "Defend": [
        st.Page("pages/factors.py", title="Factors & defences", icon="🛡️", url_path="factors"),
    ],
    "Present": [
        st.Page("pages/presenter.py", title="Presenter mode", icon="🎤", url_path="presenter"),
    ],
}

page = st.navigation(PAGES)
page.run()
