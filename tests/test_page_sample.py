"""AppTest of the Sample explorer on the defaults: URL ids, the verdicts, unknown ids."""

from __future__ import annotations

import json

import pytest

from mia_core import metrics as M
from mia_core.calibration import calibration_partition, transferred_tpr_at_fpr
from mia_core.views import results as F


@pytest.fixture(scope="module")
def default_split():
    from mia_core.attacks import DEFAULT_ATTACKS
    from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

    exp = load_experiment()
    store = ResultStore(extra_readonly=[DEMO_STORE_DIR])
    return exp, stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=store)


def test_sample_from_url_shows_id_truth_and_verdicts(open_page, default_split):
    exp, stored = default_split
    assert "digits-0000" in exp.ids
    i = exp.ids.index("digits-0000")
    at = open_page("pages/sample.py", id="digits-0000", attack="secmi")

    assert "Sample explorer" in at.title[0].value
    assert at.selectbox(key="sample.id").value == "digits-0000"
    assert at.query_params["id"] == ["digits-0000"] or at.query_params["id"] == "digits-0000"
    truth = "member" if exp.is_member[i] else "non-member"
    boxes = [b.value for b in (*at.success, *at.info)]
    assert any(f"Truly a **{truth}**" in b for b in boxes)
    assert any("Verdicts at 1% FPR" in h.value for h in at.subheader)

    verdicts = at.dataframe[0].value
    assert list(verdicts.index) == list(stored)
    # Calibrated thresholds (CopyMark's protocol, the cut of Compare's transferred columns), not the oracle one:
    # chosen on the calibration half, their achieved FPR measured on the test half.
    part = calibration_partition(exp.is_member)
    differs = 0
    for name, result in stored.items():
        rate = transferred_tpr_at_fpr(result.scores, exp.is_member, part, 0.01, n_bootstrap=0)
        log_axis = F.display_scores(result.scores)[1]
        # the score and threshold as the histogram axis shows them (-log10(-score) where that axis is transformed)
        assert verdicts.loc[name, "threshold"] == F.score_quote(rate.threshold, log_axis)
        assert verdicts.loc[name, "achieved FPR"] == pytest.approx(rate.fpr)
        expected = "member" if result.scores[i] >= rate.threshold else "non-member"
        assert list(verdicts.loc[name, "verdict"]) == [expected]  # a coloured badge cell
        assert verdicts.loc[name, "score"] == F.score_quote(result.scores[i], log_axis)
        right = (expected == "member") == bool(exp.is_member[i])
        assert list(verdicts.loc[name, "correct"]) == ["right" if right else "wrong"]
        differs += rate.threshold != pytest.approx(M.threshold_at_fpr(result.scores, exp.is_member, 0.01))
    assert differs  # the oracle threshold of the whole split is not what the page uses
    sizes = part.sizes()
    line = next(c.value for c in at.caption if "calibrated, not oracle" in c.value)
    assert f"{sizes['calibration_members']} members and {sizes['calibration_nonmembers']} non-members" in line
    assert f"{sizes['test_members']} members, {sizes['test_nonmembers']} non-members" in line
    assert "achieved FPR" in line and "seed 0" in line
    where = "calibration part" if part.calibration[i] else "test part"
    assert f"This image is in the {where}" in line
    text = " ".join(m.value for m in at.markdown)
    assert "digits-0000" in text and "SecMI" in text
    # issue 19: "correct?" is a coloured badge column (not a pale checkbox), the sentence quotes the axis' transform
    config = json.loads(at.dataframe[0].proto.columns)
    assert config["correct"]["type_config"]["type"] == "multiselect"
    assert {o["color"] for o in config["correct"]["type_config"]["options"]} >= {"#2E7D32", "#C62828"}
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    hist = next(s for s in specs if "Where digits-0000 falls" in json.dumps(s))
    assert "−log10(−score)" in hist["layout"]["xaxis2"]["title"]["text"]  # SecMI's scores span decades
    sentence = next(m.value for m in at.markdown if m.value.startswith("**SecMI**"))
    assert "−log10(−score)" in sentence and "as on the histogram below" in sentence

    # The error curve of the chosen attack overlays this sample; SecMI's images are shown.
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curve = specs[0]
    assert curve["layout"]["yaxis"]["type"] == "log"
    sample_traces = [t for t in curve["data"] if (t.get("meta") or {}).get("role") == "sample"]
    assert sample_traces and sample_traces[0]["meta"]["id"] == "digits-0000"
    images = at.get("image")
    assert len(images) >= 5  # the image + x0, x_tilde, x_recon, |diff|
    captions = [img.caption for im in images for img in im.proto.imgs]
    assert any(c.startswith("digits-0000") for c in captions)
    assert any("x̃ at t = 90" in c for c in captions)


def test_selectbox_drives_the_url(open_page):
    at = open_page("pages/sample.py", id="digits-0000")
    at.selectbox(key="sample.id").set_value("digits-0042").run()
    assert not at.exception
    assert at.session_state["sel.sample"] == "digits-0042"
    assert "digits-0042" in str(at.query_params["id"])
    at.selectbox(key="sample.attack").set_value("pia").run()
    assert "pia" in str(at.query_params["attack"])
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert [t["meta"]["id"] for t in curve["data"] if (t.get("meta") or {}).get("role") == "sample"] == ["digits-0042"]


def test_unknown_id_gives_a_message_not_an_exception(open_page):
    at = open_page("pages/sample.py", id="no-such-image")
    assert not at.exception
    assert at.error and "no-such-image" in at.error[0].value
    assert at.selectbox(key="sample.id").value != "no-such-image"  # falls back to a real image


def test_learned_attack_says_training_image_or_held_out_verdict(open_page, tmp_path):
    from test_page_compare import _store_learned_result

    exp, train_ids, eval_ids = _store_learned_result(tmp_path / "store")
    for sample_id, expected in ((train_ids[0], "trained on this image"), (eval_ids[0], "held-out image, ")):
        at = open_page("pages/sample.py", run=False, id=sample_id, attack="secmi")
        at.session_state["cfg.attacks"] = ["secmi", "secmi_nn"]
        at.run()
        assert not at.exception
        lines = [m.value for m in at.markdown if "SecMI-NN" in m.value]
        assert lines and expected in lines[-1], lines


def test_noise_stability_rescoring(open_page, default_split):
    """The button rescores the image with 5 noise seeds and says whether its verdict is stable."""
    from mia_core.lab.stability import stability

    exp, stored = default_split
    at = open_page("pages/sample.py", id="digits-0000", attack="loss")
    assert not [m for m in at.markdown if m.value.startswith(("Stable:", "Unstable:"))]
    at.button(key="sample.stability").click().run()
    assert not at.exception
    lines = [m.value for m in at.markdown if m.value.startswith(("Stable:", "Unstable:"))]
    assert len(lines) == 1 and "over 5 noise seeds" in lines[0]
    # The same rescoring outside the app, against the calibrated threshold at the 1 % budget, gives the same sentence.
    from mia_core.attacks import get_attack, scores_only_params
    from mia_core.lab.stability import rescore_seeds

    i = exp.ids.index("digits-0000")
    part = calibration_partition(exp.is_member)
    thr = transferred_tpr_at_fpr(stored["loss"].scores, exp.is_member, part, 0.01, n_bootstrap=0).threshold
    attack = get_attack("loss", {**dict(stored["loss"].params), **scores_only_params("loss")})
    per_seed = rescore_seeds(exp.target, exp.x0[i], "digits-0000", attack, [0, 1, 2, 3, 4])
    assert per_seed[0] == pytest.approx(stored["loss"].scores[i], rel=1e-4)  # seed 0 = the stored run
    assert lines[0] == stability(per_seed, thr, [0, 1, 2, 3, 4]).sentence()
    assert stability([thr - 1, thr + 1], thr, [0, 1]).sentence().startswith("Unstable")
