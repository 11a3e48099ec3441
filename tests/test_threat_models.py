"""Threat models on every surface: the registry grouped by access, `mia attack --help`, metrics.json and
the printed table."""

from __future__ import annotations

import json

import pytest

from mia_core.attacks import ACCESS_LEVELS, REGISTRY, access_label, attacks_by_access
from mia_core.cli import build_parser, main


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
    code = main(["attack", "--target", str(folder), "--data", "default", "--limit", "6", "--attacks",
                 "rediffuse,loss,mc_set", "--params", json.dumps(params), "--out", str(out), "--device", "cpu",
                 "--store", str(tmp_path / "store")])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["rediffuse"]["access"] == "black" and metrics["rediffuse"]["needs"] == []
    assert metrics["loss"]["access"] == "gray" and metrics["mc_set"]["access"] == "black"
    assert metrics["mc_set"]["info"]["samples_from_cache"] is False
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line for line in printed.splitlines() if line.split()}
    assert "access" in lines["attack"]
    assert "black box" in lines["rediffuse"] and "gray box" in lines["loss"] and "black box" in lines["mc_set"]
    # the samples are in the store: a second run reads them
    assert list((tmp_path / "store" / "samples").glob("*.npz"))
