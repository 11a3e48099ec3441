"""Verdicts for new images: "was this image in the target's training set?"

Given an experiment's stored attack results (the *calibration* data: the scores of its known
members and known non-members) and new images, this module scores the new images with the same
attacks, parameters and seed, and places each score against the calibration scores.

Conventions (the same as :mod:`mia_core.metrics`)::

    score            higher = more member-like
    percentile       share of the calibration scores below the image's score, ties count 1/2, in %
    nonmember tail   share of calibration non-members scoring >= the image's score (an empirical p-value)
    threshold        without a partition: from the calibration NON-MEMBER scores only
                     (metrics.verdict_at_fpr), the lowest threshold that at most ``budget`` of the
                     known non-members reach. With a partition (what the pages use,
                     :func:`mia_core.calibration.calibration_partition`): the *transferred* threshold,
                     chosen on the calibration part only by the rule of Compare's transferred
                     TPR@FPR (metrics.threshold_at_fpr on its members and non-members), and measured,
                     unchanged, on the disjoint test part (achieved FPR and TPR there)
    flagged          score >= threshold
    n/a              fewer than ceil(1 / budget) calibration non-members: no threshold, no verdict
    rule TPR         share of known members the same threshold flags (what "not flagged" misses):
                     on the test part with a partition, else on the calibration members (then it can
                     be slightly below the ROC's TPR@FPR of :func:`metrics.tpr_at_fpr`, whose
                     threshold may sit between two non-member scores)

Across attacks an image gets a *majority* summary (flagged by more than half of the attacks
that gave a verdict) and an *any* summary (flagged by at least one; with k attacks its
false-positive rate can reach k times the budget).

Nothing here imports streamlit or draws: the sentences and the placement figure are in
:mod:`mia_core.views.verdict`, the upload folder in :mod:`mia_core.lab.uploads`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mia_core.attacks import Attack, AttackResult
from mia_core.calibration import Partition
from mia_core.data import ImageSet
from mia_core.metrics import min_nonmembers_for, threshold_at_fpr, verdict_at_fpr

__all__ = [
    "Calibration",
    "ThresholdSource",
    "AttackVerdict",
    "ImageSummary",
    "VerdictReport",
    "budget_text",
    "calibrations_from_results",
    "judge_scores",
    "judge_images",
    "score_images",
    "percentile_of",
    "verdict_label",
]

# ----------------------------------------------------------------------------- small helpers


def budget_text(budget: float) -> str:
    """``0.01 -> "1 %"``, ``0.001 -> "0.1 %"``, ``0.05 -> "5 %"``."""
    return f"{float(budget) * 100:g} %"


def percentile_of(values: np.ndarray, score: float) -> float:
    """Percent of ``values`` below ``score``, ties counted half (mid-rank), in [0, 100]."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        raise ValueError("percentile_of needs at least one calibration score")
    below = np.count_nonzero(values < score)
    equal = np.count_nonzero(values == score)
    return float(100.0 * (below + 0.5 * equal) / values.size)


def verdict_label(flagged: bool | None, budget: float, n_needed: int | None = None) -> str:
    """The short verdict text shown next to a score."""
    if flagged is None:
        needed = n_needed if n_needed is not None else min_nonmembers_for(budget)
        return f"n/a: needs >= {needed} calibration non-members"
    if flagged:
        return f"flagged as member at {budget_text(budget)} FPR"
    return f"not flagged at {budget_text(budget)} FPR"


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class ThresholdSource:
    """Where a verdict threshold came from, and how it did on images it was not chosen on.

    Attributes
    ----------
    attack : str
    budget : float
        FPR budget in (0, 1).
    transferred : bool
        True: chosen on the calibration part of a partition, measured on the disjoint test part.
        False: chosen on every known non-member (no held-out images to measure it on).
    n_members, n_nonmembers : int
        Known images the threshold was chosen on.
    fraction, seed : float, int or None
        The partition's share of each class in the calibration part and its seed (None without one).
    threshold : float or None
        None = n/a (fewer than ``ceil(1 / budget)`` calibration non-members); may be ``+inf``.
    test_members, test_nonmembers : int
        Sizes of the test part (0 without a partition).
    test_flagged_members, test_flagged_nonmembers : int or None
        How many of them the threshold flags (None when n/a or without a partition).
    """

    attack: str
    budget: float
    transferred: bool
    n_members: int
    n_nonmembers: int
    fraction: float | None
    seed: int | None
    threshold: float | None
    test_members: int = 0
    test_nonmembers: int = 0
    test_flagged_members: int | None = None
    test_flagged_nonmembers: int | None = None

    @property
    def achieved_fpr(self) -> float | None:
        """Share of the test part's non-members flagged (may exceed the budget); None when n/a."""
        if self.test_flagged_nonmembers is None or not self.test_nonmembers:
            return None
        return self.test_flagged_nonmembers / self.test_nonmembers

    @property
    def test_tpr(self) -> float | None:
        """Share of the test part's members flagged; None when n/a."""
        if self.test_flagged_members is None or not self.test_members:
            return None
        return self.test_flagged_members / self.test_members


@dataclass(frozen=True, eq=False)
class Calibration:
    """Known scores of one attack on an experiment's split.

    Attributes
    ----------
    attack : str
        Registry name.
    member_scores, nonmember_scores : (n_members,), (n_nonmembers,) float
        Scores (higher = member) of the known members and non-members the threshold is chosen on:
        the whole split, or only its calibration part when ``partition`` is given.
    title : str
        The attack's display title.
    test_member_scores, test_nonmember_scores : (n_test_members,), (n_test_nonmembers,) float or None
        The disjoint test part's scores (given together with ``partition``).
    partition : mia_core.calibration.Partition or None
        The calibration / test cut the scores were split by (:meth:`from_result`).
    """

    attack: str
    member_scores: np.ndarray
    nonmember_scores: np.ndarray
    title: str = ""
    test_member_scores: np.ndarray | None = None
    test_nonmember_scores: np.ndarray | None = None
    partition: Partition | None = None

    def __post_init__(self) -> None:
        names = ["member_scores", "nonmember_scores"]
        if self.partition is not None:
            names += ["test_member_scores", "test_nonmember_scores"]
        elif self.test_member_scores is not None or self.test_nonmember_scores is not None:
            raise ValueError(f"{self.attack}: test-part scores need the partition they come from")
        for name in names:
            raw = getattr(self, name)
            if raw is None:
                raise ValueError(f"{self.attack}: a calibration with a partition needs {name}")
            arr = np.asarray(raw, dtype=float).reshape(-1)
            if arr.size == 0:
                what = name.replace("_scores", "").replace("_", " ")
                raise ValueError(f"{self.attack}: calibration needs at least one {what} score")
            if not np.isfinite(arr).all():
                raise ValueError(f"{self.attack}: calibration {name} contain non-finite values")
            arr = arr.copy()
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if not self.title:
            object.__setattr__(self, "title", self.attack)

    @property
    def n_members(self) -> int:
        return int(self.member_scores.size)

    @property
    def n_nonmembers(self) -> int:
        return int(self.nonmember_scores.size)

    @property
    def transferred(self) -> bool:
        """True when the threshold comes from a calibration part and is measured on a test part."""
        return self.partition is not None

    @classmethod
    def from_result(
        cls,
        result: AttackResult,
        is_member: np.ndarray,
        *,
        ids: Sequence[str] | None = None,
        title: str = "",
        partition: Partition | None = None,
    ) -> Calibration:
        """Split a stored result's scores by ``is_member`` (aligned with ``result.ids``).

        ``ids``, when given, must equal ``result.ids`` (guards against results of other images).
        ``partition`` (built on ``is_member``): keep only its calibration part for the threshold and its
        test part for measuring it.
        """
        is_member = np.asarray(is_member, dtype=bool)
        if ids is not None and tuple(ids) != tuple(result.ids):
            raise ValueError(f"the stored {result.attack} result belongs to other images than this experiment's")
        scores = np.asarray(result.scores, dtype=float)
        if scores.shape != is_member.shape:
            raise ValueError(f"{result.attack}: {scores.size} scores for {is_member.size} membership labels")
        title = title or result.attack
        if partition is None:
            return cls(result.attack, scores[is_member], scores[~is_member], title=title)
        if not np.array_equal(partition.is_member, is_member):
            raise ValueError(f"{result.attack}: the partition was built on other membership labels")
        cal, test = partition.calibration, partition.test
        return cls(
            result.attack,
            scores[cal & is_member],
            scores[cal & ~is_member],
            title=title,
            test_member_scores=scores[test & is_member],
            test_nonmember_scores=scores[test & ~is_member],
            partition=partition,
        )

    def threshold(self, budget: float) -> float | None:
        """Threshold at the FPR budget (``None`` = n/a, may be ``+inf``).

        With a partition: :func:`mia_core.metrics.threshold_at_fpr` on the calibration part's members and
        non-members, the threshold of :func:`mia_core.calibration.transferred_tpr_at_fpr`. Without: from
        the non-member scores alone (:func:`mia_core.metrics.verdict_at_fpr`).
        """
        if self.transferred:
            scores = np.concatenate([self.member_scores, self.nonmember_scores])
            labels = np.r_[np.ones(self.n_members, bool), np.zeros(self.n_nonmembers, bool)]
            return threshold_at_fpr(scores, labels, budget)
        return verdict_at_fpr(self.nonmember_scores, float(self.nonmember_scores[0]), budget)[1]

    def rule_tpr(self, budget: float) -> float | None:
        """Share of known members flagged by :meth:`threshold` (``None`` = n/a): on the test part with a
        partition (images the threshold was not chosen on), else on the calibration members."""
        thr = self.threshold(budget)
        if thr is None:
            return None
        members = self.test_member_scores if self.transferred else self.member_scores
        return float(np.mean(members >= thr))

    def rule_fpr(self, budget: float) -> float | None:
        """Share of known non-members flagged by :meth:`threshold` (``None`` = n/a): the achieved FPR on
        the test part with a partition (it may exceed the budget), else on the calibration non-members
        (<= budget)."""
        thr = self.threshold(budget)
        if thr is None:
            return None
        nonmembers = self.test_nonmember_scores if self.transferred else self.nonmember_scores
        return float(np.mean(nonmembers >= thr))

    def source(self, budget: float) -> ThresholdSource:
        """Where :meth:`threshold` came from (part, sizes) and what it flags on the test part."""
        thr = self.threshold(budget)
        part = self.partition
        if part is None:
            return ThresholdSource(
                self.attack, float(budget), False, self.n_members, self.n_nonmembers, None, None, thr
            )
        tm, tn = self.test_member_scores, self.test_nonmember_scores
        flagged_m = None if thr is None else int(np.count_nonzero(tm >= thr))
        flagged_n = None if thr is None else int(np.count_nonzero(tn >= thr))
        return ThresholdSource(
            self.attack,
            float(budget),
            True,
            self.n_members,
            self.n_nonmembers,
            part.fraction,
            part.seed,
            thr,
            int(tm.size),
            int(tn.size),
            flagged_m,
            flagged_n,
        )


def calibrations_from_results(
    results: Mapping[str, AttackResult],
    ids: Sequence[str],
    is_member: np.ndarray,
    titles: Mapping[str, str] | None = None,
    *,
    partition: Partition | None = None,
) -> dict[str, Calibration]:
    """One :class:`Calibration` per stored result of an experiment (``ids`` = the experiment's ids).

    ``partition`` (:func:`mia_core.calibration.calibration_partition` on ``is_member``): thresholds from
    its calibration part, measured on its test part; the pages pass the same cut as Compare.
    """
    titles = titles or {}
    return {
        name: Calibration.from_result(res, is_member, ids=ids, title=titles.get(name, ""), partition=partition)
        for name, res in results.items()
    }


# ----------------------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class AttackVerdict:
    """One image judged by one attack at one FPR budget."""

    image_id: str
    attack: str
    score: float
    percentile_nonmember: float  # % of calibration non-members scoring below (ties 1/2)
    percentile_member: float  # % of calibration members scoring below (ties 1/2)
    nonmember_tail: float  # fraction of calibration non-members scoring >= score
    threshold: float | None  # None = n/a
    flagged: bool | None  # None = n/a
    budget: float
    rule_tpr: float | None  # share of calibration members this threshold flags
    label: str  # e.g. "flagged as member at 1 % FPR"


@dataclass(frozen=True)
class ImageSummary:
    """An image's verdicts summarised across attacks."""

    image_id: str
    n_attacks: int  # attacks that gave a verdict (n/a excluded)
    n_flagged: int
    n_na: int
    majority: bool | None  # flagged by more than half of n_attacks; None when n_attacks == 0
    any: bool | None  # flagged by at least one; None when n_attacks == 0
    text: str


@dataclass(frozen=True, eq=False)
class VerdictReport:
    """Every (image, attack) verdict of one scoring, with the calibrations used."""

    budget: float
    image_ids: tuple[str, ...]
    attacks: tuple[str, ...]
    calibrations: dict[str, Calibration]
    verdicts: tuple[AttackVerdict, ...]

    def get(self, image_id: str, attack: str) -> AttackVerdict:
        for v in self.verdicts:
            if v.image_id == image_id and v.attack == attack:
                return v
        raise KeyError((image_id, attack))

    def for_image(self, image_id: str) -> list[AttackVerdict]:
        return [v for v in self.verdicts if v.image_id == image_id]

    def for_attack(self, attack: str) -> list[AttackVerdict]:
        return [v for v in self.verdicts if v.attack == attack]

    def summary(self, image_id: str) -> ImageSummary:
        vs = self.for_image(image_id)
        valid = [v for v in vs if v.flagged is not None]
        n, k = len(valid), sum(1 for v in valid if v.flagged)
        n_na = len(vs) - n
        budget = budget_text(self.budget)
        if n == 0:
            return ImageSummary(
                image_id,
                0,
                0,
                n_na,
                None,
                None,
                f"no verdict at {budget} FPR: too few calibration non-members for every attack",
            )
        majority, anyflag = k > n / 2, k > 0

        def word(flag: bool) -> str:
            return "flagged" if flag else "not flagged"

        text = (
            f"flagged by {k} of {n} attack{'s' if n != 1 else ''} at {budget} FPR"
            f" (majority: {word(majority)}; any: {word(anyflag)})"
        )
        if n > 1:
            text += (
                f". The 'any' rule flags more non-members than each attack alone:"
                f" up to {budget_text(min(1.0, n * self.budget))} with {n} attacks"
            )
        if n_na:
            text += f"; {n_na} attack(s) n/a"
        return ImageSummary(image_id, n, k, n_na, majority, anyflag, text)

    def summaries(self) -> list[ImageSummary]:
        return [self.summary(i) for i in self.image_ids]

    def records(self) -> list[dict]:
        """One plain dict per (image, attack): for a table or a CSV download."""
        return [
            {
                "image": v.image_id,
                "attack": v.attack,
                "score": v.score,
                "percentile among non-members": v.percentile_nonmember,
                "percentile among members": v.percentile_member,
                "non-members scoring >= (fraction)": v.nonmember_tail,
                "threshold": v.threshold,
                "FPR budget": v.budget,
                "verdict": v.label,
                "TPR of this rule on known members": v.rule_tpr,
            }
            for v in self.verdicts
        ]


def judge_scores(
    calibrations: Mapping[str, Calibration],
    scores: Mapping[str, Sequence[float] | np.ndarray],
    ids: Sequence[str],
    budget: float,
) -> VerdictReport:
    """Judge already computed scores.

    Parameters
    ----------
    calibrations : attack name -> Calibration
    scores : attack name -> (N,) scores of the new images (same order as ``ids``); every attack
        in ``scores`` needs a calibration.
    ids : N image ids.
    budget : FPR budget in (0, 1).
    """
    ids = tuple(str(i) for i in ids)
    missing = [a for a in scores if a not in calibrations]
    if missing:
        raise ValueError(f"no calibration (stored results on the split) for attack(s) {', '.join(missing)}")
    min_nonmembers_for(budget)  # validates the budget
    verdicts: list[AttackVerdict] = []
    for attack, values in scores.items():
        cal = calibrations[attack]
        values = np.asarray(values, dtype=float).reshape(-1)
        if values.size != len(ids):
            raise ValueError(f"{attack}: {values.size} scores for {len(ids)} images")
        thr = cal.threshold(budget)
        tpr = cal.rule_tpr(budget)
        needed = min_nonmembers_for(budget)
        for image_id, s in zip(ids, values):
            s = float(s)
            if not math.isfinite(s):
                verdicts.append(
                    AttackVerdict(
                        image_id,
                        attack,
                        s,
                        math.nan,
                        math.nan,
                        math.nan,
                        thr,
                        None,
                        float(budget),
                        tpr,
                        "n/a: the score is not a finite number",
                    )
                )
                continue
            flagged = None if thr is None else bool(s >= thr)
            verdicts.append(
                AttackVerdict(
                    image_id=image_id,
                    attack=attack,
                    score=s,
                    percentile_nonmember=percentile_of(cal.nonmember_scores, s),
                    percentile_member=percentile_of(cal.member_scores, s),
                    nonmember_tail=float(np.mean(cal.nonmember_scores >= s)),
                    threshold=thr,
                    flagged=flagged,
                    budget=float(budget),
                    rule_tpr=tpr,
                    label=verdict_label(flagged, budget, needed),
                )
            )
    # Image-major order: all attacks of the first image, then the next image.
    order = {i: k for k, i in enumerate(ids)}
    attack_order = {a: k for k, a in enumerate(scores)}
    verdicts.sort(key=lambda v: (order[v.image_id], attack_order[v.attack]))
    return VerdictReport(float(budget), ids, tuple(scores), dict(calibrations), tuple(verdicts))


def score_images(
    target,
    images: ImageSet,
    attacks: Sequence[Attack],
    *,
    seed: int = 0,
    progress: Callable[[str, int, int], None] | None = None,
    store=None,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Score new images with each attack (same params and seed as the calibration runs).

    The one way the lab scores images that are not a labelled split: an upload ("Was my image
    used?"), a collection (:func:`mia_core.lab.set_inference.collection_scores`). Runs go through
    :func:`mia_core.lab.runs.run_attacks`, so a ``store`` (ResultStore) keeps and reuses them.

    ``images`` must already have the target's resolution and channels
    (``mia_core.data.load_uploads(..., resolution=, channels=)`` does that). Learned attacks are
    refused: they need membership labels. ``progress(attack_name, done, total)``. On a text-to-image
    target conditioned on each image's own caption, ``images.captions`` are the prompts and an image
    without one gets the empty prompt (:func:`mia_core.lab.uploads.condition_uploads`).
    Returns attack name -> (N,) scores, higher = member.
    """
    from mia_core.lab.runs import run_attacks
    from mia_core.lab.uploads import condition_uploads

    if images.height != target.resolution or images.width != target.resolution or images.channels != target.channels:
        raise ValueError(
            f"images are {images.height}x{images.width} with {images.channels} channel(s) but the target needs "
            f"{target.resolution}x{target.resolution} with {target.channels}; convert them first"
        )
    attacks = list(attacks)
    learned = [a.name for a in attacks if a.learns]
    if learned:
        raise ValueError(
            f"{', '.join(learned)} learn(s) from membership labels and cannot score unlabelled images; "
            "choose attacks such as loss, pia, secmi, sima"
        )
    attacks, captions = condition_uploads(target, attacks, images.n, images.captions)
    results = run_attacks(
        target,
        images.to_unit_range(),
        images.ids,
        images.fingerprint,
        attacks,
        seed=seed,
        store=store,
        batch_size=batch_size,
        progress=progress,
        captions=captions,
    )
    return {a.name: np.asarray(results[a.name].scores, dtype=float) for a in attacks}


def judge_images(
    target,
    images: ImageSet,
    attacks: Sequence[Attack],
    calibrations: Mapping[str, Calibration],
    budget: float,
    *,
    seed: int = 0,
) -> VerdictReport:
    """:func:`score_images` then :func:`judge_scores` (only attacks with a calibration are run)."""
    usable = [a for a in attacks if a.name in calibrations]
    if not usable:
        raise ValueError("none of the attacks has stored results on the split to calibrate against")
    scores = score_images(target, images, usable, seed=seed)
    return judge_scores(calibrations, scores, images.ids, budget)
