"""The app's background jobs in mia_core.lab.jobs: training a target and scoring uploads on the worker."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from mia_core.attacks import get_attack
from mia_core.data import ImageSet, load_digits, random_split
from mia_core.lab import jobs
from mia_core.lab.runs import Worker
from mia_core.lab.train import TrainConfig, read_train_log
from mia_core.lab.verdict import score_images

CFG = TrainConfig(
    steps=6,
    batch_size=8,
    block_out_channels=(16, 32),
    layers_per_block=1,
    attention=False,
    log_every=2,
    warmup_steps=2,
    seed=0,
)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def members_split():
    digits = load_digits()
    split = random_split(digits, seed=1).limit(16)
    return digits.subset(split.member_ids), split


def _wait(worker: Worker, job_id: str, timeout: float = 120.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        state = worker.get(job_id)
        if state is not None and not state.active:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def test_submit_training_trains_logs_and_lists_the_target(members_split, tmp_path, monkeypatch):
    monkeypatch.setenv("MIA_TARGETS_DIR", str(tmp_path))
    members, split = members_split
    worker = Worker()
    out = jobs.targets_dir() / "tiny"
    job = jobs.submit_training(worker, members, split, CFG, out, data="default", device="cpu")
    assert job.job_id == jobs.training_job_id("default", out, CFG) and jobs.training_job(job.job_id) is job
    state = _wait(worker, job.job_id)
    assert state.status == "done", state.error
    assert [s for s, _ in job.curve] == [2, 4, 6] and job.steps_per_second > 0
    log = read_train_log(out)
    assert log["config"]["steps"] == 6 and log["command"].startswith("mia train --data default")
    rows = jobs.trained_targets()
    assert [(r["name"], r["steps"], r["members"], r["augment"], r["DP ε"]) for r in rows] == [
        ("tiny", 6, 16, "none", None)
    ]
    with pytest.raises(ValueError, match="already exists and is not empty"):
        jobs.submit_training(worker, members, split, CFG, out, data="default", device="cpu")


def test_a_cancelled_training_saves_nothing_and_can_start_again(members_split, tmp_path):
    members, split = members_split
    worker = Worker()
    blocker = worker.submit("blocker", "keeps the worker busy", lambda state: time.sleep(0.5))
    out = tmp_path / "cancelled"
    job = jobs.submit_training(worker, members, split, CFG, out, data="default", device="cpu")
    # the same request while it is queued joins it
    assert jobs.submit_training(worker, members, split, CFG, out, data="default", device="cpu") is job
    worker.cancel(job.job_id)
    assert _wait(worker, job.job_id).status == "cancelled" and blocker.status != "failed"
    assert not out.exists()
    again = jobs.submit_training(worker, members, split, CFG, out, data="default", device="cpu")
    assert again is not job and _wait(worker, again.job_id).status == "done"


def test_trained_targets_skips_unreadable_logs(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "train_log.json").write_text("not json")
    assert jobs.trained_targets(tmp_path) == []


def test_live_log_every_and_recipe_key():
    assert [jobs.live_log_every(n) for n in (1, 50, 1000, 6000, 100_000)] == [1, 1, 10, 60, 100]
    # the measured speed of a recipe does not depend on its length nor on its logging
    assert jobs.recipe_key("default", CFG) == jobs.recipe_key("default", dataclasses.replace(CFG, steps=9, log_every=3))
    assert jobs.recipe_key("default", CFG) != jobs.recipe_key("other", CFG)


def test_shown_path_is_relative_to_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert jobs.shown_path(tmp_path / "runs" / "x") == "runs/x"
    assert jobs.shown_path("/elsewhere/y") == "/elsewhere/y"


def test_upload_scoring_on_the_worker_and_inline_give_the_direct_scores(tiny_target):
    rng = np.random.default_rng(0)
    images = ImageSet(
        rng.integers(0, 256, (5, 8, 8, 1), dtype=np.uint8), tuple(f"u{i}.png" for i in range(5)), "upload"
    )
    attacks = [get_attack("loss")]
    expected = score_images(tiny_target, images, attacks, seed=0)
    key = jobs.upload_score_key(tiny_target, images, attacks, seed=0)
    assert jobs.upload_score_key(tiny_target, images, attacks, seed=1) != key
    assert jobs.upload_scores(key) is None
    worker = Worker()
    state = jobs.submit_upload_scoring(worker, key, tiny_target, images, attacks, seed=0)
    assert state.job_id == jobs.upload_job_id(key)
    assert _wait(worker, state.job_id).status == "done"
    np.testing.assert_array_equal(jobs.upload_scores(key)["loss"], expected["loss"])
    other = jobs.upload_score_key(tiny_target, images, attacks, seed=2)
    inline = jobs.score_upload(other, tiny_target, images, attacks, seed=2)
    assert jobs.upload_scores(other) is inline
    np.testing.assert_array_equal(inline["loss"], score_images(tiny_target, images, attacks, seed=2)["loss"])
