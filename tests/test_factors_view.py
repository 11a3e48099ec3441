"""factors_view: ordering of factor values, the study table, the headline figure, the findings in words."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mia_core.views import factors as fv
from mia_core.views.attack_info import short_name


def make_study(
    factor="dp_epsilon",
    values=(None, 10.0, 4.0, 1.0),
    labels=("no DP", "10", "4", "1"),
    aucs=None,
    heldout=(0.031, 0.040, 0.049, 0.058),
    member=(0.020, 0.035, 0.046, 0.057),
    attacks=("loss", "pia"),
    ci=0.03,
    epsilons=(None, 9.9, 3.9, 0.99),
) -> dict:
    """A study.json dict (format mia-study/1) with hand-chosen numbers; rows given in reverse order on purpose."""
    aucs = aucs or {"loss": (0.75, 0.60, 0.55, 0.50), "pia": (0.97, 0.70, 0.60, 0.52)}
    rows, models = [], []
    for i, (v, lab) in enumerate(zip(values, labels)):
        for a in attacks:
            x = aucs[a][i]
            rows.append(
                {
                    "value": v,
                    "label": lab,
                    "attack": a,
                    "auc": x,
                    "auc_ci": [x - ci, x + ci],
                    "tpr_at_1pct": round(x - 0.5, 3),
                    "tpr_at_0_1pct": None,
                    "n_members": 200,
                    "n_nonmembers": 300,
                }
            )
        models.append(
            {
                "value": v,
                "label": lab,
                "heldout_loss": heldout[i],
                "member_loss": member[i],
                "epsilon": epsilons[i] if factor == "dp_epsilon" else None,
                "train_seconds": 10.0 + i,
                "steps": 1000,
                "n_members": 200,
                "target_dir": f"models/{factor}-{lab}",
            }
        )
    return {
        "format": "mia-study/1",
        "factor": factor,
        "factor_label": "DP target epsilon",
        "values": list(values),
        "data": "default",
        "attacks": list(attacks),
        "base_config": {"steps": 1000},
        "command": "mia study ...",
        "device": "cpu",
        "seconds": 12.5,
        "rows": rows[::-1],
        "models": models[::-1],
    }


# -- ordering -----------------------------------------------------------------------------------


def test_numeric_factors_ascend():
    assert fv.value_order("steps", [6000, 500, 2000, 500]) == [500, 2000, 6000]
    assert fv.value_order("n_members", [898, 100, 400]) == [100, 400, 898]


def test_dp_epsilon_reads_from_no_dp_to_the_strongest_privacy():
    assert fv.value_order("dp_epsilon", [1.0, None, 10.0, 4.0]) == [None, 10.0, 4.0, 1.0]
    assert fv.value_order("dp_epsilon", [1, "inf", 8]) == ["inf", 8, 1]
    assert fv.is_no_dp(None) and fv.is_no_dp("no DP") and fv.is_no_dp(float("inf")) and not fv.is_no_dp(1.0)


def test_augment_order_and_unknown_values_last():
    assert fv.value_order("augment", ["strong", "custom", "none", "hflip"]) == ["none", "hflip", "strong", "custom"]


def test_unorderable_value_is_named():
    with pytest.raises(ValueError, match="'lots'"):
        fv.value_order("steps", [100, "lots"])
    with pytest.raises(ValueError, match="'tight'"):
        fv.value_order("dp_epsilon", [None, "tight"])


# -- view and table -----------------------------------------------------------------------------


def test_view_orders_rows_and_models():
    view = fv.study_view(make_study())
    assert view.labels == ["no DP", "10", "4", "1"]
    assert view.rows["label"].tolist() == ["no DP", "no DP", "10", "10", "4", "4", "1", "1"]
    assert view.rows["attack"].tolist() == ["loss", "pia"] * 4  # the study's attack order within a value
    assert view.rows["value"].iloc[0] is None  # "no DP" stays None (not NaN)
    assert view.models["heldout_loss"].tolist() == [0.031, 0.040, 0.049, 0.058]
    assert view.rows["auc_hi"].iloc[1] == pytest.approx(0.97 + 0.03)


def test_equal_labels_are_told_apart():
    study = make_study(
        factor="steps",
        values=(100, 200),
        labels=("x", "x"),
        heldout=(0.1, 0.2),
        member=(0.1, 0.2),
        aucs={"loss": (0.6, 0.7), "pia": (0.6, 0.7)},
    )
    assert fv.study_view(study).labels == ["x (100)", "x (200)"]


def test_table_puts_each_models_utility_beside_its_rows():
    table = fv.study_table(fv.study_view(make_study()))
    assert len(table) == 8
    row = table[(table["DP target epsilon"] == "4") & (table["attack"] == short_name("pia"))].iloc[0]
    assert row["AUC"] == 0.60 and row["held-out loss"] == 0.049 and row["member loss"] == 0.046
    assert row["achieved ε"] == 3.9 and row["training s"] == 12.0 and row["non-members"] == 300
    assert math.isnan(row["TPR@0.1%FPR"])  # null in the JSON: not resolvable
    assert table["DP target epsilon"].iloc[0] == "no DP"


def test_table_has_no_epsilon_column_for_other_factors():
    study = make_study(factor="steps", values=(500, 2000, 6000, 12000), labels=("500", "2000", "6000", "12000"))
    assert "achieved ε" not in fv.study_table(fv.study_view(study)).columns


def test_a_study_object_is_read_like_its_json(tmp_path):
    import json

    from mia_core.lab.study import load_study

    (tmp_path / "study.json").write_text(json.dumps(make_study()))
    view = fv.study_view(load_study(tmp_path))
    assert view.labels == ["no DP", "10", "4", "1"] and len(view.rows) == 8


# -- figure ---------------------------------------------------------------------------------------


def test_figure_has_one_line_per_attack_in_order_with_ci_bars_and_utility():
    fig = fv.factor_figure(fv.study_view(make_study()))
    attacks = [t for t in fig.data if t.meta and t.meta.get("role") == "attack"]
    assert [t.meta["attack"] for t in attacks] == ["loss", "pia"]
    pia = attacks[1]
    assert list(pia.x) == ["no DP", "10", "4", "1"] and list(pia.y) == [0.97, 0.70, 0.60, 0.52]
    assert list(pia.error_y.array) == pytest.approx([0.03] * 4)
    assert list(pia.error_y.arrayminus) == pytest.approx([0.03] * 4)
    assert pia.line.color == fv.attack_color("pia")
    utility = {t.meta["loss"]: t for t in fig.data if t.meta and t.meta.get("role") == "utility"}
    assert list(utility["heldout"].y) == [0.031, 0.040, 0.049, 0.058] and "member" in utility
    assert utility["heldout"].yaxis == "y2"  # the linked second panel
    assert list(fig.layout.xaxis.categoryarray) == ["no DP", "10", "4", "1"]
    assert fig.layout.xaxis2.title.text == "DP target epsilon"


def test_tpr_figure_and_bad_metric():
    fig = fv.factor_figure(fv.study_view(make_study()), "tpr_at_1pct")
    pia = [t for t in fig.data if t.meta and t.meta.get("attack") == "pia"][0]
    assert list(pia.y) == pytest.approx([0.47, 0.20, 0.10, 0.02]) and pia.error_y.array is None
    with pytest.raises(ValueError, match="'auroc'"):
        fv.factor_figure(fv.study_view(make_study()), "auroc")


def test_figure_without_utility_has_one_panel():
    study = make_study()
    for m in study["models"]:
        m["heldout_loss"] = None
    fig = fv.factor_figure(fv.study_view(study))
    assert not [t for t in fig.data if t.meta and t.meta.get("role") == "utility"]
    assert "xaxis2" not in fig.layout.to_plotly_json()


# -- findings ---------------------------------------------------------------------------------------


def test_findings_name_the_trade_off():
    lines = fv.findings(fv.study_view(make_study()))
    assert lines[0] == (
        "AUC of **PIA** (the strongest attack here) falls from 0.97 to 0.52 as the privacy budget "
        "goes from **no DP** to **ε = 1**, while the held-out loss rises from 0.031 to 0.058."
    )
    assert "larger than the 95 % bootstrap intervals" in lines[1]
    assert lines[2] == "The other attacks over the same range: Loss 0.75 → 0.50."
    assert lines[3] == (
        "The generalisation gap (held-out minus training loss, the signal loss-based attacks read) "
        "shrinks (+0.011 → +0.001)."
    )
    assert lines[4] == "At a 1 % false-positive rate PIA finds 47% of the members with no DP and 2% with ε = 1."


def test_findings_flat_peaked_and_noisy():
    study = make_study(
        factor="steps",
        values=(500, 2000, 12000),
        labels=("500", "2000", "12000"),
        aucs={"loss": (0.60, 0.65, 0.61), "pia": (0.70, 0.90, 0.71)},
        heldout=(0.05, 0.05, 0.05),
        member=(0.05, 0.04, 0.03),
        ci=0.05,
    )
    lines = fv.findings(fv.study_view(study))
    assert lines[0].startswith(
        "AUC of **PIA** (the strongest attack here) stays about the same at about 0.70 "
        "(from 0.70 to 0.71) as training goes from **500** to **12,000** steps"
    )
    assert lines[0].endswith("while the held-out loss stays at about 0.05.")
    assert "peaks at 0.90 with 2,000 steps" in lines[1]
    rising = make_study(
        factor="steps",
        values=(500, 2000),
        labels=("500", "2000"),
        ci=0.05,
        aucs={"loss": (0.6, 0.6), "pia": (0.70, 0.75)},
        heldout=(0.1, 0.1),
        member=(0.1, 0.1),
    )
    assert any("intervals at the two ends overlap" in line for line in fv.findings(fv.study_view(rising)))


def test_findings_without_results():
    study = make_study()
    study["rows"] = []
    assert fv.findings(fv.study_view(study)) == ["This study has no attack results to summarise."]


def test_every_factor_is_explained():
    assert set(fv.FACTORS) == {"steps", "n_members", "dp_epsilon", "augment", "shift"}
    assert all(len(info.why) > 200 for info in fv.FACTORS.values())
    assert isinstance(fv.study_table(fv.study_view(make_study())), pd.DataFrame)


def test_a_study_still_running_keeps_its_pending_values_on_the_axis():
    study = make_study()
    study["rows"] = [r for r in study["rows"] if r["label"] in ("no DP", "10")]
    study["models"] = [m for m in study["models"] if m["label"] in ("no DP", "10")]
    view = fv.study_view(study)
    assert view.labels == ["no DP", "10", "4", "1"]  # from "values", labelled as mia_core.lab.study labels them
    assert list(fv.factor_figure(view).layout.xaxis.categoryarray) == ["no DP", "10", "4", "1"]
    assert fv.findings(view)[0].startswith(
        "AUC of **PIA** (the strongest attack here) falls from 0.97 to 0.70 as "
        "the privacy budget goes from **no DP** to **ε = 10**"
    )
    study["rows"] = [r for r in study["rows"] if r["label"] == "no DP"]
    assert fv.findings(fv.study_view(study)) == ["Only one value of DP target epsilon has results: nothing to compare."]


def test_shift_study_draws_the_blind_baseline_and_says_what_it_means():
    """A shift study (mixing experiment): the blind baseline is a grey dash-dot reference line, the findings
    open with it and name the attacks that rise with it; no utility panel (nothing was trained)."""
    study = make_study(
        factor="shift",
        values=(0.0, 0.5, 1.0),
        labels=("0% shifted", "50% shifted", "100% shifted"),
        aucs={"loss": (0.60, 0.70, 0.85), "pia": (0.90, 0.91, 0.90), "blind": (0.50, 0.72, 0.99)},
        heldout=(None, None, None),
        member=(None, None, None),
        attacks=("loss", "pia", "blind"),
        epsilons=(None, None, None),
    )
    view = fv.study_view(study)
    fig = fv.factor_figure(view)
    blind = [t for t in fig.data if t.meta["role"] == "reference"]
    assert len(blind) == 1 and blind[0].meta["attack"] == "blind" and blind[0].line.dash == "dashdot"
    assert blind[0].name == "blind baseline (images only, no model)"
    assert {t.meta["attack"] for t in fig.data if t.meta["role"] == "attack"} == {"loss", "pia"}
    assert not [t for t in fig.data if t.meta["role"] == "utility"]
    lines = fv.findings(view)
    assert lines[0].startswith("The **blind baseline**") and "rises from 0.50 to 0.99" in lines[0]
    assert "Loss rises with it" in lines[0] and "PIA" not in lines[0] and "not memorisation" in lines[0]
    assert "strongest attack" in lines[1] and "PIA" in lines[1]  # the blind baseline is not an attack
    assert fv.caveat("shift") == fv.SHIFT_CAVEAT and fv.caveat("steps") == fv.CAVEAT
    assert fv.FACTORS["shift"].title.startswith("Distribution shift")
