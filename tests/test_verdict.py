"""mia_core.lab.verdict: percentiles, thresholds and verdicts at an FPR budget (sentences and figure: test_views_verdict)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mia_core.attacks import get_attack
from mia_core.attacks.base import AttackResult
from mia_core.data import ImageSet
from mia_core.lab.verdict import (
    Calibration,
    calibrations_from_results,
    judge_images,
    judge_scores,
    percentile_of,
    score_images,
    verdict_label,
)
from mia_core.metrics import verdict_at_fpr

# 200 non-members 0..199 and 100 members 100..199 + 0.5: hand-checkable numbers.
NONMEMBERS = np.arange(200, dtype=float)
MEMBERS = np.arange(100, 200, dtype=float) + 0.5


@pytest.fixture()
def cal() -> Calibration:
    return Calibration("pia", MEMBERS, NONMEMBERS, title="PIA")


def test_percentile_midrank():
    values = np.array([1.0, 2.0, 3.0, 4.0])
    assert percentile_of(values, 0.0) == 0.0
    assert percentile_of(values, 10.0) == 100.0
    assert percentile_of(values, 2.5) == 50.0
    assert percentile_of(values, 2.0) == pytest.approx(37.5)  # 1 below + half of 1 tie, of 4
    with pytest.raises(ValueError):
        percentile_of(np.array([]), 1.0)


def test_threshold_and_rule_rates(cal):
    # 1 % of 200 non-members = 2 may be flagged: threshold = second highest non-member score.
    assert cal.threshold(0.01) == 198.0
    assert cal.threshold(0.01) == verdict_at_fpr(NONMEMBERS, 0.0, 0.01)[1]
    assert cal.rule_fpr(0.01) == pytest.approx(2 / 200)
    # members >= 198: 198.5 and 199.5 -> 2 of 100
    assert cal.rule_tpr(0.01) == pytest.approx(0.02)
    # 10 %: 20 non-members flagged, threshold 180; members >= 180: 180.5..199.5 -> 20
    assert cal.threshold(0.1) == 180.0
    assert cal.rule_tpr(0.1) == pytest.approx(0.20)
    # 0.1 % needs 1000 non-members
    assert cal.threshold(0.001) is None and cal.rule_tpr(0.001) is None


def test_judge_scores_verdicts_at_budget(cal):
    rep = judge_scores({"pia": cal}, {"pia": [199.0, 197.9, 50.0]}, ["a.png", "b.png", "c.png"], 0.01)
    a, b, c = rep.for_image("a.png")[0], rep.get("b.png", "pia"), rep.get("c.png", "pia")
    assert a.flagged is True and a.label == "flagged as member at 1 % FPR"
    assert b.flagged is False and b.label == "not flagged at 1 % FPR"
    assert c.flagged is False
    assert a.threshold == 198.0
    # percentiles: 199 is above 199 of 200 non-members (tie with 199 counts half)
    assert a.percentile_nonmember == pytest.approx(100 * 199.5 / 200)
    assert a.percentile_member == pytest.approx(100 * 99 / 100)  # above 100.5..198.5
    assert c.percentile_member == 0.0
    assert c.percentile_nonmember == pytest.approx(100 * 50.5 / 200)
    assert a.nonmember_tail == pytest.approx(1 / 200)
    assert a.rule_tpr == pytest.approx(0.02)
    assert [v.image_id for v in rep.verdicts] == ["a.png", "b.png", "c.png"]


def test_na_when_too_few_nonmembers():
    few = Calibration("loss", np.arange(50.0), np.arange(50.0) - 10)  # 50 non-members < 100
    rep = judge_scores({"loss": few}, {"loss": [1e9]}, ["x"], 0.01)
    v = rep.get("x", "loss")
    assert v.flagged is None and v.threshold is None
    assert v.label == "n/a: needs >= 100 calibration non-members"
    assert verdict_label(None, 0.001) == "n/a: needs >= 1000 calibration non-members"
    s = rep.summary("x")
    assert s.majority is None and s.n_na == 1 and "no verdict" in s.text


def test_majority_and_any_summary(cal):
    other = Calibration("sima", MEMBERS * 10, NONMEMBERS * 10)
    third = Calibration("loss", MEMBERS, NONMEMBERS)
    rep = judge_scores(
        {"pia": cal, "sima": other, "loss": third},
        {"pia": [199.0, 0.0], "sima": [0.0, 0.0], "loss": [199.0, 0.0]},
        ["m", "n"],
        0.01,
    )
    m, n = rep.summary("m"), rep.summary("n")
    assert (m.n_flagged, m.n_attacks, m.majority, m.any) == (2, 3, True, True)
    assert (n.n_flagged, n.majority, n.any) == (0, False, False)
    assert "flagged by 2 of 3 attacks at 1 % FPR" in m.text
    assert "up to 3 %" in m.text  # the 'any' rule's inflated FPR is spelled out
    rep1 = judge_scores(
        {"pia": cal, "sima": other, "loss": third}, {"pia": [199.0], "sima": [0.0], "loss": [0.0]}, ["one"], 0.01
    )
    s = rep1.summary("one")
    assert s.majority is False and s.any is True


def test_judge_scores_rejects_bad_input(cal):
    with pytest.raises(ValueError, match="no calibration"):
        judge_scores({"pia": cal}, {"secmi": [1.0]}, ["x"], 0.01)
    with pytest.raises(ValueError, match="2 scores for 1 images"):
        judge_scores({"pia": cal}, {"pia": [1.0, 2.0]}, ["x"], 0.01)
    with pytest.raises(ValueError):
        judge_scores({"pia": cal}, {"pia": [1.0]}, ["x"], 1.5)
    rep = judge_scores({"pia": cal}, {"pia": [math.nan]}, ["x"], 0.01)
    assert rep.get("x", "pia").flagged is None


def test_calibration_from_result_checks_ids():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    res = AttackResult("pia", ("a", "b", "c", "d"), scores, np.zeros(0, int), np.zeros((4, 0)), "", 2, 0.1)
    is_member = np.array([True, True, False, False])
    cals = calibrations_from_results({"pia": res}, ("a", "b", "c", "d"), is_member, titles={"pia": "PIA"})
    assert list(cals["pia"].member_scores) == [3.0, 2.0] and list(cals["pia"].nonmember_scores) == [1.0, 0.0]
    assert cals["pia"].title == "PIA"
    with pytest.raises(ValueError, match="other images"):
        calibrations_from_results({"pia": res}, ("a", "b", "c", "x"), is_member)


def test_score_images_matches_attack_run(tiny_target):
    rng = np.random.default_rng(0)
    imgs = ImageSet(rng.integers(0, 256, size=(3, 8, 8, 1), dtype=np.uint8), ("a", "b", "c"), "upload")
    attacks = [get_attack("sima"), get_attack("loss")]
    scores = score_images(tiny_target, imgs, attacks, seed=3)
    ref = get_attack("loss").run(tiny_target, imgs.to_unit_range(), ids=imgs.ids, seed=3).scores
    np.testing.assert_allclose(scores["loss"], ref)
    assert scores["sima"].shape == (3,)
    cal = Calibration("sima", scores["sima"][:2] + 1, np.linspace(-5, 5, 120))
    rep = judge_images(tiny_target, imgs, attacks, {"sima": cal}, 0.01, seed=3)
    assert rep.attacks == ("sima",) and len(rep.verdicts) == 3
    wrong = ImageSet(np.zeros((1, 4, 4, 1), np.uint8), ("z",), "upload")
    with pytest.raises(ValueError, match="convert them first"):
        score_images(tiny_target, wrong, attacks)


# --------------------------------------------------------------------------- calibrated (transferred) thresholds


def _split_result(n: int = 600, seed: int = 1):
    """A labelled split's stored result: members score higher on average (N(1, 1) vs N(0, 1))."""
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n // 2, bool), np.zeros(n - n // 2, bool)]
    scores = rng.normal(labels.astype(float), 1.0)
    ids = tuple(f"s{k}" for k in range(n))
    return AttackResult("pia", ids, scores, np.zeros(0, int), np.zeros((n, 0)), "", 2, 0.1), ids, labels


def test_partitioned_calibration_uses_the_transferred_threshold():
    """With a partition the verdict threshold is Compare's transferred one: chosen on the calibration part,
    its TPR and achieved FPR measured on the disjoint test part; the oracle threshold is not used."""
    from mia_core.calibration import calibration_partition, transferred_tpr_at_fpr

    res, ids, labels = _split_result()
    part = calibration_partition(labels)
    cal = calibrations_from_results({"pia": res}, ids, labels, {"pia": "PIA"}, partition=part)["pia"]
    sizes = part.sizes()
    assert cal.transferred and cal.n_members == sizes["calibration_members"]
    assert cal.n_nonmembers == sizes["calibration_nonmembers"]
    assert cal.test_member_scores.size == sizes["test_members"]
    for budget in (0.1, 0.01):
        rate = transferred_tpr_at_fpr(res.scores, labels, part, budget, n_bootstrap=0)
        assert cal.threshold(budget) == rate.threshold
        assert cal.rule_fpr(budget) == pytest.approx(rate.fpr) and cal.rule_tpr(budget) == pytest.approx(rate.tpr)
        src = cal.source(budget)
        assert src.transferred and (src.fraction, src.seed) == (0.5, 0)
        assert (src.n_members, src.n_nonmembers) == (cal.n_members, cal.n_nonmembers)
        assert (src.test_members, src.test_nonmembers) == (sizes["test_members"], sizes["test_nonmembers"])
        assert src.achieved_fpr == pytest.approx(rate.fpr) and src.test_tpr == pytest.approx(rate.tpr)
        assert src.test_flagged_nonmembers == round(rate.fpr * sizes["test_nonmembers"])
    # the whole split's non-member threshold (the old, oracle-like rule) differs here
    oracle = Calibration.from_result(res, labels, ids=ids)
    assert not oracle.transferred and oracle.threshold(0.01) != cal.threshold(0.01)
    assert not oracle.source(0.01).transferred and oracle.source(0.01).achieved_fpr is None
    # 0.1 % needs 1000 calibration non-members: n/a, said by the source too
    assert cal.threshold(0.001) is None and cal.source(0.001).achieved_fpr is None
    # a verdict against it
    rep = judge_scores({"pia": cal}, {"pia": [cal.threshold(0.01), cal.threshold(0.01) - 1e-9]}, ["a", "b"], 0.01)
    assert rep.get("a", "pia").flagged and not rep.get("b", "pia").flagged


def test_partitioned_calibration_checks_its_inputs():
    from mia_core.calibration import calibration_partition

    res, ids, labels = _split_result()
    other = calibration_partition(labels[::-1].copy())
    with pytest.raises(ValueError, match="other membership labels"):
        Calibration.from_result(res, labels, ids=ids, partition=other)
    with pytest.raises(ValueError, match="need the partition"):
        Calibration("pia", MEMBERS, NONMEMBERS, test_member_scores=MEMBERS)


def test_score_images_is_the_one_scorer_for_uploads_and_collections(tiny_target, tmp_path):
    """set_inference.collection_scores converts and then scores through verdict.score_images (one source);
    a store keeps the runs; learned attacks are refused with their names."""
    from mia_core.data import convert_images
    from mia_core.lab.runs import ResultStore
    from mia_core.lab.set_inference import collection_scores

    rng = np.random.default_rng(0)
    big = ImageSet(rng.integers(0, 256, size=(3, 16, 16, 1), dtype=np.uint8), ("a", "b", "c"), "upload")
    attacks = [get_attack("sima"), get_attack("loss")]
    store = ResultStore(tmp_path / "store")
    matrix = collection_scores(tiny_target, big, attacks, seed=2, store=store)
    pixels, _ = convert_images(big.images, resolution=8, channels=1)
    direct = score_images(tiny_target, ImageSet(pixels, big.ids, "upload"), attacks, seed=2)
    assert matrix.shape == (3, 2)
    np.testing.assert_allclose(matrix[:, 0], direct["sima"])
    np.testing.assert_allclose(matrix[:, 1], direct["loss"])
    assert len(list((tmp_path / "store").rglob("meta.json"))) == 2  # both runs kept for the next call
    with pytest.raises(ValueError, match="secmi_nn"):
        score_images(tiny_target, ImageSet(pixels, big.ids, "upload"), [get_attack("secmi_nn")])
