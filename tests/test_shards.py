"""Sharded scoring (mia_core.lab.shards): split across processes, resumable by batch, equal to one process.

The in-process tests run the sharded path with one process (the same code minus the launcher); the
slow test starts two CPU processes on the gloo backend through ``mia attack --processes 2`` (which runs
``accelerate launch``), kills one of them after its first batch, reruns and compares score for score.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mia_core.lab import shards
from mia_core.lab.experiment import load_experiment, make_attacks
from mia_core.lab.runs import ResultStore

BATCH = 4
PARAMS = {"loss": {"sweep": [100, 200]}, "pia": {"sweep": [200]}, "secmi_nn": {"epochs": 1, "min_steps": 2}}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def exp(tiny_target):
    return load_experiment(tiny_target, "default", limit=8)  # 16 images: 4 batches of 4


@pytest.fixture(scope="module")
def reference(exp):
    """One process, no shards, the same batches."""
    return exp.attack(make_attacks(["loss", "pia", "secmi_nn"], PARAMS), seed=0, batch_size=BATCH)


def _assert_same(a, b):
    assert a.ids == b.ids
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.trace, b.trace)
    np.testing.assert_array_equal(a.trace_timesteps, b.trace_timesteps)


def test_sharded_run_equals_one_process_and_is_stored_under_the_same_key(exp, reference, tmp_path):
    store = ResultStore(tmp_path / "store")
    attacks = make_attacks(["loss", "pia", "secmi_nn"], PARAMS)
    results = shards.run_sharded(exp, attacks, seed=0, store=store, batch_size=BATCH)
    for name in ("loss", "pia", "secmi_nn"):  # the learned attack: its SecMI pass sharded, fitted once
        _assert_same(results[name], reference[name])
        assert store.has(exp.run_key(get(attacks, name), 0))  # found by any later run, sharded or not
    runs = {r["attack"]: r for r in shards.sharded_runs(store)}
    assert runs["pia"]["merged"] and runs["pia"]["n_batches"] == 4 and runs["pia"]["fraction"] == 1.0
    assert runs["pia"]["by_process"] == {"process 0 of 1": 4}
    assert not shards.batch_files(tmp_path / "store" / "shards" / exp.run_key(attacks[1], 0).digest())


def get(attacks, name):
    return next(a for a in attacks if a.name == name)


def one(name):
    return make_attacks([name], {name: PARAMS[name]})[0]


def test_a_stopped_run_resumes_with_only_the_missing_batches(exp, reference, tmp_path, monkeypatch):
    store = ResultStore(tmp_path / "store")
    attack = one("pia")
    calls: list[tuple[str, ...]] = []
    real_run = type(attack).run

    def run_then_stop(self, target, x0, *, ids, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt("stopped during the third batch")
        calls.append(tuple(ids))
        return real_run(self, target, x0, ids=ids, **kw)

    monkeypatch.setattr(type(attack), "run", run_then_stop)
    with pytest.raises(KeyboardInterrupt):
        shards.run_sharded(exp, [attack], seed=0, store=store, batch_size=BATCH)
    folder = shards.shard_dir(store, exp.run_key(attack, 0))
    assert sorted(shards.batch_files(folder)) == [0, 1]  # the two finished batches are kept
    assert not store.has(exp.run_key(attack, 0))
    with pytest.raises(shards.ShardsIncomplete, match="2 of 4 batches"):
        shards.merge_batches(folder, shards.ShardPlan(len(exp.ids), BATCH), exp.ids)

    calls.clear()
    monkeypatch.setattr(type(attack), "run", lambda self, *a, **kw: calls.append(kw["ids"]) or real_run(self, *a, **kw))
    result = shards.run_sharded(exp, [attack], seed=0, store=store, batch_size=7)["pia"]  # the plan's size is kept
    assert calls == [exp.ids[8:12], exp.ids[12:16]]  # only the missing batches were scored
    _assert_same(result, reference["pia"])
    attempts = shards.read_manifest(folder)["attempts"]
    assert [(a["batches_present"], a["batches_to_score"]) for a in attempts] == [(0, 4), (2, 2)]


@pytest.mark.slow
def test_two_cpu_processes_killed_and_resumed_equal_one_process(exp, reference, tmp_path, monkeypatch, capfd):
    """`mia attack --processes 2` (accelerate launch, gloo): process 1 dies after its first batch; the rerun
    scores only the missing batches, and the scores equal the one-process run's."""
    from mia_core.cli import main

    folder = tmp_path / "tiny"
    exp.target.unet.save_pretrained(folder, safe_serialization=True)
    out = tmp_path / "run"
    argv = ["attack", "--target", str(folder), "--data", "default", "--limit", "8", "--attacks", "loss,pia"]
    argv += ["--params", json.dumps({k: PARAMS[k] for k in ("loss", "pia")}), "--batch-size", str(BATCH)]
    argv += ["--out", str(out), "--bootstrap", "0", "--processes", "2", "--device", "cpu"]
    monkeypatch.setenv(shards.FAIL_AFTER_ENV, "1:1")
    assert main(argv) != 0
    store = ResultStore(out / "store")
    loss_dir = shards.shard_dir(store, exp.run_key(one("loss"), 0))
    before = {b: p.stat().st_mtime_ns for b, p in shards.batch_files(loss_dir).items()}
    # process 1 (batches 2 and 3) stopped after batch 2; process 0 (batches 0 and 1) was stopped by the launcher
    assert 2 in before and 3 not in before

    monkeypatch.delenv(shards.FAIL_AFTER_ENV)
    capfd.readouterr()
    assert main(argv) == 0
    assert "accelerate launch --multi_gpu --num_processes N" in capfd.readouterr().out
    manifest = shards.read_manifest(loss_dir)
    assert manifest["merged"] and manifest["attempts"][-1]["batches_present"] == len(before)
    assert manifest["attempts"][-1]["batches_to_score"] == 4 - len(before)
    assert manifest["attempts"][-1]["processes"] == 2
    scores = pd.read_csv(out / "scores.csv")
    assert tuple(scores["id"]) == exp.ids
    for name in ("loss", "pia"):
        # scores.csv holds 9 significant digits: exact for the float32 values the attacks compute
        np.testing.assert_array_equal(scores[name].to_numpy(np.float32), reference[name].scores.astype(np.float32))
        _assert_same(store.get(exp.run_key(one(name), 0)), reference[name])


def test_compare_and_attack_lab_show_a_sharded_run_with_its_progress(open_page, tmp_path):
    from mia_core.target import load_target

    folder = tmp_path / "store" / shards.SHARDS_DIR / "0123456789abcdef0123"
    folder.mkdir(parents=True)
    key = {"target_fingerprint": load_target("default", device="cpu").fingerprint, "images_fingerprint": "x"}
    manifest = {"attack": "pia", "key": key, "n_images": 1000, "batch_size": 256, "n_batches": 4, "merged": False}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name in ("batch-000000-p0of2.npz", "batch-000002-p1of2.npz", "batch-000003-p1of2.npz"):
        (folder / name).write_bytes(b"")  # only the names count here
    for page in ("pages/attack_lab.py",):  # Compare calls the same helper (pages._common.show_sharded_runs)
        at = open_page(page)
        [box] = [e for e in at.expander if e.label.startswith("Sharded runs")]
        assert box.label == "Sharded runs of this target (1, 1 not finished)"
        [bar] = box.get("progress")
        assert bar.value == 75  # percent
        assert "3/4 batches of 256" in bar.proto.text and "process 1 of 2: 2" in bar.proto.text
