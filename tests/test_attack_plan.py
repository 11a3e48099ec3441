"""The Attack lab's planning helpers: form fields from the Params dataclasses, costs, estimates, summaries."""

from __future__ import annotations

import numpy as np
import pytest

from mia_core.attacks import REGISTRY, AttackResult, get_attack
from mia_core.lab import plan


def test_param_fields_follow_the_dataclasses():
    fields = {f.name: f for f in plan.param_fields("secmi")}
    assert list(fields) == ["t_sec", "k", "trace"]
    assert (fields["t_sec"].kind, fields["t_sec"].default) == ("int", 100)
    assert fields["trace"].kind == "bool"
    assert fields["t_sec"].help == "the attack timestep"
    pia = {f.name: f for f in plan.param_fields("pia")}
    assert pia["p"].kind == "float" and pia["sweep"].kind == "ints"
    assert plan.form_value(pia["sweep"]) == "0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500"
    assert plan.form_value(pia["timestep"], {"timestep": 100}) == 100


def test_parse_ints():
    assert plan.parse_ints("0, 50,100 ") == (0, 50, 100)
    assert plan.parse_ints("") == ()
    assert plan.parse_ints("10.0; 20") == (10, 20)
    with pytest.raises(ValueError, match="not a number"):
        plan.parse_ints("0, abc", "sweep")
    with pytest.raises(ValueError, match="whole number"):
        plan.parse_ints("1.5")


def test_non_default_keeps_only_changes():
    values = plan.values_from_form(
        "pia", {"timestep": 100, "p": 4.0, "sweep": "0, 50, 100, 150, 200, 250, 300, 350, 400, 450, 500"}
    )
    assert plan.non_default("pia", values) == {"timestep": 100}
    values = plan.values_from_form("loss", {"timesteps": "100, 200", "n_draws": 1, "sweep": ""})
    assert plan.non_default("loss", values) == {"timesteps": [100, 200], "sweep": []}
    # the stored dict rebuilds the same attack
    assert get_attack("loss", plan.non_default("loss", values)).params.timesteps == (100, 200)


def test_build_attack_reports_bad_values_clearly():
    with pytest.raises(ValueError, match="multiple of k"):
        plan.build_attack("secmi", {"t_sec": 105, "k": 10})
    with pytest.raises(ValueError, match="beyond this target's schedule"):
        plan.build_attack("pia", {"timestep": 1200}, num_timesteps=1000)
    assert plan.build_attack("pia", {"timestep": 100}, num_timesteps=1000).params.timestep == 100


def test_attack_table_lists_every_attack_with_costs():
    rows = plan.attack_table({}, ["pia"], stored=["pia"])
    assert [r["attack"] for r in rows] == [cls.title for cls in REGISTRY.values()]
    by_name = dict(zip(REGISTRY, rows))
    # loss, secmi, pia, pian, sima; secmi_nn and qr reuse SecMI's 11-call statistic (no trace)
    assert [by_name[n]["UNet calls / image"] for n in ("loss", "secmi", "pia", "pian", "sima", "secmi_nn", "qr")] == [
        1,
        11,
        2,
        2,
        1,
        11,
        11,
    ]
    assert [by_name[n]["with trace"] for n in ("loss", "secmi", "pia", "pian", "sima", "secmi_nn", "qr")] == [
        11,
        20,
        12,
        12,
        11,
        11,
        11,
    ]
    # the likelihood's cost is adaptive (an estimate); the ELBO's is one call per stratum (100) + the decoder term
    assert by_name["elbo"]["UNet calls / image"] == REGISTRY["elbo"]().unet_calls(trace=False)
    assert by_name["likelihood"]["UNet calls / image"] == REGISTRY["likelihood"]().unet_calls(trace=False) > 10
    assert [by_name[n]["results"] for n in ("loss", "secmi", "pia")] == ["", "", "stored — opens instantly"]
    # costs follow the session's parameters
    rows = plan.attack_table({"secmi": {"t_sec": 50}}, [], [])
    assert rows[1]["UNet calls / image"] == 6
    assert plan.cost_text("secmi") == "11 UNet calls/image (20 with trace)"
    assert plan.cost_text("secmi", {"t_sec": 50}) == "6 UNet calls/image (10 with trace)"
    assert plan.cost_text("secmi", {"t_sec": -3}) == plan.cost_text("secmi")  # invalid -> the defaults


def test_throughput_and_plan():
    entries = [
        {"key": {"target_fingerprint": "a"}, "seconds": 2.0, "n_images": 100, "unet_calls_per_image": 10},
        {"key": {"target_fingerprint": "a"}, "seconds": 1.0, "n_images": 100, "unet_calls_per_image": 10},
        {"key": {"target_fingerprint": "a"}, "seconds": 4.0, "n_images": 100, "unet_calls_per_image": 10},
        {"key": {"target_fingerprint": "b"}, "seconds": 1.0, "n_images": 1, "unet_calls_per_image": 1},
    ]
    assert plan.throughput(entries, "a") == pytest.approx(500.0)
    assert plan.throughput(entries, "zzz") is None
    attacks = [get_attack("loss"), get_attack("secmi")]
    p = plan.make_plan(attacks, {"loss"}, 100, 500.0)
    assert p.calls_total == 100 * (11 + 20) and p.calls_to_compute == 100 * 20
    assert p.seconds == pytest.approx(4.0) and not p.all_stored
    assert plan.make_plan(attacks, {"loss", "secmi"}, 100, 500.0).all_stored
    assert plan.guess_throughput(1_000_000, 8, 1, "cpu") > plan.guess_throughput(1_000_000, 32, 3, "cpu")
    assert [plan.format_duration(x) for x in (0.2, 12, 300, 9000, None)] == [
        "< 1 s",
        "12 s",
        "5 min",
        "2.5 h",
        "unknown",
    ]


def test_metric_rows():
    rng = np.random.default_rng(0)
    is_member = np.arange(400) < 200
    scores = rng.normal(size=400) + 2.0 * is_member
    res = AttackResult(
        "pia", tuple(map(str, range(400))), scores, np.zeros(0, dtype=np.int64), np.zeros((400, 0)), "", 2, 1.5, {}
    )
    (row,) = plan.metric_rows({"pia": res}, is_member, n_bootstrap=20)
    assert row["attack"] == REGISTRY["pia"].title
    assert row["AUC"].startswith(f"{row['_auc']:.3f} [")
    assert row["TPR @ 0.1% FPR"] == "n/a (needs >= 1000 non-members)"
    assert row["members / non-members"] == "200 / 200"
