"""Metrics for membership-inference attacks: exact ROC, AUC, ASR, TPR at low FPR.

Conventions (fixed by the project's design)::

    label        member = 1 (positive class), non-member = 0
    score        higher = more member-like
    flag         member  <=>  score >= threshold   (ties in score move together)
    ROC          exact, one point per distinct score, plus (0, 0) at threshold +inf
                 (= sklearn.metrics.roc_curve(..., drop_intermediate=False))
    AUC          area under the exact ROC = Mann-Whitney U / (n_m * n_n), ties count 1/2
    ASR          max over thresholds of (TPR + 1 - FPR) / 2, "flag nothing" (+inf) and
                 "flag everything" (lowest score) included
    TPR@budget   largest TPR over ROC points with FPR <= budget (never a point above it)
    n/a          budget < 1 / n_nonmembers  ->  None, shown as
                 "n/a (needs >= M non-members)", M = ceil(1 / budget)
    CI           95 % percentile bootstrap; members and non-members resampled
                 separately with replacement; seeded numpy Generator; 200 resamples;
                 computed a chunk of resamples at a time (bounded memory, same numbers)

Everything here is numpy only, so the CLI, the app and the tests share one code path.
The single-ROC functions and the bootstrap both go through the same row-wise helpers
(``_roc_rows`` and friends), which work on a ``(B, K)`` batch of ROC curves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

__all__ = [
    "RocCurve",
    "Interval",
    "AttackMetrics",
    "roc_curve",
    "auc",
    "balanced_accuracy_best",
    "tpr_at_fpr",
    "threshold_at_fpr",
    "min_nonmembers_for",
    "format_metric",
    "evaluate",
    "apply_threshold",
    "verdict_at_fpr",
    "as_labels",
]

#: FPR budgets reported by :func:`evaluate` (1 % and 0.1 %).
BUDGET_1PCT = 0.01
BUDGET_01PCT = 0.001
#: Percentiles of the bootstrap distribution that bound the 95 % interval.
_CI_QUANTILES = (0.025, 0.975)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)  # eq=False: array fields make == and hash() ambiguous
class RocCurve:
    """Exact ROC curve.

    Attributes
    ----------
    fpr : np.ndarray, shape (K,)
        False-positive rate (fraction of non-members flagged), non-decreasing,
        starts at 0 and ends at 1.
    tpr : np.ndarray, shape (K,)
        True-positive rate (fraction of members flagged), non-decreasing,
        starts at 0 and ends at 1.
    thresholds : np.ndarray, shape (K,)
        Score thresholds, decreasing; the first is ``+inf`` ("flag nothing"),
        the others are the distinct scores. Point ``k`` flags ``score >= thresholds[k]``.
        ``K`` is the number of distinct scores plus one.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


@dataclass(frozen=True)
class Interval:
    """A closed interval ``[low, high]`` (here: a 95 % bootstrap interval)."""

    low: float
    high: float

    def to_list(self) -> list[float]:
        """Return ``[low, high]`` as plain Python floats (JSON friendly)."""
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class AttackMetrics:
    """All headline numbers of one attack on one evaluation set.

    Rates are fractions in [0, 1]. ``None`` for a TPR@FPR value means "n/a":
    fewer than ``1 / budget`` non-members, so no ROC point can have a non-zero
    FPR within the budget. Intervals are 95 % percentile-bootstrap intervals,
    ``None`` when the bootstrap was skipped or the point value is n/a.
    """

    auc: float
    asr: float
    tpr_at_1pct_fpr: float | None
    tpr_at_01pct_fpr: float | None
    n_members: int
    n_nonmembers: int
    auc_ci: Interval | None
    asr_ci: Interval | None
    tpr_at_1pct_fpr_ci: Interval | None
    tpr_at_01pct_fpr_ci: Interval | None

    def to_json_dict(self) -> dict:
        """Return a dict of plain Python values, ready for ``json.dumps``.

        Keys: ``auc``, ``asr``, ``tpr_at_1pct_fpr``, ``tpr_at_0.1pct_fpr``,
        ``n_members``, ``n_nonmembers``, ``auc_ci``, ``asr_ci``,
        ``tpr_at_1pct_fpr_ci``, ``tpr_at_0.1pct_fpr_ci``. Intervals become
        ``[low, high]`` lists; n/a values and missing intervals become ``None``
        (JSON ``null``).
        """
        return {
            "auc": float(self.auc),
            "asr": float(self.asr),
            "tpr_at_1pct_fpr": _optional_float(self.tpr_at_1pct_fpr),
            "tpr_at_0.1pct_fpr": _optional_float(self.tpr_at_01pct_fpr),
            "n_members": int(self.n_members),
            "n_nonmembers": int(self.n_nonmembers),
            "auc_ci": _optional_interval(self.auc_ci),
            "asr_ci": _optional_interval(self.asr_ci),
            "tpr_at_1pct_fpr_ci": _optional_interval(self.tpr_at_1pct_fpr_ci),
            "tpr_at_0.1pct_fpr_ci": _optional_interval(self.tpr_at_01pct_fpr_ci),
        }


def _optional_float(value: float | None) -> float | None:
    return None if value is None else float(value)


def _optional_interval(interval: Interval | None) -> list[float] | None:
    return None if interval is None else interval.to_list()


# --------------------------------------------------------------------------- validation


def _as_scores(scores, name: str = "scores") -> np.ndarray:
    """Return ``scores`` as a finite 1-D float array or raise ValueError."""
    try:
        array = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric; could not convert to float ({exc})") from exc
    if array.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} must not be empty")
    bad = ~np.isfinite(array)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite; found {float(array[first])!r} at index {first} "
            f"({int(bad.sum())} non-finite value(s) in total)"
        )
    return array


def as_labels(is_member) -> np.ndarray:
    """Membership labels as a 1-D bool array (members True), or ValueError naming the bad value.

    Accepts bool, or numbers that are all 0 or 1; shape (N,). Shared by every module that takes labels
    (metrics, calibration, the blind baseline) so that they reject the same inputs with the same message.
    """
    array = np.asarray(is_member)
    if array.ndim != 1:
        raise ValueError(f"is_member must be a 1-D array; got shape {array.shape}")
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.number)):
        raise ValueError(f"is_member must hold 0/1 labels; got dtype {array.dtype}")
    bad_values = np.unique(array[(array != 0) & (array != 1)])  # NaN lands here too
    if bad_values.size:
        shown = ", ".join(repr(v.item()) for v in bad_values[:5])
        raise ValueError(f"is_member must contain only 0/1 labels; found {shown}")
    return array == 1


def _validate(scores, is_member) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (scores, labels) pair; return float scores and bool member mask."""
    score_array = _as_scores(scores)
    labels = as_labels(is_member)
    if score_array.shape != labels.shape:
        raise ValueError(
            f"scores and is_member must have the same length; "
            f"got {score_array.shape[0]} scores and {labels.shape[0]} labels"
        )
    n_members = int(labels.sum())
    n_nonmembers = labels.size - n_members
    if n_members == 0 or n_nonmembers == 0:
        raise ValueError(
            f"need at least one member and one non-member; got {n_members} member(s) and {n_nonmembers} non-member(s)"
        )
    return score_array, labels


def _validate_budget(budget) -> float:
    """Return ``budget`` as a float in the open interval (0, 1) or raise ValueError."""
    if isinstance(budget, bool) or not isinstance(budget, Real):
        raise ValueError(f"budget must be a number in (0, 1); got {budget!r}")
    value = float(budget)
    if not (0.0 < value < 1.0):  # also rejects NaN
        raise ValueError(f"budget must be in the open interval (0, 1); got {budget!r}")
    return value


# --------------------------------------------------------------------------- row-wise core
#
# A batch of B ROC curves over the same G distinct score values is described by
# per-value counts: member_counts[b, g] = how many members of resample b have the
# g-th highest distinct score (same for non-members). B = 1 is the plain ROC.


def _distinct_groups(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal scores.

    Returns
    -------
    values : np.ndarray, shape (G,)
        Distinct scores, decreasing.
    group : np.ndarray, shape (N,)
        ``values[group[i]] == scores[i]``.
    """
    ascending, inverse = np.unique(scores, return_inverse=True)
    n_groups = ascending.size
    return ascending[::-1], (n_groups - 1) - inverse.reshape(-1)


def _row_bincount(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Counts per group for each row of ``groups`` (B, n) -> (B, G), in one bincount."""
    n_rows = groups.shape[0]
    offsets = (np.arange(n_rows) * n_groups)[:, None]  # give each row its own bins
    flat = np.bincount((groups + offsets).ravel(), minlength=n_rows * n_groups)
    return flat.reshape(n_rows, n_groups)


def _roc_rows(member_counts: np.ndarray, nonmember_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ROC curves from per-group counts.

    Parameters
    ----------
    member_counts, nonmember_counts : np.ndarray, shape (B, G)
        Counts per distinct score value, highest score first.

    Returns
    -------
    fpr, tpr : np.ndarray, shape (B, G + 1)
        Column 0 is the "flag nothing" point (0, 0); column g + 1 flags the
        first g + 1 score groups.
    """
    n_rows = member_counts.shape[0]
    zero = np.zeros((n_rows, 1), dtype=np.int64)
    tp = np.concatenate([zero, np.cumsum(member_counts, axis=1)], axis=1)
    fp = np.concatenate([zero, np.cumsum(nonmember_counts, axis=1)], axis=1)
    # Integer counts divided by the (integer) totals: the same arithmetic as
    # sklearn, so FPR values compare against budgets exactly like sklearn's do.
    return fp / fp[:, -1:], tp / tp[:, -1:]


def _auc_rows(fpr: np.ndarray, tpr: np.ndarray) -> np.ndarray:
    """Trapezoidal area under each ROC row, shape (B,). Equals Mann-Whitney with ties = 1/2."""
    return 0.5 * np.sum(np.diff(fpr, axis=1) * (tpr[:, 1:] + tpr[:, :-1]), axis=1)


def _best_balanced_rows(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best balanced accuracy per row and the column reaching it (first = highest threshold)."""
    balanced = 0.5 * (tpr + 1.0 - fpr)
    best_column = np.argmax(balanced, axis=1)
    rows = np.arange(balanced.shape[0])
    return balanced[rows, best_column], best_column


def _tpr_at_fpr_rows(fpr: np.ndarray, tpr: np.ndarray, budget: float) -> tuple[np.ndarray, np.ndarray]:
    """TPR at the FPR budget per row, and the column of that operating point.

    FPR and TPR are non-decreasing along a row, so the largest TPR with
    FPR <= budget sits at the last eligible column; among columns sharing
    that TPR we return the first one (smallest FPR, highest threshold).
    """
    rows = np.arange(fpr.shape[0])
    last_eligible = np.sum(fpr <= budget, axis=1) - 1  # column 0 (FPR 0) is always eligible
    best_tpr = tpr[rows, last_eligible]
    first_column = np.argmax(tpr >= best_tpr[:, None], axis=1)
    return best_tpr, first_column


def _is_na(n_nonmembers: int, budget: float) -> bool:
    """True when no non-zero FPR fits the budget (smallest non-zero FPR is 1/N)."""
    return 1.0 / n_nonmembers > budget


# --------------------------------------------------------------------------- single ROC


def _single_roc(scores, is_member) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate, then return (fpr (K,), tpr (K,), thresholds (K,), n_nonmembers)."""
    score_array, labels = _validate(scores, is_member)
    values, group = _distinct_groups(score_array)
    member_counts = np.bincount(group[labels], minlength=values.size)[None, :]
    nonmember_counts = np.bincount(group[~labels], minlength=values.size)[None, :]
    fpr, tpr = _roc_rows(member_counts, nonmember_counts)
    thresholds = np.concatenate([[np.inf], values])
    return fpr[0], tpr[0], thresholds, int((~labels).sum())


def roc_curve(scores, is_member) -> RocCurve:
    """Exact ROC curve, one point per distinct score.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        1 (or True) for members, 0 (or False) for non-members.

    Returns
    -------
    RocCurve
        Arrays of shape (K,), K = number of distinct scores + 1; identical to
        ``sklearn.metrics.roc_curve(is_member, scores, drop_intermediate=False)``.
        The arrays are read-only.
    """
    fpr, tpr, thresholds, _ = _single_roc(scores, is_member)
    for array in (fpr, tpr, thresholds):
        array.setflags(write=False)  # the dataclass is frozen; keep its arrays so too
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds)


def auc(scores, is_member) -> float:
    """Area under the exact ROC curve, in [0, 1].

    Equals the Mann-Whitney probability that a random member outscores a random
    non-member, with ties counted 1/2 (as ``sklearn.metrics.roc_auc_score``).

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 membership labels.
    """
    fpr, tpr, _, _ = _single_roc(scores, is_member)
    return float(_auc_rows(fpr[None, :], tpr[None, :])[0])


def balanced_accuracy_best(scores, is_member) -> tuple[float, float]:
    """Attack success rate: the best balanced accuracy over all thresholds.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 membership labels.

    Returns
    -------
    best : float
        ``max (TPR + 1 - FPR) / 2`` over all ROC points, in [0.5, 1]
        ("flag nothing" already gives 0.5).
    threshold : float
        A threshold reaching it (``score >= threshold`` flags member); the highest
        such one when several tie; ``+inf`` when flagging nothing is best.
    """
    fpr, tpr, thresholds, _ = _single_roc(scores, is_member)
    best, column = _best_balanced_rows(fpr[None, :], tpr[None, :])
    return float(best[0]), float(thresholds[column[0]])


def tpr_at_fpr(scores, is_member, budget: float) -> float | None:
    """TPR at an FPR budget: the largest TPR over ROC points with FPR <= budget.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 membership labels.
    budget : float
        FPR budget as a fraction in (0, 1), e.g. 0.01 for 1 %.

    Returns
    -------
    float or None
        TPR in [0, 1]; ``None`` ("n/a") when ``budget < 1 / n_nonmembers``.
    """
    budget = _validate_budget(budget)
    fpr, tpr, _, n_nonmembers = _single_roc(scores, is_member)
    if _is_na(n_nonmembers, budget):
        return None
    value, _ = _tpr_at_fpr_rows(fpr[None, :], tpr[None, :], budget)
    return float(value[0])


def threshold_at_fpr(scores, is_member, budget: float) -> float | None:
    """Threshold of the operating point used by :func:`tpr_at_fpr`.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 membership labels.
    budget : float
        FPR budget as a fraction in (0, 1).

    Returns
    -------
    float or None
        ``score >= threshold`` flags member. Among ROC points with the best TPR
        within the budget, the one with the smallest FPR (highest threshold).
        ``+inf`` when that point is "flag nothing"; ``None`` when n/a.
    """
    budget = _validate_budget(budget)
    fpr, tpr, thresholds, n_nonmembers = _single_roc(scores, is_member)
    if _is_na(n_nonmembers, budget):
        return None
    _, column = _tpr_at_fpr_rows(fpr[None, :], tpr[None, :], budget)
    return float(thresholds[column[0]])


def min_nonmembers_for(budget: float) -> int:
    """Smallest number of non-members N with ``1 / N <= budget``, i.e. ``ceil(1 / budget)``.

    Computed so that it agrees exactly with the n/a rule (0.01 -> 100,
    0.001 -> 1000), whatever the rounding of ``1 / budget`` in floating point.
    """
    budget = _validate_budget(budget)
    n = max(1, math.ceil(1.0 / budget))
    # Nudge past float rounding in 1/budget so that "n/a" and this number never disagree.
    while n > 1 and not _is_na(n - 1, budget):
        n -= 1
    while _is_na(n, budget):
        n += 1
    return n


def format_metric(value: float | None, budget: float | None = None, digits: int = 3) -> str:
    """Text for a metric value.

    Parameters
    ----------
    value : float or None
        The metric; ``None`` means n/a.
    budget : float, optional
        FPR budget of a TPR@FPR value; used to explain an n/a.
    digits : int
        Decimal places.

    Returns
    -------
    str
        e.g. ``"0.912"``, ``"n/a (needs >= 1000 non-members)"`` or ``"n/a"``.
    """
    if isinstance(digits, bool) or not isinstance(digits, Integral) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer; got {digits!r}")
    if value is None:
        if budget is None:
            return "n/a"
        return f"n/a (needs >= {min_nonmembers_for(budget)} non-members)"
    return f"{float(value):.{int(digits)}f}"


# --------------------------------------------------------------------------- bootstrap


def _resampled_metrics(
    scores: np.ndarray,
    is_member: np.ndarray,
    member_idx: np.ndarray,
    nonmember_idx: np.ndarray,
    budgets: tuple[float, ...],
    groups: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Metrics of B resamples at once.

    Parameters
    ----------
    scores : np.ndarray, shape (N,)
        Validated float scores.
    is_member : np.ndarray, shape (N,)
        Validated bool member mask.
    member_idx : np.ndarray, shape (B, n_members)
        Positions into the members (``scores[is_member]``) for each resample.
    nonmember_idx : np.ndarray, shape (B, n_nonmembers)
        Positions into the non-members for each resample.
    budgets : tuple of float
        FPR budgets for TPR@FPR.
    groups : (values, group), optional
        ``_distinct_groups(scores)`` when already computed (the chunked bootstrap computes it once).

    Returns
    -------
    dict
        ``"auc"``, ``"asr"`` and one ``budget`` key per budget, each shape (B,).
    """
    values, group = groups if groups is not None else _distinct_groups(scores)
    member_counts = _row_bincount(group[is_member][member_idx], values.size)
    nonmember_counts = _row_bincount(group[~is_member][nonmember_idx], values.size)
    fpr, tpr = _roc_rows(member_counts, nonmember_counts)
    result: dict = {"auc": _auc_rows(fpr, tpr), "asr": _best_balanced_rows(fpr, tpr)[0]}
    for budget in budgets:
        result[budget] = _tpr_at_fpr_rows(fpr, tpr, budget)[0]
    return result


#: resamples x images drawn and counted at once by the bootstrap. Its working memory is about 60 bytes per
#: element, so about 60 MiB up to 2^20 images, then one resample (one row of N) at a time.
BOOTSTRAP_CHUNK_ELEMENTS = 2**20


def _skip_draws(rng: np.random.Generator, rows: int, high: int) -> None:
    """Advance ``rng`` past ``rng.integers(0, high, size=(rows, high))`` without holding that array."""
    left = rows * high
    while left:
        step = min(left, BOOTSTRAP_CHUNK_ELEMENTS)
        rng.integers(0, high, size=step)
        left -= step


def _bootstrap_samples(
    scores: np.ndarray, labels: np.ndarray, n_bootstrap: int, seed: int, budgets: tuple[float, ...]
) -> dict:
    """The metrics of ``n_bootstrap`` resamples, shape (n_bootstrap,) each, in bounded memory.

    The same resamples as one ``rng.integers(0, n_members, (B, n_members))`` draw followed by one
    ``rng.integers(0, n_nonmembers, (B, n_nonmembers))`` draw from ``default_rng(seed)`` (numpy draws
    bounded integers one after another, so a draw cut into pieces gives the same numbers): the
    non-member stream starts where the member draws end, and both are consumed
    ``BOOTSTRAP_CHUNK_ELEMENTS // N`` resamples (at least one) at a time. Memory: O(N) for the scores'
    groups plus the chunk's, instead of O(B N).
    """
    n_members = int(labels.sum())
    n_nonmembers = labels.size - n_members
    rng_members = np.random.default_rng(seed)
    rng_nonmembers = np.random.default_rng(seed)
    _skip_draws(rng_nonmembers, n_bootstrap, n_members)
    groups = _distinct_groups(scores)
    rows = max(1, BOOTSTRAP_CHUNK_ELEMENTS // labels.size)
    out: dict = {}
    for start in range(0, n_bootstrap, rows):
        b = min(rows, n_bootstrap - start)
        member_idx = rng_members.integers(0, n_members, size=(b, n_members))
        nonmember_idx = rng_nonmembers.integers(0, n_nonmembers, size=(b, n_nonmembers))
        part = _resampled_metrics(scores, labels, member_idx, nonmember_idx, budgets, groups)
        del member_idx, nonmember_idx
        for key, values in part.items():
            out.setdefault(key, np.empty(n_bootstrap))[start : start + b] = values
    return out


def _percentile_interval(samples: np.ndarray) -> Interval:
    low, high = np.quantile(samples, _CI_QUANTILES)
    return Interval(low=float(low), high=float(high))


def evaluate(scores, is_member, *, n_bootstrap: int = 200, seed: int = 0) -> AttackMetrics:
    """AUC, ASR, TPR at 1 % and 0.1 % FPR, counts and 95 % bootstrap intervals.

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite; higher means more member-like.
    is_member : array_like, shape (N,)
        0/1 membership labels.
    n_bootstrap : int
        Bootstrap resamples (members and non-members resampled separately, with
        replacement). 0 skips the bootstrap: all intervals are None.
    seed : int
        Seed of the ``numpy.random.Generator`` used for resampling.

    Returns
    -------
    AttackMetrics
    """
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, Integral) or n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be a non-negative integer; got {n_bootstrap!r}")
    score_array, labels = _validate(scores, is_member)
    n_members = int(labels.sum())
    n_nonmembers = labels.size - n_members

    tpr_1 = tpr_at_fpr(score_array, labels, BUDGET_1PCT)
    tpr_01 = tpr_at_fpr(score_array, labels, BUDGET_01PCT)
    intervals: dict = {"auc": None, "asr": None, BUDGET_1PCT: None, BUDGET_01PCT: None}
    if n_bootstrap > 0:
        samples = _bootstrap_samples(score_array, labels, n_bootstrap, seed, (BUDGET_1PCT, BUDGET_01PCT))
        for key in ("auc", "asr"):
            intervals[key] = _percentile_interval(samples[key])
        # Every resample has the same non-member count, so n/a is n/a for all of them.
        for budget, point in ((BUDGET_1PCT, tpr_1), (BUDGET_01PCT, tpr_01)):
            if point is not None:
                intervals[budget] = _percentile_interval(samples[budget])

    return AttackMetrics(
        auc=auc(score_array, labels),
        asr=balanced_accuracy_best(score_array, labels)[0],
        tpr_at_1pct_fpr=tpr_1,
        tpr_at_01pct_fpr=tpr_01,
        n_members=n_members,
        n_nonmembers=n_nonmembers,
        auc_ci=intervals["auc"],
        asr_ci=intervals["asr"],
        tpr_at_1pct_fpr_ci=intervals[BUDGET_1PCT],
        tpr_at_01pct_fpr_ci=intervals[BUDGET_01PCT],
    )


# --------------------------------------------------------------------------- calibrated thresholds


def apply_threshold(scores, threshold: float) -> np.ndarray:
    """Flag members with a fixed threshold (e.g. one calibrated on another split).

    Parameters
    ----------
    scores : array_like, shape (N,)
        Attack scores, finite.
    threshold : float
        ``score >= threshold`` is flagged; may be ``+inf`` (flag nothing).

    Returns
    -------
    np.ndarray of bool, shape (N,)
    """
    score_array = _as_scores(scores)
    if isinstance(threshold, bool) or not isinstance(threshold, Real) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number (not NaN); got {threshold!r}")
    return score_array >= float(threshold)


def verdict_at_fpr(calibration_nonmember_scores, score, budget) -> tuple[bool | None, float | None]:
    """Member verdict for one score, thresholded at an FPR budget on known non-members.

    Parameters
    ----------
    calibration_nonmember_scores : array_like, shape (N,)
        Scores of samples known to be non-members (finite).
    score : float
        The score to judge (finite).
    budget : float
        FPR budget as a fraction in (0, 1).

    Returns
    -------
    verdict : bool or None
        ``score >= threshold``; None when ``budget < 1 / N``.
    threshold : float or None
        The smallest candidate threshold (candidates: the distinct calibration
        scores and ``+inf``, as on the ROC) whose calibration FPR, the fraction of
        calibration scores ``>= threshold``, is <= budget. ``+inf`` when the top
        calibration score alone is tied too often to fit. None when n/a.
    """
    calibration = _as_scores(calibration_nonmember_scores, name="calibration_nonmember_scores")
    budget = _validate_budget(budget)
    if isinstance(score, bool) or not isinstance(score, Real) or not math.isfinite(score):
        raise ValueError(f"score must be a finite number; got {score!r}")
    if _is_na(calibration.size, budget):
        return None, None

    values, group = _distinct_groups(calibration)
    flagged_fraction = np.cumsum(np.bincount(group, minlength=values.size)) / calibration.size
    eligible = np.flatnonzero(flagged_fraction <= budget)  # a prefix: fractions only grow
    threshold = float(values[eligible[-1]]) if eligible.size else math.inf
    return bool(float(score) >= threshold), threshold
