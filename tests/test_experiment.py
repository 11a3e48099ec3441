"""Experiments: target + split in model space, attacks through the store and the worker."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from mia_core.experiment import load_experiment, make_attacks, stored_results, submit_attacks
from mia_core.runs import ResultStore, Worker

SHARED_TINY_UNET = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official" / "tiny_unet"


@pytest.fixture(scope="module")
def small_exp():
    return load_experiment("default", "default", device="cpu", limit=6)


def test_default_experiment_is_the_shipped_split():
    exp = load_experiment("default", "default", device="cpu")
    assert exp.split.n_members == 898 and exp.split.n_nonmembers == 899
    assert exp.is_member.sum() == 898 and len(exp.ids) == 1797
    assert exp.x0.shape == (1797, 1, 8, 8) and -1 <= exp.x0.min() and exp.x0.max() <= 1
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
