"""The result store (atomic, content-addressed, read-only layers) and the background worker."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mia_core.attacks import get_attack
from mia_core.lab.runs import Cancelled, ResultStore, RunKey, Worker, run_attacks
from mia_core.lab.train import TrainConfig, build_unet
from mia_core.schedule import NoiseSchedule
from mia_core.target import Target


@pytest.fixture(scope="module")
def small_target() -> Target:
    torch.manual_seed(0)
    unet = build_unet(8, 1, TrainConfig(block_out_channels=(16, 32), layers_per_block=1))
    return Target(unet, NoiseSchedule.linear(), device=torch.device("cpu"))


def _images(n: int = 6) -> tuple[np.ndarray, tuple[str, ...]]:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (n, 1, 8, 8)).astype(np.float32), tuple(f"img-{i}" for i in range(n))


def test_key_digest_changes_with_every_field(small_target):
    attack = get_attack("pia")
    base = RunKey.of(small_target.fingerprint, "data1", attack, 0)
    assert base.digest() == RunKey.of(small_target.fingerprint, "data1", get_attack("pia"), 0).digest()
    others = [
        RunKey.of("other-target", "data1", attack, 0),
        RunKey.of(small_target.fingerprint, "data2", attack, 0),
        RunKey.of(small_target.fingerprint, "data1", get_attack("pia", {"timestep": 100}), 0),
        RunKey.of(small_target.fingerprint, "data1", attack, 1),
        RunKey.of(small_target.fingerprint, "data1", get_attack("pian"), 0),
    ]
    assert len({k.digest() for k in others} | {base.digest()}) == 6


def test_store_round_trip_and_cache_hit(small_target, tmp_path):
    x0, ids = _images()
    store = ResultStore(tmp_path / "store")
    attacks = [get_attack("sima", {"sweep": [0, 100]}), get_attack("loss", {"sweep": [200]})]
    first = run_attacks(small_target, x0, ids, "imgs", attacks, seed=3, store=store)
    for name, res in first.items():
        key = RunKey.of(small_target.fingerprint, "imgs", get_attack(name, res.params), 3)
        loaded = store.get(key)
        assert loaded is not None and loaded.ids == ids
        np.testing.assert_array_equal(loaded.scores, res.scores)
        np.testing.assert_allclose(loaded.trace, res.trace, rtol=1e-6)
        np.testing.assert_array_equal(loaded.trace_timesteps, res.trace_timesteps)

    # A second run must not call the UNet at all: everything comes from the store.
    calls = []
    original = small_target.eps
    small_target.eps = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        again = run_attacks(small_target, x0, ids, "imgs", attacks, seed=3, store=store)
    finally:
        small_target.eps = original
    assert calls == []
    np.testing.assert_array_equal(again["loss"].scores, first["loss"].scores)


def test_readonly_layer_is_read_and_never_written(small_target, tmp_path):
    x0, ids = _images()
    attack = get_attack("sima", {"sweep": []})
    demo = ResultStore(tmp_path / "demo")
    run_attacks(small_target, x0, ids, "imgs", [attack], store=demo)
    layered = ResultStore(tmp_path / "user", extra_readonly=[tmp_path / "demo"])
    key = RunKey.of(small_target.fingerprint, "imgs", attack, 0)
    assert layered.has(key)
    assert not (tmp_path / "user").exists()
    assert len(layered.entries()) == 1


def test_cancel_keeps_finished_attacks(small_target, tmp_path):
    x0, ids = _images(8)
    store = ResultStore(tmp_path / "store")
    cancel = threading.Event()
    attacks = [get_attack("sima", {"sweep": []}), get_attack("pia", {"sweep": []})]

    def progress(name: str, done: int, total: int) -> None:
        if name == "pia":
            cancel.set()  # the first batch of the second attack finishes, then the next check stops it

    with pytest.raises(Cancelled):
        run_attacks(small_target, x0, ids, "imgs", attacks, store=store, batch_size=2, progress=progress, cancel=cancel)
    assert store.has(RunKey.of(small_target.fingerprint, "imgs", attacks[0], 0))
    assert not store.has(RunKey.of(small_target.fingerprint, "imgs", attacks[1], 0))


def _wait(state, timeout=20.0):
    deadline = time.time() + timeout
    while state.active and time.time() < deadline:
        time.sleep(0.02)
    return state


def test_worker_runs_jobs_in_order_dedupes_and_reports_failures():
    worker = Worker()
    order = []
    gate = threading.Event()

    def slow(state):
        state.total = 2
        gate.wait(5)
        order.append("a")
        state.done = 2

    a = worker.submit("a", "first", slow)
    a_again = worker.submit("a", "first again", lambda s: order.append("dup"))
    b = worker.submit("b", "second", lambda s: order.append("b"))
    assert a_again is a
    assert b.status == "queued"
    gate.set()
    _wait(a), _wait(b)
    assert order == ["a", "b"] and a.status == b.status == "done" and a.fraction == 1.0

    bad = _wait(worker.submit("c", "fails", lambda s: 1 / 0))
    assert bad.status == "failed" and "ZeroDivisionError" in bad.error
    ok = _wait(worker.submit("d", "after failure", lambda s: None))
    assert ok.status == "done"


def test_worker_cancel_before_start():
    worker = Worker()
    gate = threading.Event()
    first = worker.submit("x", "blocks", lambda s: gate.wait(5))
    queued = worker.submit("y", "queued", lambda s: None)
    worker.cancel("y")
    gate.set()
    _wait(first), _wait(queued)
    assert queued.status == "cancelled"
    worker.forget("y")
    assert worker.get("y") is None


def test_out_of_memory_halves_the_batch_and_loses_nothing(small_target, monkeypatch):
    """A CUDA out-of-memory error on a batch retries the same images at half the batch size."""
    x0, ids = _images(8)
    attack = get_attack("pia", {"sweep": []})
    expected = attack.run(small_target, x0, ids=ids, batch_size=8).scores
    sizes = []
    original = attack.compute

    def flaky(target, xb, noise):
        sizes.append(xb.shape[0])
        if xb.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("simulated: CUDA out of memory")
        return original(target, xb, noise)

    monkeypatch.setattr(attack, "compute", flaky)
    result = attack.run(small_target, x0, ids=ids, batch_size=8)
    assert sizes == [8, 4, 2, 2, 2, 2]
    np.testing.assert_allclose(result.scores, expected, rtol=1e-5)


# -- learned attacks: labels in the key, the new result fields on disk ---------------------------------


def test_learned_key_follows_the_labels_and_other_keys_do_not_change(small_target):
    import hashlib
    import json

    from mia_core.attacks.secmi_nn import SecMINN

    ids = ("a", "b", "c", "d")
    labels = np.array([True, True, False, False])
    key = RunKey.of(small_target.fingerprint, "imgs", SecMINN(), 0, ids=ids, is_member=labels)
    assert (
        key.digest()
        == RunKey.of(small_target.fingerprint, "imgs", SecMINN(), 0, ids=ids, is_member=labels.copy()).digest()
    )
    flipped = RunKey.of(small_target.fingerprint, "imgs", SecMINN(), 0, ids=ids, is_member=labels[::-1].copy())
    assert flipped.digest() != key.digest()
    with pytest.raises(ValueError, match="needs ids and is_member"):
        RunKey.of(small_target.fingerprint, "imgs", SecMINN(), 0)

    # A non-learned attack ignores labels, and its digest is the one computed before the field existed.
    pia = get_attack("pia")
    plain = RunKey.of(small_target.fingerprint, "imgs", pia, 0, ids=ids, is_member=labels)
    assert plain.labels == "" and plain == RunKey.of(small_target.fingerprint, "imgs", pia, 0)
    old_fields = {k: v for k, v in plain.__dict__.items() if k != "labels"}
    assert plain.digest() == hashlib.sha256(json.dumps(old_fields, sort_keys=True).encode()).hexdigest()[:20]


def test_learned_attack_runs_once_then_comes_from_the_store(small_target, tmp_path):
    from mia_core.attacks.secmi_nn import SecMINN

    x0, ids = _images(10)
    labels = np.array([True] * 5 + [False] * 5)
    store = ResultStore(tmp_path / "store")
    attack = SecMINN(min_steps=2, epochs=1, train_fraction=0.4)
    ticks = []
    first = run_attacks(
        small_target,
        x0,
        ids,
        "imgs",
        [attack],
        store=store,
        is_member=labels,
        progress=lambda name, done, total: ticks.append((done, total)),
    )["secmi_nn"]
    assert ticks[-1][0] == ticks[-1][1] == 10 + 2  # 10 images of statistic, then 2 training steps
    assert [d for d, _ in ticks] == sorted(d for d, _ in ticks)
    again = run_attacks(small_target, x0, ids, "imgs", [attack], store=store, is_member=labels)["secmi_nn"]
    assert again.ids == first.ids and again.train_ids == first.train_ids and again.info == first.info
    assert again.evaluated_on == first.evaluated_on
    np.testing.assert_array_equal(again.scores, first.scores)
    np.testing.assert_array_equal(again.extras["t_error"], first.extras["t_error"])
    # Other labels are another run (another training set).
    other = np.array([False] * 5 + [True] * 5)
    assert not store.has(RunKey.of(small_target.fingerprint, "imgs", attack, 0, ids=ids, is_member=other))


def test_demo_store_written_before_the_new_fields_still_loads():
    from mia_core.paths import DEMO_STORE_DIR

    store = ResultStore(DEMO_STORE_DIR)
    # the runs stored before the newer fields existed (the five default attacks): none of them in meta.json
    old = [e for e in store.entries() if not {"train_ids", "evaluated_on", "info", "n_train_images"} & set(e)]
    assert len(old) >= 5, "assets/demo_store lost the five default attacks' runs"
    for entry in old:
        key = RunKey(**entry["key"])
        res = store.get(key)
        assert res is not None and len(res.ids) == entry["n_images"]
        assert res.train_ids == () and res.evaluated_on == "" and res.extras == {} and res.info == {}
