"""mia_core.views.attack_info: the one table of short names, colours, access levels and explanations."""

from __future__ import annotations

import dataclasses

import pytest

from mia_core.attacks import ACCESS_LEVELS, REGISTRY
from mia_core.attacks.base import Attack
from mia_core.views import attack_info as AI
from mia_core.views.style import ATTACK_COLORS, attack_color


def test_every_registered_attack_has_a_full_entry():
    infos = AI.all_attack_info()
    assert [i.name for i in infos] == list(REGISTRY)
    for info in infos:
        cls = REGISTRY[info.name]
        assert info.short and info.short == AI.SHORT_NAMES[info.name], info.name  # written here, not derived
        assert info.explanation == AI.EXPLANATIONS[info.name], info.name
        assert info.access == cls.access and info.access in AI.ACCESS_ORDER
        assert info.needs == tuple(cls.needs) and info.paper == cls.paper and info.title == cls.title
        assert info.color == ATTACK_COLORS[info.name]
    assert len({i.short for i in infos}) == len(infos)  # legends stay unambiguous
    assert len({i.color for i in infos}) == len(infos)


def test_known_values_and_access_read_from_the_class():
    secmi = AI.attack_info("secmi")
    assert (secmi.short, secmi.title, secmi.access) == ("SecMI", "SecMI-stat (t-error)", "gray")
    assert secmi.access_text == ACCESS_LEVELS["gray"]
    assert AI.attack_info("qr").needs == ("public data known to be non-members",)
    assert AI.ACCESS_ORDER == ("black", "gray", "white")
    assert AI.short_name("pia") == "PIA"
    with pytest.raises(dataclasses.FrozenInstanceError):
        secmi.short = "x"  # type: ignore[misc]


def test_a_new_attack_without_an_entry_still_displays(monkeypatch):
    class Future(Attack):
        name = "future"
        title = "Future attack (gradient norm)"
        paper = "Someone 2027"
        score_label = "-|grad|"
        access = "white"
        needs = ("shadow models",)

    monkeypatch.setitem(REGISTRY, "future", Future)
    info = AI.attack_info("future")
    assert info.short == "Future attack" and info.title == Future.title
    assert info.explanation == "-|grad|" and info.access == "white" and info.needs == ("shadow models",)
    assert info.color == attack_color("future") and info.access_rank == 2
    assert "future" in [i.name for i in AI.all_attack_info()]


def test_unregistered_name_falls_back_to_itself():
    info = AI.attack_info("gone")
    assert (info.short, info.title, info.access) == ("gone", "gone", "unknown")
    assert info.access_text == "unknown access" and info.access_rank == len(AI.ACCESS_ORDER)


def test_choice_label():
    assert (
        AI.choice_label("pia", "2 UNet calls/image (12 with trace)")
        == "PIA — Kong et al., ICLR 2024 · gray box · 2 UNet calls/image (12 with trace)"
    )
    assert AI.choice_label("pia") == "PIA — Kong et al., ICLR 2024 · gray box"


def test_no_other_source_of_short_names():
    from mia_core.lab import plan, teaching
    from mia_core.views import presenter, results

    for module, name in (
        (results, "ATTACK_LABELS"),
        (results, "attack_label"),
        (presenter, "short_title"),
        (presenter, "attack_title"),
        (plan, "attack_label"),
        (teaching, "_MEASURES"),
        (teaching, "attack_summary"),
    ):
        assert not hasattr(module, name), f"{module.__name__}.{name}"


def test_by_reason_names_each_reason_once_and_run_labels_say_the_conditioning():
    from mia_core.views.attack_info import by_reason, short_name

    assert by_reason({"a": "r1", "b": "r2", "c": "r1"}) == [(["a", "c"], "r1"), (["b"], "r2")]
    assert short_name("loss:cond=caption") == "Loss own caption"
    assert short_name("pia:timestep=100,cond=fixed,prompt=a%20seven,guidance=3") == (
        'PIA timestep=100 · prompt "a seven", guidance 3'
    )
    assert short_name("loss:cond=empty") == "Loss empty prompt"
