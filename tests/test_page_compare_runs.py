"""AppTest: runs, not attacks, on Compare (issue 19): two Loss runs side by side, and a URL that reproduces
the view (selected runs and FPR budget) in a fresh session."""

from __future__ import annotations

import json
import os

import pytest

from mia_core.lab import run_specs as RS


@pytest.fixture()
def loss_t100(open_page):
    """A stored Loss run at t = 100 (no trace) on the default experiment, in this test's store."""
    from mia_core.attacks import get_attack
    from mia_core.lab.experiment import load_experiment
    from mia_core.lab.runs import ResultStore, run_attacks

    exp = load_experiment()
    store = ResultStore(os.environ["MIA_STORE"])
    attack = get_attack("loss", {"timesteps": [100], "sweep": []})
    run_attacks(exp.target, exp.x0, exp.ids, exp.images.fingerprint, [attack], seed=0, store=store)
    return RS.run_id(attack)


def test_run_ids_round_trip_and_say_their_parameters():
    from mia_core.attacks import get_attack
    from mia_core.views.attack_info import short_name

    attack = get_attack("loss", {"timesteps": [100, 300], "sweep": []})
    rid = RS.run_id(attack)
    assert rid == "loss:sweep=,timesteps=100/300"
    assert RS.attack_of(rid).params == attack.params
    assert RS.run_id(get_attack("loss")) == "loss" and RS.run_id(RS.attack_of("loss")) == "loss"
    assert short_name(rid) == "Loss sweep=none, timesteps=100/300" and short_name("loss:timesteps=100") != short_name(
        "loss"
    )
    ids, errors = RS.parse_runs("loss|nope|loss:timesteps=100|loss:timesteps=100|pia:frobnicate=1")
    assert ids == ["loss", "loss:timesteps=100"]
    assert len(errors) == 2 and "unknown attack 'nope'" in errors[0] and "'frobnicate=1'" in errors[1]


def test_two_loss_runs_side_by_side_from_a_link(open_page, loss_t100):
    link = RS.join_runs(["loss", loss_t100])
    at = open_page("pages/compare.py", runs=link, fpr="5%")
    assert at.multiselect(key="compare.runs").value == ["loss", loss_t100]
    table = at.dataframe[0].value
    assert list(table.index) == ["loss", loss_t100]
    assert list(table["attack"]) == ["Loss", "Loss sweep=none, timesteps=100"]
    roc = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t.get("name", "") for t in roc["data"]]
    assert any(n.startswith("Loss — AUC") for n in names) and any(
        n.startswith("Loss sweep=none, timesteps=100 — AUC") for n in names
    )
    assert any("TPR@5%" in n for n in names)  # the budget from the link
    assert at.query_params["runs"] == [link] or at.query_params["runs"] == link


def test_selection_goes_into_the_url_and_a_fresh_session_reproduces_it(open_page, loss_t100):
    at = open_page("pages/compare.py")
    assert at.multiselect(key="compare.runs").value == ["loss", "secmi", "pia", "pian", "sima"]
    assert "Loss sweep=none, timesteps=100" in at.multiselect(key="compare.runs").options  # every stored run
    at.multiselect(key="compare.runs").set_value(["pia", loss_t100]).run()
    assert not at.exception
    runs = at.query_params["runs"]
    runs = runs[0] if isinstance(runs, list) else runs
    assert RS.parse_runs(runs)[0] == ["pia", loss_t100]
    fresh = open_page("pages/compare.py", runs=runs)
    assert list(fresh.dataframe[0].value.index) == ["pia", loss_t100]
