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
    from mia_core.attacks import DEFAULT_ATTACKS
    from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

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
    vuln = next(d.value for d in at.dataframe if "thumbnail" in d.value.columns)
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


def _store_learned_result(tmp_store) -> tuple:
    """A secmi_nn-shaped result (scored on its held-out part only) in the test's store.

    The scores are the stored SecMI scores of the held-out images: what matters here is how the
    page lines up results that cover different images, not the network.
    """
    import dataclasses

    from mia_core.attacks import get_attack
    from mia_core.lab.evalsets import restrict
    from mia_core.lab.runs import ResultStore

    exp, stored = _stored_scores()
    attack = get_attack("secmi_nn")
    train_ids, eval_ids = attack.partition(exp.ids, exp.is_member, 0)
    held_out = restrict(stored["secmi"], eval_ids)
    fake = dataclasses.replace(
        held_out,
        attack="secmi_nn",
        trace=np.zeros((len(eval_ids), 0)),
        trace_timesteps=np.zeros(0, dtype=np.int64),
        params=attack.params_dict(),
        train_ids=tuple(train_ids),
        evaluated_on="held-out 80 %",
    )
    ResultStore(tmp_store).put(exp.run_key(attack, 0), fake)
    return exp, train_ids, eval_ids


def test_compare_lines_up_a_learned_attack_on_its_held_out_part(open_page, tmp_path):
    exp, train_ids, eval_ids = _store_learned_result(tmp_path / "store")
    at = open_page("pages/compare.py", run=False)
    at.session_state["cfg.attacks"] = ["secmi", "pia", "secmi_nn"]
    at.run()
    assert not at.exception
    n_eval_m = int(exp.labels_for(eval_ids).sum())
    n_eval_nm = len(eval_ids) - n_eval_m

    # default: every attack on the images all of them scored (secmi_nn's held-out part)
    assert at.segmented_control(key="compare.evalset").value == "common"
    table = at.dataframe[0].value
    assert list(table.index) == ["secmi", "pia", "secmi_nn"]
    assert set(table["members"]) == {n_eval_m} and set(table["non-members"]) == {n_eval_nm}
    # the same scores on the same images give the same AUC
    assert table.loc["secmi", "AUC"] == pytest.approx(table.loc["secmi_nn", "AUC"])
    text = " ".join(str(c.value) for c in at.caption)
    assert f"trained on {len(train_ids)} other images" in text

    # each attack on its own images: SecMI and PIA on all of them, secmi_nn still on its part
    at.segmented_control(key="compare.evalset").set_value("own").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table.loc["secmi", "members"] == int(exp.is_member.sum())
    assert table.loc["secmi_nn", "members"] == n_eval_m
    assert table.loc["secmi", "AUC"] != pytest.approx(table.loc["secmi_nn", "AUC"], abs=1e-9)


def test_compare_shows_transferred_thresholds_and_blind_baseline(compare):
    """Oracle and transferred TPR side by side at the chosen FPR budget (?fpr=), for every attack, with the
    blind baseline's row; the blind baseline on the ROC; no bias warning on the default."""
    from mia_core.calibration import calibration_partition, oracle_tpr_at_fpr, transferred_tpr_at_fpr
    from mia_core.lab.blind import blind_baseline

    at = compare
    exp, stored = _stored_scores()
    part = calibration_partition(exp.is_member, fraction=0.5, seed=0)
    blind = blind_baseline(exp.images.images, exp.is_member, seed=0)
    sizes = part.sizes()
    for budget, b in ((0.01, "1%"), (0.1, "10%")):
        if budget != 0.01:
            at.segmented_control(key="fpr").set_value(budget).run()
            assert not at.exception
        table = next(d.value for d in at.dataframe if f"oracle TPR@{b}FPR" in d.value.columns)
        assert list(table.index) == [*stored, "blind"]
        cols = list(table.columns)
        assert cols.index(f"transferred TPR@{b}FPR") == cols.index(f"oracle TPR@{b}FPR 95% CI") + 1
        for name, result in stored.items():
            rate = transferred_tpr_at_fpr(result.scores, exp.is_member, part, budget, n_bootstrap=0)
            oracle = oracle_tpr_at_fpr(result.scores, exp.is_member, budget, n_bootstrap=0)
            assert table.loc[name, f"oracle TPR@{b}FPR"] == f"{oracle.tpr:.3f}"
            assert table.loc[name, f"transferred TPR@{b}FPR"] == f"{rate.tpr:.3f}"
            assert table.loc[name, "achieved FPR"] == f"{rate.fpr:.3f}"
            assert table.loc[name, f"transferred TPR@{b}FPR 95% CI"].startswith("[")
            assert table.loc[name, "test part"] == f"{sizes['test_members']} + {sizes['test_nonmembers']}"
        blind_oracle = oracle_tpr_at_fpr(blind.scores, blind.is_member, budget, n_bootstrap=0)
        assert table.loc["blind", "AUC"] == pytest.approx(blind.metrics.auc)
        assert table.loc["blind", f"oracle TPR@{b}FPR"] == f"{blind_oracle.tpr:.3f}"

    roc = json.loads(at.get("plotly_chart")[0].proto.spec)
    ref = [t for t in roc["data"] if (t.get("meta") or {}).get("role") == "reference"]
    blind = blind_baseline(exp.images.images, exp.is_member, seed=0)
    assert len(ref) == 1 and ref[0]["meta"]["auc"] == pytest.approx(blind.metrics.auc)
    assert not blind.biased
    assert not [w for w in at.warning if "biased" in w.value]
    assert any("blind baseline never queries the model" in c.value for c in at.caption)


def test_compare_threshold_slider_drives_the_confusion_matrix(compare):
    """Issue 19 what-if: a draggable threshold for the chosen run, its live confusion matrix and achieved rates."""
    at = compare
    exp, stored = _stored_scores()
    slider = next(s for s in at.slider if (s.key or "").startswith("compare.thr."))
    run = at.selectbox(key="compare.hist_attack").value
    scores = stored[run].scores
    thr = M.threshold_at_fpr(scores, exp.is_member, 0.01)
    table = at.table[0].value
    assert list(table.columns) == ["flagged as member", "not flagged"]
    assert int(table.iloc[1, 0]) == int((scores[~exp.is_member] >= thr).sum())  # FP at the 1 % budget
    assert int(table.iloc[0, 0]) == int((scores[exp.is_member] >= thr).sum())  # TP
    fpr = next(m.value for m in at.metric if m.label == "achieved FPR")
    assert float(fpr.rstrip("%")) <= 1.0
    # drag to the lowest score: everything is flagged
    slider.set_value(slider.min).run()
    assert not at.exception
    table = at.table[0].value
    assert table["not flagged"].sum() == 0 and table["flagged as member"].sum() == len(scores)
    assert next(m.value for m in at.metric if m.label == "achieved FPR") == "100.00%"
    hist = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    texts = [a.get("text", "") for s in hist for a in s["layout"].get("annotations", [])]
    assert any(t.startswith("your threshold: at this threshold: TPR 1.000, FPR 1.000") for t in texts)
    # the most-vulnerable table quotes the scores on the histogram's axis: -log10(-score) for SecMI
    at.selectbox(key="compare.hist_attack").set_value("secmi").run()
    assert not at.exception
    vuln = next(d.value for d in at.dataframe if "thumbnail" in d.value.columns)
    secmi = stored["secmi"].scores
    assert vuln["score"].iloc[0] == pytest.approx(-np.log10(-secmi[exp.is_member].max()))
