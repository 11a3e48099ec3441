"""Calibrated (transferred) thresholds: CopyMark's calibration -> test protocol.

An oracle TPR@FPR picks its threshold on the very scores it is measured on, which flatters every
attack. Here the split is cut once, seeded and stratified, into a *calibration* part and a
disjoint *test* part; the threshold at the FPR budget is chosen on the calibration part (the same
rule as :func:`mia_core.metrics.threshold_at_fpr`) and then applied, unchanged, to the test part,
where both the TPR *and the achieved FPR* are reported (the achieved FPR may exceed the budget).

Conventions are those of :mod:`mia_core.metrics` (member = 1, higher score = member,
``score >= threshold`` flags). Intervals: 95 % percentile bootstrap, seeded; each resample draws
calibration members, calibration non-members, test members and test non-members separately with
replacement, re-picks the threshold on the resampled calibration part and measures it on the
resampled test part, so the interval covers both the threshold's and the test part's noise.
numpy only (engine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from mia_core.metrics import (
    _CI_QUANTILES,
    Interval,
    _is_na,
    _percentile_interval,
    _resampled_metrics,
    _validate,
    _validate_budget,
    as_labels,
    threshold_at_fpr,
    tpr_at_fpr,
)

#: Budgets of the transferred TPR@FPR written by ``mia attack`` (10 %, 1 %, 0.1 %, as Compare offers).
TRANSFER_BUDGETS = (0.1, 0.01, 0.001)

__all__ = [
    "TRANSFER_BUDGETS",
    "Partition",
    "TransferredRate",
    "OracleRate",
    "oracle_tpr_at_fpr",
    "calibration_partition",
    "transferred_tpr_at_fpr",
    "transferred_metrics",
    "format_transferred",
]


@dataclass(frozen=True, eq=False)
class Partition:
    """A seeded, stratified calibration / test cut of a labelled set.

    Attributes
    ----------
    calibration : np.ndarray of bool, shape (N,)
        True for the rows in the calibration part; the test part is ``~calibration``.
    fraction : float
        Requested share of each class in the calibration part.
    seed : int
        Seed of the ``numpy.random.Generator`` that shuffled each class.
    """

    calibration: np.ndarray
    fraction: float
    seed: int
    is_member: np.ndarray

    @property
    def test(self) -> np.ndarray:
        return ~self.calibration

    def sizes(self) -> dict[str, int]:
        """Counts: ``calibration_members``, ``calibration_nonmembers``, ``test_members``, ``test_nonmembers``."""
        m, c = self.is_member, self.calibration
        return {
            "calibration_members": int((c & m).sum()),
            "calibration_nonmembers": int((c & ~m).sum()),
            "test_members": int((~c & m).sum()),
            "test_nonmembers": int((~c & ~m).sum()),
        }

    def to_json_dict(self) -> dict:
        """What a manifest records: fraction, seed, the four sizes (plain Python values)."""
        return {"fraction": float(self.fraction), "seed": int(self.seed), "stratified": True, **self.sizes()}


def calibration_partition(is_member, *, fraction: float = 0.5, seed: int = 0) -> Partition:
    """Cut a labelled set into calibration and test parts, stratified by label.

    Within the members, and separately within the non-members, the rows are shuffled with
    ``numpy.random.default_rng(seed)`` (members first, then non-members) and the first
    ``round(fraction * n_class)`` go to the calibration part. Each part keeps at least one row
    of each class.

    Parameters
    ----------
    is_member : array_like, shape (N,)
        0/1 labels; needs at least two members and two non-members.
    fraction : float
        Share of each class put in the calibration part, in (0, 1).
    seed : int
        Shuffle seed.
    """
    labels = as_labels(is_member)
    if isinstance(fraction, bool) or not isinstance(fraction, Real) or not (0.0 < float(fraction) < 1.0):
        raise ValueError(f"calibration fraction must be in the open interval (0, 1); got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    rng = np.random.default_rng(int(seed))
    calibration = np.zeros(labels.size, dtype=bool)
    for cls in (True, False):
        rows = np.flatnonzero(labels == cls)
        name = "members" if cls else "non-members"
        if rows.size < 2:
            raise ValueError(f"a calibration/test partition needs at least 2 {name}; got {rows.size}")
        k = min(max(1, round(float(fraction) * rows.size)), rows.size - 1)
        calibration[rng.permutation(rows)[:k]] = True
    labels = labels.copy()
    for array in (calibration, labels):
        array.setflags(write=False)
    return Partition(calibration=calibration, fraction=float(fraction), seed=int(seed), is_member=labels)


@dataclass(frozen=True)
class TransferredRate:
    """TPR and achieved FPR on the test part at a threshold chosen on the calibration part.

    ``None`` values mean n/a: the calibration part has fewer than ``1 / budget`` non-members,
    so no threshold with a non-zero FPR fits the budget there.
    """

    budget: float
    threshold: float | None
    tpr: float | None
    fpr: float | None
    tpr_ci: Interval | None
    fpr_ci: Interval | None

    def to_json_dict(self) -> dict:
        def opt(v):
            return None if v is None else float(v)

        threshold = self.threshold
        return {
            "budget": float(self.budget),
            # JSON has no +inf: "flag nothing" is written as the string "inf".
            "threshold": None if threshold is None else (threshold if math.isfinite(threshold) else "inf"),
            "tpr": opt(self.tpr),
            "fpr": opt(self.fpr),
            "tpr_ci": None if self.tpr_ci is None else self.tpr_ci.to_list(),
            "fpr_ci": None if self.fpr_ci is None else self.fpr_ci.to_list(),
        }


def _rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    flagged = scores >= threshold
    return float(flagged[labels].mean()), float(flagged[~labels].mean())


def transferred_tpr_at_fpr(
    scores, is_member, partition: Partition, budget: float, *, n_bootstrap: int = 200, seed: int = 0
) -> TransferredRate:
    """Threshold at ``budget`` on the calibration part; TPR and achieved FPR on the test part.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 labels; must equal the partition's labels.
    partition : Partition
        From :func:`calibration_partition` on the same labels.
    budget : float
        FPR budget in (0, 1), e.g. 0.01.
    n_bootstrap : int
        Bootstrap resamples (see the module docstring); 0 skips the intervals.
    seed : int
        Bootstrap seed.
    """
    budget = _validate_budget(budget)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    score_array, labels = _validate(scores, is_member)
    if labels.shape != partition.is_member.shape or not np.array_equal(labels, partition.is_member):
        raise ValueError("is_member does not match the partition's labels; build the partition on these labels")
    cal, test = partition.calibration, partition.test
    cal_scores, cal_labels = score_array[cal], labels[cal]
    test_scores, test_labels = score_array[test], labels[test]
    if _is_na(int((~cal_labels).sum()), budget):
        return TransferredRate(budget, None, None, None, None, None)
    threshold = threshold_at_fpr(cal_scores, cal_labels, budget)
    tpr, fpr = _rates(test_scores, test_labels, threshold)
    tpr_ci = fpr_ci = None
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        cal_m, cal_n = cal_scores[cal_labels], cal_scores[~cal_labels]
        test_m, test_n = test_scores[test_labels], test_scores[~test_labels]
        cal_lab = np.concatenate([np.ones(cal_m.size, bool), np.zeros(cal_n.size, bool)])
        samples = np.empty((n_bootstrap, 2))
        for b in range(n_bootstrap):
            resampled = np.concatenate([rng.choice(cal_m, cal_m.size), rng.choice(cal_n, cal_n.size)])
            thr = threshold_at_fpr(resampled, cal_lab, budget)
            samples[b, 0] = float((rng.choice(test_m, test_m.size) >= thr).mean())
            samples[b, 1] = float((rng.choice(test_n, test_n.size) >= thr).mean())
        lo, hi = np.quantile(samples, _CI_QUANTILES, axis=0)
        tpr_ci, fpr_ci = Interval(float(lo[0]), float(hi[0])), Interval(float(lo[1]), float(hi[1]))
    return TransferredRate(budget, float(threshold), tpr, fpr, tpr_ci, fpr_ci)


def format_transferred(block: dict | None, budget: float = 0.01) -> str:
    """Text of one transferred rate from a :func:`transferred_metrics` block: ``"0.123 @ FPR 0.011"``.

    ``"n/a"`` when the block is missing, the budget was not computed, or the calibration part had too
    few non-members (needs ``ceil(1 / budget)``).
    """
    rate = ((block or {}).get("at_fpr") or {}).get(repr(float(budget)))
    if not rate or rate.get("tpr") is None:
        return "n/a"
    return f"{rate['tpr']:.3f} @ FPR {rate['fpr']:.3f}"


def transferred_metrics(
    scores, is_member, partition: Partition, budgets=(0.01, 0.001), *, n_bootstrap: int = 200, seed: int = 0
) -> dict:
    """JSON-ready block for ``metrics.json``: the partition and one transferred rate per budget.

    Returns ``{"partition": {...}, "at_fpr": {"0.01": {...}, ...}}`` (keys are ``repr`` of budgets).
    """
    return {
        "partition": partition.to_json_dict(),
        "at_fpr": {
            repr(float(b)): transferred_tpr_at_fpr(
                scores, is_member, partition, b, n_bootstrap=n_bootstrap, seed=seed
            ).to_json_dict()
            for b in budgets
        },
    }


@dataclass(frozen=True)
class OracleRate:
    """TPR at an FPR budget with the threshold chosen on the very scores it is measured on (the best case).

    ``tpr`` is None (n/a) when there are fewer than ``ceil(1 / budget)`` non-members.
    """

    budget: float
    threshold: float | None
    tpr: float | None
    tpr_ci: Interval | None
    n_members: int
    n_nonmembers: int


def oracle_tpr_at_fpr(scores, is_member, budget: float, *, n_bootstrap: int = 200, seed: int = 0) -> OracleRate:
    """Oracle TPR at any FPR budget, with the 95 % bootstrap interval of :func:`mia_core.metrics.evaluate`.

    :func:`~mia_core.metrics.evaluate` gives intervals at 1 % and 0.1 % only; this gives the same number
    (:func:`~mia_core.metrics.tpr_at_fpr`) and interval (members and non-members resampled separately,
    seeded) at the budget a page shows, for the side-by-side with :func:`transferred_tpr_at_fpr`.

    Parameters
    ----------
    scores, is_member : array_like, shape (N,)
    budget : float in (0, 1)
    n_bootstrap : int
        0 skips the interval.
    """
    budget = _validate_budget(budget)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    score_array, labels = _validate(scores, is_member)
    n_m = int(labels.sum())
    n_n = labels.size - n_m
    tpr = tpr_at_fpr(score_array, labels, budget)
    ci = None
    if tpr is not None and n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        member_idx = rng.integers(0, n_m, size=(n_bootstrap, n_m))
        nonmember_idx = rng.integers(0, n_n, size=(n_bootstrap, n_n))
        ci = _percentile_interval(_resampled_metrics(score_array, labels, member_idx, nonmember_idx, (budget,))[budget])
    return OracleRate(budget, threshold_at_fpr(score_array, labels, budget), tpr, ci, n_m, n_n)
