"""AppTest of the Compare page on the defaults (the demo store makes the results available at once)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from mia_core import metrics as M



@pytest.fixture()
def compare(open_page) -> AppTest:
    return open_page("pages/compare.py")


def _stored_scores():
    """The default experiment's labels and the stored scores, read without the app."""
    from mia_core.experiment import load_experiment, make_attacks, stored_results
    from mia_core.attacks import DEFAULT_ATTACKS
    from mia_core.runs import DEMO_STORE_DIR, ResultStore

    exp = load_experiment()
    store = ResultStore(extra_readonly=[DEMO_STORE_DIR])
    return exp, stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=store)


def test_compare_renders_roc_table_and_histogram(compare):
    at = compare
    assert "Compare attacks" in at.title[0].value

    charts = at.get("plotly_chart")
    assert len(charts) >= 2
    specs = [json.loads(c.proto.spec) for c in charts]
    roc = specs[0]
    assert roc["layout"]["xaxis"]["type"] == "log" and roc["layout"]["yaxis"]["type"] == "log"
    names = [t.get("name", "") for t in roc["data"]]
    assert any(n.startswith("SecMI — AUC") for n in names)
    assert "chance (TPR = FPR)" in names
    assert specs[1]["layout"]["xaxis"]["type"] == "linear"

    exp, stored = _stored_scores()
    table = at.dataframe[0].value
    assert len(table) == 5
    assert list(table.index) == list(stored)
    for name, result in stored.items():
        assert table.loc[name, "AUC"] == pytest.approx(M.auc(result.scores, exp.is_member))
    assert set(table["TPR@0.1%FPR"]) == {"n/a (needs >= 1000 non-members)"}  # 899 non-members

    # The histogram's strip carries one id per image, so a click maps to a sample.
    hist = next(s for s in specs if any((t.get("meta") or {}).get("role") == "strip" for t in s["data"]))
    strip_ids = [i for t in hist["data"] if (t.get("meta") or {}).get("role") == "strip" for i in t["customdata"]]
    assert sorted(strip_ids) == sorted(exp.ids)

    # The most-vulnerable table lists members only, highest score first, with thumbnails.
    vuln = at.dataframe[1].value
    member_ids = {i for i, m in zip(exp.ids, exp.is_member) if m}
    assert set(vuln["id"]) <= member_ids
    assert np.all(np.diff(vuln["score"].to_numpy()) <= 0)
    assert vuln["thumbnail"].iloc[0].startswith("data:image/png;base64,")


def test_compare_budget_moves_operating_point(compare):
    at = compare
    at.segmented_control(key="fpr").set_value(0.1).run()
    assert not at.exception
    assert at.session_state["cfg.fpr"] == pytest.approx(0.1)
    roc = json.loads(at.get("plotly_chart")[0].proto.spec)
    legends = [t["name"] for t in roc["data"] if (t.get("meta") or {}).get("role") == "roc"]
    assert legends and all("· TPR@10% " in n for n in legends)
    hist = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    texts = [a.get("text", "") for s in hist for a in s["layout"].get("annotations", [])]
    assert any(t.startswith("10% FPR budget: at this threshold") for t in texts)


def test_compare_without_results_links_to_attack_lab(compare):
    at = compare
    at.session_state["cfg.seed"] = 12345  # no stored run for this seed
    at.run()
    assert not at.exception
    assert any("No stored results" in w.value for w in at.warning)
    assert not at.get("plotly_chart")
    links = at.get("page_link")
    assert links and "attack_lab" in links[0].proto.page
