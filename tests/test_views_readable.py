"""Issue 19, views people can read: number formatting, smooth upscaling, badges and the batch headline,
the confusion matrix at a threshold, scores quoted on their axis, the forward-process animation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mia_core import metrics as M
from mia_core.lab.verdict import Calibration, judge_scores
from mia_core.views import results as F
from mia_core.views.images import upscale, upscale_caption, upscale_nearest
from mia_core.views.learn import forward_animation_figure
from mia_core.views.style import format_number, format_numbers
from mia_core.views.verdict import badge, card_summary, headline_verdict, perturbation_figure


def test_format_number_keeps_significant_digits():
    assert format_number(0.000123456) == "0.000123"
    assert format_number(0.5) == "0.500"
    assert format_number(1.53) == "1.53"
    assert format_number(0.99996) == "1.00"  # the rounding carry does not add a digit
    assert format_number(0.02557, 4) == "0.02557"
    assert format_number(3.2e-6) == "3.20e-06"
    assert format_number(0) == "0" and format_number(math.inf) == "inf"
    with pytest.raises(ValueError, match="digits"):
        format_number(1.0, 0)


def test_format_numbers_adds_digits_until_different_values_differ():
    # the case: two errors near 1e-4 that "0.0001" would print the same
    assert format_numbers([0.00010012, 0.00015318]) == ["0.000100", "0.000153"]
    assert format_numbers([0.123451, 0.123459]) == ["0.12345", "0.12346"]
    assert format_numbers([2.0, 2.0]) == ["2.00", "2.00"]  # equal values may read equal


def test_smooth_upscale_is_the_same_size_and_labelled():
    img = (np.arange(64, dtype=np.uint8).reshape(8, 8) * 4)[..., None]
    sharp, smooth = upscale(img, 160), upscale(img, 160, smooth=True)
    assert sharp.shape == smooth.shape == (160, 160)
    assert np.array_equal(sharp, upscale_nearest(img, 160))
    assert len(np.unique(smooth)) > len(np.unique(sharp))  # in-between values: interpolated, not blocks
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert upscale(rgb, 100, smooth=True).shape == (96, 96, 3)
    assert "bicubic" in upscale_caption(True) and "sharp" in upscale_caption(False)


def test_confusion_at_agrees_with_the_metrics():
    rng = np.random.default_rng(1)
    m = np.r_[np.ones(50, bool), np.zeros(150, bool)]
    s = rng.normal(size=200) + m
    thr = M.threshold_at_fpr(s, m, 0.01)
    c = F.confusion_at(s, m, thr)
    assert (c.tp + c.fn, c.fp + c.tn) == (50, 150)
    assert c.fpr <= 0.01 and c.tpr == pytest.approx(M.tpr_at_fpr(s, m, 0.01))
    assert (c.tpr, c.fpr) == F.operating_point(s, m, thr)
    table = F.confusion_frame(c)
    assert table.loc["truly member", "flagged as member"] == c.tp
    assert table.loc["truly non-member", "not flagged"] == c.tn
    nothing = F.confusion_at(s, m, math.inf)
    assert (nothing.tp, nothing.fp) == (0, 0)


def test_scores_quoted_on_their_axis():
    assert F.score_quote(-0.001, True) == "−log10(−score) 3"
    assert F.score_quote(-0.0049, False) == "score -0.0049"
    shown, transformed = F.display_scores([-1e-5, -1e-2, -0.5])
    assert transformed
    back = [F.score_from_display(v, True) for v in shown]
    assert back == pytest.approx([-1e-5, -1e-2, -0.5])
    assert F.score_from_display(0.7, False) == 0.7


def _report(budget=0.1):
    rng = np.random.default_rng(0)
    cals = {
        name: Calibration(name, rng.normal(1, 1, 200), rng.normal(0, 1, 200), title=name.upper()) for name in ("a", "b")
    }
    scores = {"a": [5.0, 5.0, -5.0], "b": [5.0, -5.0, -5.0]}
    return judge_scores(cals, scores, ["x.png", "y.png", "z.png"], budget)


def test_headline_and_card_badges():
    report = _report()
    assert headline_verdict(report) == (
        "1 of 3 images look like members at the calibrated 10 % FPR threshold "
        "(flagged by a majority of the attacks, 2 attacks); 2 do not."
    )
    card = card_summary(report.summary("x.png"), 0.1)
    assert card.startswith("**x.png**: :orange-badge[looks like a member] flagged by 2 of 2 attacks at 10 % FPR")
    assert ":blue-badge[does not look like a member]" in card_summary(report.summary("z.png"), 0.1)
    assert "up to" not in card  # the 'any' caveat is said once on the page, not on every card
    na = judge_scores(report.calibrations, {"a": [1.0], "b": [1.0]}, ["w.png"], 0.001)  # 200 non-members < 1000
    assert "without a verdict" in headline_verdict(na)
    with pytest.raises(ValueError, match="badge"):
        badge("x", "pink")


def test_perturbation_figure_marks_flags_against_the_threshold():
    fig = perturbation_figure(
        ["original", "blur σ=1 px", "flipped left-right"],
        [2.0, 0.5, 1.2],
        1.0,
        image_id="x.png",
        attack_title="Loss",
        budget=0.01,
    )
    assert list(fig.data[0].y) == ["original", "blur σ=1 px", "flipped left-right"]
    assert fig.layout.meta["flagged"] == [True, False, True]
    assert list(fig.data[0].marker.symbol) == ["diamond", "diamond-open", "diamond"]
    assert fig.layout.shapes[0].x0 == 1.0
    with pytest.raises(ValueError, match="one score per label"):
        perturbation_figure(["a"], [1.0, 2.0], None, image_id="x", attack_title="L", budget=0.01)


def test_forward_animation_has_a_frame_per_t_and_a_play_button():
    frames = [np.full((16, 16), v, np.uint8) for v in (0, 128, 255)]
    fig = forward_animation_figure(frames, [0, 500, 999], [0.9999, 0.08, 4e-5])
    assert [f.name for f in fig.frames] == ["t=0", "t=500", "t=999"]
    assert fig.layout.updatemenus[0].buttons[0].method == "animate"
    assert [s.label for s in fig.layout.sliders[0].steps] == ["0", "500", "999"]
    assert "abar_t = 4.000e-05" in fig.frames[2].layout.title.text
    assert "abar_t = 0.9999" in fig.frames[0].layout.title.text
    with pytest.raises(ValueError, match="as many frames"):
        forward_animation_figure(frames, [0, 1], [1.0, 0.5])
