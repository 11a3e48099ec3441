"""Tests for mia_core.lab.study: tiny studies end to end, the study.json format, resuming, values."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import mia_core.lab.study as study_module
from mia_core.data import Split, resolve_data
from mia_core.lab.study import (
    FACTORS,
    list_studies,
    load_study,
    parse_values,
    run_study,
    value_label,
)
from mia_core.lab.train import TrainConfig, read_train_log

BASE = TrainConfig(
    steps=10, batch_size=16, block_out_channels=(16, 32), layers_per_block=1, log_every=5, warmup_steps=2, lr=1e-3
)
TOP_KEYS = {
    "format",
    "factor",
    "factor_label",
    "values",
    "data",
    "attacks",
    "base_config",
    "command",
    "device",
    "seconds",
    "rows",
    "models",
}
ROW_KEYS = {"value", "label", "attack", "auc", "auc_ci", "tpr_at_1pct", "tpr_at_0_1pct", "n_members", "n_nonmembers"}
MODEL_KEYS = {
    "value",
    "label",
    "heldout_loss",
    "member_loss",
    "epsilon",
    "train_seconds",
    "steps",
    "n_members",
    "target_dir",
}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def steps_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "steps"
    phases = []
    study = run_study(
        "steps",
        [10, 20],
        data="default",
        base=BASE,
        attacks=("loss", "sima"),
        out_dir=out,
        device="cpu",
        limit=30,
        n_bootstrap=20,
        utility_draws=2,
        command="mia study (test)",
        progress=lambda phase, done, total: phases.append(phase),
    )
    return study, out, phases


def test_study_json_has_the_exact_shape(steps_study):
    _, out, _ = steps_study
    d = json.loads((out / "study.json").read_text())
    assert set(d) == TOP_KEYS
    assert d["format"] == "mia-study/1" and d["factor"] == "steps" and d["factor_label"] == "training steps"
    assert d["values"] == [10, 20] and d["data"] == "default" and d["attacks"] == ["loss", "sima"]
    assert d["command"] == "mia study (test)" and d["device"] == "cpu" and d["seconds"] > 0
    assert d["base_config"] == {**BASE.to_dict(), "steps": 20}  # one run of the largest value
    assert [(r["value"], r["attack"]) for r in d["rows"]] == [(10, "loss"), (10, "sima"), (20, "loss"), (20, "sima")]
    for row in d["rows"]:
        assert set(row) == ROW_KEYS
        assert row["label"] == str(row["value"])
        assert 0 <= row["auc"] <= 1 and row["auc_ci"][0] <= row["auc"] <= row["auc_ci"][1]
        assert row["tpr_at_1pct"] is None and row["tpr_at_0_1pct"] is None  # 30 non-members: n/a
        assert row["n_members"] == 30 and row["n_nonmembers"] == 30
    assert [m["value"] for m in d["models"]] == [10, 20]
    for model in d["models"]:
        assert set(model) == MODEL_KEYS
        assert model["steps"] == model["value"] and model["n_members"] == 898 and model["epsilon"] is None
        assert model["heldout_loss"] > 0 and model["member_loss"] > 0 and model["train_seconds"] >= 0
        assert (out / model["target_dir"] / "unet").is_dir()
        assert not model["target_dir"].startswith("/")


def test_steps_study_trains_once_with_a_snapshot(steps_study):
    study, out, phases = steps_study
    short, full = (out / m["target_dir"] for m in study.models)
    assert read_train_log(short)["snapshot_of"]["steps"] == 20
    assert "snapshot_of" not in read_train_log(full)
    assert [p for p in dict.fromkeys(phases) if p.startswith("train")] == ["train 20"]
    assert {"attack 10: loss", "attack 20: sima", "utility 20"} <= set(phases)
    # The manifest of each model is the split trained on.
    _, split = resolve_data("default")
    assert Split.load(short / "split.json").member_ids == split.member_ids


def test_table_and_csv(steps_study):
    study, out, _ = steps_study
    table = study.table()
    assert len(table) == 4 and list(table["attack"]) == ["loss", "sima", "loss", "sima"]
    assert {"auc", "auc_ci_low", "heldout_loss", "member_loss", "loss_gap", "epsilon", "train_members"} <= set(table)
    np.testing.assert_allclose(table["loss_gap"], table["heldout_loss"] - table["member_loss"])
    csv = pd.read_csv(out / "study.csv")
    assert list(csv.columns) == list(table.columns) and len(csv) == 4
    np.testing.assert_allclose(csv["auc"], table["auc"], rtol=1e-5)
    loaded = load_study(out)
    assert loaded.to_json_dict() == study.to_json_dict() and loaded.path == out / "study.json"
    assert [s.factor for s in list_studies(out.parent)] == ["steps"]


def test_rerun_skips_done_values(steps_study, monkeypatch):
    study, out, _ = steps_study
    before = json.loads((out / "study.json").read_text())

    def no_training(*args, **kwargs):
        raise AssertionError("a finished study must not train again")

    monkeypatch.setattr(study_module, "train", no_training)
    again = run_study(
        "steps",
        [10, 20],
        data="default",
        base=BASE,
        attacks=("loss", "sima"),
        out_dir=out,
        device="cpu",
        limit=30,
        n_bootstrap=20,
        utility_draws=2,
        command="mia study (test)",
    )
    assert again.rows == before["rows"] and again.models == before["models"]
    # Cut off after the first value: the second is attacked again from its trained model, not retrained.
    d = dict(before, rows=before["rows"][:2], models=before["models"][:1])
    (out / "study.json").write_text(json.dumps(d))
    resumed = run_study(
        "steps",
        [10, 20],
        data="default",
        base=BASE,
        attacks=("loss", "sima"),
        out_dir=out,
        device="cpu",
        limit=30,
        n_bootstrap=20,
        utility_draws=2,
        command="mia study (test)",
    )
    assert resumed.rows == before["rows"]  # same seeds, same scores
    assert resumed.models[1]["heldout_loss"] == before["models"][1]["heldout_loss"]
    with pytest.raises(ValueError, match="settings differ in: limit"):
        run_study(
            "steps",
            [10, 20],
            data="default",
            base=BASE,
            attacks=("loss", "sima"),
            out_dir=out,
            device="cpu",
            limit=20,
            n_bootstrap=20,
            utility_draws=2,
        )


def test_n_members_study(tmp_path):
    out = tmp_path / "n"
    study = run_study(
        "n_members",
        [16, 32],
        data="default",
        base=BASE,
        attacks=("loss",),
        out_dir=out,
        models_dir=tmp_path / "models",
        device="cpu",
        limit=40,
        n_bootstrap=10,
        utility_draws=1,
    )
    _, split = resolve_data("default")
    for model, n in zip(study.models, (16, 32)):
        assert model["n_members"] == n and model["steps"] == 10
        folder = out / model["target_dir"]
        assert folder.resolve().parent == (tmp_path / "models").resolve()
        trained_on = Split.load(folder / "split.json")
        assert trained_on.n_members == n and set(trained_on.member_ids) <= set(split.member_ids)
        assert trained_on.nonmember_ids == split.nonmember_ids  # every value is judged on the same non-members
    rows = {r["value"]: r for r in study.rows}
    assert rows[16]["n_members"] == 16 and rows[32]["n_members"] == 32 and rows[16]["n_nonmembers"] == 40
    with pytest.raises(ValueError, match="exceeds the 898 members"):
        run_study("n_members", [900], base=BASE, attacks=("loss",), out_dir=tmp_path / "x", device="cpu")


def test_dp_epsilon_study(tmp_path):
    base = TrainConfig(
        steps=4, batch_size=16, block_out_channels=(16, 32), layers_per_block=1, log_every=2, attention=False
    )
    study = run_study(
        "dp_epsilon",
        [None, 50],
        data="default",
        base=base,
        attacks=("loss",),
        out_dir=tmp_path / "dp",
        device="cpu",
        limit=20,
        n_bootstrap=10,
        utility_draws=1,
    )
    assert study.values == [None, 50.0]
    assert [m["label"] for m in study.models] == ["no DP", "50"]
    assert study.models[0]["epsilon"] is None
    eps = study.models[1]["epsilon"]
    assert math.isfinite(eps) and 0 < eps <= 50 * 1.05
    d = json.loads((tmp_path / "dp" / "study.json").read_text())
    assert d["values"] == [None, 50.0] and d["rows"][0]["value"] is None and d["rows"][0]["label"] == "no DP"


def test_parse_values_and_labels():
    assert FACTORS == ("steps", "n_members", "dp_epsilon", "augment")
    assert parse_values("steps", "500, 1000,2000") == [500, 1000, 2000]
    assert parse_values("dp_epsilon", "1,10,inf") == [1.0, 10.0, None]
    assert parse_values("augment", "none,hflip,strong") == ["none", "hflip", "strong"]
    assert [value_label("dp_epsilon", v) for v in (1.0, 0.5, None)] == ["1", "0.5", "no DP"]
    with pytest.raises(ValueError, match="integers"):
        parse_values("steps", "10,ten")
    with pytest.raises(ValueError, match=">= 1"):
        parse_values("n_members", "0")
    with pytest.raises(ValueError, match="augment values"):
        parse_values("augment", "none,rotate")
    with pytest.raises(ValueError, match="distinct"):
        parse_values("dp_epsilon", "inf,none")
    with pytest.raises(ValueError, match="factor must be one of"):
        parse_values("lr", "1")


def test_load_study_rejects_other_files(tmp_path):
    (tmp_path / "study.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a study"):
        load_study(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        load_study(tmp_path / "nowhere")
    with pytest.warns(UserWarning, match="skipping"):
        assert list_studies(tmp_path) == []
