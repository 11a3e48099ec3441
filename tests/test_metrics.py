"""Tests for mia_core.metrics, with scikit-learn as the reference implementation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from mia_core import metrics as m

# --------------------------------------------------------------------------- helpers


def _random_case(seed: int, n_members: int, n_nonmembers: int, *, ties: bool):
    """Gaussian scores, members shifted up; rounded to few values when ``ties``."""
    rng = np.random.default_rng(seed)
    scores = np.concatenate([rng.normal(0.7, 1.0, n_members), rng.normal(0.0, 1.0, n_nonmembers)])
    if ties:
        scores = np.round(scores * 2) / 2  # ~15 distinct values: many ties, mixed labels
    labels = np.concatenate([np.ones(n_members, int), np.zeros(n_nonmembers, int)])
    order = rng.permutation(scores.size)  # labels interleaved, not sorted
    return scores[order], labels[order]


CASES = [
    (0, 50, 70, False),
    (1, 50, 70, True),
    (2, 7, 300, True),
    (3, 400, 3, False),
    (4, 1, 1, False),
    (5, 120, 1000, True),
]


def _brute_tpr_at_fpr(scores, labels, budget):
    fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
    return tpr[fpr <= budget].max()


def _brute_best_balanced(scores, labels):
    """Balanced accuracy for every threshold, including flag-nothing and flag-everything."""
    labels = np.asarray(labels, bool)
    best = 0.0
    for threshold in np.concatenate([[np.inf, -np.inf], np.unique(scores)]):
        flagged = scores >= threshold
        tpr = flagged[labels].mean()
        fpr = flagged[~labels].mean()
        best = max(best, (tpr + 1 - fpr) / 2)
    return best


# --------------------------------------------------------------------------- ROC and AUC


@pytest.mark.parametrize("seed,n_m,n_n,ties", CASES)
def test_auc_matches_sklearn(seed, n_m, n_n, ties):
    scores, labels = _random_case(seed, n_m, n_n, ties=ties)
    assert m.auc(scores, labels) == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)


def test_auc_counts_ties_as_half():
    # One member and one non-member with the same score: P(member > non) = 1/2.
    assert m.auc([0.3, 0.3], [1, 0]) == pytest.approx(0.5)
    # 2 members {1, 2}, 2 non-members {1, 0}: pairs 1v1 tie, 1v0 win, 2v1 win, 2v0 win.
    assert m.auc([1, 2, 1, 0], [1, 1, 0, 0]) == pytest.approx(3.5 / 4)


@pytest.mark.parametrize("seed,n_m,n_n,ties", CASES)
def test_roc_curve_matches_sklearn(seed, n_m, n_n, ties):
    scores, labels = _random_case(seed, n_m, n_n, ties=ties)
    ours = m.roc_curve(scores, labels)
    fpr, tpr, thresholds = skm.roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_array_equal(ours.fpr, fpr)
    np.testing.assert_array_equal(ours.tpr, tpr)
    np.testing.assert_array_equal(ours.thresholds, thresholds)
    assert ours.thresholds[0] == np.inf
    assert (ours.fpr[0], ours.tpr[0], ours.fpr[-1], ours.tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(ours.fpr) >= 0) and np.all(np.diff(ours.tpr) >= 0)
    assert len(ours.thresholds) == len(np.unique(scores)) + 1


def test_roc_curve_arrays_are_read_only():
    curve = m.roc_curve([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError):
        curve.fpr[0] = 0.5


def test_bool_labels_accepted():
    scores, labels = _random_case(7, 30, 30, ties=True)
    assert m.auc(scores, labels.astype(bool)) == m.auc(scores, labels)


# --------------------------------------------------------------------------- TPR at FPR


@pytest.mark.parametrize("seed,n_m,n_n,ties", CASES)
@pytest.mark.parametrize("budget", [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 0.9])
def test_tpr_at_fpr_matches_brute_force(seed, n_m, n_n, ties, budget):
    scores, labels = _random_case(seed, n_m, n_n, ties=ties)
    ours = m.tpr_at_fpr(scores, labels, budget)
    if budget < 1 / n_n:
        assert ours is None
        assert m.threshold_at_fpr(scores, labels, budget) is None
        return
    assert ours == _brute_tpr_at_fpr(scores, labels, budget)
    # The threshold reproduces that operating point on the same data.
    threshold = m.threshold_at_fpr(scores, labels, budget)
    flagged = m.apply_threshold(scores, threshold)
    assert flagged[labels == 1].mean() == pytest.approx(ours)
    assert flagged[labels == 0].mean() <= budget


def test_tpr_at_fpr_never_uses_the_point_above_the_budget():
    # 5 members, 10 non-members. ROC: (0, .2) (.1, .2) (.1, .4) (.2, .4) (.2, 1) ... (1, 1).
    # At a 10 % budget the answer is 0.4; the nearest point above (FPR .2) has TPR 1.0.
    member_scores = [0.99, 0.90, 0.80, 0.70, 0.60]
    nonmember_scores = [0.95, 0.85, 0.5, 0.45, 0.4, 0.35, 0.3, 0.25, 0.2, 0.1]
    scores = np.array(member_scores + nonmember_scores)
    labels = np.array([1] * 5 + [0] * 10)
    assert m.tpr_at_fpr(scores, labels, 0.1) == pytest.approx(0.4)
    assert m.threshold_at_fpr(scores, labels, 0.1) == pytest.approx(0.90)
    assert _brute_tpr_at_fpr(scores, labels, 0.1) == pytest.approx(0.4)  # reference agrees
    # Just above 20 % the better point becomes reachable.
    assert m.tpr_at_fpr(scores, labels, 0.2) == pytest.approx(1.0)
    assert m.threshold_at_fpr(scores, labels, 0.2) == pytest.approx(0.60)


def test_threshold_at_fpr_prefers_lowest_fpr_among_equal_tpr():
    # ROC: inf (0, 0), .9 (0, .5), .8 (.5, .5), .1 (1, .5), .05 (1, 1).
    # Within a 50 % budget TPR .5 is reached at FPR 0 and at FPR .5: take FPR 0.
    scores = np.array([0.9, 0.8, 0.1, 0.05])
    labels = np.array([1, 0, 0, 1])
    assert m.tpr_at_fpr(scores, labels, 0.5) == 0.5
    assert m.threshold_at_fpr(scores, labels, 0.5) == 0.9
    assert m.apply_threshold(scores, 0.9)[labels == 0].mean() == 0.0
    # Budget below 1/2 non-members -> n/a.
    assert m.tpr_at_fpr(scores, labels, 0.4) is None
    # Members below every non-member: the only in-budget TPR is 0, at "flag nothing".
    assert m.tpr_at_fpr([0.0, 1.0, 2.0], [1, 0, 0], 0.5) == 0.0
    assert m.threshold_at_fpr([0.0, 1.0, 2.0], [1, 0, 0], 0.5) == np.inf


def test_na_below_one_over_n_nonmembers():
    scores, labels = _random_case(11, 100, 500, ties=False)
    assert m.tpr_at_fpr(scores, labels, 0.001) is None  # 1/500 > 0.1 %
    assert m.threshold_at_fpr(scores, labels, 0.001) is None
    assert m.tpr_at_fpr(scores, labels, 0.01) is not None
    assert m.format_metric(None, 0.001) == "n/a (needs >= 1000 non-members)"
    assert m.format_metric(None, 0.01) == "n/a (needs >= 100 non-members)"
    assert m.format_metric(None) == "n/a"
    # Exactly 1000 non-members is enough for 0.1 %.
    scores, labels = _random_case(12, 10, 1000, ties=False)
    assert m.tpr_at_fpr(scores, labels, 0.001) is not None


def test_min_nonmembers_for():
    assert m.min_nonmembers_for(0.01) == 100
    assert m.min_nonmembers_for(0.001) == 1000
    assert m.min_nonmembers_for(0.5) == 2
    assert m.min_nonmembers_for(0.3) == 4
    assert m.min_nonmembers_for(0.003) == 334
    # Agrees with the n/a rule on both sides for many budgets.
    for budget in [0.1, 0.07, 0.02, 0.015, 0.01, 0.005, 0.001, 0.0001, 1 / 3, 1 / 7]:
        n = m.min_nonmembers_for(budget)
        assert n > 1 and 1 / n <= budget < 1 / (n - 1)
        assert m.tpr_at_fpr(np.arange(n + 1.0), [1] + [0] * n, budget) is not None
        assert m.tpr_at_fpr(np.arange(n + 0.0), [1] + [0] * (n - 1), budget) is None


def test_format_metric():
    assert m.format_metric(0.91234) == "0.912"
    assert m.format_metric(1.0, digits=2) == "1.00"
    assert m.format_metric(0.5, budget=0.001) == "0.500"  # a value is shown even with a budget


# --------------------------------------------------------------------------- ASR


@pytest.mark.parametrize("seed,n_m,n_n,ties", CASES)
def test_best_balanced_accuracy_matches_brute_force(seed, n_m, n_n, ties):
    scores, labels = _random_case(seed, n_m, n_n, ties=ties)
    best, threshold = m.balanced_accuracy_best(scores, labels)
    assert best == pytest.approx(_brute_best_balanced(scores, labels), abs=1e-12)
    flagged = m.apply_threshold(scores, threshold)
    achieved = (flagged[labels == 1].mean() + 1 - flagged[labels == 0].mean()) / 2
    assert achieved == pytest.approx(best, abs=1e-12)


# --------------------------------------------------------------------------- extremes


def test_perfect_separation():
    scores = np.concatenate([np.linspace(10, 11, 50), np.linspace(0, 1, 1000)])
    labels = np.array([1] * 50 + [0] * 1000)
    result = m.evaluate(scores, labels, n_bootstrap=20)
    assert result.auc == 1.0
    assert result.asr == 1.0
    assert result.tpr_at_1pct_fpr == 1.0
    assert result.tpr_at_01pct_fpr == 1.0
    assert result.auc_ci == m.Interval(1.0, 1.0)
    best, threshold = m.balanced_accuracy_best(scores, labels)
    assert (best, threshold) == (1.0, 10.0)


def test_reversed_scores():
    scores = np.concatenate([np.linspace(0, 1, 50), np.linspace(10, 11, 200)])
    labels = np.array([1] * 50 + [0] * 200)
    assert m.auc(scores, labels) == 0.0
    best, threshold = m.balanced_accuracy_best(scores, labels)
    assert best == 0.5 and threshold == np.inf  # flagging nothing is the best one can do
    assert m.tpr_at_fpr(scores, labels, 0.01) == 0.0


# --------------------------------------------------------------------------- evaluate / bootstrap


def test_evaluate_point_values_and_counts():
    scores, labels = _random_case(21, 300, 1200, ties=True)
    result = m.evaluate(scores, labels, n_bootstrap=0)
    assert result.auc == pytest.approx(skm.roc_auc_score(labels, scores))
    assert result.asr == m.balanced_accuracy_best(scores, labels)[0]
    assert result.tpr_at_1pct_fpr == _brute_tpr_at_fpr(scores, labels, 0.01)
    assert result.tpr_at_01pct_fpr == _brute_tpr_at_fpr(scores, labels, 0.001)
    assert (result.n_members, result.n_nonmembers) == (300, 1200)
    assert result.auc_ci is None and result.asr_ci is None
    assert result.tpr_at_1pct_fpr_ci is None and result.tpr_at_01pct_fpr_ci is None


def test_bootstrap_intervals_contain_point_and_are_seeded():
    scores, labels = _random_case(22, 400, 1100, ties=False)
    a = m.evaluate(scores, labels, n_bootstrap=200, seed=0)
    for point, ci in [
        (a.auc, a.auc_ci),
        (a.asr, a.asr_ci),
        (a.tpr_at_1pct_fpr, a.tpr_at_1pct_fpr_ci),
        (a.tpr_at_01pct_fpr, a.tpr_at_01pct_fpr_ci),
    ]:
        assert ci is not None
        assert ci.low <= point <= ci.high
        assert ci.low < ci.high  # a real spread, not a degenerate interval
    assert a.auc_ci.high - a.auc_ci.low < 0.1  # 95 % CI of AUC with n=400/1100 is narrow
    same = m.evaluate(scores, labels, n_bootstrap=200, seed=0)
    other = m.evaluate(scores, labels, n_bootstrap=200, seed=1)
    assert same == a
    assert other.auc_ci != a.auc_ci
    assert (other.auc, other.asr) == (a.auc, a.asr)  # the seed only moves the intervals


def test_bootstrap_na_interval_is_none():
    scores, labels = _random_case(23, 100, 500, ties=False)
    result = m.evaluate(scores, labels, n_bootstrap=50)
    assert result.tpr_at_01pct_fpr is None and result.tpr_at_01pct_fpr_ci is None
    assert result.tpr_at_1pct_fpr is not None and result.tpr_at_1pct_fpr_ci is not None


def test_vectorised_resamples_match_sklearn_per_resample():
    # The batched bootstrap path must give, for each resample, the same numbers as
    # computing that resample on its own.
    scores, labels = _random_case(24, 40, 150, ties=True)
    is_member = labels == 1
    rng = np.random.default_rng(5)
    member_idx = rng.integers(0, 40, size=(6, 40))
    nonmember_idx = rng.integers(0, 150, size=(6, 150))
    batch = m._resampled_metrics(scores, is_member, member_idx, nonmember_idx, (0.01, 0.1))
    for b in range(6):
        s = np.concatenate([scores[is_member][member_idx[b]], scores[~is_member][nonmember_idx[b]]])
        y = np.array([1] * 40 + [0] * 150)
        assert batch["auc"][b] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert batch["asr"][b] == pytest.approx(_brute_best_balanced(s, y), abs=1e-12)
        assert batch[0.01][b] == _brute_tpr_at_fpr(s, y, 0.01)
        assert batch[0.1][b] == _brute_tpr_at_fpr(s, y, 0.1)


# --------------------------------------------------------------------------- JSON


def test_to_json_dict_round_trips_with_null_for_na():
    scores, labels = _random_case(31, 100, 500, ties=False)
    result = m.evaluate(scores, labels, n_bootstrap=30)
    d = result.to_json_dict()
    assert set(d) == {
        "auc",
        "asr",
        "tpr_at_1pct_fpr",
        "tpr_at_0.1pct_fpr",
        "n_members",
        "n_nonmembers",
        "auc_ci",
        "asr_ci",
        "tpr_at_1pct_fpr_ci",
        "tpr_at_0.1pct_fpr_ci",
    }
    text = json.dumps(d)
    assert '"tpr_at_0.1pct_fpr": null' in text
    assert '"tpr_at_0.1pct_fpr_ci": null' in text
    assert json.loads(text) == d
    assert type(d["auc"]) is float and type(d["n_members"]) is int
    assert all(type(x) is float for x in d["auc_ci"]) and len(d["auc_ci"]) == 2
    assert d["auc_ci"] == [result.auc_ci.low, result.auc_ci.high]
    assert d["n_members"] == 100 and d["n_nonmembers"] == 500


def test_to_json_dict_without_bootstrap():
    d = m.evaluate([0.1, 0.9], [0, 1], n_bootstrap=0).to_json_dict()
    assert d["auc"] == 1.0 and d["auc_ci"] is None and d["tpr_at_1pct_fpr"] is None
    assert json.loads(json.dumps(d)) == d


# --------------------------------------------------------------------------- calibrated verdicts


def test_verdict_at_fpr_hand_case():
    calibration = np.arange(10) / 10  # 0.0 ... 0.9
    # 20 % of 10 = 2 may be flagged: threshold 0.8 flags {0.8, 0.9}.
    assert m.verdict_at_fpr(calibration, 0.85, 0.2) == (True, 0.8)
    assert m.verdict_at_fpr(calibration, 0.8, 0.2) == (True, 0.8)
    assert m.verdict_at_fpr(calibration, 0.75, 0.2) == (False, 0.8)
    # 10 non-members cannot support a 5 % budget.
    assert m.verdict_at_fpr(calibration, 0.99, 0.05) == (None, None)
    # Ties at the top: 3 of 10 share the highest score, more than 20 % -> nothing fits.
    tied = np.array([1.0, 1.0, 1.0] + [0.0] * 7)
    assert m.verdict_at_fpr(tied, 5.0, 0.2) == (False, np.inf)


def test_apply_threshold():
    flagged = m.apply_threshold([0.1, 0.5, 0.9], 0.5)
    assert flagged.dtype == bool
    np.testing.assert_array_equal(flagged, [False, True, True])
    assert not m.apply_threshold([1e9], np.inf).any()


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "scores,labels,match",
    [
        (np.zeros((2, 2)), [0, 1], r"scores must be a 1-D array; got shape \(2, 2\)"),
        ([0.1, 0.2], [[0, 1]], r"is_member must be a 1-D array"),
        ([0.1, 0.2, 0.3], [0, 1], r"same length; got 3 scores and 2 labels"),
        ([0.1, 0.2], [0, 2], r"only 0/1 labels; found 2"),
        ([0.1, 0.2], [0.0, np.nan], r"only 0/1 labels; found nan"),
        ([0.1, 0.2], [1, 1], r"at least one member and one non-member; got 2 member\(s\) and 0"),
        ([0.1, np.nan], [0, 1], r"scores must be finite; found nan at index 1"),
        ([0.1, np.inf], [0, 1], r"scores must be finite; found inf at index 1"),
        (["a", "b"], [0, 1], r"scores must be numeric"),
        ([], [], r"scores must not be empty"),
    ],
)
def test_validation_errors(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        m.auc(scores, labels)


@pytest.mark.parametrize("budget", [0, 1, 1.5, -0.1, float("nan"), "0.01", None])
def test_budget_validation(budget):
    with pytest.raises(ValueError, match=r"budget must be"):
        m.tpr_at_fpr([0.1, 0.9], [0, 1], budget)
    with pytest.raises(ValueError, match=r"budget must be"):
        m.min_nonmembers_for(budget)


def test_other_argument_validation():
    with pytest.raises(ValueError, match=r"n_bootstrap must be a non-negative integer; got -1"):
        m.evaluate([0.1, 0.9], [0, 1], n_bootstrap=-1)
    with pytest.raises(ValueError, match=r"score must be a finite number; got nan"):
        m.verdict_at_fpr([0.1, 0.2], float("nan"), 0.5)
    with pytest.raises(ValueError, match=r"calibration_nonmember_scores must be finite"):
        m.verdict_at_fpr([0.1, np.nan], 0.3, 0.5)
    with pytest.raises(ValueError, match=r"threshold must be a number"):
        m.apply_threshold([0.1], float("nan"))
    with pytest.raises(ValueError, match=r"digits must be a non-negative integer"):
        m.format_metric(0.5, digits=-1)


def test_as_labels_is_public_and_names_the_bad_value():
    """metrics.as_labels is the one label check (metrics, calibration and the blind baseline use it)."""
    import mia_core.lab.blind as blind

    assert "as_labels" in m.__all__
    assert m.as_labels([0, 1, 1]).tolist() == [False, True, True]
    with pytest.raises(ValueError, match="found 2"):
        m.as_labels([0, 2])
    assert blind.as_labels is m.as_labels
