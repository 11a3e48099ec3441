"""Experiments: target + split in model space, attacks through the store and the worker."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mia_core.lab.experiment import load_experiment, make_attacks, stored_results, submit_attacks
from mia_core.lab.runs import ResultStore, Worker

SHARED_TINY_UNET = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official" / "tiny_unet"


@pytest.fixture(scope="module")
def small_exp():
    return load_experiment("default", "default", device="cpu", limit=6)


def test_default_experiment_is_the_shipped_split():
    exp = load_experiment("default", "default", device="cpu")
    assert exp.split.n_members == 898 and exp.split.n_nonmembers == 899
    assert exp.is_member.sum() == 898 and len(exp.ids) == 1797
    x0 = np.asarray(exp.x0)  # the lazy view, converted whole
    assert x0.shape == (1797, 1, 8, 8) and -1 <= x0.min() and x0.max() <= 1
    assert not exp.conversion.changed


def test_limit_takes_n_of_each(small_exp):
    assert small_exp.is_member.tolist() == [True] * 6 + [False] * 6


def test_conversion_to_another_target_is_reported():
    if not SHARED_TINY_UNET.exists():
        pytest.skip("../shared/fixtures/official/tiny_unet not found")
    exp = load_experiment(str(SHARED_TINY_UNET), "default", device="cpu", limit=2)
    assert exp.x0.shape == (4, 3, 32, 32)
    assert exp.conversion.changed and "32" in exp.conversion.report


def test_submit_attacks_fills_the_store(small_exp, tmp_path):
    store = ResultStore(tmp_path)
    attacks = make_attacks(["sima", "pia"], {"pia": {"sweep": []}})
    assert stored_results(small_exp, attacks, seed=0, store=store) == {}
    state = submit_attacks(Worker(), small_exp, attacks, seed=0, store=store)
    deadline = time.time() + 60
    while state.active and time.time() < deadline:
        time.sleep(0.05)
    assert state.status == "done", state.error
    assert state.done == state.total == 2 * 12
    found = stored_results(small_exp, attacks, seed=0, store=store)
    assert set(found) == {"sima", "pia"}
    direct = attacks[0].run(small_exp.target, small_exp.x0, ids=small_exp.ids)
    np.testing.assert_array_equal(found["sima"].scores, direct.scores)


def test_make_attacks_rejects_params_for_unselected():
    with pytest.raises(ValueError, match="not selected"):
        make_attacks(["pia"], {"secmi": {"k": 5}})


def test_labels_for_and_metrics_on_a_subset(small_exp):
    from mia_core.attacks import AttackResult

    ids = small_exp.ids
    assert small_exp.labels_for([ids[7], ids[0]]).tolist() == [False, True]
    with pytest.raises(ValueError, match="'nope' is not one of this experiment's 12 images"):
        small_exp.labels_for([ids[0], "nope"])
    # A result over members 0..2 and non-members 6..8 that ranks them perfectly.
    part = ids[:3] + ids[6:9]
    res = AttackResult(
        "x", part, np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0]), np.zeros(0, np.int64), np.zeros((6, 0)), "", 0, 0.0
    )
    m = small_exp.metrics(res, n_bootstrap=0)
    assert (m.auc, m.n_members, m.n_nonmembers) == (1.0, 3, 3)
    with pytest.raises(ValueError, match="not one of"):
        small_exp.metrics(
            AttackResult("x", ("nope",), np.zeros(1), np.zeros(0, np.int64), np.zeros((1, 0)), "", 0, 0.0)
        )


def test_demo_store_is_found_for_the_default_experiment():
    """The shipped precomputed results keep their keys (learned attacks did not change them)."""
    from mia_core.attacks import DEFAULT_ATTACKS
    from mia_core.paths import DEMO_STORE_DIR

    exp = load_experiment("default", "default", device="cpu")
    found = stored_results(exp, make_attacks(list(DEFAULT_ATTACKS)), seed=0, store=ResultStore(DEMO_STORE_DIR))
    assert set(found) >= {"loss", "secmi", "pia", "pian", "sima"}
    assert exp.metrics(found["sima"], n_bootstrap=0).auc > 0.9


def test_submit_learned_attack_passes_labels_and_fills_the_bar(small_exp, tmp_path):
    from mia_core.attacks.secmi_nn import SecMINN

    store = ResultStore(tmp_path)
    attacks = [SecMINN(min_steps=3, epochs=1), *make_attacks(["sima"])]
    state = submit_attacks(Worker(), small_exp, attacks, seed=0, store=store)
    deadline = time.time() + 60
    while state.active and time.time() < deadline:
        time.sleep(0.05)
    assert state.status == "done", state.error
    assert state.done == state.total == 2 * 12
    found = stored_results(small_exp, attacks, seed=0, store=store)
    res = found["secmi_nn"]
    assert len(res.ids) == 10 and len(res.train_ids) == 2  # round(0.2 * 6) = 1 of each class trains
    assert small_exp.metrics(res, n_bootstrap=0).n_members == 5
