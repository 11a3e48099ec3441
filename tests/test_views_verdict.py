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


def _transferred_cal():
    from mia_core.calibration import calibration_partition
    from mia_core.lab.verdict import Calibration as C

    rng = np.random.default_rng(3)
    labels = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    scores = rng.normal(labels.astype(float), 1.0)
    part = calibration_partition(labels)
    cal, test = part.calibration, part.test
    return C(
        "pia",
        scores[cal & labels],
        scores[cal & ~labels],
        title="PIA",
        test_member_scores=scores[test & labels],
        test_nonmember_scores=scores[test & ~labels],
        partition=part,
    )


def test_threshold_source_line_names_part_sizes_and_achieved_fpr():
    from mia_core.views.verdict import threshold_source_line

    cal = _transferred_cal()
    line = threshold_source_line({"pia": cal}, 0.01)
    src = cal.source(0.01)
    assert "calibrated, not oracle" in line and "seed 0" in line and "50% of each class" in line
    assert "150 members and 150 non-members" in line and "test part (150 members, 150 non-members)" in line
    assert f"PIA {src.achieved_fpr * 100:.1f} % ({src.test_flagged_nonmembers} of 150)" in line
    assert "test part: no threshold saw" in threshold_source_line({"pia": cal}, 0.01, sample_part="test")
    assert "helped choose" in threshold_source_line({"pia": cal}, 0.01, sample_part="calibration")
    assert "PIA n/a (needs >= 1,000 calibration non-members)" in threshold_source_line({"pia": cal}, 0.001)
    oracle = threshold_source_line({"pia": Calibration("pia", MEMBERS, NONMEMBERS)}, 0.01)
    assert "all 200 known non-members" in oracle and "oracle" in oracle
    with pytest.raises(ValueError, match="sample_part"):
        threshold_source_line({"pia": cal}, 0.01, sample_part="train")


def test_sample_verdict_table_from_a_report():
    from mia_core.views.verdict import sample_verdict_table

    cal = _transferred_cal()
    thr = cal.threshold(0.1)
    rep = judge_scores({"pia": cal}, {"pia": [thr]}, ["img"], 0.1)
    table = sample_verdict_table(rep, "img", truth=False)
    row = table.loc["pia"]
    assert row["verdict"] == "member" and row["correct"] is False or row["correct"] == False  # noqa: E712
    assert row["threshold"] == thr and row["achieved FPR"] == pytest.approx(cal.rule_fpr(0.1))
    assert row["non-members above"] == pytest.approx(float(np.mean(cal.nonmember_scores >= thr)))
    na = sample_verdict_table(judge_scores({"pia": cal}, {"pia": [0.0]}, ["img"], 0.001), "img", True).loc["pia"]
    assert na["verdict"].startswith("n/a (needs >= 1,000") and na["correct"] is None and np.isnan(na["threshold"])
