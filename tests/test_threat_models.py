"""Threat models on every surface: the registry grouped by access, `mia attack --help`, metrics.json and
the printed table."""

from __future__ import annotations

import json

import pytest

from mia_core.attacks import ACCESS_LEVELS, REGISTRY, access_label, attacks_by_access
from mia_core.cli import build_parser, main
from mia_core.views.attack_info import choice_label


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


def test_attacks_by_access_covers_the_registry():
    groups = attacks_by_access()
    assert list(groups) == ["black", "gray", "white"]
    assert sorted(n for names in groups.values() for n in names) == sorted(REGISTRY)
    assert {"rediffuse", "gan_leaks", "mc_set"} <= set(groups["black"])
    assert {"gsa1", "gsa2"} <= set(groups["white"])
    assert {"loss", "pia", "secmi", "sima"} <= set(groups["gray"])
    assert attacks_by_access(["gsa1", "loss", "mc_set"]) == {"black": ["mc_set"], "gray": ["loss"], "white": ["gsa1"]}
    assert all(cls.access in ACCESS_LEVELS for cls in REGISTRY.values())
    with pytest.raises(ValueError, match="nope"):
        attacks_by_access(["nope"])


def test_access_labels():
    assert access_label("rediffuse") == "black box"
    assert access_label("pia") == "gray box"
    assert access_label("secmi_nn") == "gray box + labelled member / non-member data"
    assert access_label("gsa1") == "white box + shadow models"


def test_attack_help_lists_every_attack_under_its_access_level():
    sub = build_parser()._subparsers._group_actions[0].choices["attack"]
    text = " ".join(sub.format_help().split())
    for level, names in attacks_by_access().items():
        head = ACCESS_LEVELS[level]
        assert head in text
        section = text.split(head, 1)[1].split(";", 1)[0] if level != "white" else text.split(head, 1)[1]
        for name in names:
            assert name in section, (name, level)


def test_metrics_json_and_table_show_access(tmp_path, tiny_unet_factory, capsys):
    folder = tmp_path / "tiny"
    tiny_unet_factory(8, 1).save_pretrained(folder, safe_serialization=True)
    out = tmp_path / "run"
    params = {"rediffuse": {"n_repeats": 2, "sweep": []}, "mc_set": {"n_samples": 8, "sample_steps": 2}}
    code = main(
        [
            "attack",
            "--target",
            str(folder),
            "--data",
            "default",
            "--limit",
            "6",
            "--attacks",
            "rediffuse,loss,mc_set",
            "--params",
            json.dumps(params),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--store",
            str(tmp_path / "store"),
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rediffuse"]["access"] == "black" and metrics["rediffuse"]["needs"] == []
    assert metrics["loss"]["access"] == "gray" and metrics["mc_set"]["access"] == "black"
    assert metrics["mc_set"]["info"]["samples_from_cache"] is False
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line for line in printed.splitlines() if line.split()}
    assert lines["attack"].rstrip().endswith("threat model")
    assert float(lines["rediffuse"].split()[1]) >= 0  # the AUC stays the second column
    assert "black box" in lines["rediffuse"] and "gray box" in lines["loss"] and "black box" in lines["mc_set"]
    # the samples are in the store: a second run reads them
    assert list((tmp_path / "store" / "samples").glob("*.npz"))


# -- the lab's planning helpers and the pages ---------------------------------------------------------


def test_plan_filters_orders_and_costs_by_access():
    from mia_core.attacks import get_attack
    from mia_core.lab import plan

    names = list(REGISTRY)
    assert plan.filter_by_access(names, ["white"]) == ["gsa1", "gsa2"]
    assert plan.filter_by_access(names, ["black"], keep=["loss"]) == ["loss", "rediffuse", "gan_leaks", "mc_set"]
    with pytest.raises(ValueError, match="purple"):
        plan.filter_by_access(names, ["purple"])
    assert plan.order_by_access(["gsa1", "loss", "mc_set", "pia", "custom"]) == [
        "mc_set",
        "loss",
        "pia",
        "gsa1",
        "custom",
    ]
    rows = plan.attack_table({}, [], [], levels=["black", "white"])
    assert [r["access"] for r in rows] == ["black box"] * 3 + ["white box + shadow models"] * 2
    assert {r["access"] for r in plan.attack_table({}, [], [])} == {
        "black box",
        "gray box",
        "gray box + labelled member / non-member data",
        "gray box + public data known to be non-members",
        "white box + shadow models",
    }
    assert plan.access_option_label("black") == "Black box (3)"
    # the generated samples are a one-off cost in the plan, shown in the label
    mc = get_attack("mc_set", {"n_samples": 100, "sample_steps": 10})
    assert plan.make_plan([mc], set(), 50, 100.0).calls_to_compute == 1000
    assert "1,000 once for generated samples" in plan.cost_text("mc_set", {"n_samples": 100, "sample_steps": 10})
    assert "gray box" in choice_label("pia", plan.cost_text("pia"))


def test_learn_threat_models_table():
    from mia_core.views.attack_info import threat_models
    from mia_core.views.learn import attack_summary

    rows = threat_models()
    assert [r["threat model"] for r in rows] == ["black box", "gray box", "white box"]
    assert "ReDiffuse" in rows[0]["attacks"] and "GAN-Leaks" in rows[0]["attacks"]
    assert "GSA1" in rows[2]["attacks"] and "PIA" in rows[1]["attacks"]
    summary = {r["name"]: r for r in attack_summary()}
    assert summary["gsa2"]["threat model"] == "white box + shadow models"


def test_attack_lab_access_filter(open_page):
    from mia_core.attacks import DEFAULT_ATTACKS

    at = open_page("pages/attack_lab.py")
    table = at.dataframe[0].value
    assert list(table["access"]) == [access_label(n) for n in REGISTRY]
    pills = at.pills(key="attack_lab.access")
    assert list(pills.value) == ["black", "gray", "white"]
    pills.set_value(["black"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["attack"]) == [REGISTRY[n].title for n in ("rediffuse", "gan_leaks", "mc_set")]
    assert set(table["access"]) == {"black box"}
    options = at.multiselect(key="attack_lab.attacks").options
    # the black-box attacks, and the attacks already chosen (never dropped by a filter)
    assert len(options) == len(DEFAULT_ATTACKS) + 3
    assert sum("black box" in o for o in options) == 3
    at.pills(key="attack_lab.access").set_value(["white"]).run()
    assert list(at.dataframe[0].value["access"]) == ["white box + shadow models"] * 2


def test_learn_page_explains_threat_models(open_page):
    at = open_page("pages/learn.py")
    assert any("Threat models" in h.value for h in at.header)
    tables = [t.value for t in at.table]
    threat = [t for t in tables if "the attacker has" in t.columns]
    assert threat and list(threat[0].index) == ["black box", "gray box", "white box"]


def test_compare_groups_by_threat_model(open_page):
    at = open_page("pages/compare.py")
    table = at.dataframe[0].value  # the metric table
    assert "threat model" in table.columns and set(table["threat model"]) == {"gray box"}
