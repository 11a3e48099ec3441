"""Calibrated thresholds (mia_core.calibration) against hand computations on tiny arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mia_core import metrics as M
from mia_core.calibration import Partition, calibration_partition, transferred_metrics, transferred_tpr_at_fpr

# calibration part: members 0.9, 0.4; non-members 0.8, 0.3, 0.2, 0.1
# test part:        members 0.85, 0.5, 0.2; non-members 0.9, 0.35, 0.1, 0.05
SCORES = np.array([0.9, 0.4, 0.8, 0.3, 0.2, 0.1, 0.85, 0.5, 0.2, 0.9, 0.35, 0.1, 0.05])
LABELS = np.array([1, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
CAL = np.array([1] * 6 + [0] * 7, dtype=bool)


def _partition() -> Partition:
    return Partition(calibration=CAL, fraction=0.5, seed=0, is_member=LABELS)


def test_threshold_from_calibration_rates_on_test_by_hand():
    # Calibration ROC: >=0.9 -> (FPR 0, TPR .5); >=0.8 -> (.25, .5); >=0.4 -> (.25, 1); >=0.3 -> (.5, 1).
    # Best TPR with FPR <= 0.25 is 1 at threshold 0.4.
    # Test: members >= 0.4: 0.85, 0.5 -> TPR 2/3; non-members >= 0.4: 0.9 -> achieved FPR 1/4.
    r = transferred_tpr_at_fpr(SCORES, LABELS, _partition(), 0.25, n_bootstrap=0)
    assert r.threshold == pytest.approx(0.4)
    assert r.tpr == pytest.approx(2 / 3)
    assert r.fpr == pytest.approx(0.25)
    assert r.tpr_ci is None and r.fpr_ci is None
    r2 = transferred_tpr_at_fpr(SCORES, LABELS, _partition(), 0.5, n_bootstrap=0)
    # calibration: TPR 1 is first reached at 0.4 (the highest threshold among ties in TPR) -> same threshold;
    # on test that is still TPR 2/3 at FPR 1/4, while the test oracle at budget .5 reaches TPR 1 (threshold 0.2).
    assert r2.threshold == pytest.approx(0.4)
    assert (r2.tpr, r2.fpr) == (pytest.approx(2 / 3), pytest.approx(0.25))
    assert M.tpr_at_fpr(SCORES[~CAL], LABELS[~CAL], 0.5) == pytest.approx(1.0)  # oracle on test: 0.2 flags all


def test_achieved_fpr_can_exceed_budget():
    # Test non-members moved above the calibration threshold: achieved FPR 3/4 > budget 1/4.
    scores = SCORES.copy()
    scores[[10, 11]] = [0.6, 0.45]
    r = transferred_tpr_at_fpr(scores, LABELS, _partition(), 0.25, n_bootstrap=0)
    assert r.threshold == pytest.approx(0.4)
    assert r.fpr == pytest.approx(0.75)


def test_na_when_calibration_has_too_few_nonmembers():
    r = transferred_tpr_at_fpr(SCORES, LABELS, _partition(), 0.1, n_bootstrap=50)  # 4 calibration non-members
    assert r.tpr is None and r.fpr is None and r.threshold is None
    assert r.to_json_dict()["tpr"] is None


def test_bootstrap_intervals_bracket_and_are_seeded():
    rng = np.random.default_rng(3)
    labels = np.repeat([True, False], 200)
    scores = rng.normal(size=400) + 1.0 * labels
    part = calibration_partition(labels, fraction=0.5, seed=1)
    a = transferred_tpr_at_fpr(scores, labels, part, 0.05, n_bootstrap=100, seed=7)
    b = transferred_tpr_at_fpr(scores, labels, part, 0.05, n_bootstrap=100, seed=7)
    assert a == b
    assert 0 <= a.tpr_ci.low <= a.tpr <= a.tpr_ci.high <= 1
    assert 0 <= a.fpr_ci.low <= a.fpr_ci.high <= 1
    assert a.tpr_ci.high > a.tpr_ci.low


def test_partition_is_stratified_seeded_and_recorded():
    labels = np.array([1] * 30 + [0] * 71, dtype=bool)
    p = calibration_partition(labels, fraction=0.3, seed=5)
    assert p.sizes() == {
        "calibration_members": 9,
        "calibration_nonmembers": 21,
        "test_members": 21,
        "test_nonmembers": 50,
    }
    assert np.array_equal(p.calibration, calibration_partition(labels, fraction=0.3, seed=5).calibration)
    assert not np.array_equal(p.calibration, calibration_partition(labels, fraction=0.3, seed=6).calibration)
    assert not (p.calibration & p.test).any()
    assert p.to_json_dict()["seed"] == 5 and p.to_json_dict()["fraction"] == 0.3


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True])
def test_partition_rejects_bad_fraction(bad):
    with pytest.raises(ValueError, match="fraction"):
        calibration_partition([1, 1, 0, 0], fraction=bad)


def test_mismatched_labels_are_refused():
    with pytest.raises(ValueError, match="partition"):
        transferred_tpr_at_fpr(SCORES, ~LABELS, _partition(), 0.25)


def test_transferred_metrics_is_json_ready():
    block = transferred_metrics(SCORES, LABELS, _partition(), budgets=(0.25, 0.1), n_bootstrap=20)
    text = json.dumps(block)
    back = json.loads(text)
    assert back["at_fpr"]["0.25"]["tpr"] == pytest.approx(2 / 3)
    assert back["at_fpr"]["0.1"]["tpr"] is None
    assert back["partition"]["test_nonmembers"] == 4


def test_oracle_rate_at_any_budget_matches_evaluate():
    """oracle_tpr_at_fpr: metrics.tpr_at_fpr with evaluate's bootstrap interval, at any budget."""
    from mia_core import metrics as M
    from mia_core.calibration import oracle_tpr_at_fpr

    rng = np.random.default_rng(4)
    labels = np.r_[np.ones(300, bool), np.zeros(400, bool)]
    scores = rng.normal(labels * 1.5, 1.0)
    rate = oracle_tpr_at_fpr(scores, labels, 0.01, n_bootstrap=50, seed=3)
    reference = M.evaluate(scores, labels, n_bootstrap=50, seed=3)
    assert rate.tpr == reference.tpr_at_1pct_fpr and rate.tpr_ci == reference.tpr_at_1pct_fpr_ci
    assert rate.threshold == M.threshold_at_fpr(scores, labels, 0.01)
    five = oracle_tpr_at_fpr(scores, labels, 0.05, n_bootstrap=50)
    assert five.tpr == M.tpr_at_fpr(scores, labels, 0.05) and five.tpr_ci.low <= five.tpr <= five.tpr_ci.high
    assert (five.n_members, five.n_nonmembers) == (300, 400)
    na = oracle_tpr_at_fpr(scores, labels, 0.001)  # 400 non-members < 1000
    assert na.tpr is None and na.tpr_ci is None and na.threshold is None
    with pytest.raises(ValueError, match="n_bootstrap"):
        oracle_tpr_at_fpr(scores, labels, 0.01, n_bootstrap=-1)
