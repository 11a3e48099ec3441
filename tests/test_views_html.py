"""mia_core.views.html: one figure or a whole deck as an offline HTML page; the slide Markdown subset."""

from __future__ import annotations

import numpy as np

from mia_core.views import results as F
from mia_core.views.html import escape, figure_html, markdown_to_html


def test_figure_html_is_standalone():
    rng = np.random.default_rng(0)
    is_member = np.r_[np.ones(20, bool), np.zeros(20, bool)]
    html = figure_html(F.roc_figure({"loss": (rng.normal(size=40) + is_member, is_member)}))
    assert "<html>" in html and len(html) > 1_000_000  # plotly.js embedded
    assert '<script src="http' not in html  # no CDN: the file opens offline


def test_markdown_subset():
    html = markdown_to_html("Intro with **bold** and *it* <x>\n- one\n- two & three\n\nAfter")
    assert html == (
        "<p>Intro with <b>bold</b> and <i>it</i> &lt;x&gt;</p><ul><li>one</li><li>two &amp; three</li></ul><p>After</p>"
    )
    assert markdown_to_html("- last") == "<ul><li>last</li></ul>"
    assert escape("a<b>&") == "a&lt;b&gt;&amp;"
