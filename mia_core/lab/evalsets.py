"""Which images a result was scored on, and comparing results scored on different images.

Most attacks score every image of an experiment. Learned attacks (SecMI-NN, quantile regression)
train on one part of the labelled data and score only the rest, so their results cover a subset.
Comparing them with another attack on *all* images would mix two evaluation sets; comparing on
the images every attack scored (:func:`common_ids`) is the fair comparison, and the app offers both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from mia_core.attacks import AttackResult

#: the two ways the app can put results side by side
COMMON, OWN = "common", "own"


def labels_for(ids: Sequence[str], all_ids: Sequence[str], is_member: np.ndarray) -> np.ndarray:
    """Membership labels of ``ids`` (any subset of ``all_ids``, any order): (len(ids),) bool.

    ``is_member`` (len(all_ids),) are the labels of an experiment's ``all_ids``. Raises ValueError
    naming the first id that is not one of them (and how many are not).
    """
    index = {str(i): k for k, i in enumerate(all_ids)}
    missing = [i for i in ids if str(i) not in index]
    if missing:
        more = f" ({len(missing)} unknown ids in all)" if len(missing) > 1 else ""
        raise ValueError(f"id {str(missing[0])!r} is not one of this experiment's {len(index)} images{more}")
    return np.asarray(is_member, dtype=bool)[np.fromiter((index[str(i)] for i in ids), dtype=np.int64, count=len(ids))]


def common_ids(results: Mapping[str, AttackResult], order: Sequence[str]) -> tuple[str, ...]:
    """The ids every result scored, in the order of ``order`` (the experiment's ids)."""
    shared = set(str(i) for i in order)
    for res in results.values():
        shared &= set(res.ids)
    return tuple(str(i) for i in order if str(i) in shared)


def restrict(result: AttackResult, ids: Sequence[str]) -> AttackResult:
    """The same result on a subset of its ids, in the order given (scores, trace and extras)."""
    ids = tuple(str(i) for i in ids)
    if ids == tuple(result.ids):
        return result
    position = {i: k for k, i in enumerate(result.ids)}
    missing = [i for i in ids if i not in position]
    if missing:
        raise ValueError(f"{result.attack} did not score {len(missing)} of these id(s), e.g. {missing[0]!r}")
    rows = np.asarray([position[i] for i in ids], dtype=np.int64)
    trace = result.trace[rows] if result.trace.ndim == 2 and result.trace.shape[0] == len(result.ids) else result.trace
    extras = {k: np.asarray(v)[rows] for k, v in result.extras.items() if len(v) == len(result.ids)}
    return dataclasses.replace(result, ids=ids, scores=result.scores[rows], trace=trace, extras=extras)


def is_partial(result: AttackResult, all_ids: Sequence[str]) -> bool:
    """True when the result covers fewer images than the experiment (a learned attack's evaluation part)."""
    return len(result.ids) < len(all_ids)


def describe(result: AttackResult, all_ids: Sequence[str], is_member: np.ndarray) -> str:
    """Plain words: which images the result's scores cover and what the attack trained on."""
    labels = labels_for(result.ids, all_ids, is_member)
    covered = f"{int(labels.sum())} members, {int((~labels).sum())} non-members"
    if not result.train_ids:
        return f"all images ({covered})" if len(result.ids) == len(all_ids) else covered
    train = labels_for(result.train_ids, all_ids, is_member)
    return (
        f"held-out part: {covered}; trained on {len(result.train_ids)} other images "
        f"({int(train.sum())} members, {int((~train).sum())} non-members)"
    )


def learned_sample_lines(
    name: str, result: AttackResult, sample_id: str, labels: np.ndarray, budget: float
) -> list[str]:
    """What a learned attack says about one image, in plain-words sentences (Markdown).

    ``labels`` are the membership labels of ``result.ids``. An image the attack trained on has no
    score (training images are never scored); an evaluated image gets its score and verdict at
    the oracle threshold for ``budget``, and, where the attack has one (quantile regression), its
    own per-image threshold and the regressors' vote.
    """
    from mia_core.metrics import format_metric, threshold_at_fpr

    position = {i: k for k, i in enumerate(result.ids)}
    if sample_id not in position:
        if sample_id in set(result.train_ids):
            from mia_core.attacks import REGISTRY

            what = getattr(REGISTRY.get(result.attack), "training_data", "") or "its training part"
            return [
                f"trained on this image ({what}), so it gives it no score: an attack is never scored on "
                "the images it learned from."
            ]
        return ["did not use this image."]
    k = position[sample_id]
    value = float(result.scores[k])
    thr = threshold_at_fpr(result.scores, labels, budget)
    if thr is None:
        verdict = f"no verdict at this budget ({format_metric(None, budget)})"
    else:
        verdict = (
            f"{'flagged as a member' if value >= thr else 'not flagged'} (score {value:.4g} "
            f"{'≥' if value >= thr else '<'} oracle threshold {thr:.4g})"
        )
    lines = [f"held-out image, {verdict}."]
    extras = result.extras
    if "threshold" in extras and "t_error" in extras:
        own, t_err = float(extras["threshold"][k]), float(extras["t_error"][k])
        votes = float(extras["member_votes"][k]) if "member_votes" in extras else math.nan
        n_models = result.params.get("n_models")
        lines.append(
            f"Its own threshold (predicted from the image by the regressors) is a t-error of {own:.4g}; its "
            f"t-error is {t_err:.4g}, {'below' if t_err < own else 'above'} it"
            + (
                f"; {votes:.0%} of the {n_models} regressors vote member "
                f"({'member' if votes > 0.5 else 'non-member'} by majority vote at "
                f"FPR {result.params.get('alpha')})."
                if votes == votes
                else "."
            )
        )
    return lines
