"""Every log axis the views draw has ticks that state their values (issue 19: "5 4 3 2 0.1 9 8 7 6")."""

from __future__ import annotations

import math
import re

import numpy as np
import plotly.graph_objects as go
import pytest

from mia_core.views import results as F
from mia_core.views.learn import loss_curve_figure
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR, log_axis, log_tick_label, log_ticks

_SUPER = str.maketrans("⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "-0123456789")


def _label_value(text: str) -> float:
    """'0.02' -> 0.02, '3×10⁻⁵' -> 3e-5, '10⁶' -> 1e6, '1%' / '0.1 %' -> 0.01 / 0.001."""
    text = text.strip()
    if text.endswith("%"):
        return float(text[:-1].strip()) / 100
    m = re.fullmatch(r"(?:([\d.]+)×)?10([⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)", text)
    if m:
        return float(m.group(1) or 1) * 10.0 ** int(m.group(2).translate(_SUPER))
    return float(text)


def log_axes(fig: go.Figure) -> dict[str, object]:
    return {
        name: axis
        for name, axis in fig.layout.to_plotly_json().items()
        if name.startswith(("xaxis", "yaxis")) and axis.get("type") == "log"
    }


def assert_sane_log_ticks(fig: go.Figure) -> int:
    """Each log axis: explicit ticks, increasing, >= 2 of them, and each label parses to its tick's value."""
    axes = log_axes(fig)
    for name, axis in axes.items():
        vals, text = axis.get("tickvals"), axis.get("ticktext")
        assert vals is not None and text is not None, f"{name}: log axis without explicit ticks"
        assert len(vals) == len(text) >= 2, f"{name}: {vals} / {text}"
        assert all(b > a for a, b in zip(vals, vals[1:])), f"{name}: ticks not increasing: {vals}"
        for v, t in zip(vals, text):
            assert _label_value(t) == pytest.approx(v, rel=1e-6), f"{name}: label {t!r} for tick {v}"
    return len(axes)


def test_short_ranges_get_labelled_ticks_not_leading_digits():
    assert log_ticks(0.06, 0.5) == ([0.1, 0.2, 0.5], ["0.1", "0.2", "0.5"])
    vals, text = log_ticks(0.021, 0.029)  # inside one 1-2-5 step: every digit
    assert len(vals) >= 1 and all(_label_value(t) == pytest.approx(v) for v, t in zip(vals, text))
    assert log_ticks(1e-4, 1.0)[0] == [1e-4, 1e-3, 1e-2, 0.1, 1.0]
    assert log_ticks(1.1, 60.0)[1] == ["2", "5", "10", "20", "50"]  # two decades: 1-2-5, not just "10"
    assert log_ticks(0.0123, 0.0123)[1] == ["0.007", "0.008", "0.009", "0.01", "0.02"]
    vals, _ = log_ticks(1e-12, 1e12)
    assert len(vals) <= 8 and vals[0] == pytest.approx(1e-12)
    assert log_tick_label(3e-5) == "3×10⁻⁵" and log_tick_label(1e6) == "10⁶" and log_tick_label(0.25) == "0.25"
    with pytest.raises(ValueError, match="positive"):
        log_axis([0.0, -1.0])


def test_every_log_axis_in_the_figures_has_sane_ticks():
    rng = np.random.default_rng(0)
    is_member = np.arange(200) < 100
    scores = rng.normal(size=200) + is_member
    ts = np.array([0, 50, 100, 200, 300])
    trace = np.exp(rng.normal(-2.0, 0.2, size=(200, ts.size)))  # errors between ~0.08 and ~0.2: under a decade
    figures = {
        "roc": F.roc_figure({"loss": (scores, is_member)}, log=True),
        "histogram log density": F.score_histogram(scores, is_member, log_y=True),
        "error curve": F.error_curve_figure(ts, trace, is_member),
        "error curve lines": F.error_curve_figure(
            ts,
            lines=[
                F.CurveLine("a", [0.31, 0.42, 0.5, 0.61, 0.7], MEMBER_COLOR),
                F.CurveLine("b", [0.4, 0.5, 0.6, 0.7, 0.8], NONMEMBER_COLOR),
            ],
        ),
        "loss curve": loss_curve_figure({"loss_curve": [[i, 0.3 * math.exp(-i / 400)] for i in range(0, 1000, 10)]}),
    }
    for name, fig in figures.items():
        assert assert_sane_log_ticks(fig) >= 1, f"{name}: expected a log axis"


def test_presenter_deck_log_axes_have_sane_ticks():
    from mia_core.lab.presenter_data import load_default_deck_data, load_defence_study
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR
    from mia_core.views.presenter import build_deck

    if not any(DEMO_STORE_DIR.glob("*/meta.json")):
        pytest.skip(f"no precomputed results in {DEMO_STORE_DIR}")
    data, _ = load_default_deck_data(ResultStore(extra_readonly=[DEMO_STORE_DIR]))
    n = 0
    for slide in build_deck(data, load_defence_study()):
        fig = slide.figure() if callable(getattr(slide, "figure", None)) else None
        if fig is not None:
            n += assert_sane_log_ticks(fig)
    assert n >= 3  # slide 3's error curve and the log-log ROC's two axes at least
