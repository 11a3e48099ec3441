"""Tests for the ``mia`` command line (mia_core.cli)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mia_core.cli import main
from mia_core.target import load_target

REQUIRED_METRICS = {"auc", "asr", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr", "n_members", "n_nonmembers", "seconds"}


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_unet_factory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "tiny"
    tiny_unet_factory(8, 1).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def attack_run(tiny_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    code = main(
        [
            "attack",
            "--target",
            str(tiny_folder),
            "--data",
            "default",
            "--limit",
            "20",
            "--attacks",
            "loss,pia",
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    return code, out


def test_attack_writes_scores_and_metrics(attack_run, tiny_folder):
    code, out = attack_run
    assert code == 0
    scores = pd.read_csv(out / "scores.csv")
    assert list(scores.columns) == ["id", "is_member", "loss", "pia"]
    assert len(scores) == 40
    assert scores["is_member"].tolist() == [1] * 20 + [0] * 20
    assert scores["id"].is_unique
    assert np.isfinite(scores[["loss", "pia"]].to_numpy()).all()
    assert (scores[["loss", "pia"]].to_numpy() <= 0).all()  # negated errors / distances

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"loss", "pia"}
    for m in metrics.values():
        assert REQUIRED_METRICS <= set(m)
        assert 0 <= m["auc"] <= 1 and 0.5 <= m["asr"] <= 1
        assert m["n_members"] == 20 and m["n_nonmembers"] == 20
        assert m["tpr_at_1pct_fpr"] is None and m["tpr_at_0.1pct_fpr"] is None  # 20 non-members: n/a
        assert m["seconds"] >= 0
    # Transferred thresholds: seeded stratified partition recorded; TPR and achieved FPR on the test part
    # equal a recomputation from scores.csv (10 % budget: 10 calibration non-members suffice; 1 %: n/a).
    from mia_core.calibration import calibration_partition, transferred_tpr_at_fpr

    labels = scores["is_member"].to_numpy() == 1
    part = calibration_partition(labels, fraction=0.5, seed=0)
    for name, m in metrics.items():
        t = m["transferred"]
        assert t["partition"] == {
            "fraction": 0.5,
            "seed": 0,
            "stratified": True,
            "calibration_members": 10,
            "calibration_nonmembers": 10,
            "test_members": 10,
            "test_nonmembers": 10,
        }
        expected = transferred_tpr_at_fpr(scores[name].to_numpy(), labels, part, 0.1, n_bootstrap=0)
        assert t["at_fpr"]["0.1"]["tpr"] == pytest.approx(expected.tpr)
        assert t["at_fpr"]["0.1"]["fpr"] == pytest.approx(expected.fpr)
        assert t["at_fpr"]["0.1"]["tpr_ci"] is not None
        assert t["at_fpr"]["0.01"]["tpr"] is None
    assert metrics["pia"]["unet_calls_per_image"] == 12  # 1 + the score's t and the 11-point sweep (200 included)

    # The CSV's scores are what the attack computes for those ids (PIA is deterministic).
    from mia_core.attacks import get_attack
    from mia_core.data import resolve_data

    images, split = resolve_data("default")
    ids, _ = split.limit(20).labelled()
    assert scores["id"].tolist() == list(ids)
    x0 = images.subset(ids).to_unit_range()
    pia = get_attack("pia", {"sweep": []}).run(load_target(str(tiny_folder), device="cpu"), x0, ids=ids)
    np.testing.assert_allclose(scores["pia"].to_numpy(), pia.scores, rtol=1e-4)

    traces = np.load(out / "traces.npz")
    assert traces["pia_trace"].shape == (40, 11) and traces["loss_trace"].shape == (40, 11)
    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("mia attack --target")
    assert run["blind_baseline"]["n_members"] == 10 and run["blind_baseline"]["partition"]["seed"] == 0
    assert run["target"]["resolution"] == 8


def test_attack_no_trace(tiny_folder, tmp_path, capsys):
    out = tmp_path / "nt"
    code = main(
        [
            "attack",
            "--target",
            str(tiny_folder),
            "--data",
            "default",
            "--limit",
            "5",
            "--attacks",
            "secmi,sima",
            "--out",
            str(out),
            "--no-trace",
            "--bootstrap",
            "0",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    traces = np.load(out / "traces.npz")
    assert traces["secmi_trace"].shape == (10, 0) and traces["sima_trace"].shape == (10, 0)
    run = json.loads((out / "run.json").read_text())
    assert run["attacks"]["secmi"]["trace"] is False
    assert run["attacks"]["sima"]["sweep"] == []
    printed = capsys.readouterr().out
    assert "secmi" in printed and "sima" in printed and "n/a" in printed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--attacks", "loss", "--params", "{not json"], r"--params is not valid JSON"),
        (["--attacks", "loss", "--params", '{"pia": {"timestep": 100}}'], r"\['pia'\]"),
        (["--attacks", "loss", "--params", '{"loss": 3}'], r"JSON object of objects"),
        (["--attacks", "loss", "--params", '{"loss": {"nope": 1}}'], r"unknown parameter.*'nope'"),
        (["--attacks", "loss,gsa"], r"unknown attack 'gsa'"),
        (["--attacks", "loss", "--limit", "0"], r"limit must be >= 1"),
        (["--attacks", "loss", "--target", "no/such-model-dir/here"], r"neither an existing folder nor a Hub id"),
    ],
)
def test_attack_bad_input_exit_2(tmp_path, capsys, extra, message):
    code = main(["attack", "--data", "default", "--out", str(tmp_path / "o"), "--device", "cpu", *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mia: error: ") and re.search(message, err), err
    assert "\n" not in err  # one line, no traceback
    assert not (tmp_path / "o" / "scores.csv").exists()


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "attack" in capsys.readouterr().out


def test_info_prints_card(capsys):
    assert main(["info", "--target", "default", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    card = load_target("default", device="cpu").card()
    lines = {line.split(maxsplit=1)[0]: line.split(maxsplit=1)[1] for line in out.splitlines() if line.strip()}
    assert lines["source"] == "default"
    assert lines["parameters"] == str(card["parameters"])
    assert lines["resolution"] == "8" and lines["channels"] == "1"
    assert lines["fingerprint"] == card["fingerprint"]


def test_train_writes_loadable_folder(tmp_path, capsys):
    out = tmp_path / "trained"
    code = main(
        [
            "train",
            "--data",
            "default",
            "--out",
            str(out),
            "--steps",
            "5",
            "--batch-size",
            "16",
            "--channels",
            "16,32",
            "--layers-per-block",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    target = load_target(str(out), device="cpu")
    assert list(target.unet.config.block_out_channels) == [16, 32]
    assert (target.resolution, target.channels) == (8, 1)
    log = json.loads((out / "train_log.json").read_text())
    assert log["command"].startswith("mia train --data default")
    assert log["config"]["steps"] == 5 and log["n_members"] == 898
    assert "saved EMA weights" in capsys.readouterr().out


def test_train_options_resume_and_dp(tmp_path, capsys):
    tiny = [
        "--batch-size",
        "16",
        "--channels",
        "16,32",
        "--layers-per-block",
        "1",
        "--device",
        "cpu",
        "--log-every",
        "2",
    ]
    first = tmp_path / "first"
    assert (
        main(
            [
                "train",
                "--data",
                "default",
                "--out",
                str(first),
                "--steps",
                "2",
                "--schedule",
                "cosine",
                "--augment",
                "strong",
                "--warmup-steps",
                "1",
                "--checkpoint-every",
                "2",
                *tiny,
            ]
        )
        == 0
    )
    assert (first / "checkpoint" / "training_state.safetensors").is_file()
    log = json.loads((first / "train_log.json").read_text())
    assert log["config"]["schedule"] == "cosine" and log["config"]["augment"] == "strong"
    assert log["config"]["warmup_steps"] == 1 and log["config"]["checkpoint_every"] == 2
    assert load_target(str(first), device="cpu").schedule.kind == "cosine"
    resumed = tmp_path / "resumed"
    assert (
        main(
            [
                "train",
                "--data",
                "default",
                "--out",
                str(resumed),
                "--steps",
                "4",
                "--schedule",
                "cosine",
                "--augment",
                "strong",
                "--warmup-steps",
                "1",
                "--resume",
                str(first),
                *tiny,
            ]
        )
        == 0
    )
    assert json.loads((resumed / "train_log.json").read_text())["resumed_at"] == [2]
    # --hflip is kept as the old spelling of --augment hflip
    assert main(["train", "--data", "default", "--out", str(tmp_path / "h"), "--steps", "1", "--hflip", *tiny]) == 0
    assert json.loads((tmp_path / "h" / "train_log.json").read_text())["config"]["augment"] == "hflip"
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--data",
                "default",
                "--out",
                str(tmp_path / "dp"),
                "--steps",
                "2",
                "--dp-epsilon",
                "5",
                "--no-attention",
                *tiny,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert re.search(r"DP-SGD: epsilon [0-9.]+ \(target 5\) at delta", out), out
    log = json.loads((tmp_path / "dp" / "train_log.json").read_text())
    assert log["config"]["attention"] is False and 0 < log["dp"]["achieved_epsilon"] <= 5.25
    # the model card says how it was trained and with which privacy guarantee
    assert main(["info", "--target", str(tmp_path / "dp"), "--device", "cpu"]) == 0
    card = capsys.readouterr().out
    assert f"epsilon {log['dp']['achieved_epsilon']:.3g} (target 5)" in card and "rdp accountant" in card
    assert main(["info", "--target", str(first), "--device", "cpu"]) == 0
    assert re.search(r"DP-SGD\s+no", capsys.readouterr().out)
    # a resume that changes the run is refused with one line
    code = main(
        [
            "train",
            "--data",
            "default",
            "--out",
            str(tmp_path / "x"),
            "--steps",
            "4",
            "--lr",
            "1e-3",
            "--resume",
            str(first),
            *tiny,
        ]
    )
    assert code == 2 and "config differs" in capsys.readouterr().err


def test_study_command(tmp_path, capsys):
    out = tmp_path / "study"
    argv = [
        "study",
        "--factor",
        "augment",
        "--values",
        "none,hflip",
        "--data",
        "default",
        "--attacks",
        "loss",
        "--out",
        str(out),
        "--models-dir",
        str(tmp_path / "models"),
        "--limit",
        "20",
        "--steps",
        "3",
        "--batch-size",
        "16",
        "--channels",
        "16,32",
        "--layers-per-block",
        "1",
        "--device",
        "cpu",
        "--bootstrap",
        "10",
        "--utility-draws",
        "1",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "augmentation" in printed and "hflip" in printed and "wrote" in printed
    d = json.loads((out / "study.json").read_text())
    assert d["command"] == "mia " + " ".join(argv)
    assert d["values"] == ["none", "hflip"] and [r["label"] for r in d["rows"]] == ["none", "hflip"]
    assert d["base_config"]["steps"] == 3 and not (out / "models").exists()
    assert len(pd.read_csv(out / "study.csv")) == 2
    assert main(["study", "--factor", "dp_epsilon", "--values", "0", "--out", str(tmp_path / "bad")]) == 2
    assert "dp_epsilon values must be numbers > 0" in capsys.readouterr().err


def _mia_executable() -> str:
    candidate = Path(sys.executable).parent / "mia"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("mia")
    if found is None:
        pytest.skip("the 'mia' console script is not installed (pip install -e .)")
    return found


def test_console_script(tmp_path):
    out = tmp_path / "script"
    proc = subprocess.run(
        [
            _mia_executable(),
            "attack",
            "--target",
            "default",
            "--data",
            "default",
            "--limit",
            "30",
            "--attacks",
            "sima",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # see conftest.single_thread
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("sima")]
    assert len(table) == 1
    auc = float(table[0].split()[1])
    assert 0.8 <= auc <= 1.0  # the default target leaks under SimA even on 30 + 30 images
    assert len(pd.read_csv(out / "scores.csv")) == 60


def test_attack_new_attacks_on_a_diffusers_folder_and_an_image_folder(tiny_folder, tmp_path, capsys):
    """secmi_nn, qr, likelihood and elbo through the CLI on folders (cheap settings, tiny model)."""
    from PIL import Image

    from mia_core.data import load_digits

    digits = load_digits()
    data = tmp_path / "images"
    for part, offset in (("members", 0), ("nonmembers", 40)):
        (data / part).mkdir(parents=True)
        for k in range(40):
            Image.fromarray(digits.images[offset + k][..., 0]).save(data / part / f"{part}-{k:02d}.png")
    out = tmp_path / "run"
    params = {
        "secmi_nn": {"min_steps": 4, "epochs": 1},
        "qr": {"n_models": 3, "epochs": 2, "batch_size": 8},
        "likelihood": {"rtol": 1e-2, "atol": 1e-2},
        "elbo": {"n_timesteps": 10},
    }
    code = main(
        [
            "attack",
            "--target",
            str(tiny_folder),
            "--data",
            str(data),
            "--attacks",
            "secmi_nn,qr,likelihood,elbo",
            "--params",
            json.dumps(params),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--bootstrap",
            "10",
        ]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"secmi_nn", "qr", "likelihood", "elbo"}
    # the learned attacks are scored on their held-out parts only, and say so
    assert (metrics["secmi_nn"]["n_members"], metrics["secmi_nn"]["n_nonmembers"]) == (32, 32)
    assert (metrics["qr"]["n_members"], metrics["qr"]["n_nonmembers"]) == (40, 20)
    assert (metrics["likelihood"]["n_members"], metrics["elbo"]["n_nonmembers"]) == (40, 40)
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == 80
    assert scores["secmi_nn"].isna().sum() == 16 and set(scores["secmi_nn_part"]) == {"train", "eval"}
    assert scores["likelihood"].notna().all() and scores["elbo"].notna().all()
    printed = capsys.readouterr().out
    assert "secmi_nn: evaluated on held-out 80 %" in printed


# -- kinds of targets (issue 14, item 7) ----------------------------------------------------------


def _pipeline(folder: Path, unet, scheduler_config: dict, vae=None) -> Path:
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    if vae is not None:
        vae.save_pretrained(folder / "vae", safe_serialization=True)
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler_config))
    return folder


ALL_CHEAP = "loss,secmi,pia,pian,sima,elbo,likelihood"


@pytest.mark.parametrize("kind", ["v_prediction", "zero_snr", "latent"])
def test_attack_runs_every_applicable_attack_on_each_kind(kind, tmp_path, tiny_unet_factory, capsys):
    from tests.test_latent import tiny_vae

    if kind == "v_prediction":
        folder = _pipeline(tmp_path / kind, tiny_unet_factory(8, 1), {"prediction_type": "v_prediction"})
        skipped = set()
    elif kind == "zero_snr":
        folder = _pipeline(
            tmp_path / kind,
            tiny_unet_factory(8, 1),
            {
                "_class_name": "DDIMScheduler",
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "rescale_betas_zero_snr": True,
                "prediction_type": "v_prediction",
                "timestep_spacing": "trailing",
            },
        )
        skipped = {"elbo", "likelihood"}
    else:
        folder = _pipeline(
            tmp_path / kind,
            tiny_unet_factory(8, 2),
            {"_class_name": "DDIMScheduler", "clip_sample": False},
            vae=tiny_vae("kl"),
        )
        skipped = {"elbo", "likelihood"}
    params = json.dumps({"elbo": {"n_timesteps": 4}, "likelihood": {"rtol": 1e-2, "atol": 1e-2}})
    out = tmp_path / "out"
    code = main(
        [
            "attack",
            "--target",
            str(folder),
            "--data",
            "default",
            "--limit",
            "6",
            "--attacks",
            ALL_CHEAP,
            "--params",
            params,
            "--out",
            str(out),
            "--device",
            "cpu",
            "--bootstrap",
            "10",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == set(ALL_CHEAP.split(","))
    for name, m in metrics.items():
        if name in skipped:
            assert set(m) == {"not_applicable"} and m["not_applicable"]
            assert f"not applicable  {name}:" in err
        else:
            assert REQUIRED_METRICS <= set(m), name
    run = json.loads((out / "run.json").read_text())
    assert set(run["not_applicable"]) == skipped
    assert run["target"]["space"].startswith("latent" if kind == "latent" else "pixel")
    if kind == "latent":
        assert metrics["loss"]["info"]["vae_encodes_per_image"] == 1


def test_attack_warns_on_a_biased_split(tiny_folder, tmp_path, capsys):
    """Non-members brightened: the blind baseline separates them without the model, and the CLI says so."""
    from mia_core.data import resolve_data

    images, split = resolve_data("default")
    ids, is_member = split.limit(100).labelled()
    pixels = images.subset(ids).images.astype(int)
    is_member = np.asarray(is_member, dtype=bool)
    for shift, name in ((0, "plain.npz"), (8, "shifted.npz")):
        shifted = pixels.copy()
        shifted[~is_member] += shift
        np.savez(
            tmp_path / name, images=np.clip(shifted, 0, 255).astype(np.uint8), ids=np.asarray(ids), is_member=is_member
        )
        out = tmp_path / name.replace(".npz", "")
        code = main(
            [
                "attack",
                "--target",
                str(tiny_folder),
                "--data",
                str(tmp_path / name),
                "--attacks",
                "loss",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--bootstrap",
                "100",
                "--no-trace",
            ]
        )
        captured = capsys.readouterr()
        assert code == 0, captured.err
        blind = json.loads((out / "run.json").read_text())["blind_baseline"]
        assert "blind baseline" in captured.out
        if shift:
            assert blind["biased"] and "WARNING: The split looks biased" in captured.err
        else:
            assert not blind["biased"] and "WARNING" not in captured.err


def test_infer_set_demo_and_folders(tiny_folder, tmp_path, capsys):
    """`mia infer-set`: demo sets on the default target (demo store scores) and two image folders."""
    out = tmp_path / "members.json"
    assert (
        main(
            ["infer-set", "--demo", "members", "--size", "20", "--attacks", "pia", "--device", "cpu", "--out", str(out)]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["used"] and res["p_value"] < 0.05 and res["n_suspect"] == 20 and res["n_heldout"] == 20
    assert "Likely used for training" in capsys.readouterr().out

    from PIL import Image

    from mia_core.data import load_digits

    digits = load_digits()
    for part, offset in (("suspect", 0), ("heldout", 30)):
        (tmp_path / part).mkdir()
        for k in range(6):
            Image.fromarray(digits.images[offset + k][..., 0]).save(tmp_path / part / f"{part}-{k}.png")
    out = tmp_path / "folders.json"
    assert (
        main(
            [
                "infer-set",
                "--target",
                str(tiny_folder),
                "--suspect",
                str(tmp_path / "suspect"),
                "--heldout",
                str(tmp_path / "heldout"),
                "--attacks",
                "pia,loss",
                "--device",
                "cpu",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert res["features"] == ["pia", "loss"] and res["n_control"] == 6 and res["n_suspect"] == 3
    assert 0 <= res["p_value"] <= 1

    assert main(["infer-set", "--device", "cpu"]) == 2
    assert "--suspect and --heldout" in capsys.readouterr().err


def test_study_shift_mixing_experiment(tiny_folder, tmp_path, capsys):
    """`mia study --factor shift`: the blind baseline's AUC rises with the share of shifted non-members."""
    out = tmp_path / "shift"
    code = main(
        [
            "study",
            "--factor",
            "shift",
            "--values",
            "0,1",
            "--target",
            str(tiny_folder),
            "--data",
            "default",
            "--limit",
            "60",
            "--attacks",
            "loss",
            "--shift",
            "brightness:40",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--bootstrap",
            "50",
        ]
    )
    assert code == 0, capsys.readouterr().err
    study = json.loads((out / "study.json").read_text())
    assert study["factor"] == "shift" and study["attacks"] == ["loss", "blind"]
    blind = {r["value"]: r["auc"] for r in study["rows"] if r["attack"] == "blind"}
    assert blind[1.0] > 0.9 and blind[0.0] < blind[1.0]
    assert [m["replaced_nonmembers"] for m in study["models"]] == [0, 60]
    assert [m["blind_biased"] for m in study["models"]] == [False, True]
    scores = pd.read_csv(out / "study.csv")
    assert set(scores["attack"]) == {"loss", "blind"}
    assert "share of non-members replaced" in capsys.readouterr().out
    assert main(["study", "--factor", "shift", "--values", "0,2", "--out", str(tmp_path / "bad")]) == 2
