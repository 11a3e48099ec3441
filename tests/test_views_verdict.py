"""mia_core.views.verdict: the honest sentence and the placement figure of a verdict report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core.lab.verdict import Calibration, budget_text, judge_scores
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR
from mia_core.views.verdict import placement_figure, verdict_sentence

# 200 non-members 0..199 and 100 members 100..199 + 0.5: hand-checkable numbers.
NONMEMBERS = np.arange(200, dtype=float)
MEMBERS = np.arange(100, 200, dtype=float) + 0.5


@pytest.fixture()
def cal() -> Calibration:
    return Calibration("pia", MEMBERS, NONMEMBERS, title="PIA")


def test_sentence_contains_tpr_and_budget(cal):
    s = verdict_sentence(0.01, cal.rule_tpr(0.01), n_members=100, n_nonmembers=200, attack_title="PIA")
    assert "0.02" in s and "1 % FPR" in s and "1 in 100" in s
    assert "evidence, not proof" in s and "may still have been used" in s
    assert "2 of 100" in s
    # the image's own outcome comes first
    assert verdict_sentence(0.05, 0.44, flagged=False).startswith("A 'not flagged' image")
    assert verdict_sentence(0.05, 0.44, flagged=True).startswith("Flagged at 5 % FPR")
    assert "1 in 20" in verdict_sentence(0.05, 0.44)
    na = verdict_sentence(0.001, None, n_nonmembers=899)
    assert "1000" in na and "899" in na and "No verdict" in na
    assert budget_text(0.001) == "0.1 %"


def test_placement_figure(cal):
    rep = judge_scores({"pia": cal}, {"pia": [199.0, 10.0]}, ["up-1.png", "up-2.png"], 0.01)
    fig = placement_figure(rep, "pia", score_label="-R")
    spec = json.loads(fig.to_json())
    names = [t.get("name", "") for t in spec["data"]]
    assert any("non-member" in n for n in names) and any(n.startswith("members") for n in names)
    colors = [t.get("marker", {}).get("color") for t in spec["data"]]
    assert NONMEMBER_COLOR in colors and MEMBER_COLOR in colors
    thr = next(t for t in spec["data"] if t["name"].startswith("threshold"))
    assert thr["x"] == [198.0, 198.0] and "1 % FPR" in thr["name"]
    up = next(t for t in spec["data"] if t["name"] == "your image(s)")
    assert up["x"] == [199.0, 10.0] and up["text"] == ["up-1.png", "up-2.png"]
    assert all(t["type"] in ("bar", "scatter") for t in spec["data"])  # SVG, no WebGL
    # a budget that is n/a has no threshold line
    few = judge_scores({"pia": cal}, {"pia": [1.0]}, ["x"], 0.001)
    traces = json.loads(placement_figure(few, "pia").to_json())["data"]
    assert not any(t.get("name", "").startswith("threshold") for t in traces)


def test_sentence_for_several_attacks():
    s = verdict_sentence(0.01, {"PIA": 0.44, "SimA": 0.79, "SecMI": None}, flagged=False, n_nonmembers=899)
    assert "0.44 (PIA), 0.79 (SimA)" in s and "SecMI" not in s
    assert "21 %" in s and "899 known non-members" in s
    assert s.startswith("A 'not flagged' image")
    assert "No verdict" in verdict_sentence(0.001, {"PIA": None}, n_nonmembers=899)
