"""AppTest of the Attack lab page: the five attacks with their costs, a real (tiny) run through the worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from mia_core.attacks import DEFAULT_ATTACKS, REGISTRY

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGE = "pages/attack_lab.py"


@pytest.fixture()
def at(open_page):
    return open_page(PAGE, run=False)


def _texts(app) -> str:
    parts = [m.value for m in app.markdown] + [e.value for e in app.success] + [e.value for e in app.error]
    parts += [e.value for e in app.info] + [e.value for e in app.warning]
    return "\n".join(str(p) for p in parts)


def test_lists_the_five_attacks_with_their_costs(at):
    at.run()
    assert not at.exception
    assert at.title[0].value.endswith("Attack lab")
    table = at.dataframe[0].value
    assert list(table["attack"]) == [cls.title for cls in REGISTRY.values()]
    assert list(table["paper"]) == [cls.paper for cls in REGISTRY.values()]
    assert list(table["UNet calls / image"])[:5] == [1, 11, 2, 2, 1]
    assert list(table["with trace"])[:5] == [11, 20, 12, 12, 11]
    # on the defaults every selected result ships precomputed in assets/demo_store
    selected = table[table["selected"]]
    assert list(selected.index) == list(range(5)) and set(selected["results"]) == {"stored — opens instantly"}
    assert "all stored — opens instantly" in _texts(at)
    attacks = at.multiselect(key="attack_lab.attacks")
    assert attacks.value == list(DEFAULT_ATTACKS)
    assert (
        attacks.options[1]
        == "SecMI — Duan et al., ICML 2023 · gray box · published cost 11 UNet calls/image (20 with trace)"
    )
    assert "11 UNet calls/image (20 with trace)" in attacks.options[1]
    # the published defaults are in the form
    assert at.number_input(key="attack_lab.p.secmi.t_sec").value == 100
    assert at.text_input(key="attack_lab.p.pia.sweep").value.startswith("0, 50, 100")
    # the precomputed results are summarised, with the metric conventions
    summary = at.dataframe[1].value
    assert len(summary) == 5 and summary["AUC"].str.match(r"^0\.\d{3} \[").all()
    assert (summary["TPR @ 0.1% FPR"] == "n/a (needs >= 1000 non-members)").all()


def test_run_on_a_limited_experiment_starts_a_job_and_shows_the_metrics(at):
    at.session_state["cfg.limit"] = 10
    at.run()
    assert not at.exception
    assert "**20 images**" in _texts(at)
    at.multiselect(key="attack_lab.attacks").set_value(["loss", "pia"])
    at.number_input(key="attack_lab.p.pia.timestep").set_value(100)
    at.number_input(key="attack_lab.seed").set_value(3)
    at.button(key="attack_lab.run").click()
    at.run()
    assert not at.exception
    job = at.session_state["attack_lab.job"]
    assert job and job.startswith("attacks-")
    # only what differs from the published defaults is kept, for the other pages to read
    assert at.session_state["cfg.attacks"] == ["loss", "pia"]
    assert at.session_state["cfg.params"] == {"pia": {"timestep": 100}}
    assert at.session_state["cfg.seed"] == 3
    deadline = time.time() + 60
    while time.time() < deadline and not any(s.value.startswith("Done") for s in at.success):
        time.sleep(0.5)
        at.run()
        assert not at.exception
    assert any(s.value.startswith("Done — 2 attack(s) finished on 20 images") for s in at.success), _texts(at)
    summary = at.dataframe[1].value
    assert list(summary["attack"]) == [REGISTRY["loss"].title, REGISTRY["pia"].title]
    assert (summary["members / non-members"] == "10 / 10").all()
    assert (summary["TPR @ 1% FPR"] == "n/a (needs >= 100 non-members)").all()
    assert at.dataframe[0].value["results"].tolist()[0] == "stored — opens instantly"
    # a second Run of the same request opens instantly: nothing to compute
    at.button(key="attack_lab.run").click()
    at.run()
    assert "already have stored results" in _texts(at) and at.session_state["attack_lab.job"] is None


def test_bad_parameters_give_a_message_and_start_nothing(at):
    at.run()
    at.text_input(key="attack_lab.p.pia.sweep").set_value("0, fifty")
    at.number_input(key="attack_lab.p.secmi.t_sec").set_value(105)
    at.button(key="attack_lab.run").click()
    at.run()
    assert not at.exception
    message = at.error[0].value
    assert "Nothing was started" in message and "'fifty' is not a number" in message and "multiple of k" in message
    assert not at.get("progress")  # no job started
    assert at.session_state["cfg.params"] == {}


def test_two_sessions_running_attacks_at_once_both_finish_correctly(monkeypatch, tmp_path):
    """Two browser tabs = two sessions sharing the process's one worker: both jobs finish, and each
    stored result equals the attack run directly."""
    import numpy as np

    from mia_core.attacks import get_attack
    from mia_core.lab.experiment import load_experiment, stored_results

    monkeypatch.setenv("MIA_STORE", str(tmp_path / "store"))
    tabs = []
    for attack, seed in (("loss", 5), ("sima", 6)):
        tab = AppTest.from_file(APP, default_timeout=60)
        tab.session_state["cfg.limit"] = 8
        tab.run()
        tab.switch_page(PAGE).run()
        tab.multiselect(key="attack_lab.attacks").set_value([attack])
        tab.number_input(key="attack_lab.seed").set_value(seed)
        tab.button(key="attack_lab.run").click()
        tab.run()
        assert not tab.exception and tab.session_state["attack_lab.job"]
        tabs.append((tab, attack, seed))
    deadline = time.time() + 90
    pending = list(tabs)
    while pending and time.time() < deadline:
        time.sleep(0.5)
        for item in list(pending):
            item[0].run()
            assert not item[0].exception
            if any(s.value.startswith("Done") for s in item[0].success):
                pending.remove(item)
    assert not pending, "a job did not finish"
    exp = load_experiment("default", "default", device="cpu", limit=8)
    from mia_core.lab.runs import ResultStore

    store = ResultStore(tmp_path / "store")
    for _, attack, seed in tabs:
        stored = stored_results(exp, [get_attack(attack)], seed=seed, store=store)[attack]
        direct = get_attack(attack).run(exp.target, exp.x0, ids=exp.ids, seed=seed)
        np.testing.assert_allclose(stored.scores, direct.scores, rtol=1e-5)


def test_expensive_selection_offers_a_subset(open_page):
    at = open_page("pages/attack_lab.py", run=False)
    at.session_state["cfg.attacks"] = ["likelihood"]
    at.session_state["cfg.params"] = {"likelihood": {"n_probes": 2}}  # not among the precomputed results
    at.run()
    assert not at.exception
    assert any("To try it quickly" in w.value for w in at.warning)
    at.button(key="attack_lab.subset").click().run()
    assert not at.exception
    assert at.session_state["cfg.limit"] == 100
    assert "**200 images**, 100 members and 100 non-members" in _texts(at)
