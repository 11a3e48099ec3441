"""Set-level inference ("was my collection used?"): the test by hand, its false-positive rate and power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from mia_core.lab.set_inference import calibrate, draw_demo_sets, score_matrix, set_test


def test_welch_by_hand():
    # means 4 and 1, both variances 1, n = 3: t = 3 / sqrt(2/3); Welch df = (2/3)^2 / (2 * (1/3)^2 / 2) = 4
    r = set_test([3, 4, 5], [0, 1, 2], alpha=0.05)
    t = 3 / math.sqrt(2 / 3)
    assert r.statistic == pytest.approx(t)
    assert r.p_value == pytest.approx(stats.t.sf(t, 4))
    assert r.used and r.n_suspect == 3 and r.n_heldout == 3 and r.n_control == 0
    assert "Likely used" in r.verdict()
    # One-sided: a suspect set that scores lower is never "used".
    low = set_test([0, 1, 2], [3, 4, 5])
    assert low.p_value > 0.5 and not low.used and "No evidence" in low.verdict()


def test_mann_whitney_by_hand():
    # Every suspect score above every held-out one: U = 9, exact one-sided p = 1 / C(6, 3) = 0.05.
    r = set_test([3, 4, 5], [0, 1, 2], method="mannwhitney", alpha=0.1)
    assert r.statistic == 9
    assert r.p_value == pytest.approx(1 / 20)


@pytest.mark.parametrize(
    "kwargs, message", [({"method": "ks"}, "method"), ({"alpha": 1.5}, "alpha"), ({"alpha": 0}, "alpha")]
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        set_test([1, 2, 3], [0, 1, 2], **kwargs)


def test_too_few_images_and_mismatched_columns():
    with pytest.raises(ValueError, match="at least 2"):
        set_test([1.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="same attacks"):
        set_test(np.zeros((4, 2)), np.zeros((4, 3)))


def test_cdi_combiner_uses_a_control_part():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(40, 3)) + [1.0, 0.0, 0.0]
    h = rng.normal(size=(40, 3))
    r = set_test(s, h, features=("a", "b", "c"))
    assert r.n_control == 40 and r.n_suspect == 20 and r.n_heldout == 20
    assert r.used and r.features == ("a", "b", "c")


def test_demo_sets_are_disjoint_and_labelled():
    labels = np.repeat([True, False], 50)
    rng = np.random.default_rng(1)
    s, h = draw_demo_sets(labels, 10, 20, suspect="members", rng=rng)
    assert labels[s].all() and not labels[h].any() and len(set(s)) == 10
    s, h = draw_demo_sets(labels, 10, 20, suspect="nonmembers", rng=rng)
    assert not labels[s].any() and not set(s) & set(h)
    with pytest.raises(ValueError, match="non-members"):
        draw_demo_sets(labels, 40, 20, suspect="nonmembers", rng=rng)


@pytest.fixture(scope="module")
def demo_scores():
    from mia_core.attacks import DEFAULT_ATTACKS
    from mia_core.lab.experiment import load_experiment, make_attacks, stored_results
    from mia_core.lab.runs import ResultStore
    from mia_core.paths import DEMO_STORE_DIR

    exp = load_experiment()
    results = stored_results(
        exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=ResultStore(extra_readonly=[DEMO_STORE_DIR])
    )
    return exp, results


@pytest.mark.parametrize("attacks", [["pia"], ["loss", "secmi", "pia", "pian", "sima"]])
def test_null_is_calibrated_and_members_are_detected(demo_scores, attacks):
    """300 random non-member suspect sets of 20: share of p < 0.05 within a binomial bound; member sets found."""
    exp, results = demo_scores
    scores = score_matrix(results, exp.ids, attacks)
    c = calibrate(scores, exp.is_member, sizes=(20,), n_draws=300, seed=3)
    share = c["null_share_below_alpha"][0]
    bound = 3 * math.sqrt(0.05 * 0.95 / 300)  # 3 binomial standard deviations (0.038)
    assert abs(share - 0.05) <= bound, share
    p = np.asarray(c["null_p_values"]["20"])
    assert stats.kstest(p, "uniform").pvalue > 0.001  # roughly uniform, not only the 5 % tail
    assert c["power"][0] >= 0.9  # measured 1.0 for PIA at n = 20


def test_score_matrix_names_missing_attack(demo_scores):
    exp, results = demo_scores
    with pytest.raises(ValueError, match="no stored scores for attack 'nope'"):
        score_matrix(results, exp.ids, ["nope"])
