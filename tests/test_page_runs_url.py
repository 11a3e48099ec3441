"""AppTest: the Sample explorer and the Presenter take the runs (attack + parameters) from the URL, as Compare
does (``?runs=loss|loss:sweep=,timesteps=100``), so a shared link shows the same runs in a fresh session."""

from __future__ import annotations

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


def test_sample_explorer_shows_the_runs_of_the_link(open_page, loss_t100):
    link = RS.join_runs(["loss", loss_t100])
    at = open_page("pages/sample.py", runs=link, id="digits-0005", attack=loss_t100)
    box = at.selectbox(key="sample.attack")
    assert box.options == ["Loss", "Loss sweep=none, timesteps=100"] and box.value == loss_t100
    verdicts = at.dataframe[0].value
    assert list(verdicts.index) == ["loss", loss_t100]
    assert at.selectbox(key="sample.id").value == "digits-0005"
    # ?attack= may name the attack alone: its first run in the link is shown
    at = open_page("pages/sample.py", runs=RS.join_runs([loss_t100, "pia"]), id="digits-0005", attack="loss")
    assert at.selectbox(key="sample.attack").value == loss_t100
    # a run that is not stored, and a part that is not a run: said, and the page still works
    at = open_page("pages/sample.py", runs="pia:timestep=123|nope|loss", id="digits-0005")
    assert list(at.dataframe[0].value.index) == ["loss"]
    assert any("Ignored from the link" in w.value and "'nope'" in w.value for w in at.warning)
    assert any("Not stored" in i.value and "t=123" in i.value.replace("timestep=", "t=") for i in at.info)


def test_presenter_deck_shows_the_runs_of_the_link(open_page, loss_t100):
    def deck(app) -> str:
        frames = [el for el in app.main if getattr(el, "type", None) == "iframe"] or list(app.get("iframe"))
        assert len(frames) == 1
        return frames[0].proto.srcdoc

    at = open_page("pages/presenter.py", runs=RS.join_runs(["pia", loss_t100]))
    html = deck(at)
    # the ROC's curves ("<run> \u2014 AUC ...") are the link's runs (the shipped defence study's slide keeps its own)
    roc = '"name":"{} \\u2014 AUC'
    assert roc.format("Loss sweep=none, timesteps=100") in html and roc.format("PIA") in html
    assert roc.format("SecMI") not in html
    default = deck(open_page("pages/presenter.py"))
    assert roc.format("SecMI") in default and "Loss sweep=none, timesteps=100" not in default
