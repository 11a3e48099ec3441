"""AppTest: the Attack lab never drops a selection, and its plan describes the form as it is now (issue 19)."""

from __future__ import annotations

import time

import pytest

from mia_core.attacks import DEFAULT_ATTACKS, REGISTRY

PAGE = "pages/attack_lab.py"


def _texts(app) -> str:
    parts = [m.value for m in app.markdown] + [e.value for e in app.info] + [e.value for e in app.warning]
    parts += [e.value for e in app.success] + [e.value for e in app.error]
    return "\n".join(str(p) for p in parts)


def _wait_done(at, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        if any(s.value.startswith("Done") for s in at.success):
            return
        time.sleep(0.5)
    pytest.fail("the job did not finish: " + _texts(at))


def test_running_with_changed_parameters_keeps_every_chip(open_page):
    """The issue's sequence: run an attack with changed parameters; every chip stays, and the next Run
    still runs (or finds stored) all the selected attacks."""
    at = open_page(PAGE, run=False)
    at.session_state["cfg.limit"] = 6
    at.run()
    assert not at.exception
    chips = at.multiselect(key="attack_lab.attacks")
    assert chips.value == list(DEFAULT_ATTACKS)
    # the browser keeps the chips as their labels and sends those back on every rerun
    labels = [chips.options[list(REGISTRY).index(name)] for name in DEFAULT_ATTACKS]  # the shown chip texts
    chips.set_value(labels)
    at.text_input(key="attack_lab.p.loss.timesteps").set_value("100")
    at.text_input(key="attack_lab.p.loss.sweep").set_value("")
    at.button(key="attack_lab.run").click()
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.params"]["loss"]["timesteps"] == [100]
    assert at.multiselect(key="attack_lab.attacks").value == list(DEFAULT_ATTACKS)
    _wait_done(at, timeout=240)
    # The browser holds each chip as the label it showed before the Run and drops a chip whose label is
    # no longer among the options (so the next Run left that attack out): every held label must still be one.
    chips = at.multiselect(key="attack_lab.attacks")
    assert [label for label in labels if label not in chips.options] == []
    chips.set_value(labels)
    at.run()
    assert not at.exception, at.exception
    # after the job: the chips are all still there, and the form keeps the changed parameter
    assert at.multiselect(key="attack_lab.attacks").value == list(DEFAULT_ATTACKS)
    assert at.text_input(key="attack_lab.p.loss.timesteps").value == "100"
    # a second Run with nothing changed keeps all five: everything is stored now
    at.button(key="attack_lab.run").click()
    at.run()
    assert not at.exception
    assert at.session_state["cfg.attacks"] == list(DEFAULT_ATTACKS)
    assert "All 5 selected attack(s) already have stored results" in _texts(at)


def test_selected_line_and_advice_follow_the_form_before_run(open_page):
    """Editing the chips or a parameter changes the "Selected" line, the table and the time advice at
    once, without pressing Run (and nothing starts)."""
    at = open_page(PAGE)
    selected = next(m.value for m in at.markdown if m.value.startswith("**Selected:**"))
    assert "5 attack(s)" in selected and "all stored" in selected
    at.multiselect(key="attack_lab.attacks").set_value(["loss", "secmi"]).run()
    assert not at.exception
    selected = next(m.value for m in at.markdown if m.value.startswith("**Selected:**"))
    assert "2 attack(s)" in selected
    assert list(at.dataframe[0].value["selected"])[:5] == [True, True, False, False, False]
    # a parameter that is not stored: the line now has something to compute, with a time estimate
    at.text_input(key="attack_lab.p.loss.timesteps").set_value("100, 300").run()
    assert not at.exception
    selected = next(m.value for m in at.markdown if m.value.startswith("**Selected:**"))
    assert "1 stored" in selected and "to compute" in selected and "about" in selected
    assert at.dataframe[0].value["UNet calls / image"].iloc[0] == 2
    assert at.session_state["cfg.params"] == {} and at.session_state.get("attack_lab.job") is None
    # an expensive choice brings the subset advice before Run
    at.multiselect(key="attack_lab.attacks").set_value(["likelihood"])
    at.number_input(key="attack_lab.p.likelihood.n_probes").set_value(2)
    at.run()
    assert not at.exception
    assert any("To try it quickly" in w.value for w in at.warning)
    # invalid text: said, and the estimate falls back to the last Run's values
    at.text_input(key="attack_lab.p.loss.timesteps").set_value("1o0")
    at.multiselect(key="attack_lab.attacks").set_value(["loss"]).run()
    assert not at.exception
    assert any("Not valid yet" in w.value and "'1o0'" in w.value for w in at.warning)
