"""Tests for mia_core.lab.evalsets: lining up results that scored different images."""

from __future__ import annotations

import numpy as np
import pytest

from mia_core.attacks import AttackResult
from mia_core.lab.evalsets import common_ids, describe, is_partial, labels_for, learned_sample_lines, restrict

ALL = ("a", "b", "c", "d", "e", "f")
MEMBER = np.array([True, True, True, False, False, False])


def _result(name, ids, scores, **kw):
    n = len(ids)
    return AttackResult(
        attack=name,
        ids=tuple(ids),
        scores=np.asarray(scores, dtype=float),
        trace_timesteps=np.array([0, 10]),
        trace=np.arange(2 * n, dtype=float).reshape(n, 2),
        trace_label="",
        unet_calls_per_image=1,
        seconds=0.0,
        **kw,
    )


def test_labels_for_looks_up_by_id_and_names_an_unknown_one():
    assert labels_for(["f", "a"], ALL, MEMBER).tolist() == [False, True]
    with pytest.raises(ValueError, match="'zz'"):
        labels_for(["a", "zz"], ALL, MEMBER)


def test_common_ids_keep_the_experiment_order():
    full = _result("secmi", ALL, [1, 2, 3, 4, 5, 6])
    part = _result("secmi_nn", ("e", "b", "c"), [0.5, 0.2, 0.3], train_ids=("a", "d", "f"))
    assert common_ids({"secmi": full, "secmi_nn": part}, ALL) == ("b", "c", "e")
    assert is_partial(part, ALL) and not is_partial(full, ALL)


def test_restrict_selects_scores_trace_and_extras_by_id():
    res = _result("qr", ("a", "b", "c"), [1.0, 2.0, 3.0], extras={"threshold": np.array([10.0, 20.0, 30.0])})
    sub = restrict(res, ["c", "a"])
    assert sub.ids == ("c", "a")
    assert sub.scores.tolist() == [3.0, 1.0]
    assert sub.trace.tolist() == [[4.0, 5.0], [0.0, 1.0]]
    assert sub.extras["threshold"].tolist() == [30.0, 10.0]
    assert restrict(res, ("a", "b", "c")) is res
    with pytest.raises(ValueError, match="did not score"):
        restrict(res, ["d"])


def test_describe_says_what_was_scored_and_trained_on():
    part = _result("secmi_nn", ("b", "c", "e"), [0.5, 0.2, 0.3], train_ids=("a", "d", "f"))
    assert describe(part, ALL, MEMBER) == (
        "held-out part: 2 members, 1 non-members; trained on 3 other images (1 members, 2 non-members)"
    )
    assert describe(_result("pia", ALL, np.zeros(6)), ALL, MEMBER) == "all images (3 members, 3 non-members)"


def test_learned_sample_lines_for_a_training_image_and_a_scored_one():
    # qr-like: 2 members (b, c) and 2 held-out non-members (e, f) scored; d was public (trained on)
    res = _result(
        "qr",
        ("b", "c", "e", "f"),
        [3.0, 1.0, 0.5, -1.0],
        train_ids=("d",),
        params={"n_models": 9, "alpha": 0.01},
        extras={
            "threshold": np.array([0.2, 0.3, 0.4, 0.5]),
            "t_error": np.array([0.1, 0.35, 0.6, 0.9]),
            "member_votes": np.array([7 / 9, 4 / 9, 2 / 9, 0.0]),
        },
    )
    labels = labels_for(res.ids, ALL, MEMBER)
    assert "trained on this image" in learned_sample_lines("qr", res, "d", labels, 0.5)[0]
    assert learned_sample_lines("qr", res, "a", labels, 0.5) == ["did not use this image."]
    # FPR budget 0.5 with 2 non-members: every member is caught at threshold 1 (the lowest member
    # score) without flagging any non-member, so that is the oracle threshold
    lines = learned_sample_lines("qr", res, "b", labels, 0.5)
    assert lines[0] == "held-out image, flagged as a member (score 3 ≥ oracle threshold 1)."
    assert "t-error of 0.2; its t-error is 0.1, below it; 78% of the 9 regressors vote member" in lines[1]
    assert "member by majority vote" in lines[1]
    lines = learned_sample_lines("qr", res, "c", labels, 0.5)
    assert lines[0].startswith("held-out image, flagged as a member")
    assert "above it; 44% of the 9 regressors vote member (non-member by majority vote" in lines[1]
