"""AppTest of the Train page: the equivalent command, a tiny real training through the worker, cancelling,
and the Target page showing a target's DP recipe."""

from __future__ import annotations

import json
import shlex
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mia_core import cli
from mia_core.data import resolve_data
from mia_core.lab.train import read_train_log

PAGE = "pages/train.py"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    """The training runs on the worker thread; one torch thread keeps it quick on a busy 2-core machine."""


@pytest.fixture()
def targets(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "targets"
    monkeypatch.setenv("MIA_TARGETS_DIR", str(folder))
    return folder


def _texts(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.success] + [e.value for e in at.error]
    parts += [e.value for e in at.info] + [e.value for e in at.warning]
    return "\n".join(str(p) for p in parts)


def _tiny(at, name: str, steps: int, batch: int = 16) -> None:
    at.text_input(key="train.name").set_value(name)
    at.radio(key="train.preset").set_value("small")
    at.number_input(key="train.steps").set_value(steps)
    at.number_input(key="train.batch_size").set_value(batch)


def _wait(at, word: str, seconds: float = 60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        at.run()
        assert not at.exception, at.exception
        found = [e.value for e in list(at.success) + list(at.warning) if e.value.startswith(word)]
        if found:
            return found[0]
        time.sleep(0.3)
    raise AssertionError(f"no {word!r} message after {seconds} s:\n{_texts(at)}")


def test_form_shows_the_equivalent_command(open_page, targets):
    at = open_page(PAGE)
    assert at.title[0].value.endswith("Train a target")
    command = at.code[0].value
    assert command == (
        f"mia train --data default --out {targets / 'my-target'} --steps 6000 --batch-size 128 "
        "--lr 0.0002 --warmup-steps 200 --ema-decay 0.999 --channels 32,64,64 --layers-per-block 1 --schedule linear "
        "--augment none --log-every 60 --seed 0"
    )
    at.checkbox(key="train.dp").check()
    at.number_input(key="train.dp_epsilon").set_value(2.0)
    at.selectbox(key="train.augment").set_value("strong")
    at.radio(key="train.preset").set_value("small")
    at.text_input(key="train.name").set_value("not a name!")  # submits the form but starts nothing
    at.button(key="train.run").click()
    at.run()
    assert not at.exception and "Nothing was started" in at.error[0].value
    command = at.code[0].value
    assert "--channels 16,32,32 --layers-per-block 1" in command and "--augment strong" in command
    assert "--dp-epsilon 2 --dp-max-grad-norm 1 --log-every 60 --seed 0" in command
    assert "--dp-delta" not in command  # empty δ: the trainer's 1 / N^1.1


def test_estimate_measures_steps_per_second(open_page, targets):
    at = open_page(PAGE)
    _tiny(at, "speed", steps=300, batch=8)
    at.button(key="train.estimate").click()
    at.run()
    assert not at.exception
    info = [i.value for i in at.info if "training steps/s" in i.value]
    assert info and "300 steps take **about" in info[0], _texts(at)
    assert not targets.exists()  # timing trains into a scratch folder only
    rate = float(info[0].split("**")[1].split()[0].replace(",", ""))
    # the speed does not depend on the number of steps: a longer run is extrapolated without timing again
    at.number_input(key="train.steps").set_value(300_000)
    at.text_input(key="train.name").set_value("not a name!")  # submits the form but starts nothing
    at.button(key="train.run").click()
    at.run()
    info = [i.value for i in at.info if "training steps/s" in i.value]
    assert info and f"**{rate:,.1f} training steps/s**" in info[0] and "300,000 steps take" in info[0]


def test_bad_name_starts_nothing(open_page, targets):
    at = open_page(PAGE)
    _tiny(at, "../escape", steps=5)
    at.button(key="train.run").click()
    at.run()
    assert "Nothing was started" in at.error[0].value and "'../escape'" in at.error[0].value
    assert "train.job" not in at.session_state


def test_tiny_training_finishes_and_becomes_the_target(open_page, targets, tmp_path):
    at = open_page(PAGE)
    _tiny(at, "tiny", steps=20)
    at.button(key="train.run").click()
    at.run()
    assert not at.exception
    assert at.session_state["train.job"].startswith("train-")
    done = _wait(at, "Done")
    assert done.startswith("Done — trained 20 steps on 898 members")
    folder = targets / "tiny"
    log = read_train_log(folder)
    assert log["config"]["steps"] == 20 and log["config"]["block_out_channels"] == [16, 32, 32]
    assert log["command"].startswith("mia train --data default --out ")
    assert "--steps 20 --batch-size 16" in log["command"]
    assert log["command"].endswith("--log-every 1 --seed 0") and log["config"]["log_every"] == 1
    assert len(log["loss_curve"]) == 20  # log_every = 1 for 20 steps: the live curve has a point per step
    # the command the page shows trains the same weights: the same split bitwise, the weights to
    # float rounding (the page trains on the worker thread, whose OpenMP thread count may differ
    # from this one's, and a different reduction order changes the last bits; a different seed,
    # learning rate or model would differ everywhere)
    argv = shlex.split(log["command"])[1:]
    argv[argv.index("--out") + 1] = str(tmp_path / "from_cli")
    assert cli.main([*argv, "--device", "cpu"]) == 0
    assert (folder / "split.json").read_bytes() == (tmp_path / "from_cli" / "split.json").read_bytes()
    page_weights = load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors"))
    cli_weights = load_file(str(tmp_path / "from_cli" / "unet" / "diffusion_pytorch_model.safetensors"))
    assert set(page_weights) == set(cli_weights)
    for name, value in page_weights.items():
        torch.testing.assert_close(value, cli_weights[name], rtol=1e-4, atol=1e-6, msg=name)
    assert at.get("plotly_chart")  # the loss curve
    at.button(key="train.use").click().run()
    assert not at.exception
    assert at.session_state["cfg.target"] == str(folder.resolve())
    assert at.session_state["cfg.data"] == str(folder.resolve() / "split.json")
    images, split = resolve_data(at.session_state["cfg.data"])  # the other pages can load it
    assert split.n_members == 898 and len(images.ids) == 898 + 899
    assert list(at.dataframe[0].value["name"]) == ["tiny"]  # listed under "Trained targets"
    # the same name again is refused: nothing is overwritten
    at.button(key="train.run").click()
    at.run()
    assert "already exists" in at.error[0].value


def test_cancel_stops_a_running_training(open_page, targets):
    at = open_page(PAGE)
    _tiny(at, "long", steps=2_000, batch=8)  # logs (and can stop) every 20 steps
    at.button(key="train.run").click()
    at.run()
    deadline = time.time() + 30
    while time.time() < deadline:  # cancel a job that is running, not one still queued
        progress = at.get("progress")
        if progress and progress[0].proto.value > 0:
            break
        time.sleep(0.2)
        at.run()
    assert progress and progress[0].proto.value > 0, _texts(at)
    at.button(key="train.cancel").click().run()
    message = _wait(at, "Cancelled")
    assert "nothing was saved" in message
    assert not (targets / "long").exists()


def test_target_page_shows_the_dp_recipe(open_page, tmp_path):
    folder = tmp_path / "dp_target"
    shutil.copytree(REPO / "assets" / "default_target", folder)
    log = json.loads((folder / "train_log.json").read_text())
    log["config"]["augment"] = "strong"
    log["dp"] = {
        "target_epsilon": 8.0,
        "delta": 5.6e-4,
        "noise_multiplier": 0.61,
        "max_grad_norm": 1.0,
        "achieved_epsilon": 7.93,
        "accountant": "rdp",
        "sample_rate": 0.1425,
    }
    (folder / "train_log.json").write_text(json.dumps(log))
    at = open_page("pages/target.py")
    assert "Trained without differential privacy" in "\n".join(c.value for c in at.caption)  # the default
    at.radio(key="target.source").set_value("Local diffusers folder").run()
    at.text_input(key="target.folder").input(str(folder)).run()
    at.button(key="target.apply").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["DP ε (achieved)"] == "7.93" and metrics["DP δ"] == "5.6e-04"
    assert metrics["Noise multiplier σ"] == "0.610" and metrics["Clip norm C"] == "1"
    captions = "\n".join(c.value for c in at.caption)
    assert "augmentation: strong" in captions and "for a target of 8." in captions
