"""mia_core.views.learn: the Learn and Target pages' figures and tables (no model runs here)."""

from __future__ import annotations

import json

import numpy as np

from mia_core.attacks import REGISTRY
from mia_core.lab import teaching
from mia_core.lab.train import read_train_log
from mia_core.paths import DEFAULT_TARGET_DIR
from mia_core.schedule import NoiseSchedule
from mia_core.views import learn as VL
from mia_core.views.attack_info import attack_info
from mia_core.views.style import MEMBER_COLOR, NONMEMBER_COLOR


def test_attack_summary_uses_registry_costs_and_the_table():
    rows = {r["name"]: r for r in VL.attack_summary()}
    assert set(rows) == set(REGISTRY)
    assert rows["secmi"]["UNet calls / image"] == 11
    assert rows["pia"]["UNet calls / image"] == 2
    assert rows["loss"]["UNet calls / image"] == 1
    assert rows["secmi"]["attack"] == "SecMI" == attack_info("secmi").short
    assert rows["qr"]["access"].startswith("gray box") and "public data" in rows["qr"]["access"]
    assert all(r["paper"] and r["what it measures"] for r in rows.values())


def test_train_log_summary_and_loss_curve():
    log = read_train_log(DEFAULT_TARGET_DIR)
    summary = VL.train_log_summary(log)
    assert summary["steps"] == 12000 and summary["command"].startswith("mia train")
    fig = VL.loss_curve_figure(log)
    assert fig.layout.yaxis.type == "log" and len(fig.data[0].x) == len(log["loss_curve"])
    assert VL.loss_curve_figure({"loss_curve": []}) is None
    assert VL.loss_curve_figure({"loss_curve": [[1, 2, 3]]}) is not None
    assert VL.loss_curve_figure({"loss_curve": "nonsense"}) is None


def test_error_bars_and_abar():
    bars = VL.error_bars_figure(0.1, 0.3, title="x")
    assert list(bars.data[0].y) == [0.1, 0.3]
    assert list(bars.data[0].marker.color) == [MEMBER_COLOR, NONMEMBER_COLOR]
    json.dumps(bars.to_plotly_json(), default=str)
    schedule = NoiseSchedule.linear()
    fig = VL.abar_figure(schedule, 200)
    abar = schedule.alphas_cumprod.numpy()
    np.testing.assert_allclose(fig.data[0].y[0] ** 2 + fig.data[1].y[0] ** 2, 1.0, rtol=1e-6)
    assert abs(fig.data[0].y[0] - np.sqrt(abar[0])) < 1e-6
    assert fig.layout.shapes[0].x0 == 200


def test_teaching_keeps_no_figure():
    for name in (
        "error_bars_figure",
        "error_curve_figure",
        "abar_figure",
        "loss_curve_figure",
        "train_log_summary",
        "attack_summary",
        "_rgba",
        "_MEASURES",
    ):
        assert not hasattr(teaching, name), name
